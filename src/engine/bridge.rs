//! The bridge between threads and tasks outside the dataflow and the timely workers:
//! bounded channels in both directions, and a waker so that a parked worker notices a
//! new batch at once.

use std::sync::{Arc, Mutex};
use std::thread::Thread;

use tokio::sync::mpsc;

use crate::sinks::SinkEvent;
use crate::sources::SourceEvent;

/// Batches in flight between a source and its worker: enough to keep the worker busy
/// while the source prepares the next, small enough to bound memory.
pub const SOURCE_CHANNEL: usize = 16;
/// Batches in flight between the dataflow and a sink.
pub const SINK_CHANNEL: usize = 64;

/// Unparks timely worker threads of this process.
#[derive(Clone, Default)]
pub struct Waker {
    threads: Arc<Mutex<Vec<Option<Thread>>>>,
}

impl Waker {
    /// Records the calling thread as local worker `local_index`.
    pub fn register(&self, local_index: usize) {
        if let Ok(mut threads) = self.threads.lock() {
            if threads.len() <= local_index {
                threads.resize(local_index + 1, None);
            }
            threads[local_index] = Some(std::thread::current());
        }
    }

    pub fn wake(&self, local_index: usize) {
        if let Ok(threads) = self.threads.lock() {
            if let Some(Some(thread)) = threads.get(local_index) {
                thread.unpark();
            }
        }
    }
}

/// The pipeline no longer reads this source (it stopped or failed).
#[derive(Debug, thiserror::Error)]
#[error("the pipeline stopped reading from this source")]
pub struct SourceClosed;

/// A source's end of its channel to the worker that owns its input.
#[derive(Clone)]
pub struct SourceSender {
    tx: mpsc::Sender<SourceEvent>,
    waker: Waker,
    local_worker: usize,
}

impl SourceSender {
    pub fn new(tx: mpsc::Sender<SourceEvent>, waker: Waker, local_worker: usize) -> SourceSender {
        SourceSender {
            tx,
            waker,
            local_worker,
        }
    }

    /// Sends from a plain thread, waiting while the channel is full.
    pub fn blocking_send(&self, event: SourceEvent) -> Result<(), SourceClosed> {
        self.tx.blocking_send(event).map_err(|_| SourceClosed)?;
        self.waker.wake(self.local_worker);
        Ok(())
    }

    /// Sends from a task, waiting while the channel is full.
    pub async fn send(&self, event: SourceEvent) -> Result<(), SourceClosed> {
        self.tx.send(event).await.map_err(|_| SourceClosed)?;
        self.waker.wake(self.local_worker);
        Ok(())
    }
}

/// A sink's inlet, used by the sink operator inside the dataflow.
pub type SinkSender = mpsc::Sender<SinkEvent>;
