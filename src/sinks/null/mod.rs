//! `type: null` — counts records and discards them (benchmarks, dry runs).

use std::time::Duration;

use serde::Deserialize;

use schemars::JsonSchema;

use crate::config::de::OneOrMany;
use crate::config::de::Spanned;
use crate::connector::{Sink, SinkContext, SinkEvent, Task};

/// Discards records after counting them.
#[derive(Deserialize, JsonSchema, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct NullSinkConfig {
    /// The streams to consume.
    pub from: OneOrMany,
    /// Takes at most this many records a second (default: as fast as they come): a slow
    /// consumer, to see how a pipeline behaves behind one (backpressure, memory).
    #[serde(
        default,
        deserialize_with = "crate::config::values::optional_count_within::<_, 1, 1_000_000_000>"
    )]
    #[schemars(with = "Option<u64>")]
    pub rate: Option<usize>,
}

impl Sink for NullSinkConfig {
    const TYPE: &'static str = "null";
    const ABOUT: &'static str = "counts and discards (benchmarks, dry runs)";

    fn inputs(&self) -> &[Spanned<String>] {
        &self.from.0
    }

    fn parallel(&self) -> bool {
        true
    }

    fn build(&self, mut ctx: SinkContext) -> Task {
        let rate = self.rate;
        Task::Async(Box::pin(async move {
            let started = tokio::time::Instant::now();
            let mut taken = 0u64;
            while let Some(event) = ctx.records.recv().await {
                match event {
                    SinkEvent::Records { records, .. } => {
                        ctx.writer.wrote(records.len());
                        taken += records.len() as u64;
                        if let Some(rate) = rate {
                            let due = Duration::from_secs_f64(taken as f64 / rate as f64);
                            tokio::time::sleep_until(started + due).await;
                        }
                    }
                    SinkEvent::Progress(p) => ctx.ack.acknowledge(p),
                    SinkEvent::Checkpoint(_) => {}
                }
            }
            ctx.ack.acknowledge(i64::MAX);
            Ok(())
        }))
    }
}
