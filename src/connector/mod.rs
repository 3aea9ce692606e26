//! The connector contract: what a source or sink type implements and what it is given to
//! run. Sources and sinks depend on this module; it depends on none of them, nor on the
//! engine, the spec or the server.
//!
//! A type is a config struct (serde with `deny_unknown_fields`, `JsonSchema` from its doc
//! comments) implementing [`Source`] or [`Sink`]; one line in its folder's registration
//! table (`sources/mod.rs`, `sinks/mod.rs`) makes it known to validation, `graph`,
//! `validate`'s suggestions, the docs' key tables and the engine.

mod backoff;
mod context;
mod event;
mod registry;
mod stamper;

use std::fmt;

use marketflow_operators::Interval;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;

pub use self::backoff::Backoff;
pub use self::context::{
    Acknowledger, Closed, FromWorker, Replay, Resources, Restart, SinkContext, SinkInlet,
    SinkQueue, SourceContext, SourceSender, Task, TaskError, Writer,
};
pub use self::event::{Position, SinkEvent, SourceEvent};
pub use self::registry::{ended, Registry, SinkConfig, SinkType, SourceConfig, SourceType};
pub use self::stamper::{report_watermark, Stamper, StamperState};
use crate::codec::RecordKind;
use crate::config::de::Spanned;
use crate::config::diagnostic::Diagnostic;
use crate::config::session::SessionSpec;
use crate::store::Location;

/// The type of records on a stream.
#[derive(Clone, Debug, PartialEq)]
pub enum StreamType {
    Ticks,
    Bars {
        interval: Interval,
        session: Option<SessionSpec>,
    },
    Indicators {
        interval: Interval,
    },
}

impl StreamType {
    /// The kind of the records it carries.
    pub fn record_kind(&self) -> RecordKind {
        match self {
            StreamType::Ticks => RecordKind::Tick,
            StreamType::Bars { .. } => RecordKind::Bar,
            StreamType::Indicators { .. } => RecordKind::Indicator,
        }
    }
}

impl fmt::Display for StreamType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamType::Ticks => f.write_str("ticks"),
            StreamType::Bars {
                interval,
                session: None,
            } => write!(f, "bars({interval})"),
            StreamType::Bars {
                interval,
                session: Some(s),
            } => write!(f, "bars({interval}, {s})"),
            StreamType::Indicators { interval } => write!(f, "indicators({interval})"),
        }
    }
}

/// What a source of records reads: ticks (default) or bars of one interval (its `kind:`).
#[derive(serde::Deserialize, JsonSchema, Debug, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RecordsKind {
    #[default]
    Ticks,
    Bars,
}

impl RecordsKind {
    /// The stream a source of this kind produces; bars need their `interval`.
    pub fn stream_type(self, interval: Option<Interval>) -> StreamType {
        match (self, interval) {
            (RecordsKind::Bars, Some(interval)) => StreamType::Bars {
                interval,
                session: None,
            },
            _ => StreamType::Ticks,
        }
    }
}

/// A source type: its config struct is its `type:`'s keys.
///
/// A source has one or more partitions (file shards, Kafka partitions, symbol groups of a
/// feed). The engine spreads them over every worker of every process and runs `build` once
/// per partition it places; each partition stamps its own sequence numbers and watermark
/// ([`Stamper`]), and the pipeline's watermark is the minimum over partitions.
pub trait Source:
    DeserializeOwned + JsonSchema + fmt::Debug + Clone + Send + Sync + 'static
{
    /// The `type:` that selects it.
    const TYPE: &'static str;
    /// One line on what it reads, for docs and `validate`.
    const ABOUT: &'static str;
    /// What it produces.
    fn output(&self) -> StreamType;
    /// Checks that span several keys (single keys are checked when read).
    fn check(&self, _path: &str) -> Vec<Diagnostic> {
        Vec::new()
    }
    /// Whether it ends by itself (a file, a bounded synthetic run).
    fn is_finite(&self) -> bool;
    /// Asks outside systems what the run needs before it is placed (a Kafka topic's
    /// partitions); called once per process before `partitions`.
    fn prepare(&self) -> anyhow::Result<()> {
        Ok(())
    }
    /// How many partitions it has (after `prepare`).
    fn partitions(&self) -> usize {
        1
    }
    /// After this long without a record, a partition stops holding the watermark back.
    fn idle_timeout(&self) -> Option<std::time::Duration> {
        None
    }
    /// The name under which partition `partition`'s acknowledged position is kept in the
    /// pipeline's store, so that the next run resumes after it (`ctx.resume`); `None`: it
    /// starts over each run.
    fn resume_key(&self, _partition: usize) -> Option<String> {
        None
    }
    /// This source narrowed to `range` when it reads history (`marketflow backfill`);
    /// `None` for a live source, which backfill leaves out.
    fn for_backfill(&self, _range: &BackfillRange) -> Option<Self> {
        None
    }
    /// How far behind its latest event time its watermark trails (its `max_delay`), in
    /// ms: a replay of what it recorded stamps the records alike.
    fn max_delay(&self) -> i64 {
        0
    }
    /// This source reading again what it delivered over [`ReplayRange`] and stopping at
    /// the end (a Kafka topic from a time); `None` when it cannot (`marketflow replay`
    /// then reads the pipeline's store or a file).
    fn for_replay(&self, _range: &ReplayRange) -> Option<Self> {
        None
    }
    /// How a partition starts again from a checkpoint's cut (`ctx.restart`).
    fn restart_from(&self) -> RestartFrom {
        RestartFrom::Nowhere
    }
    /// Reads partition `ctx.partition` of `ctx.partitions`.
    fn build(&self, ctx: SourceContext) -> Task;
}

/// How a source's partitions start again from a checkpoint's cut (`marketflow run --resume`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartFrom {
    /// They cannot: a pipeline with `recovery:` is refused, naming the source.
    Nowhere,
    /// From the cut's position, reading again what followed it and stamping it as before
    /// (a file, a Kafka partition, a history paged from a time): a resumed run equals an
    /// uninterrupted one.
    Position,
    /// From what arrives now (a live feed): the stamper continues from the cut, and what
    /// arrived after the cut and while the run was down is not read again.
    Now,
}

/// What `marketflow replay` reads again: event times in `[from, to)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReplayRange {
    pub from: Option<i64>,
    pub to: Option<i64>,
}

/// What `marketflow backfill` narrows a history source to.
#[derive(Debug, Clone, Default)]
pub struct BackfillRange {
    /// Only these symbols (of those the source lists).
    pub symbols: Option<Vec<String>>,
    /// From this instant (ms) instead of the source's `start`.
    pub from: Option<i64>,
    /// Up to this instant (ms) instead of the source's `end`.
    pub to: Option<i64>,
    /// Ignore the positions saved by earlier runs.
    pub restart: bool,
}

/// A sink type: its config struct is its `type:`'s keys.
///
/// A sink receives batches of records and watermark progress over a bounded channel, and
/// acknowledges ([`Acknowledger`]) the progress up to which its writes are durable.
pub trait Sink: DeserializeOwned + JsonSchema + fmt::Debug + Clone + Send + Sync + 'static {
    /// The `type:` that selects it.
    const TYPE: &'static str;
    /// One line on what it writes, for docs and `validate`.
    const ABOUT: &'static str;
    /// The streams it reads (its `from`).
    fn inputs(&self) -> &[Spanned<String>];
    /// Checks against the types of the input streams, in `inputs()` order.
    fn check(&self, _path: &str, _inputs: &[StreamType]) -> Vec<Diagnostic> {
        Vec::new()
    }
    /// The database it writes, when the server can query it.
    fn store(&self) -> Option<Location> {
        None
    }
    /// Whether it resumes from a checkpoint at a byte offset of what it writes (a file it
    /// truncates there), reported at each [`SinkEvent::Checkpoint`]. Other sinks resume by
    /// writing again what followed the checkpoint: idempotent upserts, or at least once.
    fn resumes_at_offset(&self) -> bool {
        false
    }
    /// Whether it is written in parallel: an instance beside every worker of every process
    /// writes the records that worker holds (operators leave each symbol on one worker),
    /// over its own connection, with no exchange. For targets that take concurrent writers
    /// and need no single order across symbols (databases, Kafka, null). Other sinks have
    /// one instance, in process 0.
    fn parallel(&self) -> bool {
        false
    }
    /// Whether it needs the pipeline's `server` (and finds the live hub in its resources).
    fn needs_server(&self) -> bool {
        false
    }
    fn build(&self, ctx: SinkContext) -> Task;
}

/// Declares a folder's component modules and the function that registers them: one line
/// per type, `module::ConfigStruct`.
#[macro_export]
macro_rules! components {
    ($add:ident: $($module:ident :: $config:ident),* $(,)?) => {
        $(pub mod $module;)*

        /// Adds this folder's types to `registry`.
        pub fn register(registry: $crate::connector::Registry) -> $crate::connector::Registry {
            registry$(.$add::<$module::$config>())*
        }
    };
}
