//! `type: websocket` — live fan-out: records go to the server's hub, which streams them to
//! WebSocket clients (`/ws`, `/ws/prices/{symbol}`, `/ws/analytics/{symbol}`) and keeps the
//! last ones for the snapshot a new subscriber gets. It never waits for a client, so a
//! slow or stalled client cannot slow the pipeline.

use serde::Deserialize;

use super::{SinkContext, SinkEvent};
use crate::engine::Task;
use crate::metrics::metrics;
use crate::spec::de::OneOrMany;

/// Streams records to the WebSocket clients of the pipeline's `server`.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct WebsocketSinkConfig {
    /// The streams to publish.
    pub from: OneOrMany,
}

impl WebsocketSinkConfig {
    pub fn build(&self, mut ctx: SinkContext) -> Task {
        Task::Async(Box::pin(async move {
            let published = &metrics().ws_records;
            while let Some(event) = ctx.records.recv().await {
                if let SinkEvent::Records(records) = event {
                    published.inc_by(records.len() as u64);
                    ctx.hub.publish(records);
                }
            }
            Ok(())
        }))
    }
}
