//! The table of source and sink types, and their configs behind one object-safe face.

use std::fmt;
use std::sync::Arc;

use super::context::{SinkContext, SourceContext, Task};
use super::{BackfillRange, ReplayRange, Sink, Source, StreamType};
use crate::config::de::{from_map_collecting, DeError, Spanned};
use crate::config::diagnostic::Diagnostic;
use crate::config::schema::{keys_of, KeyDoc};
use crate::config::yaml::Node;
use crate::store::Location;

/// A configured source of any type.
pub trait SourceConfig: fmt::Debug + Send + Sync {
    fn type_name(&self) -> &'static str;
    fn output(&self) -> StreamType;
    fn check(&self, path: &str) -> Vec<Diagnostic>;
    fn is_finite(&self) -> bool;
    fn prepare(&self) -> anyhow::Result<()>;
    fn partitions(&self) -> usize;
    fn idle_timeout(&self) -> Option<std::time::Duration>;
    fn resume_key(&self, partition: usize) -> Option<String>;
    fn for_backfill(&self, range: &BackfillRange) -> Option<Arc<dyn SourceConfig>>;
    fn max_delay(&self) -> i64;
    fn for_replay(&self, range: &ReplayRange) -> Option<Arc<dyn SourceConfig>>;
    fn restart_from(&self) -> super::RestartFrom;
    fn build(&self, ctx: SourceContext) -> Task;
}

/// A config of a registered type behind the object-safe traits (a wrapper, so that the
/// traits' methods never clash with the type's own).
#[derive(Debug)]
struct Erased<T>(T);

impl<T: Source> SourceConfig for Erased<T> {
    fn type_name(&self) -> &'static str {
        T::TYPE
    }
    fn output(&self) -> StreamType {
        self.0.output()
    }
    fn check(&self, path: &str) -> Vec<Diagnostic> {
        Source::check(&self.0, path)
    }
    fn is_finite(&self) -> bool {
        self.0.is_finite()
    }
    fn prepare(&self) -> anyhow::Result<()> {
        self.0.prepare()
    }
    fn partitions(&self) -> usize {
        self.0.partitions().max(1)
    }
    fn idle_timeout(&self) -> Option<std::time::Duration> {
        self.0.idle_timeout()
    }
    fn resume_key(&self, partition: usize) -> Option<String> {
        self.0.resume_key(partition)
    }
    fn for_backfill(&self, range: &BackfillRange) -> Option<Arc<dyn SourceConfig>> {
        let narrowed = self.0.for_backfill(range)?;
        Some(Arc::new(Erased(narrowed)))
    }
    fn max_delay(&self) -> i64 {
        self.0.max_delay()
    }
    fn for_replay(&self, range: &ReplayRange) -> Option<Arc<dyn SourceConfig>> {
        let replay = self.0.for_replay(range)?;
        Some(Arc::new(Erased(replay)))
    }
    fn restart_from(&self) -> super::RestartFrom {
        self.0.restart_from()
    }
    fn build(&self, ctx: SourceContext) -> Task {
        Source::build(&self.0, ctx)
    }
}

/// A source left out of a backfill, in place of one that reads live: it produces its type
/// and ends at once, so the graph, and what each sink reads, stay the same.
#[derive(Debug, Clone, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Ended {
    #[serde(skip, default = "ticks")]
    #[schemars(skip)]
    output: StreamType,
}

fn ticks() -> StreamType {
    StreamType::Ticks
}

impl Source for Ended {
    const TYPE: &'static str = "ended";
    const ABOUT: &'static str = "nothing: a live source left out of a backfill";
    fn output(&self) -> StreamType {
        self.output.clone()
    }
    fn is_finite(&self) -> bool {
        true
    }
    fn restart_from(&self) -> super::RestartFrom {
        super::RestartFrom::Position
    }
    fn build(&self, _ctx: SourceContext) -> Task {
        Task::Async(Box::pin(async { Ok(()) }))
    }
}

/// A source of type `output` that ends at once.
pub fn ended(output: StreamType) -> Arc<dyn SourceConfig> {
    Arc::new(Erased(Ended { output }))
}

/// A configured sink of any type.
pub trait SinkConfig: fmt::Debug + Send + Sync {
    fn type_name(&self) -> &'static str;
    fn inputs(&self) -> &[Spanned<String>];
    fn check(&self, path: &str, inputs: &[StreamType]) -> Vec<Diagnostic>;
    fn store(&self) -> Option<Location>;
    fn resumes_at_offset(&self) -> bool;
    fn parallel(&self) -> bool;
    fn needs_server(&self) -> bool;
    fn build(&self, ctx: SinkContext) -> Task;
}

impl<T: Sink> SinkConfig for Erased<T> {
    fn type_name(&self) -> &'static str {
        T::TYPE
    }
    fn inputs(&self) -> &[Spanned<String>] {
        self.0.inputs()
    }
    fn check(&self, path: &str, inputs: &[StreamType]) -> Vec<Diagnostic> {
        Sink::check(&self.0, path, inputs)
    }
    fn store(&self) -> Option<Location> {
        self.0.store()
    }
    fn resumes_at_offset(&self) -> bool {
        self.0.resumes_at_offset()
    }
    fn parallel(&self) -> bool {
        self.0.parallel()
    }
    fn needs_server(&self) -> bool {
        self.0.needs_server()
    }
    fn build(&self, ctx: SinkContext) -> Task {
        Sink::build(&self.0, ctx)
    }
}

/// Reads a source config from its node (path for messages).
pub type ParseSource = fn(&Node, &str) -> Result<Arc<dyn SourceConfig>, Vec<DeError>>;
/// Reads a sink config from its node.
pub type ParseSink = fn(&Node, &str) -> Result<Arc<dyn SinkConfig>, Vec<DeError>>;

/// A registered source type.
#[derive(Clone, Copy)]
pub struct SourceType {
    pub name: &'static str,
    pub about: &'static str,
    /// Reads a config from its mapping node (without its `type` key).
    pub parse: ParseSource,
    /// Its keys, from the config struct's doc comments.
    pub keys: fn() -> Vec<KeyDoc>,
}

/// A registered sink type.
#[derive(Clone, Copy)]
pub struct SinkType {
    pub name: &'static str,
    pub about: &'static str,
    pub parse: ParseSink,
    pub keys: fn() -> Vec<KeyDoc>,
}

/// Reads a source's config, with every mistake in it: a key whose value is wrong is left
/// out and the rest read again, and what could be read gets the type's own checks.
fn parse_source<T: Source>(node: &Node, path: &str) -> Result<Arc<dyn SourceConfig>, Vec<DeError>> {
    let (config, mut errors) = from_map_collecting::<T>(node, path, &["type"]);
    match config {
        Some(c) if errors.is_empty() => Ok(Arc::new(Erased(c))),
        Some(c) => {
            // Checks that only fail because a wrong key was left out say nothing new.
            let wrong: Vec<String> = errors
                .iter()
                .filter_map(|e| e.path.as_deref()?.rsplit('.').next())
                .map(|key| format!("`{key}`"))
                .collect();
            let checks = c
                .check(path)
                .into_iter()
                .filter(|d| !wrong.iter().any(|key| d.message.contains(key.as_str())));
            errors.extend(checks.map(DeError::from));
            Err(errors)
        }
        None => Err(errors),
    }
}

fn parse_sink<T: Sink>(node: &Node, path: &str) -> Result<Arc<dyn SinkConfig>, Vec<DeError>> {
    let (config, errors) = from_map_collecting::<T>(node, path, &["type"]);
    match config {
        Some(c) if errors.is_empty() => Ok(Arc::new(Erased(c))),
        _ => Err(errors),
    }
}

/// Every source and sink type a pipeline may use.
#[derive(Clone, Default)]
pub struct Registry {
    sources: Vec<SourceType>,
    sinks: Vec<SinkType>,
}

impl Registry {
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Adds source type `T` (a later type of the same name replaces it).
    pub fn source<T: Source>(mut self) -> Registry {
        self.sources.retain(|s| s.name != T::TYPE);
        self.sources.push(SourceType {
            name: T::TYPE,
            about: T::ABOUT,
            parse: parse_source::<T>,
            keys: keys_of::<T>,
        });
        self
    }

    /// Adds sink type `T` (a later type of the same name replaces it).
    pub fn sink<T: Sink>(mut self) -> Registry {
        self.sinks.retain(|s| s.name != T::TYPE);
        self.sinks.push(SinkType {
            name: T::TYPE,
            about: T::ABOUT,
            parse: parse_sink::<T>,
            keys: keys_of::<T>,
        });
        self
    }

    pub fn sources(&self) -> &[SourceType] {
        &self.sources
    }

    pub fn sinks(&self) -> &[SinkType] {
        &self.sinks
    }

    pub fn source_type(&self, name: &str) -> Option<&SourceType> {
        self.sources.iter().find(|s| s.name == name)
    }

    pub fn sink_type(&self, name: &str) -> Option<&SinkType> {
        self.sinks.iter().find(|s| s.name == name)
    }
}
