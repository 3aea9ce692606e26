//! A serde deserializer over the positioned YAML tree: every error it returns carries the
//! line, column and key path where it happened, and unknown keys or values come with a
//! "did you mean" suggestion.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Visitor};
use serde::Deserialize;

use super::yaml::{is_null_text, Node, Pos, Value};

/// A deserialization error: what is wrong, where, and a hint.
#[derive(Debug, Clone, PartialEq)]
pub struct DeError {
    pub pos: Option<Pos>,
    pub path: Option<String>,
    pub message: String,
    pub help: Option<String>,
}

impl DeError {
    pub fn new(message: impl Into<String>) -> DeError {
        DeError {
            pos: None,
            path: None,
            message: message.into(),
            help: None,
        }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> DeError {
        self.help = Some(help.into());
        self
    }

    /// Places the error at `node`.
    pub fn at_node(self, node: &Node, path: &str) -> DeError {
        self.at(node.pos, path)
    }

    /// Fills in the position and path if the error has none yet (the innermost wins).
    fn at(mut self, pos: Pos, path: &str) -> DeError {
        if self.pos.is_none() {
            self.pos = Some(pos);
            self.path = Some(path.to_owned());
        }
        self
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

/// Suggests the closest of `choices` to `given` and lists them all.
pub fn suggest(given: &str, choices: &[&str]) -> Option<String> {
    if choices.is_empty() {
        return None;
    }
    let best = choices
        .iter()
        .map(|c| {
            (
                strsim::damerau_levenshtein(&given.to_lowercase(), &c.to_lowercase()),
                *c,
            )
        })
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min();
    let list = choices
        .iter()
        .map(|c| format!("`{c}`"))
        .collect::<Vec<_>>()
        .join(", ");
    Some(match best {
        Some((_, c)) => format!("did you mean `{c}`? valid choices: {list}"),
        None => format!("valid choices: {list}"),
    })
}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError::new(msg.to_string())
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        let mut err = DeError::new(format!("unknown key `{field}`"));
        err.help = suggest(field, expected);
        err
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        let mut err = DeError::new(format!("unknown value `{variant}`"));
        err.help = suggest(variant, expected);
        err
    }

    fn missing_field(field: &'static str) -> Self {
        DeError::new(format!("missing required key `{field}`"))
    }

    fn invalid_type(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        DeError::new(format!("expected {exp}, found {}", describe(unexp)))
    }

    fn invalid_value(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        DeError::new(format!("invalid value {}: expected {exp}", describe(unexp)))
    }
}

fn describe(unexp: de::Unexpected<'_>) -> String {
    match unexp {
        de::Unexpected::Str(s) => format!("`{s}`"),
        de::Unexpected::Map => "a mapping".into(),
        de::Unexpected::Seq => "a list".into(),
        de::Unexpected::Unit => "nothing".into(),
        other => other.to_string(),
    }
}

/// Deserializes a value of type `T` from `node`, naming it `path` in errors.
pub fn from_node<T: DeserializeOwned>(node: &Node, path: &str) -> Result<T, DeError> {
    T::deserialize(NodeDe {
        node,
        path: path.to_owned(),
    })
    .map_err(|e| e.at(node.pos, path))
}

/// Deserializes from a mapping node, leaving out the keys in `skip` (e.g. `type`).
pub fn from_map_without<T: DeserializeOwned>(
    node: &Node,
    path: &str,
    skip: &[&str],
) -> Result<T, DeError> {
    match &node.value {
        Value::Map(entries) => {
            let kept = entries
                .iter()
                .filter(|(k, _)| !k.as_str().is_some_and(|k| skip.contains(&k)))
                .cloned()
                .collect();
            from_node(
                &Node {
                    value: Value::Map(kept),
                    pos: node.pos,
                },
                path,
            )
        }
        _ => from_node(node, path),
    }
}

/// Mistakes reported per component at most (each costs a new read of its keys).
const MAX_ERRORS_PER_MAP: usize = 16;

/// Like [`from_map_without`], but collects the mistakes of several keys: a key whose value
/// is wrong is reported and left out, and the rest read again. Returns what could be read
/// (with the wrong keys at their defaults) and every mistake.
pub fn from_map_collecting<T: DeserializeOwned>(
    node: &Node,
    path: &str,
    skip: &[&str],
) -> (Option<T>, Vec<DeError>) {
    let Value::Map(entries) = &node.value else {
        return match from_node(node, path) {
            Ok(t) => (Some(t), Vec::new()),
            Err(e) => (None, vec![e]),
        };
    };
    let mut kept: Vec<(Node, Node)> = entries
        .iter()
        .filter(|(k, _)| !k.as_str().is_some_and(|k| skip.contains(&k)))
        .cloned()
        .collect();
    let mut errors = Vec::new();
    let mut left_out: Vec<String> = Vec::new();
    while errors.len() < MAX_ERRORS_PER_MAP {
        let map = Node {
            value: Value::Map(kept.clone()),
            pos: node.pos,
        };
        let e = match from_node(&map, path) {
            Ok(t) => return (Some(t), errors),
            Err(e) => e,
        };
        // A required key that was left out: already reported.
        if left_out
            .iter()
            .any(|k| e.message.contains(&format!("`{k}`")))
        {
            break;
        }
        let key = e
            .path
            .as_deref()
            .and_then(|p| p.strip_prefix(path))
            .and_then(|rest| rest.strip_prefix('.'))
            .map(|rest| rest.split(['.', '[']).next().unwrap_or(rest).to_owned());
        errors.push(e);
        let Some((at, key)) = key.and_then(|k| {
            kept.iter()
                .position(|(n, _)| n.as_str() == Some(k.as_str()))
                .map(|at| (at, k))
        }) else {
            break;
        };
        kept.remove(at);
        left_out.push(key);
    }
    (None, errors)
}

struct NodeDe<'a> {
    node: &'a Node,
    path: String,
}

impl<'a> NodeDe<'a> {
    fn scalar(&self, expected: &str) -> Result<&'a str, DeError> {
        match &self.node.value {
            Value::Scalar { text, .. } => Ok(text),
            _ => Err(DeError::new(format!(
                "expected {expected}, found {}",
                self.node.kind()
            ))),
        }
    }

    fn parse<T: std::str::FromStr>(&self, expected: &str) -> Result<T, DeError> {
        let text = self.scalar(expected)?;
        let cleaned: String = text.chars().filter(|c| *c != '_').collect();
        cleaned
            .parse()
            .map_err(|_| DeError::new(format!("expected {expected}, found `{text}`")))
    }

    fn fail<T>(&self, err: DeError) -> Result<T, DeError> {
        Err(err.at(self.node.pos, &self.path))
    }

    fn child(&self, node: &'a Node, segment: &str) -> NodeDe<'a> {
        let path = if self.path.is_empty() {
            segment.to_owned()
        } else if segment.starts_with('[') {
            format!("{}{segment}", self.path)
        } else {
            format!("{}.{segment}", self.path)
        };
        NodeDe { node, path }
    }
}

macro_rules! parse_number {
    ($($method:ident => $visit:ident: $ty:ty, $what:literal;)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            let value: $ty = match self.parse($what) {
                Ok(v) => v,
                Err(e) => return self.fail(e),
            };
            visitor.$visit::<DeError>(value).map_err(|e| e.at(self.node.pos, &self.path))
        }
    )*};
}

impl<'de> de::Deserializer<'de> for NodeDe<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let (pos, path) = (self.node.pos, self.path.clone());
        let result = match &self.node.value {
            Value::Scalar { text, plain: true } => {
                if is_null_text(text) {
                    visitor.visit_unit::<DeError>()
                } else if let Some(b) = parse_bool(text) {
                    visitor.visit_bool::<DeError>(b)
                } else if let Ok(i) = text.parse::<i64>() {
                    visitor.visit_i64::<DeError>(i)
                } else if let Some(f) = parse_float(text) {
                    visitor.visit_f64::<DeError>(f)
                } else {
                    visitor.visit_str::<DeError>(text)
                }
            }
            Value::Scalar { text, plain: false } => visitor.visit_str::<DeError>(text),
            Value::Seq(_) => return self.deserialize_seq(visitor),
            Value::Map(_) => return self.deserialize_map(visitor),
        };
        result.map_err(|e| e.at(pos, &path))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.scalar("true or false").map(parse_bool) {
            Ok(Some(b)) => visitor
                .visit_bool::<DeError>(b)
                .map_err(|e| e.at(self.node.pos, &self.path)),
            _ => self.fail(DeError::new(format!(
                "expected true or false, found {}",
                shown(self.node)
            ))),
        }
    }

    parse_number! {
        deserialize_i8 => visit_i8: i8, "an integer";
        deserialize_i16 => visit_i16: i16, "an integer";
        deserialize_i32 => visit_i32: i32, "an integer";
        deserialize_i64 => visit_i64: i64, "an integer";
        deserialize_u8 => visit_u8: u8, "a non-negative integer";
        deserialize_u16 => visit_u16: u16, "a non-negative integer";
        deserialize_u32 => visit_u32: u32, "a non-negative integer";
        deserialize_u64 => visit_u64: u64, "a non-negative integer";
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.scalar("a number").ok().and_then(parse_float) {
            Some(f) => visitor
                .visit_f64::<DeError>(f)
                .map_err(|e| e.at(self.node.pos, &self.path)),
            None => self.fail(DeError::new(format!(
                "expected a number, found {}",
                shown(self.node)
            ))),
        }
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.scalar("text") {
            Ok(text) => visitor
                .visit_str::<DeError>(text)
                .map_err(|e| e.at(self.node.pos, &self.path)),
            Err(e) => self.fail(e),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if self.node.is_null() {
            visitor.visit_none::<DeError>()
        } else {
            let (pos, path) = (self.node.pos, self.path.clone());
            visitor.visit_some(self).map_err(|e| e.at(pos, &path))
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if self.node.is_null() {
            visitor.visit_unit::<DeError>()
        } else {
            self.fail(DeError::new(format!(
                "expected nothing, found {}",
                shown(self.node)
            )))
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let (pos, path) = (self.node.pos, self.path.clone());
        visitor
            .visit_newtype_struct(self)
            .map_err(|e| e.at(pos, &path))
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Seq(items) => {
                let access = SeqAccess {
                    parent: &self,
                    items: items.iter().enumerate(),
                };
                visitor
                    .visit_seq(access)
                    .map_err(|e| e.at(self.node.pos, &self.path))
            }
            _ => self.fail(DeError::new(format!(
                "expected a list, found {}",
                shown(self.node)
            ))),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Map(entries) => {
                let access = MapAccess {
                    parent: &self,
                    entries: entries.iter(),
                    value: None,
                };
                visitor
                    .visit_map(access)
                    .map_err(|e| e.at(self.node.pos, &self.path))
            }
            Value::Scalar { .. } if self.node.is_null() => {
                let access = MapAccess {
                    parent: &self,
                    entries: [].iter(),
                    value: None,
                };
                visitor
                    .visit_map(access)
                    .map_err(|e| e.at(self.node.pos, &self.path))
            }
            _ => self.fail(DeError::new(format!(
                "expected a mapping, found {}",
                shown(self.node)
            ))),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        if name == SPANNED {
            let pos = self.node.pos;
            return visitor.visit_map(SpannedAccess {
                de: Some(self),
                line: Some(pos.line),
                col: Some(pos.col),
            });
        }
        let _ = fields;
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let (pos, path) = (self.node.pos, self.path.clone());
        match &self.node.value {
            Value::Scalar { text, .. } => visitor.visit_enum(EnumAccess { parent: &self, tag: text, tag_node: self.node, value: None }),
            Value::Map(entries) if entries.len() == 1 => {
                let (key, value) = &entries[0];
                let tag = key.as_str().unwrap_or_default();
                visitor.visit_enum(EnumAccess { parent: &self, tag, tag_node: key, value: Some(value) })
            }
            _ => {
                let list = variants.join(", ");
                Err(DeError::new(format!("expected one of {list} (a name, or a mapping with one of them as its only key), found {}", self.node.kind())))
            }
        }
        .map_err(|e| e.at(pos, &path))
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit::<DeError>()
    }
}

fn shown(node: &Node) -> String {
    match &node.value {
        Value::Scalar { text, .. } if !node.is_null() => format!("`{text}`"),
        _ => node.kind().to_owned(),
    }
}

fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

fn parse_float(text: &str) -> Option<f64> {
    match text {
        ".inf" | ".Inf" | ".INF" | "+.inf" => Some(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => Some(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => Some(f64::NAN),
        _ if text.bytes().any(|b| b.is_ascii_digit()) && !text.contains(['i', 'I', 'n', 'N']) => {
            text.replace('_', "").parse().ok()
        }
        _ => None,
    }
}

struct SeqAccess<'p, 'a> {
    parent: &'p NodeDe<'a>,
    items: std::iter::Enumerate<std::slice::Iter<'a, Node>>,
}

impl<'de> de::SeqAccess<'de> for SeqAccess<'_, '_> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        match self.items.next() {
            None => Ok(None),
            Some((i, node)) => {
                let child = self.parent.child(node, &format!("[{i}]"));
                let (pos, path) = (node.pos, child.path.clone());
                seed.deserialize(child)
                    .map(Some)
                    .map_err(|e| e.at(pos, &path))
            }
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct MapAccess<'p, 'a> {
    parent: &'p NodeDe<'a>,
    entries: std::slice::Iter<'a, (Node, Node)>,
    value: Option<(&'a Node, String)>,
}

impl<'de> de::MapAccess<'de> for MapAccess<'_, '_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        match self.entries.next() {
            None => Ok(None),
            Some((key, value)) => {
                let name = key.as_str().unwrap_or_default().to_owned();
                let key_de = self.parent.child(key, &name);
                let (pos, path) = (key.pos, key_de.path.clone());
                self.value = Some((value, name));
                seed.deserialize(key_de)
                    .map(Some)
                    .map_err(|e| e.at(pos, &path))
            }
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let Some((node, name)) = self.value.take() else {
            return Err(DeError::new("value requested before its key"));
        };
        let child = self.parent.child(node, &name);
        let (pos, path) = (node.pos, child.path.clone());
        seed.deserialize(child).map_err(|e| e.at(pos, &path))
    }
}

struct EnumAccess<'p, 'a> {
    parent: &'p NodeDe<'a>,
    tag: &'a str,
    tag_node: &'a Node,
    value: Option<&'a Node>,
}

impl<'de, 'p, 'a> de::EnumAccess<'de> for EnumAccess<'p, 'a> {
    type Error = DeError;
    type Variant = VariantAccess<'p, 'a>;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Self::Variant), DeError> {
        // A scalar tag is the value itself; a mapping's tag is a key below it.
        let tag_de = if std::ptr::eq(self.tag_node, self.parent.node) {
            NodeDe {
                node: self.tag_node,
                path: self.parent.path.clone(),
            }
        } else {
            self.parent.child(self.tag_node, self.tag)
        };
        let pos = self.tag_node.pos;
        let path = tag_de.path.clone();
        let variant = seed
            .deserialize(tag_de.tag_only(self.tag))
            .map_err(|e| e.at(pos, &path))?;
        Ok((
            variant,
            VariantAccess {
                parent: self.parent,
                tag: self.tag,
                value: self.value,
            },
        ))
    }
}

impl<'a> NodeDe<'a> {
    /// A deserializer for an enum tag: the key text, whatever the node holds.
    fn tag_only(self, tag: &'a str) -> TagDe<'a> {
        TagDe {
            tag,
            pos: self.node.pos,
            path: self.path,
        }
    }
}

struct TagDe<'a> {
    tag: &'a str,
    pos: Pos,
    path: String,
}

impl<'de> de::Deserializer<'de> for TagDe<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor
            .visit_str::<DeError>(self.tag)
            .map_err(|e| e.at(self.pos, &self.path))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

struct VariantAccess<'p, 'a> {
    parent: &'p NodeDe<'a>,
    tag: &'a str,
    value: Option<&'a Node>,
}

impl<'de> de::VariantAccess<'de> for VariantAccess<'_, '_> {
    type Error = DeError;

    fn unit_variant(self) -> Result<(), DeError> {
        match self.value {
            Some(node)
                if !node.is_null() && !matches!(&node.value, Value::Map(m) if m.is_empty()) =>
            {
                Err(DeError::new(format!("`{}` takes no settings", self.tag))
                    .at(node.pos, &self.parent.path))
            }
            _ => Ok(()),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, DeError> {
        let empty = Node {
            value: Value::Map(Vec::new()),
            pos: self.parent.node.pos,
        };
        let node = self.value.unwrap_or(&empty);
        let child = self.parent.child(node, self.tag);
        let (pos, path) = (node.pos, child.path.clone());
        seed.deserialize(child).map_err(|e| e.at(pos, &path))
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, DeError> {
        let empty = Node {
            value: Value::Seq(Vec::new()),
            pos: self.parent.node.pos,
        };
        let node = self.value.unwrap_or(&empty);
        de::Deserializer::deserialize_tuple(self.parent.child(node, self.tag), len, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let empty = Node {
            value: Value::Map(Vec::new()),
            pos: self.parent.node.pos,
        };
        let node = self.value.unwrap_or(&empty);
        de::Deserializer::deserialize_struct(self.parent.child(node, self.tag), "", fields, visitor)
    }
}

const SPANNED: &str = "$marketflow::Spanned";

/// A value with the position it was written at, for checks made after deserialization.
#[derive(Clone, Debug, PartialEq)]
pub struct Spanned<T> {
    pub value: T,
    pub pos: Pos,
}

impl<T> Spanned<T> {
    pub fn new(value: T, pos: Pos) -> Spanned<T> {
        Spanned { value, pos }
    }
}

impl<T> std::ops::Deref for Spanned<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

struct SpannedAccess<'a> {
    de: Option<NodeDe<'a>>,
    line: Option<usize>,
    col: Option<usize>,
}

impl<'de> de::MapAccess<'de> for SpannedAccess<'_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let key = if self.line.is_some() {
            "line"
        } else if self.col.is_some() {
            "col"
        } else if self.de.is_some() {
            "value"
        } else {
            return Ok(None);
        };
        seed.deserialize(key.into_deserializer()).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        if let Some(line) = self.line.take() {
            return seed.deserialize(line.into_deserializer());
        }
        if let Some(col) = self.col.take() {
            return seed.deserialize(col.into_deserializer());
        }
        match self.de.take() {
            Some(de) => seed.deserialize(de),
            None => Err(DeError::new("spanned value read twice")),
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Spanned<T> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SpannedVisitor<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for SpannedVisitor<T> {
            type Value = Spanned<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a value")
            }

            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Spanned<T>, A::Error> {
                let mut line = 0;
                let mut col = 0;
                let mut value = None;
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "line" => line = map.next_value()?,
                        "col" => col = map.next_value()?,
                        _ => value = Some(map.next_value()?),
                    }
                }
                let value = value.ok_or_else(|| de::Error::custom("missing value"))?;
                Ok(Spanned {
                    value,
                    pos: Pos { line, col },
                })
            }
        }

        deserializer.deserialize_struct(
            SPANNED,
            &["line", "col", "value"],
            SpannedVisitor(PhantomData),
        )
    }
}

/// One name or a list of names (`from: bars_1m` or `from: [bars_1m, ta_1m]`).
#[derive(Clone, Debug, PartialEq)]
pub struct OneOrMany(pub Vec<Spanned<String>>);

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let whole: Spanned<Names> = Spanned::deserialize(deserializer)?;
        Ok(OneOrMany(match whole.value {
            Names::One(name) => vec![Spanned::new(name, whole.pos)],
            Names::Many(names) => names,
        }))
    }
}

enum Names {
    One(String),
    Many(Vec<Spanned<String>>),
}

impl<'de> Deserialize<'de> for Names {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NamesVisitor;

        impl<'de> Visitor<'de> for NamesVisitor {
            type Value = Names;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a stream name or a list of them")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Names, E> {
                Ok(Names::One(v.to_owned()))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Names, E> {
                Ok(Names::One(v.to_string()))
            }

            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Names, A::Error> {
                let mut names = Vec::new();
                while let Some(name) = seq.next_element()? {
                    names.push(name);
                }
                Ok(Names::Many(names))
            }
        }

        deserializer.deserialize_any(NamesVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::super::yaml::parse;
    use super::*;

    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Demo {
        name: String,
        #[serde(default)]
        count: u32,
        ratio: Option<f64>,
        tags: Vec<String>,
        from: Option<Spanned<String>>,
        mode: Option<Mode>,
    }

    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(rename_all = "snake_case")]
    enum Mode {
        Fast,
        Slow { factor: u32 },
    }

    fn load(text: &str) -> Result<Demo, DeError> {
        from_node(&parse(text).unwrap(), "demo")
    }

    #[test]
    fn reads_values() {
        let d = load("name: 7203\ncount: 3\ntags: [a, \"b\"]\nfrom: x\nmode: fast\n").unwrap();
        assert_eq!(d.name, "7203");
        assert_eq!(d.count, 3);
        assert_eq!(d.from.unwrap().pos, Pos { line: 4, col: 7 });
        assert_eq!(d.mode, Some(Mode::Fast));
        let d = load("name: a\ntags: []\nmode: {slow: {factor: 2}}\n").unwrap();
        assert_eq!(d.mode, Some(Mode::Slow { factor: 2 }));
    }

    #[test]
    fn unknown_key_has_position_and_suggestion() {
        let err = load("name: a\ntags: []\ncuont: 3\n").unwrap_err();
        assert_eq!(err.pos, Some(Pos { line: 3, col: 1 }));
        assert_eq!(err.message, "unknown key `cuont`");
        assert!(err.help.unwrap().starts_with("did you mean `count`?"));
        assert_eq!(err.path.as_deref(), Some("demo.cuont"));
    }

    #[test]
    fn type_errors_point_at_the_value() {
        let err = load("name: a\ncount: lots\ntags: []\n").unwrap_err();
        assert_eq!(err.pos, Some(Pos { line: 2, col: 8 }));
        assert!(
            err.message
                .contains("expected a non-negative integer, found `lots`"),
            "{}",
            err.message
        );
        let err = load("name: a\ntags: [a, [b]]\n").unwrap_err();
        assert_eq!(err.path.as_deref(), Some("demo.tags[1]"));
    }

    #[test]
    fn missing_key_points_at_the_mapping() {
        let err = load("\n\nname: a\n").unwrap_err();
        assert_eq!(err.message, "missing required key `tags`");
        assert_eq!(err.pos.map(|p| p.line), Some(3));
    }

    #[test]
    fn unknown_variant_suggests() {
        let err = load("name: a\ntags: []\nmode: fsat\n").unwrap_err();
        assert_eq!(err.message, "unknown value `fsat`");
        assert!(err.help.unwrap().contains("did you mean `fast`?"));
        assert_eq!(err.pos, Some(Pos { line: 3, col: 7 }));
    }
}
