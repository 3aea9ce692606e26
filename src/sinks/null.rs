//! `type: null` — counts records and discards them (benchmarks, dry runs).

use serde::Deserialize;

use super::{SinkContext, SinkEvent};
use crate::engine::Task;
use crate::metrics::metrics;
use crate::spec::de::OneOrMany;

/// Discards records after counting them.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct NullSinkConfig {
    /// The streams to consume.
    pub from: OneOrMany,
}

impl NullSinkConfig {
    pub fn build(&self, mut ctx: SinkContext) -> Task {
        Task::Async(Box::pin(async move {
            let counter = metrics()
                .sink_records
                .with_label_values(&[ctx.name.as_str()]);
            while let Some(event) = ctx.records.recv().await {
                if let SinkEvent::Records(records) = event {
                    counter.inc_by(records.len() as u64);
                }
            }
            Ok(())
        }))
    }
}
