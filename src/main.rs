//! The `marketflow` command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use marketflow::connector::Resources;
use marketflow::engine::{self, Cluster, RunOptions};
use marketflow::hub::Hub;
use marketflow::server::{self, ServerConfig, ServerState, SourceInfo};
use marketflow::spec::{self, LoadError, Pipeline};
use marketflow::status::RunStatus;
use marketflow::store::Location;

/// Streaming analytics for market data: YAML pipelines compiled to timely dataflow.
#[derive(Parser)]
#[command(name = "marketflow", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log filter (tracing `EnvFilter` syntax); `RUST_LOG` overrides it.
    #[arg(long, global = true, default_value = "info")]
    log: String,
    /// Log lines as text, or as JSON objects (for log collectors in containers).
    #[arg(
        long,
        global = true,
        value_enum,
        env = "MARKETFLOW_LOG_FORMAT",
        default_value = "text"
    )]
    log_format: LogFormat,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run a pipeline; without a file, the embedded demo (synthetic market, no keys).
    Run(RunArgs),
    /// Run a pipeline's history sources into its sinks (live sources are left out), with
    /// progress; a later run resumes after what was stored.
    Backfill(BackfillArgs),
    /// Run a pipeline's graph again with one source replaced by what it recorded: the
    /// pipeline's store, a file, or its Kafka topic; with progress.
    Replay(ReplayArgs),
    /// Serve the REST API, metrics and chart page over a database, without a pipeline.
    Serve {
        /// The store: `postgres://user@host:port/db`, or a SQLite file (`sqlite:PATH` or a path).
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        store: String,
        /// Address to listen on (`0.0.0.0:8000` in a container).
        #[arg(long, env = "MARKETFLOW_LISTEN", default_value = "127.0.0.1:8000")]
        listen: std::net::SocketAddr,
        /// Stream live records to WebSocket clients from the engine's Kafka topics:
        /// `kafka://BROKERS[/TOPIC,...]` (default topics: the Kafka sink's defaults).
        /// Snapshots come from the store, live records from Kafka, each record once.
        #[arg(long, env = "MARKETFLOW_LIVE")]
        live: Option<String>,
        /// How far before its start the live feed begins reading (it covers records the
        /// engine sent to Kafka and had not yet committed to the store).
        #[arg(long, default_value = "5m")]
        live_lookback: marketflow::config::values::Duration,
        /// API keys, hashed, one `NAME:SCOPES:SHA256HEX` a line (docs/server.md); without it,
        /// every caller is served.
        #[arg(long, env = "MARKETFLOW_KEYS_FILE")]
        keys_file: Option<PathBuf>,
        /// Serve https and wss with this certificate chain (PEM; re-read when it changes).
        #[arg(long, env = "MARKETFLOW_TLS_CERT", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The certificate's private key (PEM).
        #[arg(long, env = "MARKETFLOW_TLS_KEY", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Serve beyond loopback without API keys (anyone who reaches it reads everything).
        #[arg(long)]
        insecure: bool,
    },
    /// Apply the database migrations (PostgreSQL/TimescaleDB URL or SQLite file) and
    /// print which mode was used.
    Migrate {
        /// `postgres://user@host:port/db`, or a SQLite file (`sqlite:PATH` or a path).
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: String,
        /// Use TimescaleDB when available (`auto`), insist on it, or never use it.
        #[arg(long, value_enum, default_value = "auto")]
        timescaledb: marketflow::store::postgres::TimescaleMode,
    },
    /// Check pipeline files without running them (exit status 2 on errors).
    Validate {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print the resolved graph of a pipeline.
    Graph {
        file: PathBuf,
        #[arg(long, value_enum, default_value = "dot")]
        format: GraphFormat,
    },
    /// Measure ticks/s through 1m -> 5m -> 1d bars against a plain single-threaded loop.
    Bench(marketflow::bench::BenchArgs),
    /// Measure rows/s into SQLite and PostgreSQL (binary COPY vs one INSERT per row).
    BenchStore(marketflow::bench::StoreBenchArgs),
    /// Measure WebSocket fan-out latency and REST requests/s on loopback.
    BenchServer(marketflow::bench::server::ServerBenchArgs),
    /// Measure ticks/s from a Kafka topic into 1m bars against a bare consumer loop.
    BenchKafka(marketflow::bench::kafka::KafkaBenchArgs),
}

/// `marketflow run`'s arguments.
#[derive(clap::Args)]
struct RunArgs {
    file: Option<PathBuf>,
    /// Worker threads (overrides `workers:` in the file).
    #[arg(short, long)]
    workers: Option<usize>,
    /// Number of processes in a timely cluster (needs --process and --hostfile).
    #[arg(long, requires_all = ["process", "hostfile"])]
    processes: Option<usize>,
    /// This process's index in the cluster, from 0.
    #[arg(long)]
    process: Option<usize>,
    /// File with one `host:port` per process, in process order.
    #[arg(long)]
    hostfile: Option<PathBuf>,
    /// Write the final Prometheus metrics to this file when the run ends.
    #[arg(long)]
    metrics_file: Option<PathBuf>,
    /// Serve on this address instead of `server.listen` (port 0 picks a free one).
    #[arg(long, env = "MARKETFLOW_LISTEN")]
    listen: Option<std::net::SocketAddr>,
    /// Do not start the pipeline's server.
    #[arg(long)]
    no_server: bool,
    /// Serve beyond loopback without `server.auth` (anyone who reaches it reads everything).
    #[arg(long)]
    insecure: bool,
    /// Continue from the newest checkpoint in the pipeline's `recovery:` store (output
    /// files are cut back to it); without it, a run starts over and discards them.
    #[arg(long)]
    resume: bool,
}

/// `marketflow backfill`'s arguments.
#[derive(clap::Args)]
struct BackfillArgs {
    file: PathBuf,
    /// Only these symbols (of those the history sources list); commas or repeats.
    #[arg(long, value_delimiter = ',')]
    symbols: Vec<String>,
    /// From this time instead of the sources' `start`: a date, an RFC 3339 time or `-30d`.
    #[arg(long)]
    from: Option<String>,
    /// Up to this time (exclusive) instead of the sources' `end`.
    #[arg(long)]
    to: Option<String>,
    /// Ignore the positions earlier runs kept: fetch the whole range again.
    #[arg(long)]
    restart: bool,
    /// Worker threads (overrides `workers:` in the file).
    #[arg(short, long)]
    workers: Option<usize>,
}

/// `marketflow replay`'s arguments.
#[derive(clap::Args)]
struct ReplayArgs {
    file: PathBuf,
    /// `NAME=store` (the ticks its store recorded), `NAME=file:PATH` (a CSV or JSONL file of
    /// its records) or `NAME=kafka` (its topic, from `--from` to the end it has now).
    #[arg(long, value_name = "NAME=FROM")]
    source: String,
    /// Records from this event time: a date, an RFC 3339 time or `-30d`.
    #[arg(long)]
    from: Option<String>,
    /// Records before this event time.
    #[arg(long)]
    to: Option<String>,
    /// `max` (default: as fast as it goes), `realtime`, or a multiple of it such as `10x`.
    #[arg(long, default_value = "max")]
    speed: ReplaySpeed,
    /// Worker threads (overrides `workers:` in the file).
    #[arg(short, long)]
    workers: Option<usize>,
}

/// How fast a replay goes: event-time ms per wall-clock ms, `None` for as fast as it can.
#[derive(Clone, Copy, Debug)]
struct ReplaySpeed(Option<f64>);

impl std::str::FromStr for ReplaySpeed {
    type Err = String;
    fn from_str(text: &str) -> Result<ReplaySpeed, String> {
        match text {
            "max" => Ok(ReplaySpeed(None)),
            "realtime" => Ok(ReplaySpeed(Some(1.0))),
            _ => text
                .strip_suffix('x')
                .and_then(|n| n.parse::<f64>().ok())
                .filter(|n| n.is_finite() && *n > 0.0)
                .map(|n| ReplaySpeed(Some(n)))
                .ok_or_else(|| {
                    format!("`{text}` is not a speed: write `max`, `realtime` or e.g. `10x`")
                }),
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum GraphFormat {
    Dot,
    Text,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cli.log));
    // At trace level the WebSocket library logs the upgrade request, whose URL carries a
    // live feed's API key. Its client handshake logs nothing at info or above, so capping it
    // at info hides that line without showing anything the chosen level would not.
    if let Ok(cap) = "tungstenite::handshake::client=info".parse() {
        filter = filter.add_directive(cap);
    }
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    match execute(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Exit status for invalid pipeline files.
const INVALID: u8 = 2;

fn load(path: &Path) -> Result<Pipeline, ExitCode> {
    spec::load_file(path).map_err(|e| {
        eprintln!("{e}");
        match e {
            LoadError::Invalid(_) => ExitCode::from(INVALID),
            LoadError::Io { .. } => ExitCode::FAILURE,
        }
    })
}

fn execute(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run(args) => run(args),
        Command::Backfill(args) => backfill(args),
        Command::Replay(args) => replay(args),
        Command::Serve {
            store,
            listen,
            live,
            live_lookback,
            keys_file,
            tls_cert,
            tls_key,
            insecure,
        } => {
            let spanned = |p: PathBuf| {
                marketflow::config::de::Spanned::new(p.display().to_string(), Default::default())
            };
            let config = ServerConfig {
                auth: keys_file.map(|f| marketflow::spec::server::AuthConfig {
                    keys: Vec::new(),
                    keys_file: Some(spanned(f)),
                }),
                tls: tls_cert
                    .zip(tls_key)
                    .map(|(cert, key)| marketflow::spec::server::TlsConfig {
                        cert: spanned(cert),
                        key: spanned(key),
                    }),
                ..ServerConfig::default()
            };
            serve(
                &store,
                listen,
                &config,
                insecure,
                live.as_deref(),
                live_lookback,
            )
        }
        Command::Migrate {
            database_url,
            timescaledb,
        } => migrate(&database_url, timescaledb),
        Command::Validate { files } => {
            let mut code = ExitCode::SUCCESS;
            for file in files {
                match load(&file) {
                    Ok(p) => println!(
                        "{}: ok (pipeline {}: {} sources, {} operators, {} sinks)",
                        file.display(),
                        p.name,
                        p.sources.len(),
                        p.operators.len(),
                        p.sinks.len()
                    ),
                    Err(c) => code = c,
                }
            }
            Ok(code)
        }
        Command::Graph { file, format } => {
            let pipeline = match load(&file) {
                Ok(p) => p,
                Err(code) => return Ok(code),
            };
            print!(
                "{}",
                match format {
                    GraphFormat::Dot => spec::graph::render_dot(&pipeline),
                    GraphFormat::Text => spec::graph::render_text(&pipeline),
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(args) => {
            marketflow::bench::run(&args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::BenchStore(args) => {
            marketflow::bench::run_store(&args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::BenchKafka(args) => {
            marketflow::bench::kafka::run(&args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::BenchServer(args) => {
            marketflow::bench::server::run(&args)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `marketflow serve`: the API over a store, with live WebSocket streams from Kafka when
/// `live` names the topics.
fn serve(
    store: &str,
    listen: std::net::SocketAddr,
    config: &ServerConfig,
    insecure: bool,
    live: Option<&str>,
    lookback: marketflow::config::values::Duration,
) -> anyhow::Result<ExitCode> {
    use marketflow::server::live::{self, LiveFeed};
    let feed = live
        .map(|url| LiveFeed::parse(url, lookback.as_std()))
        .transpose()
        .map_err(|e| anyhow::anyhow!("--live {e}"))?;
    let runtime = server_runtime()?;
    let listener = server::bind(listen).with_context(|| format!("listening on {listen}"))?;
    let hub = Hub::default();
    let mut state = ServerState::secured(
        config,
        Some(Location::parse(store)),
        hub.clone(),
        listen,
        insecure,
    )?;
    let feed_stop = marketflow::shutdown::Shutdown::new();
    let reader = match feed {
        Some(feed) => {
            state.prime_from_store = true;
            state.sources.push(SourceInfo {
                name: live::SOURCE.into(),
                kind: "kafka",
                finite: false,
            });
            Some(live::spawn(
                feed,
                hub,
                state.run_status.clone(),
                feed_stop.clone(),
            )?)
        }
        None => None,
    };
    let scheme = state.scheme();
    let handle = runtime.block_on(async { server::start(listener, state) })?;
    let stop = stop_on_signal(&runtime);
    announce(scheme, handle.addr);
    runtime.block_on(stop.triggered());
    feed_stop.trigger();
    stop_server(runtime, handle);
    if let Some(reader) = reader {
        let _ = reader.join();
    }
    Ok(ExitCode::SUCCESS)
}

/// `marketflow run`: the pipeline, with its server beside it until Ctrl-C.
fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let pipeline = match &args.file {
        Some(path) => match load(path) {
            Ok(p) => p,
            Err(code) => return Ok(code),
        },
        None => match spec::load_str(
            "pipelines/demo.yaml (embedded)",
            marketflow::DEMO_PIPELINE,
            &|n| std::env::var(n).ok(),
        ) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("{e}");
                return Ok(ExitCode::from(INVALID));
            }
        },
    };
    let cluster = match (args.processes, args.process, &args.hostfile) {
        (Some(n), Some(index), Some(hostfile)) => Some(read_cluster(hostfile, n, index)?),
        _ => None,
    };
    // Sinks, and so the live hub, run in process 0 of a cluster: it alone serves.
    let server_config = pipeline
        .server
        .clone()
        .filter(|_| !args.no_server && args.process.unwrap_or(0) == 0);
    let hub = server_config
        .as_ref()
        .map(|c| Hub::new(c.hub_config()))
        .unwrap_or_default();
    let status = RunStatus::default();
    engine::declare_metrics(&pipeline);
    let server = match &server_config {
        Some(config) => Some(start_pipeline_server(
            &pipeline,
            config,
            (args.listen, args.insecure),
            (&hub, &status),
        )?),
        None => None,
    };
    let options = RunOptions {
        workers: args.workers,
        cluster,
        resources: Resources::default().with(hub),
        status,
        replay: None,
        resume: args.resume,
    };
    let result = engine::run(&pipeline, &options);
    if let Some(path) = &args.metrics_file {
        std::fs::write(path, marketflow::metrics::metrics().render())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let summary = result?;
    tracing::info!(
        seconds = summary.seconds,
        interrupted = summary.interrupted,
        "pipeline {} finished",
        pipeline.name
    );
    if let Some((runtime, handle, finished, stop)) = server {
        finished.store(true, std::sync::atomic::Ordering::SeqCst);
        if !summary.interrupted {
            tracing::info!(
                "the pipeline has ended; still serving on http://{}/ until Ctrl-C",
                handle.addr
            );
            runtime.block_on(stop.triggered());
        }
        stop_server(runtime, handle);
    }
    Ok(ExitCode::SUCCESS)
}

/// The instant a `--from`/`--to` flag names (a date, an RFC 3339 time, `-30d`), if given.
fn time_flag(flag: &str, text: Option<&str>, now: i64) -> anyhow::Result<Option<i64>> {
    text.map(|t| {
        t.parse::<marketflow::config::values::TimePoint>()
            .map(|p| p.resolve(now))
            .with_context(|| format!("--{flag}"))
    })
    .transpose()
}

/// `marketflow backfill`: the history sources of a pipeline into its sinks, with progress.
fn backfill(args: BackfillArgs) -> anyhow::Result<ExitCode> {
    let pipeline = match load(&args.file) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let now = chrono::Utc::now().timestamp_millis();
    let time = |flag: &str, text: &Option<String>| time_flag(flag, text.as_deref(), now);
    let range = marketflow::connector::BackfillRange {
        symbols: (!args.symbols.is_empty()).then(|| args.symbols.clone()),
        from: time("from", &args.from)?,
        to: time("to", &args.to)?,
        restart: args.restart,
    };
    let Some(narrowed) = pipeline.for_backfill(&range) else {
        anyhow::bail!(
            "{}: the pipeline has no history source (twelvedata_history, alphavantage, yahoo_history)",
            args.file.display()
        );
    };
    let status = RunStatus::default();
    engine::declare_metrics(&narrowed);
    let options = RunOptions {
        workers: args.workers,
        cluster: None,
        resources: Resources::default().with(Hub::default()),
        status: status.clone(),
        replay: None,
        resume: false,
    };
    let display = marketflow::progress::ProgressDisplay::start(status.clone());
    let result = engine::run(&narrowed, &options);
    display.finish();
    let summary = result?;
    let (mut symbols, mut pages, mut bars) = (0, 0, 0);
    for source in status.sources().values() {
        for p in source.history.values() {
            symbols += 1;
            pages += p.pages_done;
            bars += p.bars;
        }
    }
    println!(
        "backfill {}: {symbols} symbols, {pages} pages, {bars} bars in {:.1}s{}",
        pipeline.name,
        summary.seconds,
        if summary.interrupted {
            " (interrupted)"
        } else {
            ""
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// `marketflow replay`: the pipeline with one source replaced by its recording.
fn replay(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let pipeline = match load(&args.file) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let Some((name, from)) = args.source.split_once('=') else {
        anyhow::bail!(
            "--source {}: write NAME=store, NAME=file:PATH or NAME=kafka",
            args.source
        );
    };
    let from: marketflow::spec::ReplayFrom = from
        .parse()
        .map_err(|e: String| anyhow::anyhow!("--source: {e}"))?;
    let now = chrono::Utc::now().timestamp_millis();
    let time = |flag: &str, text: &Option<String>| time_flag(flag, text.as_deref(), now);
    let range = marketflow::connector::ReplayRange {
        from: time("from", &args.from)?,
        to: time("to", &args.to)?,
    };
    if let (Some(a), Some(b)) = (range.from, range.to) {
        anyhow::ensure!(a < b, "--to must be after --from");
    }
    let replayed = pipeline.for_replay(&marketflow::components::builtin(), name, &from, &range)?;
    let span = match (range.from, range.to) {
        (Some(a), Some(b)) => Some((a, b)),
        _ if from == marketflow::spec::ReplayFrom::Store => {
            recorded_span(&pipeline).map(|(a, b)| (range.from.unwrap_or(a), range.to.unwrap_or(b)))
        }
        _ => None,
    };
    let status = RunStatus::default();
    engine::declare_metrics(&replayed);
    let replay = std::sync::Arc::new(marketflow::connector::Replay::new(range, args.speed.0));
    let options = RunOptions {
        workers: args.workers,
        cluster: None,
        resources: Resources::default().with(Hub::default()),
        status: status.clone(),
        replay: Some((name.to_owned(), replay.clone())),
        resume: false,
    };
    let display = marketflow::progress::ReplayDisplay::start(status, name.to_owned(), span);
    let result = engine::run(&replayed, &options);
    display.finish();
    let summary = result?;
    let records = replay.records();
    println!(
        "replay {}: {records} records from {} in {:.1}s{}",
        pipeline.name,
        args.source.split_once('=').map_or("", |(_, f)| f),
        summary.seconds,
        if summary.interrupted {
            " (interrupted)"
        } else {
            ""
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// The first and last tick time the pipeline's store holds, for the replay's progress.
fn recorded_span(pipeline: &marketflow::spec::Pipeline) -> Option<(i64, i64)> {
    let location = pipeline.sinks.iter().find_map(|s| s.spec.store())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    runtime.block_on(async {
        let store = marketflow::store::Store::open(&location).await.ok()?;
        let spans = store.symbols(false).await.ok()?;
        let first = spans.iter().map(|s| s.first_ts).min()?;
        let last = spans.iter().map(|s| s.last_ts).max()?;
        Some((first, last + 1))
    })
}

/// A shutdown the first signal triggers (a second exits at once).
fn stop_on_signal(runtime: &tokio::runtime::Runtime) -> marketflow::shutdown::Shutdown {
    let stop = marketflow::shutdown::Shutdown::new();
    let first = stop.clone();
    marketflow::shutdown::watch_signals(runtime, move || {
        tracing::warn!("stopping: draining connections (signal again to exit at once)");
        first.trigger();
    });
    stop
}

/// Stops the server: requests in flight get a few seconds (a second signal exits at once),
/// and store reads still running on blocking threads are not waited for.
fn stop_server(runtime: tokio::runtime::Runtime, handle: server::ServerHandle) {
    runtime.block_on(handle.stop());
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
}

/// The tokio runtime the server runs on, apart from the pipeline's I/O runtime.
fn server_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        // Store reads are capped below this (SQLite: 8 queries and a health ping), so a
        // flood of requests queues instead of growing threads.
        .max_blocking_threads(16)
        .thread_name("marketflow-http")
        .enable_all()
        .build()
        .context("starting the server runtime")
}

/// Tells the user (and tests reading stdout) where to point a browser.
fn announce(scheme: &str, addr: std::net::SocketAddr) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "serving on {scheme}://{addr}/");
    let _ = out.flush();
}

/// Binds and starts the server of a pipeline before the pipeline runs, so a taken port
/// fails at once.
fn start_pipeline_server(
    pipeline: &Pipeline,
    config: &ServerConfig,
    (listen, insecure): (Option<std::net::SocketAddr>, bool),
    (hub, status): (&Hub, &RunStatus),
) -> anyhow::Result<(
    tokio::runtime::Runtime,
    server::ServerHandle,
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    marketflow::shutdown::Shutdown,
)> {
    let addr = listen.unwrap_or(config.listen.value.0);
    let listener = server::bind(addr).with_context(|| format!("listening on {addr}"))?;
    let store = config.store.as_ref().and_then(|name| {
        pipeline
            .sinks
            .iter()
            .find(|s| s.name == name.value)
            .and_then(|s| s.spec.store())
    });
    let mut state = ServerState::secured(config, store, hub.clone(), addr, insecure)?;
    state.pipeline = Some(pipeline.name.clone());
    state.run_status = status.clone();
    state.sources = pipeline
        .sources
        .iter()
        .map(|s| SourceInfo {
            name: s.name.clone(),
            kind: s.spec.type_name(),
            finite: s.spec.is_finite(),
        })
        .collect();
    let finished = state.pipeline_finished.clone();
    let scheme = state.scheme();
    let runtime = server_runtime()?;
    let handle = runtime.block_on(async { server::start(listener, state) })?;
    // Signals stop the server once the pipeline has ended (the engine watches its own).
    let stop = stop_on_signal(&runtime);
    announce(scheme, handle.addr);
    Ok((runtime, handle, finished, stop))
}

fn read_cluster(hostfile: &Path, processes: usize, process: usize) -> anyhow::Result<Cluster> {
    let text = std::fs::read_to_string(hostfile)
        .with_context(|| format!("reading {}", hostfile.display()))?;
    let addresses: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect();
    anyhow::ensure!(
        addresses.len() >= processes,
        "{} lists {} addresses for {processes} processes",
        hostfile.display(),
        addresses.len()
    );
    Ok(Cluster {
        addresses: addresses[..processes].to_vec(),
        process,
    })
}

fn migrate(
    url: &str,
    timescaledb: marketflow::store::postgres::TimescaleMode,
) -> anyhow::Result<ExitCode> {
    use marketflow::store::{postgres, sqlite, Location};
    let (mode, applied, already) = match Location::parse(url) {
        Location::Postgres(url) => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let report = runtime.block_on(async {
                let mut client = postgres::connect(&url)
                    .await
                    .with_context(|| format!("connecting to {}", postgres::describe(&url)))?;
                postgres::migrate(&mut client, timescaledb)
                    .await
                    .context("applying migrations")
            })?;
            println!(
                "database: {} (PostgreSQL {})",
                postgres::describe(&url),
                report.server_version
            );
            (report.mode(), report.applied, report.already)
        }
        Location::Sqlite(path) => {
            let mut conn = sqlite::open(&path)?;
            let applied = sqlite::migrate(&mut conn)?;
            let already = sqlite::MIGRATIONS
                .iter()
                .map(|m| m.1.to_owned())
                .filter(|m| !applied.contains(m))
                .collect();
            println!("database: {} (SQLite)", path.display());
            (
                "SQLite (retention by the engine)".to_owned(),
                applied,
                already,
            )
        }
    };
    println!("mode: {mode}");
    for name in &applied {
        println!("applied: {name}");
    }
    for name in &already {
        println!("already applied: {name}");
    }
    Ok(ExitCode::SUCCESS)
}

/// jemalloc gives memory back after a burst (its dirty pages decay in about 10 s); glibc's
/// malloc kept the demo's burst resident for as long as it ran (docs/architecture.md).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
