//! Pipeline files: parse, interpolate `${VAR}`, validate and resolve the graph. Every
//! problem is reported with its file, line, column and key, all at once.
//!
//! A pipeline is plain data: configs of the registry's source and sink types, operator
//! configs, and the resolved graph by index. The engine and the server read it.

pub mod graph;
pub mod operators;
pub mod server;

use std::path::Path;
use std::sync::Arc;

use self::operators::{OperatorSpec, OPERATOR_TYPES};
use self::server::ServerConfig;
use crate::config::de::{from_node, suggest, DeError};
use crate::config::diagnostic::{Diagnostic, Diagnostics};
use crate::config::interpolate;
use crate::config::values::ByteSize;
use crate::config::yaml::{self, Node, Pos, Value};
use crate::connector::{
    BackfillRange, Registry, ReplayRange, SinkConfig, SourceConfig, StreamType,
};
use crate::dead_letter::DeadLetterConfig;
use crate::store::recovery::RecoveryConfig;

/// A configured source of any registered type.
pub type SourceRef = Arc<dyn SourceConfig>;
/// A configured sink of any registered type.
pub type SinkRef = Arc<dyn SinkConfig>;

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
    pub sources: Vec<Named<SourceRef>>,
    /// In topological order.
    pub operators: Vec<Named<OperatorSpec>>,
    pub sinks: Vec<Named<SinkRef>>,
    pub dead_letter: Option<DeadLetterConfig>,
    /// Bytes of records each sink may have queued before the sources pause (`sink_queue:`).
    pub sink_queue: Option<u64>,
    /// Where checkpoints are kept, if the pipeline takes them.
    pub recovery: Option<RecoveryConfig>,
    /// The HTTP/WebSocket server run beside the pipeline.
    pub server: Option<ServerConfig>,
    /// The type of every stream: the sources' in order, then the operators'.
    pub streams: Vec<StreamType>,
    /// The streams each operator reads (indices into `streams`), in `operators` order.
    pub operator_inputs: Vec<Vec<usize>>,
    /// The streams each sink reads, in `sinks` order.
    pub sink_inputs: Vec<Vec<usize>>,
}

impl Pipeline {
    /// The index in `streams` of operator `index`'s output.
    pub fn operator_stream(&self, index: usize) -> usize {
        self.sources.len() + index
    }

    /// The name of stream `index`.
    pub fn stream_name(&self, index: usize) -> &str {
        match index.checked_sub(self.sources.len()) {
            None => &self.sources[index].name,
            Some(op) => &self.operators[op].name,
        }
    }

    /// How long the bars of stream `index` (or the indicators on them) stay revisable by
    /// late records: set when it is, or comes from, bars with `late: revise`.
    pub fn revise_for(&self, index: usize) -> Option<i64> {
        let op = index.checked_sub(self.sources.len())?;
        let own = match &self.operators.get(op)?.spec {
            OperatorSpec::Bars(config) => config.revise_for(),
            OperatorSpec::Indicators(_) => None,
            OperatorSpec::TickIndicators(_) => return None,
        };
        let upstream = self.operator_inputs.get(op)?.iter().filter(|&&i| i < index);
        upstream.filter_map(|&i| self.revise_for(i)).max().max(own)
    }

    /// How long the records read from `inputs` may be revised (the longest of theirs).
    pub fn inputs_revise_for(&self, inputs: &[usize]) -> Option<i64> {
        inputs.iter().filter_map(|&i| self.revise_for(i)).max()
    }

    /// Whether stream `index` comes straight from a source.
    pub fn is_source_stream(&self, index: usize) -> bool {
        index < self.sources.len()
    }

    /// The pipeline as `marketflow backfill` runs it: its history sources narrowed to
    /// `range`, every other source replaced by one that ends at once (so the graph, and
    /// what each sink reads, stay the same); `None` when it has no history source.
    pub fn for_backfill(&self, range: &BackfillRange) -> Option<Pipeline> {
        let mut pipeline = self.clone();
        let mut history = 0;
        for source in &mut pipeline.sources {
            source.spec = match source.spec.for_backfill(range) {
                Some(narrowed) => {
                    history += 1;
                    narrowed
                }
                None => crate::connector::ended(source.spec.output()),
            };
        }
        (history > 0).then_some(pipeline)
    }
}

/// What `marketflow replay` reads instead of a source.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplayFrom {
    /// The ticks the pipeline recorded in its store (its first sink with a database).
    Store,
    /// A CSV or JSONL file of the source's records, in arrival order.
    File(std::path::PathBuf),
    /// The source's own Kafka topic, from `--from` to its end offsets now.
    Kafka,
}

impl std::str::FromStr for ReplayFrom {
    type Err = String;
    fn from_str(text: &str) -> Result<ReplayFrom, String> {
        match text {
            "store" => Ok(ReplayFrom::Store),
            "kafka" => Ok(ReplayFrom::Kafka),
            _ => match text.strip_prefix("file:") {
                Some(path) if !path.is_empty() => Ok(ReplayFrom::File(path.into())),
                _ => Err(format!(
                    "`{text}` is not a replay input: write `store`, `file:PATH` or `kafka`"
                )),
            },
        }
    }
}

/// Why a pipeline cannot be replayed as asked.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("the pipeline has no source `{name}`; its sources are: {known}")]
    UnknownSource { name: String, known: String },
    #[error("source `{name}` ({kind}) cannot be replayed from {from}: {why}")]
    Unsupported {
        name: String,
        kind: &'static str,
        from: &'static str,
        why: String,
    },
    #[error("the replacement for source `{name}`: {errors}")]
    Invalid { name: String, errors: String },
}

impl Pipeline {
    /// The pipeline as `marketflow replay` runs it: the same graph, with source `name`
    /// replaced by a reader of what it recorded (`from`) over `range`, stamped with the
    /// source's own `max_delay` and partition count so that watermarks, hence late ticks,
    /// are those of the live run.
    pub fn for_replay(
        &self,
        registry: &Registry,
        name: &str,
        from: &ReplayFrom,
        range: &ReplayRange,
    ) -> Result<Pipeline, ReplayError> {
        let Some(index) = self.sources.iter().position(|s| s.name == name) else {
            return Err(ReplayError::UnknownSource {
                name: name.to_owned(),
                known: self
                    .sources
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        };
        let original = &self.sources[index].spec;
        let unsupported = |from: &'static str, why: String| ReplayError::Unsupported {
            name: name.to_owned(),
            kind: original.type_name(),
            from,
            why,
        };
        let quote = |text: &str| serde_json::Value::String(text.to_owned()).to_string();
        let time = |ms: i64| {
            chrono::DateTime::from_timestamp_millis(ms)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                .unwrap_or_default()
        };
        let max_delay = format!("max_delay: {}ms\n", original.max_delay());
        let (type_name, yaml) = match from {
            ReplayFrom::Kafka => {
                let replay = original.for_replay(range).ok_or_else(|| {
                    unsupported(
                        "kafka",
                        "it does not read a Kafka topic; replay it from `store` or `file:PATH`"
                            .into(),
                    )
                })?;
                let mut pipeline = self.clone();
                pipeline.sources[index].spec = replay;
                return Ok(pipeline);
            }
            ReplayFrom::Store => {
                if original.output() != StreamType::Ticks {
                    return Err(unsupported(
                        "the store",
                        format!("it reads {}; the store keeps the ticks sources deliver, so replay it from `file:PATH`", original.output()),
                    ));
                }
                let Some(location) = self.sinks.iter().find_map(|s| s.spec.store()) else {
                    return Err(unsupported(
                        "the store",
                        "no sink of the pipeline keeps a database".into(),
                    ));
                };
                let database = match location {
                    crate::store::Location::Sqlite(path) => path.display().to_string(),
                    crate::store::Location::Postgres(url) => url,
                };
                let mut yaml = format!(
                    "database: {}\nsource_index: {index}\npartitions: {}\n{max_delay}",
                    quote(&database),
                    original.partitions().clamp(1, 1024)
                );
                if let Some(t) = range.from {
                    yaml.push_str(&format!("from: {}\n", quote(&time(t))));
                }
                if let Some(t) = range.to {
                    yaml.push_str(&format!("to: {}\n", quote(&time(t))));
                }
                ("store", yaml)
            }
            ReplayFrom::File(path) => {
                let mut yaml = format!("path: {}\n{max_delay}", quote(&path.display().to_string()));
                if let StreamType::Bars { interval, .. } = original.output() {
                    yaml.push_str(&format!("kind: bars\ninterval: {interval}\n"));
                }
                ("file", yaml)
            }
        };
        let invalid = |errors: String| ReplayError::Invalid {
            name: name.to_owned(),
            errors,
        };
        let node = yaml::parse(&yaml).map_err(|e| invalid(e.message))?;
        let parse = registry
            .source_type(type_name)
            .ok_or_else(|| invalid(format!("no source type `{type_name}` is registered")))?
            .parse;
        let replacement = parse(&node, &format!("--source {name}")).map_err(|errors| {
            invalid(
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })?;
        if replacement.output() != original.output() {
            return Err(unsupported(
                type_name,
                format!(
                    "it reads {}, the source {}",
                    replacement.output(),
                    original.output()
                ),
            ));
        }
        let mut pipeline = self.clone();
        pipeline.sources[index].spec = replacement;
        Ok(pipeline)
    }
}

const TOP_KEYS: &[&str] = &[
    "pipeline",
    "workers",
    "sources",
    "operators",
    "sinks",
    "dead_letter",
    "sink_queue",
    "recovery",
    "server",
];

/// The bounds of `sink_queue`: room for a few batches, and no more than a machine has.
const SINK_QUEUE_MIN: ByteSize = ByteSize(64 << 10);
const SINK_QUEUE_MAX: ByteSize = ByteSize(16 << 30);

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

/// Reads and validates the pipeline in `path`, with variables from the environment and
/// the built-in source and sink types.
pub fn load_file(path: &Path) -> Result<Pipeline, LoadError> {
    let file = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| LoadError::Io {
        file: file.clone(),
        source,
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        // A position, like every other mistake in the file: the line of the first bad byte.
        let at = e.utf8_error().valid_up_to();
        let before = &e.as_bytes()[..at];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let col = String::from_utf8_lossy(&before[line_start..])
            .chars()
            .count()
            + 1;
        LoadError::Invalid(Diagnostics {
            file: file.clone(),
            items: vec![Diagnostic::new(
                crate::config::yaml::Pos { line, col },
                "",
                format!("the file is not UTF-8 text: an invalid byte at offset {at}"),
            )
            .help("save the pipeline as UTF-8")],
        })
    })?;
    load_str(&file, &text, &|name| std::env::var(name).ok()).map_err(LoadError::Invalid)
}

/// Validates pipeline text with the built-in types; `file` names it in messages, `env`
/// resolves `${VAR}`.
pub fn load_str(
    file: &str,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Pipeline, Diagnostics> {
    load_with(&crate::components::builtin(), file, text, env)
}

/// Validates pipeline text against the types of `registry`.
pub fn load_with(
    registry: &Registry,
    file: &str,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Pipeline, Diagnostics> {
    let fail = |items| Diagnostics {
        file: file.to_owned(),
        items,
    };
    let mut root = parse_yaml(text).map_err(|d| fail(vec![d]))?;
    let mut errors = Vec::new();
    let mut substitutions = Vec::new();
    interpolate::interpolate(&mut root, "", env, &mut errors, &mut substitutions);
    // A value whose variable is unset gets no second error for being invalid.
    let unset: std::collections::HashSet<Pos> = errors.iter().map(|e| e.pos).collect();
    let interpolation_errors = errors.len();

    let header = read_header(&root, &mut errors).map_err(|d| fail(vec![d]))?;
    let components = read_components(registry, &root, &mut errors);
    let server = read_server(&root, &components.sinks, &mut errors);
    let (operators, types) = graph::resolve(
        &components.sources,
        components.operators,
        &components.sinks,
        &components.declared,
        &components.sink_names,
        &mut errors,
    );

    let mut index = 0;
    errors.retain(|e| {
        index += 1;
        index <= interpolation_errors || !unset.contains(&e.pos)
    });
    if !errors.is_empty() {
        interpolate::redact(&mut errors, &substitutions);
        errors.sort_by_key(|e| e.pos);
        errors.dedup();
        return Err(fail(errors));
    }
    let mut pipeline = Pipeline {
        name: header.name,
        file: file.to_owned(),
        workers: header.workers,
        sources: components.sources,
        operators,
        sinks: components.sinks,
        dead_letter: header.dead_letter,
        sink_queue: header.sink_queue,
        recovery: header.recovery,
        server,
        streams: Vec::new(),
        operator_inputs: Vec::new(),
        sink_inputs: Vec::new(),
    };
    index_graph(&mut pipeline, &types);
    Ok(pipeline)
}

/// Parses the YAML, with a hint for the usual mistake with variables in flow collections.
fn parse_yaml(text: &str) -> Result<Node, Diagnostic> {
    yaml::parse(text).map_err(|e| {
        let d = Diagnostic::new(e.pos, "", format!("invalid YAML: {}", e.message));
        let line = text
            .lines()
            .nth(e.pos.line.saturating_sub(1))
            .unwrap_or_default();
        if line.contains("${") && line.contains('{') {
            d.help("inside `{ ... }` or `[ ... ]`, quote values that use variables: \"${VAR}\"")
        } else {
            d
        }
    })
}

/// The top-level keys other than the sections.
struct Header {
    name: String,
    workers: Option<usize>,
    dead_letter: Option<DeadLetterConfig>,
    sink_queue: Option<u64>,
    recovery: Option<RecoveryConfig>,
}

/// Checks the top-level keys and reads `pipeline`, `workers` and `dead_letter`; a root
/// that is not a mapping is the one error that stops everything.
fn read_header(root: &Node, errors: &mut Vec<Diagnostic>) -> Result<Header, Diagnostic> {
    let Value::Map(entries) = &root.value else {
        return Err(Diagnostic::new(
            root.pos,
            "",
            format!(
                "a pipeline file is a mapping with the keys {}; found {}",
                TOP_KEYS.join(", "),
                root.kind()
            ),
        ));
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
    let sink_queue = root.get("sink_queue").and_then(|node| {
        match from_node::<ByteSize>(node, "sink_queue") {
            Ok(size) if (SINK_QUEUE_MIN..=SINK_QUEUE_MAX).contains(&size) => Some(size.0),
            Ok(size) => {
                errors.push(Diagnostic::new(
                    node.pos,
                    "sink_queue",
                    format!("sink_queue must be between {SINK_QUEUE_MIN} and {SINK_QUEUE_MAX} (got {size})"),
                ));
                None
            }
            Err(e) => {
                errors.push(Diagnostic::from_de(e, node.pos, "sink_queue"));
                None
            }
        }
    });
    let recovery = root.get("recovery").and_then(|node| {
        from_node::<RecoveryConfig>(node, "recovery")
            .map_err(|e| errors.push(Diagnostic::from_de(e, node.pos, "recovery")))
            .ok()
    });
    if let Some(RecoveryConfig {
        checkpoint_interval,
        path,
        database,
    }) = &recovery
    {
        let pos = root.get("recovery").map(|n| n.pos).unwrap_or_default();
        if checkpoint_interval.0 < 100 {
            errors.push(Diagnostic::new(
                pos,
                "recovery.checkpoint_interval",
                "checkpoint_interval must be at least 100ms",
            ));
        }
        let postgres =
            |url: &str| url.starts_with("postgres://") || url.starts_with("postgresql://");
        match (path, database) {
            (None, Some(url)) if postgres(url.expose()) => {}
            (None, Some(_)) => errors.push(Diagnostic::new(
                pos,
                "recovery.database",
                "the recovery database is a PostgreSQL URL (`postgres://user@host/db`)",
            )),
            (Some(_), None) => {}
            _ => errors.push(
                Diagnostic::new(
                    pos,
                    "recovery",
                    "keep checkpoints in a SQLite file (`path`) or a PostgreSQL database (`database`), one of the two",
                )
                .help("e.g. `recovery: {path: state/recovery.db}`"),
            ),
        }
    }
    Ok(Header {
        name,
        workers,
        dead_letter,
        sink_queue,
        recovery,
    })
}

/// The three sections as read, before the graph is resolved.
struct Components {
    sources: Vec<Named<SourceRef>>,
    operators: Vec<Named<OperatorSpec>>,
    sinks: Vec<Named<SinkRef>>,
    /// Names of every declared stream, also those whose definition has errors, so that a
    /// mistake in one node is not reported again at every reference to it.
    declared: Vec<String>,
    sink_names: Vec<String>,
}

/// Reads `sources`, `operators` and `sinks` with the registry's types and runs each
/// component's own checks.
fn read_components(registry: &Registry, root: &Node, errors: &mut Vec<Diagnostic>) -> Components {
    let source_types: Vec<&str> = registry.sources().iter().map(|t| t.name).collect();
    let sink_types: Vec<&str> = registry.sinks().iter().map(|t| t.name).collect();
    let parse_source = |kind: &str, node: &Node, path: &str| match registry.source_type(kind) {
        Some(t) => (t.parse)(node, path),
        None => Err(vec![DeError::new(format!("unknown source type `{kind}`"))]),
    };
    let parse_sink = |kind: &str, node: &Node, path: &str| match registry.sink_type(kind) {
        Some(t) => (t.parse)(node, path),
        None => Err(vec![DeError::new(format!("unknown sink type `{kind}`"))]),
    };
    let mut declared = Vec::new();
    let sources = section(
        root,
        "sources",
        &source_types,
        &parse_source,
        &mut declared,
        errors,
    );
    let operators = section(
        root,
        "operators",
        OPERATOR_TYPES,
        &OperatorSpec::from_node,
        &mut declared,
        errors,
    );
    let mut sink_names = Vec::new();
    let sinks = section(
        root,
        "sinks",
        &sink_types,
        &parse_sink,
        &mut sink_names,
        errors,
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
    Components {
        sources,
        operators,
        sinks,
        declared,
        sink_names,
    }
}

/// Reads the `server` block and checks the sinks that need one.
fn read_server(
    root: &Node,
    sinks: &[Named<SinkRef>],
    errors: &mut Vec<Diagnostic>,
) -> Option<ServerConfig> {
    let server = root.get("server").and_then(|node| {
        let (server, problems) =
            crate::config::de::from_map_collecting::<ServerConfig>(node, "server", &[]);
        let failed = !problems.is_empty();
        errors.extend(
            problems
                .into_iter()
                .map(|e| Diagnostic::from_de(e, node.pos, "server")),
        );
        server.filter(|_| !failed)
    });
    if let Some(server) = &server {
        errors.extend(server.check(sinks));
    }
    if server.is_none() && root.get("server").is_none() {
        for sink in sinks.iter().filter(|s| s.spec.needs_server()) {
            errors.push(
                Diagnostic::new(
                    sink.pos,
                    format!("sinks.{}", sink.name),
                    format!(
                        "a `{}` sink streams to the clients of the pipeline's server, and there is no `server`",
                        sink.spec.type_name()
                    ),
                )
                .help("add `server: {listen: 127.0.0.1:8000}`"),
            );
        }
    }
    server
}

/// Numbers the streams (sources, then operators in order) and records every input by index.
fn index_graph(pipeline: &mut Pipeline, types: &std::collections::BTreeMap<String, StreamType>) {
    let mut names: Vec<&str> = pipeline.sources.iter().map(|s| s.name.as_str()).collect();
    names.extend(pipeline.operators.iter().map(|o| o.name.as_str()));
    let positions: std::collections::HashMap<&str, usize> =
        names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let index_of = |name: &str| positions.get(name).copied().unwrap_or(0);
    let streams = names
        .iter()
        .filter_map(|n| types.get(*n).cloned())
        .collect();
    let operator_inputs = pipeline
        .operators
        .iter()
        .map(|o| o.spec.inputs().iter().map(|i| index_of(&i.value)).collect())
        .collect();
    let sink_inputs = pipeline
        .sinks
        .iter()
        .map(|s| s.spec.inputs().iter().map(|i| index_of(&i.value)).collect())
        .collect();
    pipeline.streams = streams;
    pipeline.operator_inputs = operator_inputs;
    pipeline.sink_inputs = sink_inputs;
}

/// Reads a component of some `type` from its node.
type ReadNode<'a, T> = dyn Fn(&str, &Node, &str) -> Result<T, Vec<DeError>> + 'a;

/// Reads one of `sources`, `operators`, `sinks`: a mapping of names to nodes with a `type`.
fn section<T>(
    root: &Node,
    key: &str,
    types: &[&str],
    build: &ReadNode<'_, T>,
    declared: &mut Vec<String>,
    errors: &mut Vec<Diagnostic>,
) -> Vec<Named<T>> {
    let mut out = Vec::new();
    for (name_node, body) in section_entries(root, key, errors) {
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
        let Some(kind) = component_type(body, &path, key, types, errors) else {
            continue;
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

/// The (name, definition) pairs of a section; none when it is absent, empty or not a
/// mapping (reported).
fn section_entries<'n>(
    root: &'n Node,
    key: &str,
    errors: &mut Vec<Diagnostic>,
) -> &'n [(Node, Node)] {
    let Some(node) = root.get(key) else {
        return &[];
    };
    match &node.value {
        Value::Map(entries) => entries,
        _ if node.is_null() => &[],
        _ => {
            errors.push(Diagnostic::new(
                node.pos,
                key,
                format!(
                    "`{key}` is a mapping of names to definitions; found {}",
                    node.kind()
                ),
            ));
            &[]
        }
    }
}

/// The `type` of a definition, when it is a mapping with a known one (otherwise the
/// problem is reported, with the valid types or the closest one).
fn component_type(
    body: &Node,
    path: &str,
    section: &str,
    types: &[&str],
    errors: &mut Vec<Diagnostic>,
) -> Option<String> {
    if !matches!(body.value, Value::Map(_)) {
        errors.push(Diagnostic::new(
            body.pos,
            path,
            format!("expected a mapping with a `type`, found {}", body.kind()),
        ));
        return None;
    }
    match body.get("type").map(|t| (t, t.as_str())) {
        None => {
            let list = types
                .iter()
                .map(|t| format!("`{t}`"))
                .collect::<Vec<_>>()
                .join(", ");
            errors.push(
                Diagnostic::new(body.pos, path, "missing required key `type`")
                    .help(format!("valid types: {list}")),
            );
            None
        }
        Some((_, Some(kind))) if types.contains(&kind) => Some(kind.to_owned()),
        Some((t, text)) => {
            let given = text.unwrap_or_default();
            let what = &section[..section.len() - 1];
            errors.push(
                Diagnostic::new(
                    t.pos,
                    format!("{path}.type"),
                    format!("unknown {what} type `{given}`"),
                )
                .help_opt(suggest(given, types)),
            );
            None
        }
    }
}
