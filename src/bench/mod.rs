//! `marketflow bench`: ticks/s from a generated CSV file through 1m -> 5m -> 1d bars into
//! a null sink, for 1 and 2 workers, against a plain single-threaded loop (parse and
//! hash-map bucketing) measured in the same run. Each measurement runs in its own
//! process so that its peak RSS is its own.

pub mod kafka;
pub mod server;

/// The default set of architecture.md's example pipeline (before `mod scaling`, which
/// uses it too).
macro_rules! default_indicators {
    () => {
        "    indicators:
      - sma: {period: 20}
      - ema: {period: 20}
      - rsi: {period: 14}
      - macd: {fast: 12, slow: 26, signal: 9}
      - bollinger: {period: 20, stddev: 2}
      - atr: {period: 14}
      - stochastic: {k: 14, k_smooth: 3, d: 3}
      - stddev: {period: 20}
      - vwap: {}
"
    };
}
mod scaling;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context as _};
use marketflow_operators::time::{parse_timestamp, DAY, MINUTE};
use marketflow_operators::{Record, Symbol};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::codec::write_record_csv;
use crate::engine::{self, RunOptions};
use crate::metrics::metrics;
use crate::sources::synthetic::{Market, SyntheticConfig};
use crate::spec;

/// Arguments of `marketflow bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Number of symbols.
    #[arg(long, default_value_t = 100)]
    pub symbols: usize,
    /// Ticks in the generated file, over all symbols.
    #[arg(long, default_value_t = 2_000_000)]
    pub ticks: u64,
    /// Ticks per second of event time for each symbol: 10 gives 600 ticks per 1m bar,
    /// 0.1 gives 6 (sparse symbols make the indicator share of the work larger).
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
    /// Worker counts to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    pub workers: Vec<usize>,
    /// Runs of each measurement; the fastest counts.
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// Where to write the generated file (default: the system temp directory).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Only measure the cost of checkpoints (every 1 s and 100 ms against none).
    #[arg(long)]
    pub checkpoints_only: bool,
    /// Only measure late-record policies: `late: drop` against `late: revise` (1 worker,
    /// 1m -> 5m -> 1d bars and 9 indicators on the 1m bars).
    #[arg(long)]
    pub late_only: bool,
    /// Only print the scaling table: a light and a heavy pipeline into the null, file and
    /// PostgreSQL sinks at each worker count.
    #[arg(long)]
    pub scaling_only: bool,
    /// PostgreSQL server for the scaling table's postgres sink (a scratch database is
    /// created on it and dropped); without it that sink is skipped.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Internal: measure one mode in this process and print JSON.
    #[arg(long, hide = true)]
    pub child: Option<String>,
    #[arg(long, hide = true)]
    pub file: Option<PathBuf>,
}

/// One measurement, as a child process reports it.
#[derive(Serialize, Deserialize, Debug, Clone)]
struct Measurement {
    seconds: f64,
    peak_rss_kb: u64,
    bars: u64,
    /// Seconds each worker spent working (not parked).
    #[serde(default)]
    worker_busy: Vec<f64>,
    /// Checkpoints committed.
    #[serde(default)]
    checkpoints: u64,
    /// User and system CPU seconds of the process during the run.
    #[serde(default)]
    cpu_seconds: f64,
}

impl Measurement {
    /// Each worker's busy share of the run, as `w0 93%, w1 88%`.
    fn utilisation(&self) -> String {
        self.worker_busy
            .iter()
            .enumerate()
            .map(|(i, busy)| format!("w{i} {:.0}%", busy * 100.0 / self.seconds))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    if let Some(mode) = &args.child {
        let file = args.file.as_deref().context("--child needs --file")?;
        let measurement = match mode.as_str() {
            "baseline" => baseline(file)?,
            "bars-1m" => engine_run(file, 1, 1, BARS_1M)?,
            "indicators" => engine_run(file, 1, 1, INDICATORS_1M)?,
            "late-drop" => engine_run(file, 1, 1, &late_graph(""))?,
            "late-revise" => engine_run(file, 1, 1, &late_graph(", late: revise, revise_for: 1m"))?,
            other if other.starts_with("scale-") => scaling::child(other, file)?,
            other if other.starts_with("checkpoints-") => {
                // checkpoints-MS: 2 workers, the indicators graph, a checkpoint every MS
                // (0: none).
                let ms: u64 = other["checkpoints-".len()..]
                    .parse()
                    .context("checkpoint interval")?;
                let mut graph = INDICATORS_1M.to_owned();
                let store = std::env::temp_dir().join(format!(
                    "marketflow-bench-recovery-{}.db",
                    std::process::id()
                ));
                if ms > 0 {
                    graph.push_str(&format!(
                        "recovery: {{path: {:?}, checkpoint_interval: {ms}ms}}\n",
                        store.display().to_string()
                    ));
                }
                let m = engine_run(file, 2, 1, &graph);
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", store.display()));
                }
                m?
            }
            other => {
                // engine-W (one file partition) or engine-W-pP.
                let mut parts = other
                    .strip_prefix("engine-")
                    .unwrap_or_default()
                    .split("-p");
                let workers: usize = parts
                    .next()
                    .and_then(|w| w.parse().ok())
                    .context("unknown child mode")?;
                let partitions: usize = parts.next().and_then(|p| p.parse().ok()).unwrap_or(1);
                engine_run(file, workers, partitions, CASCADE)?
            }
        };
        println!("{}", serde_json::to_string(&measurement)?);
        return Ok(());
    }

    let dir = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&dir)?;
    if args.scaling_only {
        return scaling::section(
            &args.workers,
            args.repeat,
            (&dir, args.dir.is_some()),
            args.database_url.as_deref(),
        );
    }
    let file = dir.join(format!(
        "marketflow-bench-{}x{}-{}.csv",
        args.symbols, args.ticks, args.rate
    ));
    let started = Instant::now();
    generate(&file, args.symbols, args.ticks, args.rate)?;
    let size_mb = std::fs::metadata(&file)?.len() as f64 / 1e6;
    println!(
        "marketflow bench: {} symbols x {} ticks at {}/s each ({size_mb:.1} MB CSV, generated in {:.1}s), 1m -> 5m -> 1d bars, best of {}",
        args.symbols,
        args.ticks,
        args.rate,
        started.elapsed().as_secs_f64(),
        args.repeat
    );
    println!(
        "{:<34} {:>12} {:>9} {:>11} {:>12}",
        "mode", "ticks/s", "ns/tick", "peak RSS", "vs baseline"
    );
    let base = best_of(args.repeat, || child("baseline", &file))?;
    let report = |name: &str, m: &Measurement| {
        let rate = args.ticks as f64 / m.seconds;
        println!(
            "{name:<34} {:>12} {:>9.1} {:>8} MB {:>11.2}x",
            thousands(rate as u64),
            m.seconds * 1e9 / args.ticks as f64,
            m.peak_rss_kb / 1024,
            base.seconds / m.seconds
        );
    };
    report("baseline (plain loop)", &base);
    if args.late_only {
        return late_section(args, &file, &report);
    }
    if !args.checkpoints_only {
        engine_sections(args, &file, &base, &report)?;
    }
    println!("checkpoint cost, 2 workers, ticks -> 1m bars -> 9 indicators (state of every open window and kernel saved, sinks acknowledged):");
    let measured = best_of_each(
        args.repeat,
        &["checkpoints-0", "checkpoints-1000", "checkpoints-100"],
        &file,
    )?;
    let [none, every_1000, every_100] = measured.as_slice() else {
        bail!(
            "three checkpoint modes measured, {} results",
            measured.len()
        );
    };
    report("no checkpoints", none);
    for (ms, m) in [(1000, every_1000), (100, every_100)] {
        report(&format!("a checkpoint every {ms} ms"), m);
        println!(
            "{:<34} {} checkpoints, overhead {:+.1}% over none",
            "",
            m.checkpoints,
            (m.seconds / none.seconds - 1.0) * 100.0
        );
        if m.bars != none.bars {
            bail!(
                "with checkpoints the engine made {} records where it made {} without",
                m.bars,
                none.bars
            );
        }
    }
    if args.dir.is_none() {
        let _ = std::fs::remove_file(&file);
    }
    scaling::section(
        &args.workers,
        args.repeat,
        (&dir, args.dir.is_some()),
        args.database_url.as_deref(),
    )
}

/// The engine's modes against the baseline, and the indicators' share.
fn engine_sections(
    args: &BenchArgs,
    file: &Path,
    base: &Measurement,
    report: &dyn Fn(&str, &Measurement),
) -> anyhow::Result<()> {
    let file = file.to_path_buf();
    let mut modes: Vec<(String, String)> = args
        .workers
        .iter()
        .map(|&w| {
            let name = format!("engine, {w} worker{}", if w == 1 { "" } else { "s" });
            (name, format!("engine-{w}"))
        })
        .collect();
    if let Some(&w) = args.workers.iter().filter(|&&w| w > 1).max() {
        // The file read as one partition per worker: the reading is spread too.
        modes.push((
            format!("engine, {w} workers, {w} partitions"),
            format!("engine-{w}-p{w}"),
        ));
    }
    for (name, mode) in &modes {
        let m = best_of(args.repeat, || child(mode, &file))?;
        report(name, &m);
        println!("{:<34} worker utilisation: {}", "", m.utilisation());
        if m.bars != base.bars {
            bail!(
                "the engine made {} bars where the baseline made {}",
                m.bars,
                base.bars
            );
        }
    }
    println!("bars per run: {} (engine and baseline agree)", base.bars);

    println!("end to end with indicators, 1 worker: ticks -> 1m bars -> the default 9 indicators");
    let bars_only = best_of(args.repeat, || child("bars-1m", &file))?;
    report("ticks -> 1m bars", &bars_only);
    let with_indicators = best_of(args.repeat, || child("indicators", &file))?;
    report("ticks -> 1m bars -> 9 indicators", &with_indicators);
    println!(
        "indicator overhead: {:+.1}% over bars alone ({} records out: bars and indicator rows)",
        (with_indicators.seconds / bars_only.seconds - 1.0) * 100.0,
        thousands(with_indicators.bars)
    );
    Ok(())
}

/// `late: drop` against `late: revise` on the same graph.
fn late_section(
    args: &BenchArgs,
    file: &Path,
    report: &dyn Fn(&str, &Measurement),
) -> anyhow::Result<()> {
    println!("late records, 1 worker: ticks -> 1m -> 5m -> 1d bars, 9 indicators on the 1m bars:");
    let measured = best_of_each(args.repeat, &["late-drop", "late-revise"], file)?;
    let [drop, revise] = measured.as_slice() else {
        bail!("two late modes measured, {} results", measured.len());
    };
    report("late: drop", drop);
    report("late: revise, revise_for: 1m", revise);
    println!(
        "revise costs {:+.1}% over drop ({} and {} records out)",
        (revise.seconds / drop.seconds - 1.0) * 100.0,
        thousands(revise.bars),
        thousands(drop.bars)
    );
    Ok(())
}

fn best_of(
    runs: usize,
    mut measure: impl FnMut() -> anyhow::Result<Measurement>,
) -> anyhow::Result<Measurement> {
    let mut best: Option<Measurement> = None;
    for _ in 0..runs.max(1) {
        let m = measure()?;
        if best.as_ref().is_none_or(|b| m.seconds < b.seconds) {
            best = Some(m);
        }
    }
    best.context("no runs")
}

/// The fastest of `runs` runs of each mode, taken in turns (one run of each mode a round),
/// so that a machine whose speed drifts during the bench skews no mode against another.
fn best_of_each(runs: usize, modes: &[&str], file: &Path) -> anyhow::Result<Vec<Measurement>> {
    let mut best: Vec<Option<Measurement>> = modes.iter().map(|_| None).collect();
    for _ in 0..runs.max(1) {
        for (mode, best) in modes.iter().zip(&mut best) {
            let m = child(mode, file)?;
            if best.as_ref().is_none_or(|b| m.seconds < b.seconds) {
                *best = Some(m);
            }
        }
    }
    best.into_iter().map(|m| m.context("no runs")).collect()
}

fn child(mode: &str, file: &Path) -> anyhow::Result<Measurement> {
    let mut command = Command::new(std::env::current_exe()?);
    command
        .args(["--log", "warn", "bench", "--child", mode, "--file"])
        .arg(file);
    measured_by(command, mode)
}

/// Runs a bench child and reads its measurement.
fn measured_by(mut command: Command, mode: &str) -> anyhow::Result<Measurement> {
    let output = command.output().context("starting a bench child process")?;
    if !output.status.success() {
        bail!(
            "bench {mode} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line)
        .with_context(|| format!("reading the result of bench {mode}: {line}"))
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Writes `ticks` synthetic ticks over `symbols` symbols as CSV.
fn generate(path: &Path, symbols: usize, ticks: u64, rate: f64) -> anyhow::Result<()> {
    let mut market = bench_market(symbols, ticks, rate)?;
    let mut out = BufWriter::with_capacity(
        1 << 20,
        File::create(path).with_context(|| format!("creating {}", path.display()))?,
    );
    writeln!(out, "ts,symbol,price,volume")?;
    let mut line = Vec::with_capacity(64);
    for _ in 0..ticks {
        let Some(tick) = market.next_arrival(i64::MAX) else {
            break;
        };
        line.clear();
        write_record_csv(&mut line, &Record::Tick(tick));
        out.write_all(&line)?;
    }
    out.flush()?;
    Ok(())
}

/// The seeded market the benchmarks read: `symbols` symbols at `rate` ticks/s each.
pub(crate) fn bench_market(symbols: usize, ticks: u64, rate: f64) -> anyhow::Result<Market> {
    let names: Vec<String> = (0..symbols).map(|i| format!("SYM{i:04}")).collect();
    let yaml = format!(
        "symbols: [{}]\nseed: 1\nrate: {rate}\ncount: {ticks}\n",
        names.join(", ")
    );
    let node = crate::config::yaml::parse(&yaml).map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let config: SyntheticConfig =
        crate::config::de::from_node(&node, "bench").map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(Market::new(&config, 1_704_153_600_000))
}

/// Running OHLCV of the plain loop.
#[derive(Clone, Copy)]
struct Agg {
    open: (i64, f64),
    close: (i64, f64),
    high: f64,
    low: f64,
    volume: f64,
}

impl Agg {
    fn new(ts: i64, price: f64, volume: f64) -> Agg {
        Agg {
            open: (ts, price),
            close: (ts, price),
            high: price,
            low: price,
            volume,
        }
    }

    fn merge(&mut self, other: &Agg) {
        if other.open.0 < self.open.0 {
            self.open = other.open;
        }
        if other.close.0 >= self.close.0 {
            self.close = other.close;
        }
        self.high = self.high.max(other.high);
        self.low = self.low.min(other.low);
        self.volume += other.volume;
    }
}

/// The plain single-threaded loop: parse every row, bucket into 1m bars in a hash map,
/// then roll 1m into 5m and 1d.
fn baseline(path: &Path) -> anyhow::Result<Measurement> {
    let started = Instant::now();
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(BufReader::with_capacity(1 << 20, File::open(path)?));
    let mut record = csv::ByteRecord::new();
    let mut minutes: FxHashMap<(Symbol, i64), Agg> = FxHashMap::default();
    while reader.read_byte_record(&mut record)? {
        let field =
            |i: usize| std::str::from_utf8(record.get(i).unwrap_or_default()).unwrap_or_default();
        let ts = parse_timestamp(field(0))?;
        let symbol = Symbol::new(field(1))?;
        let price: f64 = field(2).parse()?;
        let volume: f64 = field(3).parse()?;
        let tick = Agg::new(ts, price, volume);
        minutes
            .entry((symbol, ts - ts.rem_euclid(MINUTE)))
            .and_modify(|a| a.merge(&tick))
            .or_insert(tick);
    }
    let mut coarser: BTreeMap<(i64, Symbol, i64), Agg> = BTreeMap::new();
    for ((symbol, start), agg) in &minutes {
        for width in [5 * MINUTE, DAY] {
            coarser
                .entry((width, symbol.clone(), start - start.rem_euclid(width)))
                .and_modify(|a| a.merge(agg))
                .or_insert(*agg);
        }
    }
    let bars = (minutes.len() + coarser.len()) as u64;
    Ok(Measurement {
        seconds: started.elapsed().as_secs_f64(),
        peak_rss_kb: peak_rss_kb(),
        bars,
        worker_busy: Vec::new(),
        checkpoints: 0,
        cpu_seconds: 0.0,
    })
}

/// The operators and sink of each engine measurement; the source is always `ticks`.
const CASCADE: &str = "
operators:
  bars_1m: {type: bars, from: ticks, interval: 1m}
  bars_5m: {type: bars, from: bars_1m, interval: 5m}
  bars_1d: {type: bars, from: bars_5m, interval: 1d}
sinks:
  out: {type: null, from: [bars_1m, bars_5m, bars_1d]}
";
const BARS_1M: &str = "
operators:
  bars_1m: {type: bars, from: ticks, interval: 1m}
sinks:
  out: {type: null, from: bars_1m}
";
const INDICATORS_1M: &str = concat!(
    "
operators:
  bars_1m: {type: bars, from: ticks, interval: 1m}
  ta_1m:
    type: indicators
    from: bars_1m
",
    default_indicators!(),
    "sinks:
  out: {type: null, from: [bars_1m, ta_1m]}
"
);

/// The cascade with indicators, its 1m bars taking `late` settings.
fn late_graph(late: &str) -> String {
    format!(
        "operators:
  bars_1m: {{type: bars, from: ticks, interval: 1m{late}}}
  bars_5m: {{type: bars, from: bars_1m, interval: 5m}}
  bars_1d: {{type: bars, from: bars_5m, interval: 1d}}
  ta_1m:
    type: indicators
    from: bars_1m
{}sinks:
  out: {{type: null, from: [bars_1m, bars_5m, bars_1d, ta_1m]}}
",
        default_indicators!()
    )
}

fn engine_run(
    path: &Path,
    workers: usize,
    partitions: usize,
    graph: &str,
) -> anyhow::Result<Measurement> {
    let yaml = format!(
        "pipeline: bench\nsources:\n  ticks: {{type: file, path: {:?}, partitions: {partitions}}}\n{graph}",
        path.display().to_string()
    );
    let pipeline =
        spec::load_str("bench.yaml", &yaml, &|_| None).map_err(|e| anyhow::anyhow!("{e}"))?;
    let started = Instant::now();
    let cpu_at_start = process_cpu_seconds();
    let summary = engine::run(
        &pipeline,
        &RunOptions {
            workers: Some(workers),
            ..RunOptions::default()
        },
    )?;
    let seconds = started.elapsed().as_secs_f64();
    let cpu_seconds = process_cpu_seconds() - cpu_at_start;
    let bars = metrics().sink_records.with_label_values(&["out"]).get();
    Ok(Measurement {
        seconds,
        peak_rss_kb: peak_rss_kb(),
        bars,
        worker_busy: summary.worker_busy,
        checkpoints: metrics().checkpoints.get(),
        cpu_seconds,
    })
}

/// User and system CPU seconds of this process so far.
fn process_cpu_seconds() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given; on failure it is left zeroed.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// Arguments of `marketflow bench-store`.
#[derive(clap::Args, Debug, Clone)]
pub struct StoreBenchArgs {
    /// PostgreSQL server to measure (a scratch database is created on it and dropped).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Bars written through each fast path.
    #[arg(long, default_value_t = 1_000_000)]
    pub rows: usize,
    /// Bars written one INSERT per row (the seed's way); its rate is steady, so a sample
    /// keeps the run short. Set it to --rows to measure everything.
    #[arg(long, default_value_t = 50_000)]
    pub per_row_rows: usize,
    /// Rows per transaction of the batched paths (the sinks' default).
    #[arg(long, default_value_t = 50_000)]
    pub batch: usize,
}

/// 1-minute bars over 1,000 symbols.
fn bench_bars(rows: usize) -> Vec<Record> {
    const T0: i64 = 1_704_205_800_000;
    (0..rows)
        .map(|i| {
            let symbol = Symbol::new(&format!("SYM{:04}", i % 1000)).expect("valid symbol");
            let start = T0 + (i / 1000) as i64 * MINUTE;
            let close = 100.0 + (i % 997) as f64 / 10.0;
            Record::Bar(marketflow_operators::Bar {
                symbol,
                interval: marketflow_operators::Interval::M1,
                start,
                end: start + MINUTE,
                open: close - 0.5,
                high: close + 1.0,
                low: close - 1.0,
                close,
                volume: marketflow_operators::fixed::Fixed::from_f64(1000.0),
                notional: marketflow_operators::fixed::Fixed::from_f64(1000.0 * close),
                trades: 42,
                revision: 0,
                seq: 0,
                wm: start,
                source: Default::default(),
            })
        })
        .collect()
}

fn batches(records: &[Record], size: usize) -> Vec<crate::store::Batch> {
    records
        .chunks(size.max(1))
        .map(|chunk| {
            let mut batch = crate::store::Batch::default();
            chunk.iter().cloned().for_each(|r| batch.push(r));
            batch
        })
        .collect()
}

pub fn run_store(args: &StoreBenchArgs) -> anyhow::Result<()> {
    use crate::store::{postgres as pg, sqlite};
    let records = bench_bars(args.rows);
    println!(
        "marketflow bench-store: {} one-minute bars over 1,000 symbols, {} rows per transaction",
        thousands(args.rows as u64),
        thousands(args.batch as u64)
    );
    println!(
        "{:<44} {:>12} {:>10} {:>12}",
        "path", "rows", "seconds", "rows/s"
    );
    let report = |name: &str, rows: usize, seconds: f64| {
        println!(
            "{name:<44} {:>12} {seconds:>10.2} {:>12}",
            thousands(rows as u64),
            thousands((rows as f64 / seconds) as u64)
        );
        rows as f64 / seconds
    };

    // SQLite: a scratch file with the store's settings.
    let dir = tempfile_dir()?;
    let path = dir.join("bench.db");
    let mut conn = sqlite::open(&path)?;
    sqlite::migrate(&mut conn)?;
    let work = batches(&records, args.batch);
    let started = Instant::now();
    for batch in &work {
        sqlite::write(&mut conn, batch)?;
    }
    let sqlite_rate = report(
        "sqlite (upsert, one transaction per batch)",
        args.rows,
        started.elapsed().as_secs_f64(),
    );
    drop(conn);
    let _ = std::fs::remove_dir_all(&dir);

    let Some(url) = &args.database_url else {
        println!("postgres: skipped (give --database-url or DATABASE_URL)");
        return Ok(());
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let name = format!("marketflow_bench_{}", std::process::id());
        let (admin, scratch_url) = fresh_database(url, &name).await?;
        let result = async {
            let mut client = pg::connect(&scratch_url).await?;
            let mode = pg::migrate(&mut client, pg::TimescaleMode::Auto)
                .await?
                .mode();
            println!("postgres: {} ({mode})", pg::describe(url));
            let mut writer = pg::PgWriter::new(client).await?;
            let started = Instant::now();
            for batch in &work {
                writer.write(batch).await?;
            }
            let copy_rate = report(
                "postgres binary COPY + upsert",
                args.rows,
                started.elapsed().as_secs_f64(),
            );
            writer
                .client()
                .batch_execute("TRUNCATE intraday_ohlcv")
                .await?;

            let sample: Vec<marketflow_operators::Bar> = records
                .iter()
                .take(args.per_row_rows)
                .filter_map(|r| match r {
                    Record::Bar(b) => Some(b.clone()),
                    _ => None,
                })
                .collect();
            let started = Instant::now();
            pg::insert_bars_one_by_one(writer.client(), &sample).await?;
            let row_rate = report(
                "postgres one INSERT per row (the seed's way)",
                sample.len(),
                started.elapsed().as_secs_f64(),
            );
            println!(
                "COPY path vs one INSERT per row: {:.1}x; sqlite: {} rows/s",
                copy_rate / row_rate,
                thousands(sqlite_rate as u64)
            );
            anyhow::Ok(())
        }
        .await;
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await?;
        result
    })
}

/// An empty database `name` on the server at `url` (dropped first if a past run left it);
/// returns a connection to the server for dropping it later, and the database's URL.
async fn fresh_database(url: &str, name: &str) -> anyhow::Result<(tokio_postgres::Client, String)> {
    use crate::store::postgres as pg;
    let admin = pg::connect(url)
        .await
        .with_context(|| format!("connecting to {}", pg::describe(url)))?;
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
        .await?;
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await?;
    Ok((admin, pg::with_database(url, name)))
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("marketflow-bench-store-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
