//! The engine: turns a resolved pipeline into one timely dataflow per worker, runs the
//! sources and sinks around it, and drains everything at the end of input.

pub mod bars;
pub mod bridge;
pub mod dataflow;
pub mod indicators;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{bail, Context as _};
use tokio::sync::mpsc;

use self::bars::BarsConfig;
use self::bridge::{SourceClosed, SourceSender, Waker, SOURCE_CHANNEL};
use self::dataflow::{run_worker, sink_channel, source_owner, Shared};
use self::indicators::IndicatorsConfig;
use crate::dead_letter::DeadLetters;
use crate::shutdown::Shutdown;
use crate::sinks::{record_kind, SinkContext};
use crate::sources::SourceContext;
use crate::spec::de::{from_map_without, DeError, Spanned};
use crate::spec::diagnostic::Diagnostic;
use crate::spec::graph::StreamType;
use crate::spec::yaml::Node;
use crate::spec::Pipeline;

/// The `type`s an operator may have.
pub const OPERATOR_TYPES: &[&str] = &["bars", "indicators"];

/// A configured operator.
#[derive(Debug, Clone)]
pub enum OperatorSpec {
    Bars(BarsConfig),
    Indicators(IndicatorsConfig),
}

impl OperatorSpec {
    pub fn from_node(kind: &str, node: &Node, path: &str) -> Result<OperatorSpec, Vec<DeError>> {
        let one = |e| vec![e];
        Ok(match kind {
            "bars" => OperatorSpec::Bars(from_map_without(node, path, &["type"]).map_err(one)?),
            "indicators" => OperatorSpec::Indicators(IndicatorsConfig::from_node(node, path)?),
            _ => unreachable!("callers check OPERATOR_TYPES"),
        })
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            OperatorSpec::Bars(_) => "bars",
            OperatorSpec::Indicators(_) => "indicators",
        }
    }

    /// The streams this operator reads.
    pub fn inputs(&self) -> &[Spanned<String>] {
        match self {
            OperatorSpec::Bars(c) => std::slice::from_ref(&c.from),
            OperatorSpec::Indicators(c) => std::slice::from_ref(&c.from),
        }
    }

    /// The output type for inputs of the given types (in `inputs()` order).
    pub fn output(&self, path: &str, inputs: &[StreamType]) -> Result<StreamType, Vec<Diagnostic>> {
        match self {
            OperatorSpec::Bars(c) => c.output(path, &inputs[0]).map_err(|d| vec![d]),
            OperatorSpec::Indicators(c) => c.output(path, &inputs[0]).map_err(|d| vec![d]),
        }
    }

    /// Checks of the operator's own settings.
    pub fn check(&self, path: &str) -> Vec<Diagnostic> {
        match self {
            OperatorSpec::Bars(_) => Vec::new(),
            OperatorSpec::Indicators(c) => c.check(path),
        }
    }
}

/// How to place the workers.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Worker threads per process (overrides `workers:` in the pipeline).
    pub workers: Option<usize>,
    /// Join a cluster of several processes.
    pub cluster: Option<Cluster>,
    /// The live hub `websocket` sinks publish to (the server's).
    pub hub: crate::server::hub::Hub,
}

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
}

/// Runs `pipeline` until its finite sources end (or Ctrl-C), then drains and flushes.
pub fn run(pipeline: &Pipeline, options: &RunOptions) -> anyhow::Result<RunSummary> {
    let started = Instant::now();
    let threads = options.workers.or(pipeline.workers).unwrap_or(1).max(1);
    let (processes, process) = options
        .cluster
        .as_ref()
        .map_or((1, 0), |c| (c.addresses.len(), c.process));
    if process >= processes {
        bail!("process index {process} is outside a cluster of {processes}");
    }
    let peers = threads * processes;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("marketflow-io")
        .enable_all()
        .build()
        .context("starting the I/O runtime")?;
    let shutdown = Shutdown::new();
    let interrupted = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicBool::new(false));

    let (dead_letters, dead_letter_thread) = match &pipeline.dead_letter {
        Some(config) => {
            let mut config = config.clone();
            if processes > 1 {
                config.path.as_mut_os_string().push(format!(".p{process}"));
            }
            let (handle, thread) = DeadLetters::open(&config).with_context(|| {
                format!("opening the dead-letter file {}", config.path.display())
            })?;
            (handle, Some(thread))
        }
        None => (DeadLetters::log_only(), None),
    };

    // Sinks run in process 0, which receives every sink's records.
    let mut sink_tasks = Vec::new();
    let mut sink_senders: Vec<Vec<Option<bridge::SinkSender>>> = vec![Vec::new(); threads];
    for sink in &pipeline.sinks {
        if process == 0 {
            let (tx, rx) = sink_channel();
            let kinds = sink
                .spec
                .inputs()
                .iter()
                .map(|i| record_kind(&pipeline.types[&i.value]))
                .collect();
            let ctx = SinkContext {
                name: sink.name.clone(),
                records: rx,
                kinds,
                shutdown: shutdown.clone(),
                hub: options.hub.clone(),
            };
            let task = spawn_task(
                &runtime,
                sink.spec.build(ctx),
                format!("sink {}", sink.name),
                shutdown.clone(),
                interrupted.clone(),
                failed.clone(),
            );
            sink_tasks.push(task);
            for per_worker in &mut sink_senders {
                per_worker.push(Some(tx.clone()));
            }
        } else {
            for per_worker in &mut sink_senders {
                per_worker.push(None);
            }
        }
    }

    let waker = Waker::default();
    let mut receivers = Vec::new();
    let mut source_tasks = Vec::new();
    for (i, source) in pipeline.sources.iter().enumerate() {
        let owner = source_owner(i, peers);
        if owner / threads != process {
            receivers.push(None);
            continue;
        }
        let (tx, rx) = mpsc::channel(SOURCE_CHANNEL);
        let ctx = SourceContext {
            name: source.name.clone(),
            out: SourceSender::new(tx, waker.clone(), owner % threads),
            shutdown: shutdown.clone(),
            dead_letters: dead_letters.clone(),
        };
        let up = crate::metrics::metrics()
            .source_up
            .with_label_values(&[source.name.as_str()]);
        up.set(1);
        let task = spawn_task(
            &runtime,
            source.spec.build(ctx),
            format!("source {}", source.name),
            shutdown.clone(),
            interrupted.clone(),
            failed.clone(),
        );
        let task = runtime.spawn(async move {
            let result = task.await;
            up.set(0);
            result.unwrap_or_else(|e| Err(anyhow::anyhow!("task panicked: {e}")))
        });
        source_tasks.push(task);
        receivers.push(Some(rx));
    }

    {
        let shutdown = shutdown.clone();
        let interrupted = interrupted.clone();
        runtime.spawn(async move {
            if crate::shutdown::stop_signal().await {
                tracing::warn!("stopping: sources end, complete windows are flushed (signal again to exit at once)");
                interrupted.store(true, Ordering::SeqCst);
                shutdown.trigger();
                if crate::shutdown::stop_signal().await {
                    std::process::exit(130);
                }
            }
        });
    }

    let shared = Arc::new(Shared {
        pipeline: pipeline.clone(),
        threads,
        receivers: Mutex::new(receivers),
        sink_senders: Mutex::new(sink_senders),
        waker,
        dead_letters: dead_letters.clone(),
        interrupted: interrupted.clone(),
    });
    drop(dead_letters);
    let communication = match &options.cluster {
        Some(c) => timely::CommunicationConfig::Cluster {
            threads,
            process,
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
    tracing::info!(pipeline = %pipeline.name, workers = threads, processes, "running");
    let guards = timely::execute(config, move |worker| run_worker(worker, &shared))
        .map_err(|e| anyhow::anyhow!("starting timely workers: {e}"))?;
    let worker_errors: Vec<String> = guards.join().into_iter().filter_map(Result::err).collect();

    let mut errors: Vec<String> = worker_errors
        .into_iter()
        .map(|e| format!("worker failed: {e}"))
        .collect();
    runtime.block_on(async {
        for task in source_tasks.into_iter().chain(sink_tasks) {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => errors.push(format!("{e:#}")),
                Err(e) => errors.push(format!("task panicked: {e}")),
            }
        }
    });
    if let Some(thread) = dead_letter_thread {
        match thread.join() {
            Ok(Err(e)) => errors.push(format!("writing the dead-letter file: {e}")),
            Err(_) => errors.push("the dead-letter writer panicked".to_owned()),
            Ok(Ok(())) => {}
        }
    }
    runtime.shutdown_background();
    if !errors.is_empty() {
        bail!("{}", errors.join("\n"));
    }
    Ok(RunSummary {
        interrupted: interrupted.load(Ordering::SeqCst) && !failed.load(Ordering::SeqCst),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Spawns a source or sink; if it fails, the whole run stops (its partial windows are
/// dropped, as after an interrupt) and the error is reported.
fn spawn_task(
    runtime: &tokio::runtime::Runtime,
    task: Task,
    what: String,
    shutdown: Shutdown,
    interrupted: Arc<AtomicBool>,
    failed: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    runtime.spawn(async move {
        let result = match task {
            Task::Blocking(f) => tokio::task::spawn_blocking(f)
                .await
                .unwrap_or_else(|e| Err(anyhow::anyhow!("panicked: {e}"))),
            Task::Async(f) => f.await,
        };
        match result {
            Err(e) if e.downcast_ref::<SourceClosed>().is_some() => Ok(()),
            Err(e) => {
                failed.store(true, Ordering::SeqCst);
                interrupted.store(true, Ordering::SeqCst);
                shutdown.trigger();
                Err(e.context(what))
            }
            Ok(()) => Ok(()),
        }
    })
}

/// A source or sink ready to run: blocking work gets its own thread, I/O runs as a task.
pub enum Task {
    Blocking(Box<dyn FnOnce() -> anyhow::Result<()> + Send>),
    Async(std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>> + Send>>),
}
