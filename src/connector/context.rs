//! What a source or sink is given to run, and what it hands back.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use super::event::{Position, SinkEvent, SourceEvent};
use super::ReplayRange;
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
    /// `None` once closed.
    tx: Option<mpsc::Sender<SourceEvent>>,
    wake: Arc<dyn Fn() + Send + Sync>,
    replay: Option<Arc<Replay>>,
}

impl SourceSender {
    /// `wake` unparks the worker that reads the channel.
    pub fn new(tx: mpsc::Sender<SourceEvent>, wake: Arc<dyn Fn() + Send + Sync>) -> SourceSender {
        SourceSender {
            tx: Some(tx),
            wake,
            replay: None,
        }
    }

    /// What it sends is narrowed and paced by `replay` (every partition of the replayed
    /// source shares one).
    pub fn replaying(mut self, replay: Arc<Replay>) -> SourceSender {
        self.replay = Some(replay);
        self
    }

    /// Sends from a plain thread, waiting while the channel is full.
    pub fn blocking_send(&self, mut event: SourceEvent) -> Result<(), Closed> {
        if let Some(replay) = &self.replay {
            if let Some(wait) = replay.admit(&mut event) {
                std::thread::sleep(wait);
            }
        }
        let tx = self.tx.as_ref().ok_or(Closed)?;
        tx.blocking_send(event).map_err(|_| Closed)?;
        (self.wake)();
        Ok(())
    }

    /// Sends from a task, waiting while the channel is full.
    pub async fn send(&self, mut event: SourceEvent) -> Result<(), Closed> {
        if let Some(replay) = &self.replay {
            if let Some(wait) = replay.admit(&mut event) {
                tokio::time::sleep(wait).await;
            }
        }
        let tx = self.tx.as_ref().ok_or(Closed)?;
        tx.send(event).await.map_err(|_| Closed)?;
        (self.wake)();
        Ok(())
    }

    /// Says this partition sends no more while its source goes on (waiting for the sinks'
    /// last acknowledgement, say): once every clone is closed or dropped, its input closes.
    pub fn close(&mut self) {
        if self.tx.take().is_some() {
            (self.wake)();
        }
    }
}

/// What `marketflow replay` does to the replaced source's batches: keeps the records whose
/// event time is in its range, and paces them by event time unless it runs at full speed.
/// The source stamps records before this, so watermarks are those of the whole recording.
#[derive(Debug)]
pub struct Replay {
    range: ReplayRange,
    /// Event-time ms per wall-clock ms (`None`: as fast as the pipeline goes).
    speed: Option<f64>,
    /// The wall-clock instant and event time of the first batch sent.
    origin: Mutex<Option<(Instant, i64)>>,
    /// Records kept so far.
    kept: std::sync::atomic::AtomicU64,
}

impl Replay {
    pub fn new(range: ReplayRange, speed: Option<f64>) -> Replay {
        Replay {
            range,
            speed: speed.filter(|s| s.is_finite() && *s > 0.0),
            origin: Mutex::new(None),
            kept: Default::default(),
        }
    }

    /// How many records it has let through.
    pub fn records(&self) -> u64 {
        self.kept.load(Ordering::Relaxed)
    }

    /// Narrows `event` to the range; returns how long to wait before sending it.
    fn admit(&self, event: &mut SourceEvent) -> Option<Duration> {
        let (from, to) = (
            self.range.from.unwrap_or(i64::MIN),
            self.range.to.unwrap_or(i64::MAX),
        );
        let first = match event {
            SourceEvent::Ticks { records, .. } => {
                records.retain(|t| (from..to).contains(&t.ts));
                records.first().map(|t| t.ts)
            }
            SourceEvent::Bars { records, .. } => {
                records.retain(|b| (from..to).contains(&b.start));
                records.first().map(|b| b.start)
            }
            SourceEvent::Watermark(_) => None,
        };
        let kept = match event {
            SourceEvent::Ticks { records, .. } => records.len(),
            SourceEvent::Bars { records, .. } => records.len(),
            SourceEvent::Watermark(_) => 0,
        };
        self.kept.fetch_add(kept as u64, Ordering::Relaxed);
        let (speed, first) = (self.speed?, first?);
        let mut origin = self.origin.lock().ok()?;
        let (started, at) = *origin.get_or_insert((Instant::now(), first));
        let due = started + Duration::from_secs_f64(((first - at).max(0) as f64 / speed) / 1000.0);
        due.checked_duration_since(Instant::now())
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
    /// `marketflow run --resume`: where the checkpoint cut this partition (for a source
    /// that [restarts](super::Source::restart_from) from a position or from now).
    pub restart: Option<Restart>,
}

/// Where a partition starts again after a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Restart {
    /// The position to read from (`None`: the partition's beginning).
    pub position: Option<Position>,
    /// The stamper's state at the cut (`None`: it had stamped nothing yet, so it starts
    /// afresh).
    pub stamper: Option<super::StamperState>,
}

/// A sink's acknowledgements: the progress (a watermark from [`SinkEvent::Progress`]) up to
/// which its writes are durable: committed, flushed, delivered. A sink written in parallel
/// has one slot per writer ([`Acknowledger::writer`]): its frontier is the least of theirs.
#[derive(Clone)]
pub struct Acknowledger {
    slots: Arc<[AtomicI64]>,
    /// The slot this handle acknowledges in.
    slot: usize,
    gauge: prometheus::Gauge,
    /// Offsets reported at checkpoints, by checkpoint time.
    offsets: Arc<Mutex<std::collections::BTreeMap<i64, u64>>>,
    /// Called when the frontier advances: wakes the worker that passes it on.
    on_advance: Option<Arc<dyn Fn() + Send + Sync>>,
}

impl Acknowledger {
    pub fn new(sink: &str) -> Acknowledger {
        Acknowledger::with_writers(sink, 1)
    }

    /// The acknowledgements of a sink with `writers` instances, each acknowledging with
    /// its own [`Acknowledger::writer`] handle.
    pub fn with_writers(sink: &str, writers: usize) -> Acknowledger {
        Acknowledger {
            slots: (0..writers.max(1))
                .map(|_| AtomicI64::new(i64::MIN))
                .collect(),
            slot: 0,
            gauge: metrics()
                .sink_committed_watermark
                .with_label_values(&[sink]),
            offsets: Arc::default(),
            on_advance: None,
        }
    }

    /// Calls `wake` whenever the frontier advances.
    pub fn waking(self, wake: Arc<dyn Fn() + Send + Sync>) -> Acknowledger {
        Acknowledger {
            on_advance: Some(wake),
            ..self
        }
    }

    /// The handle writer `index` acknowledges with.
    pub fn writer(&self, index: usize) -> Acknowledger {
        Acknowledger {
            slot: index.min(self.slots.len() - 1),
            ..self.clone()
        }
    }

    /// At checkpoint `time`, everything below it is durable at byte `offset` of what the
    /// sink writes.
    pub fn checkpoint(&self, time: i64, offset: u64) {
        if let Ok(mut offsets) = self.offsets.lock() {
            offsets.insert(time, offset);
            // Only the newest few are ever asked for.
            while offsets.len() > 16 {
                offsets.pop_first();
            }
        }
    }

    /// The offset reported at checkpoint `time`, once reported.
    pub fn offset_at(&self, time: i64) -> Option<u64> {
        self.offsets.lock().ok()?.get(&time).copied()
    }

    /// Everything received (by this writer) with a time below `frontier` is durable.
    pub fn acknowledge(&self, frontier: i64) {
        let before = self.slots[self.slot].fetch_max(frontier, Ordering::SeqCst);
        if frontier > before {
            let least = self.frontier();
            if least > i64::MIN {
                self.gauge.set(least as f64 / 1000.0);
            }
            if let Some(wake) = &self.on_advance {
                wake();
            }
        }
    }

    /// The highest frontier acknowledged by every writer so far.
    pub fn frontier(&self) -> i64 {
        self.slots
            .iter()
            .map(|s| s.load(Ordering::SeqCst))
            .min()
            .unwrap_or(i64::MIN)
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

/// The bytes of records the dataflow has handed to one sink and the sink has not taken
/// yet: what waits in front of its channel and what is in it. Flow control pauses the
/// sources while a sink's queue is at the pipeline's `sink_queue`.
#[derive(Clone)]
pub struct SinkQueue {
    bytes: Arc<AtomicI64>,
    /// Every byte ever queued: how much a pumped record costs the sinks.
    entered: Arc<AtomicU64>,
    gauge: prometheus::IntGauge,
}

impl SinkQueue {
    pub fn new(sink: &str) -> SinkQueue {
        SinkQueue {
            bytes: Arc::default(),
            entered: Arc::default(),
            gauge: metrics().sink_queued_bytes.with_label_values(&[sink]),
        }
    }

    /// Bytes queued now.
    pub fn bytes(&self) -> i64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Bytes queued since the run started.
    pub fn entered(&self) -> u64 {
        self.entered.load(Ordering::Relaxed)
    }

    /// The dataflow handed the sink `bytes` more.
    pub fn add(&self, bytes: usize) {
        self.bytes.fetch_add(bytes as i64, Ordering::Relaxed);
        self.entered.fetch_add(bytes as u64, Ordering::Relaxed);
        self.gauge.add(bytes as i64);
    }

    /// The sink took (or the run dropped) `bytes`.
    pub fn remove(&self, bytes: usize) {
        self.bytes.fetch_sub(bytes as i64, Ordering::Relaxed);
        self.gauge.sub(bytes as i64);
    }
}

/// What a worker's sink operator sends a sink: an event and the worker's local index.
pub type FromWorker = (usize, SinkEvent);

/// A sink's end of its channel from the dataflow. Every worker of the process hands the
/// sink its own records, then its progress; the inlet passes records on as they come and
/// combines the workers' progress and checkpoints, so a sink sees one stream of events:
/// `Progress(p)` once every worker has sent everything below `p`, `Checkpoint(t)` once every
/// worker has reached `t`. What it takes leaves its [`SinkQueue`].
pub struct SinkInlet {
    rx: mpsc::Receiver<FromWorker>,
    queue: SinkQueue,
    /// The progress each worker sent, and the combined progress passed on.
    progress: Vec<i64>,
    passed: i64,
    /// Checkpoint times not yet reached by every worker, with how many have.
    checkpoints: std::collections::BTreeMap<i64, usize>,
}

impl SinkInlet {
    pub fn new(rx: mpsc::Receiver<FromWorker>, workers: usize, queue: SinkQueue) -> SinkInlet {
        SinkInlet {
            rx,
            queue,
            progress: vec![i64::MIN; workers.max(1)],
            passed: i64::MIN,
            checkpoints: Default::default(),
        }
    }

    /// What a worker's event means for the sink, if anything yet.
    fn combine(&mut self, (worker, event): FromWorker) -> Option<SinkEvent> {
        match event {
            SinkEvent::Records { .. } => {
                self.queue.remove(event.queued_bytes());
                Some(event)
            }
            SinkEvent::Progress(p) => {
                let slot = self.progress.get_mut(worker)?;
                *slot = (*slot).max(p);
                let least = self.progress.iter().copied().min().unwrap_or(p);
                (least > self.passed).then(|| {
                    self.passed = least;
                    SinkEvent::Progress(least)
                })
            }
            SinkEvent::Checkpoint(t) => {
                let reached = self.checkpoints.entry(t).or_default();
                *reached += 1;
                if *reached < self.progress.len() {
                    return None;
                }
                // Checkpoints come in time order: older ones are complete or abandoned.
                self.checkpoints = self.checkpoints.split_off(&(t + 1));
                Some(SinkEvent::Checkpoint(t))
            }
        }
    }

    /// The next event; `None` once the dataflow is done with this sink. Cancel-safe.
    pub async fn recv(&mut self) -> Option<SinkEvent> {
        loop {
            let raw = self.rx.recv().await?;
            if let Some(event) = self.combine(raw) {
                return Some(event);
            }
        }
    }

    /// The next event from a plain thread, waiting for it.
    pub fn blocking_recv(&mut self) -> Option<SinkEvent> {
        loop {
            let raw = self.rx.blocking_recv()?;
            if let Some(event) = self.combine(raw) {
                return Some(event);
            }
        }
    }

    /// The next event if one is waiting.
    pub fn try_recv(&mut self) -> Result<SinkEvent, mpsc::error::TryRecvError> {
        loop {
            let raw = self.rx.try_recv()?;
            if let Some(event) = self.combine(raw) {
                return Ok(event);
            }
        }
    }

    /// Whether the dataflow has closed the channel (events may still be waiting in it).
    pub fn is_closed(&self) -> bool {
        self.rx.is_closed()
    }

    /// Whether no event is waiting.
    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }
}

impl Drop for SinkInlet {
    /// A sink that stops early leaves what it did not take: it no longer counts.
    fn drop(&mut self) {
        self.rx.close();
        while let Ok((_, event)) = self.rx.try_recv() {
            self.queue.remove(event.queued_bytes());
        }
    }
}

/// What a sink needs to run.
pub struct SinkContext {
    /// The sink's name in the pipeline.
    pub name: String,
    /// Its records, progress and checkpoints, in order.
    pub records: SinkInlet,
    /// Kinds of the records it will receive, in `inputs()` order.
    pub kinds: Vec<RecordKind>,
    pub shutdown: Shutdown,
    pub ack: Acknowledger,
    pub resources: Resources,
    /// `marketflow run --resume`, for a sink that [resumes at an offset](super::Sink::resumes_at_offset):
    /// the offset to truncate its output to.
    pub resume_offset: Option<u64>,
    /// Which of the sink's writers this instance is.
    pub writer: Writer,
}

/// One instance of a sink: a sink [written in parallel](super::Sink::parallel) has one per
/// worker of every process, each taking the records its worker holds; any other has one.
#[derive(Debug, Clone)]
pub struct Writer {
    /// The global index of its worker (0 for a sink with one writer).
    pub index: usize,
    /// Writers of the sink in the whole run.
    pub count: usize,
    /// Records it wrote: the sink's count and this writer's.
    records: [prometheus::IntCounter; 2],
}

impl Writer {
    pub fn new(sink: &str, index: usize, count: usize) -> Writer {
        let m = metrics();
        Writer {
            index,
            count,
            records: [
                m.sink_records.with_label_values(&[sink]),
                m.sink_writer_records
                    .with_label_values(&[sink, index.to_string().as_str()]),
            ],
        }
    }

    /// Counts `n` records written (durable where the sink acknowledges).
    pub fn wrote(&self, n: usize) {
        self.records.iter().for_each(|c| c.inc_by(n as u64));
    }

    /// Whether this writer does the sink's once-per-run work (migrations, retention).
    pub fn is_first(&self) -> bool {
        self.index == 0
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::Acknowledger;

    /// A sink with several writers has acknowledged what every writer has; each advance of
    /// a writer wakes the worker that passes acknowledgements on.
    #[test]
    fn writers_acknowledge_together() {
        let woken = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&woken);
        let ack = Acknowledger::with_writers("ack-test", 2).waking(Arc::new(move || {
            count.fetch_add(1, Ordering::SeqCst);
        }));
        let (first, second) = (ack.writer(0), ack.writer(1));
        first.acknowledge(100);
        assert_eq!(
            ack.frontier(),
            i64::MIN,
            "the second writer has acknowledged nothing"
        );
        second.acknowledge(50);
        assert_eq!(ack.frontier(), 50);
        second.acknowledge(40);
        assert_eq!(ack.frontier(), 50, "acknowledgements never go back");
        second.acknowledge(i64::MAX);
        assert_eq!(ack.frontier(), 100);
        assert_eq!(woken.load(Ordering::SeqCst), 3, "only advances wake");
    }
}
