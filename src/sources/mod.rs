//! Sources: one module per `type`, each with one config struct and one `build`.
//!
//! A source runs outside the dataflow (a thread or a tokio task) and sends batches to
//! the timely worker that owns its input. It stamps every record with a sequence number
//! and its watermark (see [`Stamper`]), so results do not depend on how batches are cut.

pub mod file;
pub mod synthetic;

use marketflow_operators::{Bar, Tick};

use crate::dead_letter::DeadLetters;
use crate::engine::bridge::SourceSender;
use crate::engine::Task;
use crate::metrics::metrics;
use crate::shutdown::Shutdown;
use crate::spec::de::{from_map_without, DeError};
use crate::spec::diagnostic::Diagnostic;
use crate::spec::graph::StreamType;
use crate::spec::yaml::Node;

/// The `type`s a source may have.
pub const SOURCE_TYPES: &[&str] = &["synthetic", "file"];

/// A configured source.
#[derive(Debug, Clone)]
pub enum SourceSpec {
    Synthetic(synthetic::SyntheticConfig),
    File(file::FileSourceConfig),
}

impl SourceSpec {
    /// Reads the source of `kind` from its mapping node.
    pub fn from_node(kind: &str, node: &Node, path: &str) -> Result<SourceSpec, Vec<DeError>> {
        let one = |e| vec![e];
        Ok(match kind {
            "synthetic" => {
                SourceSpec::Synthetic(from_map_without(node, path, &["type"]).map_err(one)?)
            }
            "file" => SourceSpec::File(from_map_without(node, path, &["type"]).map_err(one)?),
            _ => unreachable!("callers check SOURCE_TYPES"),
        })
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            SourceSpec::Synthetic(_) => "synthetic",
            SourceSpec::File(_) => "file",
        }
    }

    /// The stream this source produces.
    pub fn output(&self) -> StreamType {
        match self {
            SourceSpec::Synthetic(_) => StreamType::Ticks,
            SourceSpec::File(c) => c.output(),
        }
    }

    /// Checks that span several keys.
    pub fn check(&self, path: &str) -> Vec<Diagnostic> {
        match self {
            SourceSpec::Synthetic(c) => c.check(path),
            SourceSpec::File(c) => c.check(path),
        }
    }

    /// Whether the source ends by itself (a file, a bounded synthetic run).
    pub fn is_finite(&self) -> bool {
        match self {
            SourceSpec::Synthetic(c) => c.is_finite(),
            SourceSpec::File(_) => true,
        }
    }

    /// Turns the config into a runnable task.
    pub fn build(&self, ctx: SourceContext) -> Task {
        match self {
            SourceSpec::Synthetic(c) => c.build(ctx),
            SourceSpec::File(c) => c.build(ctx),
        }
    }
}

/// What a source needs to run.
pub struct SourceContext {
    pub name: String,
    pub out: SourceSender,
    pub shutdown: Shutdown,
    pub dead_letters: DeadLetters,
}

/// One batch from a source to its worker.
#[derive(Debug)]
pub enum SourceEvent {
    Ticks(Vec<Tick>),
    Bars(Vec<Bar>),
    /// No record with an event time before this will follow (idle sources).
    Watermark(i64),
}

/// Stamps records with a per-source sequence number and the source watermark:
/// `max event time seen - max_delay`, never moving backwards.
#[derive(Debug, Clone)]
pub struct Stamper {
    max_delay: i64,
    max_seen: i64,
    watermark: i64,
    seq: u64,
}

impl Stamper {
    pub fn new(max_delay_ms: i64) -> Stamper {
        Stamper {
            max_delay: max_delay_ms.max(0),
            max_seen: i64::MIN,
            watermark: 0,
            seq: 0,
        }
    }

    #[inline]
    fn observe(&mut self, ts: i64) -> (u64, i64) {
        if ts > self.max_seen {
            self.max_seen = ts;
            self.watermark = self.watermark.max(ts - self.max_delay);
        }
        let seq = self.seq;
        self.seq += 1;
        (seq, self.watermark)
    }

    #[inline]
    pub fn stamp_tick(&mut self, tick: &mut Tick) {
        (tick.seq, tick.wm) = self.observe(tick.ts);
    }

    #[inline]
    pub fn stamp_bar(&mut self, bar: &mut Bar) {
        (bar.seq, bar.wm) = self.observe(bar.start);
    }

    /// Moves the watermark to `to` if that is later (wall-clock progress of an idle source).
    pub fn advance(&mut self, to: i64) -> bool {
        if to > self.watermark {
            self.watermark = to;
            true
        } else {
            false
        }
    }

    pub fn watermark(&self) -> i64 {
        self.watermark
    }
}

/// Publishes a source's watermark gauge.
pub fn report_watermark(source: &str, watermark: i64) {
    metrics()
        .source_watermark
        .with_label_values(&[source])
        .set(watermark);
}

#[cfg(test)]
mod tests {
    use super::*;
    use marketflow_operators::Symbol;

    #[test]
    fn watermark_trails_the_maximum() {
        let mut s = Stamper::new(2_000);
        let mut tick = |ts| {
            let mut t = Tick {
                symbol: Symbol::new("A").unwrap(),
                ts,
                price: 1.0,
                volume: 1.0,
                seq: 0,
                wm: 0,
            };
            s.stamp_tick(&mut t);
            (t.seq, t.wm)
        };
        assert_eq!(tick(10_000), (0, 8_000));
        assert_eq!(tick(9_000), (1, 8_000));
        assert_eq!(tick(12_500), (2, 10_500));
    }
}
