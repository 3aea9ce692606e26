//! What a source or sink is given to run, and what it hands back.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use super::event::{Position, SinkEvent, SourceEvent};
use crate::codec::RecordKind;
use crate::dead_letter::DeadLetters;
use crate::metrics::metrics;
use crate::shutdown::Shutdown;
use crate::status::RunStatus;

/// The pipeline no longer reads from this source (it stopped or failed).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the pipeline stopped reading from this source")]
pub struct Closed;

/// How a source or sink task ended badly.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// Its channel closed: the run is stopping, not a failure of its own.
    #[error(transparent)]
    Closed(#[from] Closed),
    #[error("{0:#}")]
    Failed(#[from] anyhow::Error),
}

/// A source or sink ready to run: blocking work gets its own thread, I/O runs as a task.
pub enum Task {
    Blocking(Box<dyn FnOnce() -> Result<(), TaskError> + Send>),
    Async(Pin<Box<dyn Future<Output = Result<(), TaskError>> + Send>>),
}

/// A source partition's end of its bounded channel to the worker that owns its input.
#[derive(Clone)]
pub struct SourceSender {
    tx: mpsc::Sender<SourceEvent>,
    wake: Arc<dyn Fn() + Send + Sync>,
}

impl SourceSender {
    /// `wake` unparks the worker that reads the channel.
    pub fn new(tx: mpsc::Sender<SourceEvent>, wake: Arc<dyn Fn() + Send + Sync>) -> SourceSender {
        SourceSender { tx, wake }
    }

    /// Sends from a plain thread, waiting while the channel is full.
    pub fn blocking_send(&self, event: SourceEvent) -> Result<(), Closed> {
        self.tx.blocking_send(event).map_err(|_| Closed)?;
        (self.wake)();
        Ok(())
    }

    /// Sends from a task, waiting while the channel is full.
    pub async fn send(&self, event: SourceEvent) -> Result<(), Closed> {
        self.tx.send(event).await.map_err(|_| Closed)?;
        (self.wake)();
        Ok(())
    }
}

/// What a source partition needs to run.
pub struct SourceContext {
    /// The source's name in the pipeline.
    pub name: String,
    /// Which partition to read, of `partitions`.
    pub partition: usize,
    pub partitions: usize,
    pub out: SourceSender,
    pub shutdown: Shutdown,
    pub dead_letters: DeadLetters,
    /// The position of this partition that every sink has acknowledged as durable
    /// (`None` until the first acknowledgement): where a Kafka source commits offsets.
    pub acked: watch::Receiver<Option<Position>>,
    /// The position an earlier run's sinks acknowledged, kept in the pipeline's store for
    /// sources with a resume key: the partition starts after it.
    pub resume: Option<Position>,
    /// Where a live feed reports its connection, for `/health`.
    pub status: RunStatus,
}

/// A sink's acknowledgements: the progress (a watermark from [`SinkEvent::Progress`]) up to
/// which its writes are durable: committed, flushed, delivered.
#[derive(Clone)]
pub struct Acknowledger {
    frontier: Arc<AtomicI64>,
    gauge: prometheus::Gauge,
}

impl Acknowledger {
    pub fn new(sink: &str) -> Acknowledger {
        Acknowledger {
            frontier: Arc::new(AtomicI64::new(i64::MIN)),
            gauge: metrics()
                .sink_committed_watermark
                .with_label_values(&[sink]),
        }
    }

    /// Everything received with a time below `frontier` is durable.
    pub fn acknowledge(&self, frontier: i64) {
        let before = self.frontier.fetch_max(frontier, Ordering::SeqCst);
        if frontier > before {
            self.gauge.set(frontier as f64 / 1000.0);
        }
    }

    /// The highest frontier acknowledged so far.
    pub fn frontier(&self) -> i64 {
        self.frontier.load(Ordering::SeqCst)
    }
}

/// Shared services of a run that some sinks use (the server's live hub), looked up by type
/// so the contract need not know them.
#[derive(Clone, Default)]
pub struct Resources {
    items: HashMap<TypeId, Arc<dyn Any + Send + Sync>>,
}

impl Resources {
    pub fn with<T: Any + Send + Sync>(mut self, item: T) -> Resources {
        self.items.insert(TypeId::of::<T>(), Arc::new(item));
        self
    }

    pub fn get<T: Any + Send + Sync + Clone>(&self) -> Option<T> {
        self.items
            .get(&TypeId::of::<T>())
            .and_then(|item| item.downcast_ref::<T>())
            .cloned()
    }
}

/// What a sink needs to run.
pub struct SinkContext {
    /// The sink's name in the pipeline.
    pub name: String,
    pub records: mpsc::Receiver<SinkEvent>,
    /// Kinds of the records it will receive, in `inputs()` order.
    pub kinds: Vec<RecordKind>,
    pub shutdown: Shutdown,
    pub ack: Acknowledger,
    pub resources: Resources,
}
