//! A YAML document as a tree whose every node knows its line and column.
//!
//! `serde_yaml` reports only the first error of a document and its `Value` forgets
//! positions; validation here needs a position for every key to report all mistakes of
//! a pipeline at once, so the tree is built from `yaml-rust2`'s marked events.

use std::collections::HashMap;
use std::fmt;

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::TScalarStyle;

/// A 1-based line and column in the source text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// A node of the document.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub value: Value,
    pub pos: Pos,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A scalar as written; `plain` scalars may be numbers, booleans or null.
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    /// Entries in document order; keys are scalars.
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// The text of a scalar node.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    /// Whether this is a plain `null`, `~` or empty scalar.
    pub fn is_null(&self) -> bool {
        matches!(&self.value, Value::Scalar { text, plain: true } if is_null_text(text))
    }

    /// The value under `key` of a mapping node.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// A short name of the node's kind, for messages.
    pub fn kind(&self) -> &'static str {
        match &self.value {
            Value::Scalar { .. } if self.is_null() => "nothing",
            Value::Scalar { .. } => "a scalar",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

pub fn is_null_text(text: &str) -> bool {
    matches!(text, "" | "~" | "null" | "Null" | "NULL")
}

/// A syntax error with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

enum Frame {
    Seq(Pos, Vec<Node>, Option<usize>),
    /// Position, entries, the key waiting for its value, the anchor, and the line of each
    /// key so far (duplicates are found in constant time).
    Map(
        Pos,
        Vec<(Node, Node)>,
        Option<Node>,
        Option<usize>,
        HashMap<String, usize>,
    ),
}

/// Collections nested deeper than this are refused: a pipeline needs a handful of levels,
/// and every later pass over the tree (and dropping it) recurses.
pub const MAX_DEPTH: usize = 64;
/// Nodes that aliases may copy in all: expanding nested aliases grows exponentially.
pub const MAX_ALIAS_NODES: usize = 10_000;

/// Parses one YAML document. Anchors and aliases are expanded within [`MAX_ALIAS_NODES`];
/// nesting is bounded by [`MAX_DEPTH`]; duplicate keys and several documents in one file
/// are errors.
pub fn parse(text: &str) -> Result<Node, SyntaxError> {
    let mut parser = Parser::new_from_str(text);
    let mut alias_nodes = 0usize;
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, Node> = HashMap::new();
    let mut root: Option<Node> = None;
    loop {
        let (event, mark) = parser.next_token().map_err(|e| SyntaxError {
            pos: Pos {
                line: e.marker().line(),
                col: e.marker().col() + 1,
            },
            message: e.info().to_owned(),
        })?;
        let pos = Pos {
            line: mark.line(),
            col: mark.col() + 1,
        };
        let complete = match event {
            Event::StreamEnd => break,
            Event::DocumentStart if root.is_some() => {
                return Err(SyntaxError {
                    pos,
                    message: "a pipeline file holds one YAML document; found a second `---`".into(),
                })
            }
            Event::Nothing | Event::StreamStart | Event::DocumentStart | Event::DocumentEnd => None,
            Event::Alias(id) => match anchors.get(&id) {
                Some(node) => {
                    alias_nodes += node_count(node);
                    if alias_nodes > MAX_ALIAS_NODES {
                        return Err(SyntaxError {
                            pos,
                            message: format!(
                                "aliases expand to more than {MAX_ALIAS_NODES} nodes; write the values out or nest fewer aliases"
                            ),
                        });
                    }
                    Some(Node {
                        value: node.value.clone(),
                        pos,
                    })
                }
                None => {
                    return Err(SyntaxError {
                        pos,
                        message: "alias to an unknown anchor".into(),
                    })
                }
            },
            Event::Scalar(text, style, anchor, tag) => {
                let plain = style == TScalarStyle::Plain && tag.is_none();
                let node = Node {
                    value: Value::Scalar { text, plain },
                    pos,
                };
                remember(&mut anchors, anchor, &node);
                Some(node)
            }
            Event::SequenceStart(anchor, _) => {
                check_depth(&stack, pos)?;
                stack.push(Frame::Seq(pos, Vec::new(), (anchor > 0).then_some(anchor)));
                None
            }
            Event::MappingStart(anchor, _) => {
                check_depth(&stack, pos)?;
                stack.push(Frame::Map(
                    pos,
                    Vec::new(),
                    None,
                    (anchor > 0).then_some(anchor),
                    HashMap::new(),
                ));
                None
            }
            Event::SequenceEnd | Event::MappingEnd => Some(close(&mut stack, &mut anchors, pos)?),
        };
        if let Some(node) = complete {
            attach(&mut stack, &mut root, node)?;
        }
    }
    Ok(root.unwrap_or(Node {
        value: Value::Map(Vec::new()),
        pos: Pos { line: 1, col: 1 },
    }))
}

/// Ends the innermost open collection, remembering it under its anchor.
fn close(
    stack: &mut Vec<Frame>,
    anchors: &mut HashMap<usize, Node>,
    pos: Pos,
) -> Result<Node, SyntaxError> {
    let (node, anchor) = match stack.pop() {
        Some(Frame::Seq(pos, items, anchor)) => (
            Node {
                value: Value::Seq(items),
                pos,
            },
            anchor,
        ),
        Some(Frame::Map(pos, entries, _, anchor, _)) => (
            Node {
                value: Value::Map(entries),
                pos,
            },
            anchor,
        ),
        None => {
            return Err(SyntaxError {
                pos,
                message: "unbalanced collection end".into(),
            })
        }
    };
    remember(anchors, anchor.unwrap_or(0), &node);
    Ok(node)
}

/// Puts a complete node where it belongs: the root, the open sequence, or the open mapping
/// (as a key, refusing duplicates and non-text keys, or as the pending key's value).
fn attach(stack: &mut [Frame], root: &mut Option<Node>, node: Node) -> Result<(), SyntaxError> {
    match stack.last_mut() {
        None => *root = Some(node),
        Some(Frame::Seq(_, items, _)) => items.push(node),
        Some(Frame::Map(_, entries, pending, _, keys)) => match pending.take() {
            None => {
                let Some(key) = node.as_str() else {
                    return Err(SyntaxError {
                        pos: node.pos,
                        message: "mapping keys must be plain text".into(),
                    });
                };
                if let Some(first) = keys.get(key) {
                    return Err(SyntaxError {
                        pos: node.pos,
                        message: format!("duplicate key `{key}` (first given at line {first})"),
                    });
                }
                keys.insert(key.to_owned(), node.pos.line);
                *pending = Some(node);
            }
            Some(key) => entries.push((key, node)),
        },
    }
    Ok(())
}

/// Nodes in a tree (its depth is bounded by [`MAX_DEPTH`]).
fn node_count(node: &Node) -> usize {
    1 + match &node.value {
        Value::Scalar { .. } => 0,
        Value::Seq(items) => items.iter().map(node_count).sum(),
        Value::Map(entries) => entries
            .iter()
            .map(|(k, v)| node_count(k) + node_count(v))
            .sum(),
    }
}

/// Refuses a collection opened at `pos` that would nest deeper than [`MAX_DEPTH`].
fn check_depth(stack: &[Frame], pos: Pos) -> Result<(), SyntaxError> {
    if stack.len() >= MAX_DEPTH {
        return Err(SyntaxError {
            pos,
            message: format!("collections nested deeper than {MAX_DEPTH} levels"),
        });
    }
    Ok(())
}

fn remember(anchors: &mut HashMap<usize, Node>, anchor: usize, node: &Node) {
    if anchor > 0 {
        anchors.insert(anchor, node.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based() {
        let doc = parse("a: 1\nb:\n  c: [x, \"y\"]\n").unwrap();
        assert_eq!(doc.get("a").unwrap().pos, Pos { line: 1, col: 4 });
        let c = doc.get("b").unwrap().get("c").unwrap();
        assert_eq!(c.pos, Pos { line: 3, col: 6 });
        let Value::Seq(items) = &c.value else {
            panic!()
        };
        assert_eq!(
            items[1].value,
            Value::Scalar {
                text: "y".into(),
                plain: false
            }
        );
        assert_eq!(items[1].pos, Pos { line: 3, col: 10 });
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let err = parse("a: 1\na: 2\n").unwrap_err();
        assert_eq!(err.pos.line, 2);
        assert!(err.message.contains("duplicate key `a`"));
    }

    #[test]
    fn aliases_expand() {
        let doc = parse("base: &b {x: 1}\ncopy: *b\n").unwrap();
        assert_eq!(
            doc.get("copy").unwrap().get("x").unwrap().as_str(),
            Some("1")
        );
    }

    #[test]
    fn syntax_errors_have_positions() {
        let err = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(err.pos.line >= 1, "{err:?}");
    }
}
