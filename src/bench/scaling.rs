//! The scaling table of `marketflow bench`: a light and a heavy pipeline into the null, file
//! and PostgreSQL sinks, with 1 and more workers, in the same run: ticks/s, CPU seconds per
//! million ticks, speed-up over one worker and efficiency (speed-up / workers). Each
//! measurement runs in a child process, so that its CPU time is its own.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context as _};

use super::{best_of, generate, thousands, Measurement};

/// A pipeline measured for scaling, and the tick file it reads.
struct Load {
    name: &'static str,
    symbols: usize,
    ticks: u64,
    /// Ticks a second of event time per symbol.
    rate: f64,
    /// Its operators, on the source `ticks`; the sink reads `SINK_INPUTS`.
    operators: &'static str,
}

/// What every sink of the table reads.
const SINK_INPUTS: &str = "[bars_1m, ta_1m]";

const LOADS: [Load; 2] = [
    Load {
        name: "light",
        symbols: 50,
        ticks: 1_000_000,
        rate: 10.0,
        operators: "
  bars_1m: {type: bars, from: ticks, interval: 1m}
  ta_1m: {type: indicators, from: bars_1m, indicators: [ema: {period: 20}]}
",
    },
    Load {
        name: "heavy",
        symbols: 2_000,
        ticks: 2_000_000,
        rate: 0.25,
        operators: concat!(
            "
  bars_1m: {type: bars, from: ticks, interval: 1m}
  ta_1m:
    type: indicators
    from: bars_1m
",
            default_indicators!(),
            "      - obv: {}\n"
        ),
    },
];

/// Partitions of the tick file (every run reads it as two, whatever its worker count).
const PARTITIONS: usize = 2;

/// The sinks measured; `postgres` only with a database.
const SINKS: [&str; 3] = ["null", "file", "postgres"];

/// The environment variable that hands a child the scratch database.
const DATABASE_ENV: &str = "MARKETFLOW_BENCH_SCALING_DATABASE";

/// A child's mode: `scale-LOAD-SINK-WORKERS`.
fn mode(load: &Load, sink: &str, workers: usize) -> String {
    format!("scale-{}-{sink}-{workers}", load.name)
}

/// Measures one mode in this process (a child).
pub fn child(mode: &str, file: &Path) -> anyhow::Result<Measurement> {
    let mut parts = mode.strip_prefix("scale-").unwrap_or_default().split('-');
    let (Some(load), Some(sink), Some(workers)) = (parts.next(), parts.next(), parts.next()) else {
        bail!("unknown scaling mode {mode}");
    };
    let load = LOADS
        .iter()
        .find(|l| l.name == load)
        .with_context(|| format!("unknown load in {mode}"))?;
    let workers: usize = workers.parse().context("worker count")?;
    let out = file.with_extension(format!("out-{}.jsonl", std::process::id()));
    let sink = match sink {
        "null" => "{type: null, from: SINKS}".to_owned(),
        "file" => format!(
            "{{type: file, path: {:?}, from: SINKS}}",
            out.display().to_string()
        ),
        "postgres" => {
            let url = std::env::var(DATABASE_ENV).context("no scratch database for the child")?;
            format!("{{type: postgres, url: {url:?}, migrate: false, retention: off, from: SINKS}}")
        }
        other => bail!("unknown sink {other}"),
    };
    let graph = format!(
        "operators:{}sinks:\n  out: {}\n",
        load.operators,
        sink.replace("SINKS", SINK_INPUTS)
    );
    let measured = super::engine_run(file, workers, PARTITIONS, &graph);
    let _ = std::fs::remove_file(&out);
    measured
}

/// Prints the scaling table: every load, sink and worker count in `workers`. The tick
/// files are generated in `dir`, and kept there when `keep`.
pub fn section(
    workers: &[usize],
    repeat: usize,
    (dir, keep): (&Path, bool),
    database_url: Option<&str>,
) -> anyhow::Result<()> {
    let scratch = database_url.map(Scratch::create).transpose()?;
    let result = table(workers, repeat, (dir, keep), scratch.as_ref());
    if let Some(scratch) = scratch {
        scratch.drop_database()?;
    }
    result
}

fn table(
    workers: &[usize],
    repeat: usize,
    (dir, keep): (&Path, bool),
    scratch: Option<&Scratch>,
) -> anyhow::Result<()> {
    println!(
        "scaling: {PARTITIONS} file partitions, best of {repeat}; CPU s/M = user + system CPU seconds of the whole process per million ticks"
    );
    if scratch.is_none() {
        println!("scaling: postgres sink skipped (give --database-url or DATABASE_URL)");
    }
    println!(
        "{:<7} {:<9} {:>7} {:>12} {:>8} {:>9} {:>10} {:>10} {:>10}",
        "load",
        "sink",
        "workers",
        "ticks/s",
        "CPU s/M",
        "peak RSS",
        "speed-up",
        "efficiency",
        "records"
    );
    for load in &LOADS {
        let file = dir.join(format!(
            "marketflow-bench-{}x{}-{}.csv",
            load.symbols, load.ticks, load.rate
        ));
        if !(keep && file.exists()) {
            generate(&file, load.symbols, load.ticks, load.rate)?;
        }
        for sink in SINKS {
            if sink == "postgres" && scratch.is_none() {
                continue;
            }
            let mut one: Option<Measurement> = None;
            for &w in workers {
                let m = best_of(repeat, || {
                    if let Some(s) = scratch.filter(|_| sink == "postgres") {
                        s.truncate()?;
                    }
                    run_child(&mode(load, sink, w), &file, scratch)
                })?;
                let base = one.get_or_insert_with(|| m.clone());
                if m.bars != base.bars {
                    bail!(
                        "{} into {sink}: {w} workers wrote {} records where {} wrote {}",
                        load.name,
                        m.bars,
                        workers[0],
                        base.bars
                    );
                }
                let speed_up = base.seconds / m.seconds;
                println!(
                    "{:<7} {:<9} {:>7} {:>12} {:>8.2} {:>6} MB {:>9.2}x {:>9.0}% {:>10}",
                    load.name,
                    sink,
                    w,
                    thousands((load.ticks as f64 / m.seconds) as u64),
                    m.cpu_seconds * 1e6 / load.ticks as f64,
                    m.peak_rss_kb / 1024,
                    speed_up,
                    speed_up / w as f64 * workers[0] as f64 * 100.0,
                    thousands(m.bars)
                );
            }
        }
        if !keep {
            let _ = std::fs::remove_file(&file);
        }
    }
    Ok(())
}

fn run_child(mode: &str, file: &Path, scratch: Option<&Scratch>) -> anyhow::Result<Measurement> {
    let exe = std::env::current_exe()?;
    let mut command = Command::new(exe);
    command
        .args(["--log", "warn", "bench", "--child", mode, "--file"])
        .arg(file);
    if let Some(s) = scratch {
        command.env(DATABASE_ENV, &s.url);
    }
    super::measured_by(command, mode)
}

/// A database made for the bench on the given server, migrated once, emptied before each
/// run and dropped at the end.
struct Scratch {
    admin_url: String,
    name: String,
    url: String,
    runtime: tokio::runtime::Runtime,
}

impl Scratch {
    fn create(url: &str) -> anyhow::Result<Scratch> {
        use crate::store::postgres as pg;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let name = format!("marketflow_bench_scaling_{}", std::process::id());
        let scratch_url = runtime.block_on(async {
            let (_, scratch_url) = super::fresh_database(url, &name).await?;
            let mut client = pg::connect(&scratch_url).await?;
            let report = pg::migrate(&mut client, pg::TimescaleMode::Auto).await?;
            println!(
                "scaling: postgres sink into {} ({})",
                pg::describe(url),
                report.mode()
            );
            anyhow::Ok(scratch_url)
        })?;
        Ok(Scratch {
            admin_url: url.to_owned(),
            name,
            url: scratch_url,
            runtime,
        })
    }

    /// Empties the tables the runs write.
    fn truncate(&self) -> anyhow::Result<()> {
        self.runtime.block_on(async {
            let client = crate::store::postgres::connect(&self.url).await?;
            client
                .batch_execute("TRUNCATE intraday_ohlcv, historical_ohlcv, intraday_analytics, daily_analytics, realtime_analytics, realtime_prices")
                .await?;
            anyhow::Ok(())
        })
    }

    fn drop_database(self) -> anyhow::Result<()> {
        self.runtime.block_on(async {
            let admin = crate::store::postgres::connect(&self.admin_url).await?;
            admin
                .batch_execute(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    self.name
                ))
                .await?;
            anyhow::Ok(())
        })
    }
}
