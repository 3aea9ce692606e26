//! The engine: turns a resolved pipeline into one timely dataflow per worker, runs the
//! source partitions and sinks around it, and drains everything at the end of input.

pub mod bars;
mod bridge;
mod checkpoint;
mod dataflow;
mod flow;
pub mod indicators;
mod link;
mod merge;
mod placement;
mod revise;
mod route;
pub mod tick_indicators;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{mpsc, watch};

use self::bridge::{Waker, SINK_CHANNEL, SOURCE_CHANNEL};
use self::checkpoint::{Checkpoints, Collector, SourceCut, STATE_VERSION};
use self::dataflow::run_worker;
use self::flow::{Control, Flow};
use self::placement::Placement;
use crate::connector::{
    Acknowledger, FromWorker, Position, Replay, Resources, RestartFrom, SinkContext, SinkInlet,
    SinkQueue, SourceContext, SourceEvent, SourceSender, Task, TaskError, Writer,
};
use crate::dead_letter::DeadLetters;
use crate::shutdown::Shutdown;
use crate::spec::Pipeline;
use crate::status::RunStatus;
use crate::store::positions::Positions;
use crate::store::recovery::{Checkpoint, Identity, RecoveryStore};

/// A sink's end inside the dataflow: its channel, and the queue that counts what the
/// sink has not taken yet.
#[derive(Clone)]
pub struct SinkSender {
    pub tx: mpsc::Sender<FromWorker>,
    pub queue: SinkQueue,
    /// The sender's slot in the sink's inlet (the local worker index; 0 for an instance of
    /// a parallel sink, which one worker feeds).
    pub slot: usize,
}

/// How to place the workers, and what sinks may use.
#[derive(Clone, Default)]
pub struct RunOptions {
    /// Worker threads per process (overrides `workers:` in the pipeline).
    pub workers: Option<usize>,
    /// Join a cluster of several processes.
    pub cluster: Option<Cluster>,
    /// Services of the run that sinks look up by type (the server's live hub).
    pub resources: Resources,
    /// Where the run reports its sources' state (read by the server's `/health`).
    pub status: RunStatus,
    /// `marketflow replay`: the named source's batches are narrowed and paced.
    pub replay: Option<Replaying>,
    /// `marketflow run --resume`: continue from the newest checkpoint of the pipeline's
    /// `recovery:` store (without it, its checkpoints are discarded).
    pub resume: bool,
}

/// The source a replay replaces, and what narrows and paces it.
pub type Replaying = (String, Arc<Replay>);

/// This process's place in a timely cluster.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// `host:port` of every process, in process order.
    pub addresses: Vec<String>,
    pub process: usize,
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub interrupted: bool,
    pub seconds: f64,
    /// Seconds each local worker spent working (not parked).
    pub worker_busy: Vec<f64>,
}

/// A source partition or a sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Component {
    Source { name: String, partition: usize },
    Sink { name: String },
}

impl std::fmt::Display for Component {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Component::Source { name, partition: 0 } => write!(f, "source {name}"),
            Component::Source { name, partition } => {
                write!(f, "source {name} (partition {partition})")
            }
            Component::Sink { name } => write!(f, "sink {name}"),
        }
    }
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A source or sink failed; the error says what and with which input.
    #[error("{component}: {error:#}")]
    Component {
        component: Component,
        error: anyhow::Error,
    },
    #[error("{component} panicked: {message}")]
    Panicked {
        component: Component,
        message: String,
    },
    #[error("a timely worker failed: {0}")]
    Worker(String),
    #[error("process index {process} is outside a cluster of {processes}")]
    Placement { process: usize, processes: usize },
    #[error("{what}: {error}")]
    Setup {
        what: &'static str,
        error: std::io::Error,
    },
    #[error("writing the dead-letter file: {0}")]
    DeadLetters(std::io::Error),
    #[error("recovery: {0}")]
    Recovery(String),
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Several(Vec<RunError>),
}

/// The partition channels this process's workers read, by (source, partition).
type PartitionChannels =
    HashMap<(usize, usize), (mpsc::Receiver<SourceEvent>, watch::Sender<Option<Position>>)>;

/// What every worker of this process shares.
struct Shared {
    pipeline: Pipeline,
    placement: Placement,
    partitions: Mutex<PartitionChannels>,
    /// Sink senders by local worker then sink index, each taken by its worker.
    sink_senders: Mutex<Vec<Vec<Option<SinkSender>>>>,
    /// The sinks' acknowledgements (process 0 only: sinks run there).
    sink_acks: Vec<Acknowledger>,
    waker: Waker,
    dead_letters: DeadLetters,
    interrupted: Arc<AtomicBool>,
    flow: Arc<Flow>,
    status: RunStatus,
    /// The checkpoint schedule, when the pipeline takes checkpoints.
    checkpoints: Option<Arc<Checkpoints>>,
    /// The leader's side of checkpoints, taken by worker 0.
    collector: Mutex<Option<Collector>>,
    /// The checkpoint this run resumes from.
    restored: Option<Checkpoint>,
}

impl Shared {
    fn take_sink_senders(&self, local: usize) -> Vec<Option<SinkSender>> {
        self.sink_senders
            .lock()
            .map(|mut all| all.get_mut(local).map(std::mem::take).unwrap_or_default())
            .unwrap_or_default()
    }

    /// The channels of a partition, for the worker that owns it.
    fn take_partition(
        &self,
        source: usize,
        partition: usize,
        worker: usize,
    ) -> Option<(mpsc::Receiver<SourceEvent>, watch::Sender<Option<Position>>)> {
        if self.placement.owner(source, partition) != worker {
            return None;
        }
        self.partitions.lock().ok()?.remove(&(source, partition))
    }

    fn control(&self) -> Control {
        self.flow.control(&self.sink_acks)
    }

    /// Each sink's acknowledged time in this process, in pipeline order (`i64::MAX` for a
    /// sink that runs in process 0 only, elsewhere).
    fn sink_frontiers(&self) -> Vec<i64> {
        let mut acks = self.sink_acks.iter();
        self.pipeline
            .sinks
            .iter()
            .map(
                |sink| match sink.spec.parallel() || self.placement.process == 0 {
                    true => acks.next().map_or(i64::MAX, Acknowledger::frontier),
                    false => i64::MAX,
                },
            )
            .collect()
    }
}

/// How the run stops: a shutdown every task watches, and why.
#[derive(Clone, Default)]
struct Stop {
    shutdown: Shutdown,
    interrupted: Arc<AtomicBool>,
    failed: Arc<AtomicBool>,
}

type Running = tokio::task::JoinHandle<Result<(), RunError>>;

/// Runs `pipeline` until its finite sources end (or Ctrl-C), then drains and flushes.
pub fn run(pipeline: &Pipeline, options: &RunOptions) -> Result<RunSummary, RunError> {
    let started = Instant::now();
    for source in &pipeline.sources {
        source.spec.prepare().map_err(|error| RunError::Component {
            component: Component::Source {
                name: source.name.clone(),
                partition: 0,
            },
            error,
        })?;
    }
    let placement = place(pipeline, options)?;
    let recovery = open_recovery(pipeline, &placement, options.resume)?;
    declare_metrics(pipeline);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("marketflow-io")
        .enable_all()
        .build()
        .map_err(|error| RunError::Setup {
            what: "starting the I/O runtime",
            error,
        })?;
    let stop = Stop::default();
    let (dead_letters, dead_letter_thread) = open_dead_letters(pipeline, &placement)?;
    // Before the sinks start: a database file is set up by one connection at a time.
    let positions = runtime.block_on(open_positions(pipeline))?;
    let restored = recovery.as_ref().and_then(|r| r.restored.clone());
    let waker = Waker::default();
    let sinks = start_sinks(
        &runtime,
        pipeline,
        &placement,
        (&stop, &waker),
        (&options.resources, restored.as_ref()),
    );
    let (source_tasks, partitions) = start_sources(
        &runtime,
        pipeline,
        &placement,
        (&stop, &options.status),
        (&dead_letters, positions.as_ref()),
        (&waker, options.replay.as_ref(), restored.as_ref()),
    );
    watch_signals(&runtime, &stop);

    let shared = Arc::new(Shared {
        pipeline: pipeline.clone(),
        placement: placement.clone(),
        partitions: Mutex::new(partitions),
        sink_senders: Mutex::new(sinks.senders),
        sink_acks: sinks.acks,
        waker,
        dead_letters: dead_letters.clone(),
        interrupted: stop.interrupted.clone(),
        flow: Arc::new(Flow::new(
            pipeline.sources.len(),
            sinks.queues,
            pipeline.sink_queue.unwrap_or(flow::DEFAULT_SINK_QUEUE),
            placement.threads,
        )),
        status: options.status.clone(),
        checkpoints: recovery.as_ref().map(|r| r.checkpoints.clone()),
        collector: Mutex::new(recovery.and_then(|r| r.collector)),
        restored,
    });
    drop(dead_letters);
    tracing::info!(pipeline = %pipeline.name, workers = placement.threads, processes = placement.processes, "running");
    let checkpoints = shared.checkpoints.clone();
    let (worker_busy, mut errors) = execute(&placement, options, shared);
    if let Some(failure) = checkpoints.and_then(|c| c.failure()) {
        errors.push(RunError::Recovery(failure));
    }
    runtime.block_on(async {
        for task in source_tasks.into_iter().chain(sinks.tasks) {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => errors.push(e),
                Err(e) => errors.push(RunError::Worker(format!("a task was lost: {e}"))),
            }
        }
    });
    if let Some(thread) = dead_letter_thread {
        match thread.join() {
            Ok(Err(e)) => errors.push(RunError::DeadLetters(e)),
            Err(_) => errors.push(RunError::Worker("the dead-letter writer panicked".into())),
            Ok(Ok(())) => {}
        }
    }
    runtime.shutdown_background();
    match errors.len() {
        0 => Ok(RunSummary {
            interrupted: stop.interrupted.load(Ordering::SeqCst)
                && !stop.failed.load(Ordering::SeqCst),
            seconds: started.elapsed().as_secs_f64(),
            worker_busy,
        }),
        1 => Err(errors.remove(0)),
        _ => Err(RunError::Several(errors)),
    }
}

/// Declares the pipeline's labelled counters at 0 (before its server answers, when the CLI
/// calls it first).
pub fn declare_metrics(pipeline: &Pipeline) {
    let sources: Vec<&str> = pipeline.sources.iter().map(|s| s.name.as_str()).collect();
    let operators: Vec<&str> = pipeline.operators.iter().map(|o| o.name.as_str()).collect();
    let sinks: Vec<&str> = pipeline.sinks.iter().map(|s| s.name.as_str()).collect();
    crate::metrics::declare_run(&sources, &operators, &sinks);
}

/// A run's checkpoints: the schedule every worker shares, the leader's collector, and
/// the checkpoint it resumes from.
struct Recovery {
    checkpoints: Arc<Checkpoints>,
    collector: Option<Collector>,
    restored: Option<Checkpoint>,
}

/// Opens the pipeline's recovery store, if it has one: checks that everything in the
/// pipeline can be checkpointed and, with `resume`, that the store's checkpoints fit it.
fn open_recovery(
    pipeline: &Pipeline,
    placement: &Placement,
    resume: bool,
) -> Result<Option<Recovery>, RunError> {
    let Some(config) = &pipeline.recovery else {
        if resume {
            return Err(RunError::Recovery(
                "--resume needs `recovery: {path: FILE}` (or `{database: postgres://…}`) in the pipeline".into(),
            ));
        }
        return Ok(None);
    };
    for source in &pipeline.sources {
        if source.spec.restart_from() == RestartFrom::Nowhere {
            return Err(RunError::Recovery(format!(
                "source `{}` ({}) cannot start again from a checkpoint (file, Kafka, history and live sources can, and the synthetic market at `pace: max` from a fixed `start` or in real time from now)",
                source.name,
                source.spec.type_name()
            )));
        }
    }
    let identity = Identity {
        pipeline: pipeline.name.clone(),
        workers: placement.threads,
        processes: placement.processes,
        operators: state_shapes(pipeline).map_err(RunError::Recovery)?,
    };
    // Process 0 keeps the checkpoints; the other processes of a cluster only read the one
    // they resume from, from the same store (see docs/recovery.md, "Clusters").
    let recovery_error =
        |e: crate::store::recovery::RecoveryError| RunError::Recovery(e.to_string());
    let (store, restored) = match (placement.process, resume) {
        (0, _) => {
            let mut store = RecoveryStore::open(config, &pipeline.name).map_err(recovery_error)?;
            let restored = store.begin(&identity, resume).map_err(recovery_error)?;
            (Some(store), restored)
        }
        (_, true) => {
            let store =
                RecoveryStore::open_reader(config, &pipeline.name).map_err(recovery_error)?;
            let restored = match store {
                Some(store) => store.resume_point(&identity).map_err(recovery_error)?,
                None => None,
            };
            (None, restored)
        }
        (_, false) => (None, None),
    };
    match &restored {
        Some(c) => tracing::info!(
            time = %marketflow_operators::time::format_timestamp(c.time),
            records = c.records,
            committed_at = %marketflow_operators::time::format_timestamp(c.committed_at),
            "resuming from the checkpoint: the records before it are not read again"
        ),
        None if resume => {
            tracing::info!("no checkpoint to resume from: starting from the beginning")
        }
        None => {}
    }
    let feeds: Vec<(usize, usize)> = pipeline
        .sources
        .iter()
        .enumerate()
        .flat_map(|(i, s)| (0..s.spec.partitions()).map(move |p| (i, p)))
        .collect();
    let start = restored.as_ref().map_or(0, |c| c.time);
    let checkpoints = Arc::new(Checkpoints::new(
        config.checkpoint_interval.as_std(),
        feeds,
        start,
    ));
    let collector = store.and_then(|store| {
        Collector::new(
            store,
            &checkpoints,
            (placement.peers(), placement.processes),
            restored.as_ref().map_or(checkpoint::NONE, |c| c.time),
            pipeline.sources.iter().map(|s| s.name.clone()).collect(),
            pipeline
                .sinks
                .iter()
                .map(|s| (s.name.clone(), s.spec.resumes_at_offset()))
                .collect(),
        )
    });
    Ok(Some(Recovery {
        checkpoints,
        collector,
        restored,
    }))
}

/// What each stateful operator's saved state depends on, by name; an error names an
/// operator whose state checkpoints do not cover yet.
fn state_shapes(pipeline: &Pipeline) -> Result<std::collections::BTreeMap<String, String>, String> {
    use crate::spec::operators::OperatorSpec;
    let mut shapes = std::collections::BTreeMap::new();
    for (i, op) in pipeline.operators.iter().enumerate() {
        let inputs = &pipeline.operator_inputs[i];
        let merged_bars = inputs.iter().all(|&i| {
            matches!(
                pipeline.streams[i],
                crate::connector::StreamType::Bars { .. }
            )
        });
        if inputs.len() > 1 && merged_bars {
            let names: Vec<&str> = inputs.iter().map(|&i| pipeline.stream_name(i)).collect();
            let revised = pipeline
                .inputs_revise_for(inputs)
                .map(|r| format!(", revised for {r} ms"))
                .unwrap_or_default();
            shapes.insert(
                format!("{}:merge", op.name),
                format!(
                    "merge of {}{revised} (state v{STATE_VERSION})",
                    names.join(", ")
                ),
            );
        }
        match &op.spec {
            OperatorSpec::Bars(config) => {
                let of = format!(
                    "bars of {} on {:?}",
                    config.interval.value,
                    config.calendar()
                );
                match pipeline.inputs_revise_for(inputs) {
                    // A cascade on revised bars: the finer bars it holds and what it gave.
                    Some(upstream) => {
                        let revise_for = config.revise_for().unwrap_or(upstream).max(upstream);
                        let shape =
                            format!("revised {of} for {revise_for} ms (state v{STATE_VERSION})");
                        shapes.insert(format!("{}:changes", op.name), shape.clone());
                        shapes.insert(format!("{}:upserts", op.name), shape);
                    }
                    None => {
                        let revised = config
                            .revise_for()
                            .map(|r| format!(", revised for {r} ms"))
                            .unwrap_or_default();
                        shapes.insert(
                            op.name.clone(),
                            format!("{of}{revised} (state v{STATE_VERSION})"),
                        );
                    }
                }
            }
            OperatorSpec::Indicators(config) => {
                let ids: Vec<String> = config
                    .indicators
                    .value
                    .iter()
                    .map(|e| e.spec.id())
                    .collect();
                let input = pipeline.streams[inputs[0]].to_string();
                let revised = pipeline
                    .inputs_revise_for(inputs)
                    .map(|r| format!(", revised for {r} ms"))
                    .unwrap_or_default();
                shapes.insert(
                    op.name.clone(),
                    format!(
                        "indicators {} on {input}{revised} (state v{STATE_VERSION})",
                        ids.join(", ")
                    ),
                );
                if pipeline.is_source_stream(inputs[0]) {
                    shapes.insert(
                        format!("{}:order", op.name),
                        format!("bars ordering {input} (state v{STATE_VERSION})"),
                    );
                }
            }
            OperatorSpec::TickIndicators(config) => {
                let ids: Vec<String> = config
                    .indicators
                    .value
                    .iter()
                    .map(|e| e.spec.id())
                    .collect();
                shapes.insert(
                    op.name.clone(),
                    format!(
                        "tick indicators {} every {} (state v{STATE_VERSION})",
                        ids.join(", "),
                        config.every.value
                    ),
                );
            }
        }
    }
    Ok(shapes)
}

/// Worker threads and this process's place in the cluster.
fn place(pipeline: &Pipeline, options: &RunOptions) -> Result<Placement, RunError> {
    let threads = options.workers.or(pipeline.workers).unwrap_or(1).max(1);
    let (processes, process) = options
        .cluster
        .as_ref()
        .map_or((1, 0), |c| (c.addresses.len(), c.process));
    if process >= processes {
        return Err(RunError::Placement { process, processes });
    }
    Ok(Placement::new(pipeline, threads, processes, process))
}

/// The dead-letter path and the thread that writes its file, if it has one.
type DeadLetterPath = (
    DeadLetters,
    Option<std::thread::JoinHandle<std::io::Result<()>>>,
);

fn open_dead_letters(
    pipeline: &Pipeline,
    placement: &Placement,
) -> Result<DeadLetterPath, RunError> {
    let Some(config) = &pipeline.dead_letter else {
        return Ok((DeadLetters::log_only(), None));
    };
    let mut config = config.clone();
    if placement.processes > 1 {
        config
            .path
            .as_mut_os_string()
            .push(format!(".p{}", placement.process));
    }
    let (handle, thread) = DeadLetters::open(&config).map_err(|error| RunError::Setup {
        what: "opening the dead-letter file",
        error,
    })?;
    Ok((handle, Some(thread)))
}

/// The sinks of a run, started.
struct StartedSinks {
    tasks: Vec<Running>,
    /// By local worker, then sink: what each worker's sink operators send on.
    senders: Vec<Vec<Option<SinkSender>>>,
    acks: Vec<Acknowledger>,
    queues: Vec<SinkQueue>,
}

/// Starts every sink: a sink written in parallel has an instance beside every worker of
/// every process, fed by that worker alone; any other has one, in process 0, fed by every
/// worker there (other processes send their records to those workers).
fn start_sinks(
    runtime: &tokio::runtime::Runtime,
    pipeline: &Pipeline,
    placement: &Placement,
    (stop, waker): (&Stop, &Waker),
    (resources, restored): (&Resources, Option<&Checkpoint>),
) -> StartedSinks {
    let mut tasks = Vec::new();
    let mut acks = Vec::new();
    let mut queues = Vec::new();
    let mut senders: Vec<Vec<Option<SinkSender>>> = vec![Vec::new(); placement.threads];
    for (sink, inputs) in pipeline.sinks.iter().zip(&pipeline.sink_inputs) {
        let parallel = sink.spec.parallel();
        if !parallel && placement.process != 0 {
            senders.iter_mut().for_each(|s| s.push(None));
            continue;
        }
        let instances = if parallel { placement.threads } else { 1 };
        // An acknowledgement wakes the worker that passes it on (local worker 0), so that
        // it is not left until that worker's next step.
        let wake = {
            let waker = waker.clone();
            Arc::new(move || waker.wake(0))
        };
        let ack = Acknowledger::with_writers(&sink.name, instances).waking(wake);
        let queue = SinkQueue::new(&sink.name);
        for instance in 0..instances {
            let (tx, rx) = mpsc::channel(SINK_CHANNEL);
            let writer = match parallel {
                true => Writer::new(
                    &sink.name,
                    placement.process * placement.threads + instance,
                    placement.peers(),
                ),
                false => Writer::new(&sink.name, 0, 1),
            };
            let ctx = SinkContext {
                name: sink.name.clone(),
                records: SinkInlet::new(
                    rx,
                    if parallel { 1 } else { placement.threads },
                    queue.clone(),
                ),
                kinds: inputs
                    .iter()
                    .map(|&i| pipeline.streams[i].record_kind())
                    .collect(),
                shutdown: stop.shutdown.clone(),
                ack: ack.writer(instance),
                resources: resources.clone(),
                resume_offset: restored
                    .filter(|_| sink.spec.resumes_at_offset())
                    .and_then(|c| c.sinks.get(&sink.name).copied()),
                writer,
            };
            let component = Component::Sink {
                name: sink.name.clone(),
            };
            tasks.push(spawn_task(
                runtime,
                sink.spec.build(ctx),
                component,
                stop.clone(),
            ));
            let sender = |slot| SinkSender {
                tx: tx.clone(),
                queue: queue.clone(),
                slot,
            };
            match parallel {
                true => senders[instance].push(Some(sender(0))),
                false => senders
                    .iter_mut()
                    .enumerate()
                    .for_each(|(local, s)| s.push(Some(sender(local)))),
            }
        }
        acks.push(ack);
        queues.push(queue);
    }
    StartedSinks {
        tasks,
        senders,
        acks,
        queues,
    }
}

/// Where the positions of resumable sources are kept: the pipeline's store (its first sink
/// with a database), and what earlier runs kept there. `None` when no source resumes.
async fn open_positions(pipeline: &Pipeline) -> Result<Option<SavedPositions>, RunError> {
    let resumable = pipeline
        .sources
        .iter()
        .any(|s| (0..s.spec.partitions()).any(|p| s.spec.resume_key(p).is_some()));
    if !resumable {
        return Ok(None);
    }
    let Some(location) = pipeline.sinks.iter().find_map(|s| s.spec.store()) else {
        tracing::info!("no sink keeps a database: history sources start from `start` each run");
        return Ok(None);
    };
    let setup = |e: crate::store::StoreError| RunError::Setup {
        what: "reading saved source positions",
        error: std::io::Error::other(e.to_string()),
    };
    let store = Positions::open(&location).await.map_err(setup)?;
    let saved = store.load(&pipeline.name).await.map_err(setup)?;
    Ok(Some(SavedPositions { store, saved }))
}

/// The positions store of a run and what it held when the run started.
struct SavedPositions {
    store: Positions,
    saved: HashMap<String, Position>,
}

/// Keeps a resumable partition's acknowledged positions as they advance; ends when the
/// run no longer acknowledges (its worker finished), after keeping the last.
async fn keep_positions(
    store: Positions,
    pipeline: String,
    key: String,
    mut acked: watch::Receiver<Option<Position>>,
) -> Result<(), RunError> {
    loop {
        let ended = acked.changed().await.is_err();
        let position = *acked.borrow_and_update();
        if let Some(position) = position {
            if let Err(e) = store.save(&pipeline, &key, position).await {
                tracing::warn!(key = %key, error = %e, "could not keep a source position");
            }
        }
        if ended {
            return Ok(());
        }
    }
}

/// Starts the partitions of every source that this process's workers own.
fn start_sources(
    runtime: &tokio::runtime::Runtime,
    pipeline: &Pipeline,
    placement: &Placement,
    (stop, status): (&Stop, &RunStatus),
    (dead_letters, positions): (&DeadLetters, Option<&SavedPositions>),
    (waker, replay, restored): (&Waker, Option<&Replaying>, Option<&Checkpoint>),
) -> (Vec<Running>, PartitionChannels) {
    let mut tasks = Vec::new();
    let mut channels = PartitionChannels::new();
    for (index, source) in pipeline.sources.iter().enumerate() {
        let partitions = source.spec.partitions();
        for partition in 0..partitions {
            let owner = placement.owner(index, partition);
            if !placement.is_local(owner) {
                continue;
            }
            let (tx, rx) = mpsc::channel(SOURCE_CHANNEL);
            let (acked_tx, acked_rx) = watch::channel(None);
            let wake = {
                let waker = waker.clone();
                let local = placement.local_worker(owner);
                Arc::new(move || waker.wake(local))
            };
            let mut out = SourceSender::new(tx, wake);
            if let Some((_, replay)) = replay.filter(|(name, _)| *name == source.name) {
                out = out.replaying(replay.clone());
            }
            let ctx = SourceContext {
                name: source.name.clone(),
                partition,
                partitions,
                out,
                shutdown: stop.shutdown.clone(),
                dead_letters: dead_letters.clone(),
                acked: acked_rx.clone(),
                resume: None,
                status: status.clone(),
                restart: restored.and_then(|c| {
                    let cut = c.sources.get(&(source.name.clone(), partition))?;
                    let cut: SourceCut = serde_json::from_slice(cut).ok()?;
                    Some(cut.restart(source.spec.restart_from()))
                }),
            };
            let mut ctx = ctx;
            if let (Some(key), Some(p)) = (source.spec.resume_key(partition), positions) {
                ctx.resume = p.saved.get(&key).copied();
                tasks.push(runtime.spawn(keep_positions(
                    p.store.clone(),
                    pipeline.name.clone(),
                    key,
                    acked_rx,
                )));
            }
            let up = crate::metrics::metrics()
                .source_up
                .with_label_values(&[source.name.as_str()]);
            up.add(1);
            status.partition_started(&source.name);
            let component = Component::Source {
                name: source.name.clone(),
                partition,
            };
            let task = spawn_task(runtime, source.spec.build(ctx), component, stop.clone());
            let (status, name) = (status.clone(), source.name.clone());
            tasks.push(runtime.spawn(async move {
                let result = task.await;
                up.sub(1);
                status.partition_ended(&name);
                result.unwrap_or_else(|e| Err(RunError::Worker(format!("a task was lost: {e}"))))
            }));
            channels.insert((index, partition), (rx, acked_tx));
        }
    }
    (tasks, channels)
}

/// The first Ctrl-C or SIGTERM stops the sources and flushes complete windows; a second
/// exits at once.
fn watch_signals(runtime: &tokio::runtime::Runtime, stop: &Stop) {
    let stop = stop.clone();
    crate::shutdown::watch_signals(runtime, move || {
        tracing::warn!(
            "stopping: sources end, complete windows are flushed (signal again to exit at once)"
        );
        stop.interrupted.store(true, Ordering::SeqCst);
        stop.shutdown.trigger();
    });
}

/// Runs the timely workers to completion; returns each local worker's busy seconds and
/// the workers' errors.
fn execute(
    placement: &Placement,
    options: &RunOptions,
    shared: Arc<Shared>,
) -> (Vec<f64>, Vec<RunError>) {
    let threads = placement.threads;
    let communication = match &options.cluster {
        Some(c) => timely::CommunicationConfig::Cluster {
            threads,
            process: c.process,
            addresses: c.addresses.clone(),
            report: false,
            zerocopy: false,
        },
        None if threads == 1 => timely::CommunicationConfig::Thread,
        None => timely::CommunicationConfig::Process(threads),
    };
    let config = timely::Config {
        communication,
        worker: timely::WorkerConfig::default(),
    };
    let guards = match timely::execute(config, move |worker| run_worker(worker, &shared)) {
        Ok(guards) => guards,
        Err(e) => return (Vec::new(), vec![RunError::Worker(format!("starting: {e}"))]),
    };
    let mut busy = Vec::new();
    let mut errors = Vec::new();
    for result in guards.join() {
        match result {
            Ok(seconds) => busy.push(seconds),
            Err(e) => errors.push(RunError::Worker(e)),
        }
    }
    (busy, errors)
}

/// Spawns a source partition or sink; if it fails, the whole run stops (its partial
/// windows are dropped, as after an interrupt) and the error names the component.
fn spawn_task(
    runtime: &tokio::runtime::Runtime,
    task: Task,
    component: Component,
    stop: Stop,
) -> Running {
    runtime.spawn(async move {
        let result = match task {
            Task::Blocking(f) => match tokio::task::spawn_blocking(f).await {
                Ok(result) => result,
                Err(e) => {
                    stop.failed.store(true, Ordering::SeqCst);
                    stop.interrupted.store(true, Ordering::SeqCst);
                    stop.shutdown.trigger();
                    return Err(RunError::Panicked {
                        component,
                        message: e.to_string(),
                    });
                }
            },
            Task::Async(f) => f.await,
        };
        match result {
            Ok(()) | Err(TaskError::Closed(_)) => Ok(()),
            Err(TaskError::Failed(error)) => {
                stop.failed.store(true, Ordering::SeqCst);
                stop.interrupted.store(true, Ordering::SeqCst);
                stop.shutdown.trigger();
                Err(RunError::Component { component, error })
            }
        }
    })
}
