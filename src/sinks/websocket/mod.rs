//! `type: websocket` — live fan-out: records go to the server's hub, which streams them to
//! WebSocket clients (`/ws`, `/ws/prices/{symbol}`, `/ws/analytics/{symbol}`) and keeps the
//! last ones for the snapshot a new subscriber gets. It never waits for a client, so a
//! slow or stalled client cannot slow the pipeline.

use serde::Deserialize;

use anyhow::Context as _;
use schemars::JsonSchema;

use crate::config::de::OneOrMany;
use crate::config::de::Spanned;
use crate::connector::{Sink, SinkContext, SinkEvent, Task};
use crate::hub::Hub;
use crate::metrics::metrics;

/// Streams records to the WebSocket clients of the pipeline's `server`.
#[derive(Deserialize, JsonSchema, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct WebsocketSinkConfig {
    /// The streams to publish.
    pub from: OneOrMany,
}

impl Sink for WebsocketSinkConfig {
    const TYPE: &'static str = "websocket";
    const ABOUT: &'static str = "live to the WebSocket clients of the pipeline's `server` (needs a `server` block); never waits for a client";

    fn inputs(&self) -> &[Spanned<String>] {
        &self.from.0
    }

    fn needs_server(&self) -> bool {
        true
    }

    fn build(&self, mut ctx: SinkContext) -> Task {
        Task::Async(Box::pin(async move {
            let hub: Hub = ctx
                .resources
                .get()
                .context("a websocket sink needs the pipeline's server, and there is none")?;
            let published = &metrics().ws_records;
            while let Some(event) = ctx.records.recv().await {
                match event {
                    SinkEvent::Records { records, .. } => {
                        published.inc_by(records.len() as u64);
                        hub.publish(records);
                    }
                    SinkEvent::Progress(p) => ctx.ack.acknowledge(p),
                    // Clients get what follows a checkpoint again: at least once.
                    SinkEvent::Checkpoint(_) => {}
                }
            }
            ctx.ack.acknowledge(i64::MAX);
            Ok(())
        }))
    }
}
