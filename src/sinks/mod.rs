//! Sinks: one module per `type`, each with one config struct and one `build`.
//!
//! The dataflow hands each sink batches of records over a bounded channel (see
//! `engine::bridge`); a slow sink therefore slows the pipeline instead of growing memory.

pub mod file;
pub mod null;
pub mod postgres;
pub mod sqlite;
pub mod stdout;
pub mod websocket;

use marketflow_operators::Record;
use tokio::sync::mpsc;

use crate::codec::RecordKind;
use crate::engine::Task;
use crate::shutdown::Shutdown;
use crate::spec::de::{from_map_without, DeError, Spanned};
use crate::spec::diagnostic::Diagnostic;
use crate::spec::graph::StreamType;
use crate::spec::yaml::Node;

/// The `type`s a sink may have.
pub const SINK_TYPES: &[&str] = &["stdout", "file", "null", "postgres", "sqlite", "websocket"];

/// A configured sink.
#[derive(Debug, Clone)]
pub enum SinkSpec {
    Stdout(stdout::StdoutSinkConfig),
    File(file::FileSinkConfig),
    Null(null::NullSinkConfig),
    Postgres(postgres::PostgresSinkConfig),
    Sqlite(sqlite::SqliteSinkConfig),
    Websocket(websocket::WebsocketSinkConfig),
}

impl SinkSpec {
    pub fn from_node(kind: &str, node: &Node, path: &str) -> Result<SinkSpec, Vec<DeError>> {
        let one = |e| vec![e];
        Ok(match kind {
            "stdout" => SinkSpec::Stdout(from_map_without(node, path, &["type"]).map_err(one)?),
            "file" => SinkSpec::File(from_map_without(node, path, &["type"]).map_err(one)?),
            "null" => SinkSpec::Null(from_map_without(node, path, &["type"]).map_err(one)?),
            "postgres" => SinkSpec::Postgres(from_map_without(node, path, &["type"]).map_err(one)?),
            "sqlite" => SinkSpec::Sqlite(from_map_without(node, path, &["type"]).map_err(one)?),
            "websocket" => {
                SinkSpec::Websocket(from_map_without(node, path, &["type"]).map_err(one)?)
            }
            _ => unreachable!("callers check SINK_TYPES"),
        })
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            SinkSpec::Stdout(_) => "stdout",
            SinkSpec::File(_) => "file",
            SinkSpec::Null(_) => "null",
            SinkSpec::Postgres(_) => "postgres",
            SinkSpec::Sqlite(_) => "sqlite",
            SinkSpec::Websocket(_) => "websocket",
        }
    }

    /// The streams this sink reads.
    pub fn inputs(&self) -> &[Spanned<String>] {
        match self {
            SinkSpec::Stdout(c) => &c.from.0,
            SinkSpec::File(c) => &c.from.0,
            SinkSpec::Null(c) => &c.from.0,
            SinkSpec::Postgres(c) => &c.from.0,
            SinkSpec::Sqlite(c) => &c.from.0,
            SinkSpec::Websocket(c) => &c.from.0,
        }
    }

    /// Checks against the types of the input streams, in `inputs()` order.
    pub fn check(&self, path: &str, inputs: &[StreamType]) -> Vec<Diagnostic> {
        match self {
            SinkSpec::Stdout(c) => file::check_format(c.format, &c.from, path, inputs),
            SinkSpec::File(c) => file::check_format(
                c.format.or_else(|| c.implied_format()),
                &c.from,
                path,
                inputs,
            ),
            SinkSpec::Null(_)
            | SinkSpec::Postgres(_)
            | SinkSpec::Sqlite(_)
            | SinkSpec::Websocket(_) => Vec::new(),
        }
    }

    pub fn build(&self, ctx: SinkContext) -> Task {
        match self {
            SinkSpec::Stdout(c) => c.build(ctx),
            SinkSpec::File(c) => c.build(ctx),
            SinkSpec::Null(c) => c.build(ctx),
            SinkSpec::Postgres(c) => c.build(ctx),
            SinkSpec::Sqlite(c) => c.build(ctx),
            SinkSpec::Websocket(c) => c.build(ctx),
        }
    }
}

/// The database a sink writes, if it is a store the server can query.
impl SinkSpec {
    pub fn store_location(&self) -> Option<crate::store::Location> {
        match self {
            SinkSpec::Sqlite(c) => Some(crate::store::Location::Sqlite(c.path.clone())),
            SinkSpec::Postgres(c) => Some(crate::store::Location::Postgres(c.url.clone())),
            _ => None,
        }
    }
}

/// What a sink needs to run.
pub struct SinkContext {
    pub name: String,
    pub records: mpsc::Receiver<SinkEvent>,
    /// Kinds of the records it will receive.
    pub kinds: Vec<RecordKind>,
    pub shutdown: Shutdown,
    /// The live hub of the run's server (read by `websocket` sinks).
    pub hub: crate::server::hub::Hub,
}

/// One batch from the dataflow to a sink.
#[derive(Debug)]
pub enum SinkEvent {
    Records(Vec<Record>),
    /// Every record with an event-time watermark below this has been delivered.
    Progress(i64),
}

/// The record kind carried by a stream type.
pub fn record_kind(stream: &StreamType) -> RecordKind {
    match stream {
        StreamType::Ticks => RecordKind::Tick,
        StreamType::Bars { .. } => RecordKind::Bar,
        StreamType::Indicators { .. } => RecordKind::Indicator,
    }
}
