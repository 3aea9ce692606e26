//! Pipeline files: parse, interpolate `${VAR}`, validate and resolve the graph. Every
//! problem is reported with its file, line, column and key, all at once.

pub mod de;
pub mod diagnostic;
pub mod graph;
pub mod interpolate;
pub mod session;
pub mod values;
pub mod yaml;

use std::collections::BTreeMap;
use std::path::Path;

use self::de::{from_node, suggest};
use self::diagnostic::{Diagnostic, Diagnostics};
use self::graph::StreamType;
use self::yaml::{Node, Pos, Value};
use crate::dead_letter::DeadLetterConfig;
use crate::engine::{OperatorSpec, OPERATOR_TYPES};
use crate::server::ServerConfig;
use crate::sinks::{SinkSpec, SINK_TYPES};
use crate::sources::{SourceSpec, SOURCE_TYPES};

/// A source, operator or sink with its name and where it was declared.
#[derive(Debug, Clone)]
pub struct Named<T> {
    pub name: String,
    pub pos: Pos,
    pub spec: T,
}

/// A validated pipeline.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub name: String,
    /// The file it was read from, as given.
    pub file: String,
    pub workers: Option<usize>,
    pub sources: Vec<Named<SourceSpec>>,
    /// In topological order.
    pub operators: Vec<Named<OperatorSpec>>,
    pub sinks: Vec<Named<SinkSpec>>,
    pub dead_letter: Option<DeadLetterConfig>,
    /// The HTTP/WebSocket server run beside the pipeline.
    pub server: Option<ServerConfig>,
    /// The type of every source and operator stream.
    pub types: BTreeMap<String, StreamType>,
}

const TOP_KEYS: &[&str] = &[
    "pipeline",
    "workers",
    "sources",
    "operators",
    "sinks",
    "dead_letter",
    "server",
];

/// Why a pipeline could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("reading {file}: {source}")]
    Io {
        file: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(Diagnostics),
}

/// Reads and validates the pipeline in `path`, with variables from the environment.
pub fn load_file(path: &Path) -> Result<Pipeline, LoadError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        file: file.clone(),
        source,
    })?;
    load_str(&file, &text, &|name| std::env::var(name).ok()).map_err(LoadError::Invalid)
}

/// Validates pipeline text; `file` names it in messages, `env` resolves `${VAR}`.
pub fn load_str(
    file: &str,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Pipeline, Diagnostics> {
    let fail = |items| Diagnostics {
        file: file.to_owned(),
        items,
    };
    let mut root = yaml::parse(text).map_err(|e| {
        let mut d = Diagnostic::new(e.pos, "", format!("invalid YAML: {}", e.message));
        let line = text
            .lines()
            .nth(e.pos.line.saturating_sub(1))
            .unwrap_or_default();
        if line.contains("${") && line.contains('{') {
            d = d
                .help("inside `{ ... }` or `[ ... ]`, quote values that use variables: \"${VAR}\"");
        }
        fail(vec![d])
    })?;
    let mut errors = Vec::new();
    interpolate::interpolate(&mut root, "", env, &mut errors);
    // A value whose variable is unset gets no second error for being invalid.
    let unset: Vec<Pos> = errors.iter().map(|e| e.pos).collect();
    let interpolation_errors = errors.len();

    let Value::Map(entries) = &root.value else {
        return Err(fail(vec![Diagnostic::new(
            root.pos,
            "",
            format!(
                "a pipeline file is a mapping with the keys {}; found {}",
                TOP_KEYS.join(", "),
                root.kind()
            ),
        )]));
    };
    for (key, _) in entries {
        let name = key.as_str().unwrap_or_default();
        if !TOP_KEYS.contains(&name) {
            errors.push(
                Diagnostic::new(key.pos, name, format!("unknown key `{name}`"))
                    .help_opt(suggest(name, TOP_KEYS)),
            );
        }
    }

    let name = match root.get("pipeline") {
        Some(node) => from_node::<String>(node, "pipeline")
            .map_err(|e| errors.push(Diagnostic::from_de(e, node.pos, "pipeline")))
            .unwrap_or_default(),
        None => {
            errors.push(Diagnostic::new(
                root.pos,
                "pipeline",
                "missing required key `pipeline` (the pipeline's name)",
            ));
            String::new()
        }
    };
    let workers = root
        .get("workers")
        .and_then(|node| match from_node::<usize>(node, "workers") {
            Ok(0) => {
                errors.push(Diagnostic::new(
                    node.pos,
                    "workers",
                    "workers must be at least 1",
                ));
                None
            }
            Ok(n) => Some(n),
            Err(e) => {
                errors.push(Diagnostic::from_de(e, node.pos, "workers"));
                None
            }
        });
    let dead_letter = root.get("dead_letter").and_then(|node| {
        from_node::<DeadLetterConfig>(node, "dead_letter")
            .map_err(|e| errors.push(Diagnostic::from_de(e, node.pos, "dead_letter")))
            .ok()
    });

    // Names of every declared stream, also those whose definition has errors, so that
    // a mistake in one node is not reported again at every reference to it.
    let mut declared = Vec::new();
    let sources = section(
        &root,
        "sources",
        SOURCE_TYPES,
        SourceSpec::from_node,
        &mut declared,
        &mut errors,
    );
    let operators = section(
        &root,
        "operators",
        OPERATOR_TYPES,
        OperatorSpec::from_node,
        &mut declared,
        &mut errors,
    );
    let mut sink_names = Vec::new();
    let sinks = section(
        &root,
        "sinks",
        SINK_TYPES,
        SinkSpec::from_node,
        &mut sink_names,
        &mut errors,
    );
    if root.get("sources").is_none() {
        errors.push(Diagnostic::new(
            root.pos,
            "sources",
            "missing required key `sources`: a pipeline needs at least one source",
        ));
    }
    for s in &sources {
        errors.extend(s.spec.check(&format!("sources.{}", s.name)));
    }
    for o in &operators {
        errors.extend(o.spec.check(&format!("operators.{}", o.name)));
    }
    let server = root.get("server").and_then(|node| {
        from_node::<ServerConfig>(node, "server")
            .map_err(|e| errors.push(Diagnostic::from_de(e, node.pos, "server")))
            .ok()
    });
    if let Some(server) = &server {
        errors.extend(server.check(&sinks));
    }
    if server.is_none() && root.get("server").is_none() {
        for sink in sinks.iter().filter(|s| s.spec.type_name() == "websocket") {
            errors.push(
                Diagnostic::new(
                    sink.pos,
                    format!("sinks.{}", sink.name),
                    "a `websocket` sink streams to the clients of the pipeline's server, and there is no `server`",
                )
                .help("add `server: {listen: 127.0.0.1:8000}`"),
            );
        }
    }
    let (operators, types) = graph::resolve(
        &sources,
        operators,
        &sinks,
        &declared,
        &sink_names,
        &mut errors,
    );

    let mut index = 0;
    errors.retain(|e| {
        index += 1;
        index <= interpolation_errors || !unset.contains(&e.pos)
    });
    if errors.is_empty() {
        Ok(Pipeline {
            name,
            file: file.to_owned(),
            workers,
            sources,
            operators,
            sinks,
            dead_letter,
            server,
            types,
        })
    } else {
        errors.sort_by_key(|e| e.pos);
        errors.dedup();
        Err(fail(errors))
    }
}

/// Reads one of `sources`, `operators`, `sinks`: a mapping of names to nodes with a `type`.
fn section<T>(
    root: &Node,
    key: &str,
    types: &[&str],
    build: fn(&str, &Node, &str) -> Result<T, Vec<de::DeError>>,
    declared: &mut Vec<String>,
    errors: &mut Vec<Diagnostic>,
) -> Vec<Named<T>> {
    let Some(node) = root.get(key) else {
        return Vec::new();
    };
    let entries = match &node.value {
        Value::Map(entries) => entries,
        _ if node.is_null() => return Vec::new(),
        _ => {
            errors.push(Diagnostic::new(
                node.pos,
                key,
                format!(
                    "`{key}` is a mapping of names to definitions; found {}",
                    node.kind()
                ),
            ));
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for (name_node, body) in entries {
        let name = name_node.as_str().unwrap_or_default().to_owned();
        let path = format!("{key}.{name}");
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            errors.push(Diagnostic::new(
                name_node.pos,
                &path,
                format!("invalid name `{name}`: use letters, digits, `_` and `-`"),
            ));
            continue;
        }
        declared.push(name.clone());
        if !matches!(body.value, Value::Map(_)) {
            errors.push(Diagnostic::new(
                body.pos,
                &path,
                format!("expected a mapping with a `type`, found {}", body.kind()),
            ));
            continue;
        }
        let kind = match body.get("type").map(|t| (t, t.as_str())) {
            None => {
                let list = types
                    .iter()
                    .map(|t| format!("`{t}`"))
                    .collect::<Vec<_>>()
                    .join(", ");
                errors.push(
                    Diagnostic::new(body.pos, &path, "missing required key `type`")
                        .help(format!("valid types: {list}")),
                );
                continue;
            }
            Some((_, Some(kind))) if types.contains(&kind) => kind.to_owned(),
            Some((t, text)) => {
                let given = text.unwrap_or_default();
                let what = &key[..key.len() - 1];
                errors.push(
                    Diagnostic::new(
                        t.pos,
                        format!("{path}.type"),
                        format!("unknown {what} type `{given}`"),
                    )
                    .help_opt(suggest(given, types)),
                );
                continue;
            }
        };
        match build(&kind, body, &path) {
            Ok(spec) => out.push(Named {
                name,
                pos: name_node.pos,
                spec,
            }),
            Err(problems) => errors.extend(
                problems
                    .into_iter()
                    .map(|e| Diagnostic::from_de(e, body.pos, &path)),
            ),
        }
    }
    out
}
