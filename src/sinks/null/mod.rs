//! `type: null` — counts records and discards them (benchmarks, dry runs).

use serde::Deserialize;

use schemars::JsonSchema;

use crate::config::de::OneOrMany;
use crate::config::de::Spanned;
use crate::connector::{Sink, SinkContext, SinkEvent, Task};
use crate::metrics::metrics;

/// Discards records after counting them.
#[derive(Deserialize, JsonSchema, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct NullSinkConfig {
    /// The streams to consume.
    pub from: OneOrMany,
}

impl Sink for NullSinkConfig {
    const TYPE: &'static str = "null";
    const ABOUT: &'static str = "counts and discards (benchmarks, dry runs)";

    fn inputs(&self) -> &[Spanned<String>] {
        &self.from.0
    }

    fn build(&self, mut ctx: SinkContext) -> Task {
        Task::Async(Box::pin(async move {
            let counter = metrics()
                .sink_records
                .with_label_values(&[ctx.name.as_str()]);
            while let Some(event) = ctx.records.recv().await {
                match event {
                    SinkEvent::Records { records, .. } => counter.inc_by(records.len() as u64),
                    SinkEvent::Progress(p) => ctx.ack.acknowledge(p),
                    SinkEvent::Checkpoint(_) => {}
                }
            }
            ctx.ack.acknowledge(i64::MAX);
            Ok(())
        }))
    }
}
