//! Checkpoints and `marketflow run --resume`: a run killed with SIGKILL at random moments
//! and resumed each time ends with the output file and database of an uninterrupted run,
//! byte for byte; a pipeline changed since its checkpoints refuses to resume, naming what
//! changed.

mod support;

use std::io::Write as _;
use std::path::Path;

use support::*;

const TICKS: u64 = 2_000_000;

/// `TICKS` ticks of 20 symbols, up to 3 s out of order against a 2 s `max_delay` (so some
/// are late), 30 ms apart.
fn write_ticks(path: &Path) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    writeln!(out, "ts,symbol,price,volume").unwrap();
    let mut rng = Lcg(11);
    let mut prices = [100.0f64; 20];
    let start = ms("2024-01-02T14:30:00Z");
    for i in 0..TICKS {
        let s = rng.below(20) as usize;
        prices[s] = (prices[s] + (rng.below(5) as f64 - 2.0) / 100.0).max(1.0);
        let ts = start + i as i64 * 30 - rng.below(3_000) as i64;
        writeln!(out, "{ts},S{s:02},{:.2},{}", prices[s], 1 + rng.below(300)).unwrap();
    }
}

fn pipeline(recovery: &str, sma: u32) -> String {
    format!(
        "pipeline: recovered
workers: 2
{recovery}sources:
  ticks: {{type: file, path: ticks.csv, max_delay: 2s}}
operators:
  bars_1m: {{type: bars, from: ticks, interval: 1m}}
  bars_5m: {{type: bars, from: bars_1m, interval: 5m}}
  ta: {{type: indicators, from: bars_1m, indicators: [{{sma: {{period: {sma}}}}}, {{ema: {{period: 12}}}}, {{rsi: {{period: 14}}}}, {{macd: {{fast: 12, slow: 26, signal: 9}}}}, {{bollinger: {{period: 20, stddev: 2}}}}, {{atr: {{period: 14}}}}]}}
sinks:
  out: {{type: file, path: out/out.jsonl, from: [bars_1m, bars_5m, ta]}}
  db: {{type: sqlite, path: out/store.db, from: [ticks, bars_1m, bars_5m, ta]}}
"
    )
}

const RECOVERY: &str = "recovery: {path: out/recovery.db, checkpoint_interval: 100ms}\n";

#[test]
fn killed_five_times_and_resumed_equals_an_uninterrupted_run() {
    let dir = scratch();
    write_ticks(&dir.path().join("ticks.csv"));

    // The reference: no checkpoints, never interrupted.
    let (reference_time, reference) = resume::reference_run(dir.path(), &pipeline("", 20));
    assert!(
        reference.lines.len() > 100_000,
        "{} lines",
        reference.lines.len()
    );

    write(dir.path(), "pipeline.yaml", &pipeline(RECOVERY, 20));
    let runs = resume::killed_and_resumed(dir.path(), 5, reference_time, 0x5eed);
    let rest = runs.final_resumed.map_or(TICKS, |r| TICKS - r);
    // A resumed run reads again what its killed predecessor had read past its last
    // checkpoint: at most the records between two checkpoints.
    let per_interval = TICKS as f64 / reference_time.as_secs_f64() / 10.0;
    println!(
        "final run: resumed from record {} of {TICKS}, read the last {rest}; checkpoints were at most {} records apart, and one 100 ms interval is {per_interval:.0} records at the uninterrupted run's rate",
        runs.final_resumed.unwrap_or(0),
        runs.widest.map_or("-".into(), |w| w.to_string()),
    );
    assert!(
        runs.any_resumed(),
        "no run resumed from a checkpoint: {:?}",
        runs.resumed_from
    );

    let dir = runs.assert_same(dir, &reference, "the pipeline's output");
    let out = dir.path().join("out");
    assert!(
        std::fs::read(out.join("out.jsonl"))
            .unwrap()
            .ends_with(b"\n"),
        "the output ends in a torn line"
    );
    let kept: i64 = rusqlite::Connection::open(out.join("recovery.db"))
        .unwrap()
        .query_row("SELECT count(*) FROM checkpoints", [], |r| r.get(0))
        .unwrap();
    assert!(
        (1..=2).contains(&kept),
        "the recovery store keeps {kept} checkpoints"
    );
}

/// A cluster checkpoints as one: a 2-process cluster (each process reads one of the file's
/// two partitions; the file and SQLite sinks run in process 0, a null sink in both), its
/// process 1 SIGKILLed at three random moments and both restarted with `--resume` each
/// time, ends with the output of an uninterrupted single-process run.
#[test]
fn a_two_process_cluster_killed_three_times_and_resumed_equals_an_uninterrupted_run() {
    let dir = scratch();
    write_ticks(&dir.path().join("ticks.csv"));
    let yaml = |recovery: &str| {
        pipeline(recovery, 20)
            .replace(
                "{type: file, path: ticks.csv, max_delay: 2s}",
                "{type: file, path: ticks.csv, max_delay: 2s, partitions: 2}",
            )
            .replace("pipeline: recovered", "pipeline: clustered")
            + "  counted: {type: null, from: [bars_1m, ta]}\n"
    };
    let (_, reference) = resume::reference_run(dir.path(), &yaml(""));
    write(dir.path(), "pipeline.yaml", &yaml(RECOVERY));
    let cluster = resume::Launch::Cluster {
        processes: 2,
        workers: 1,
    };
    // Uninterrupted, the cluster gives the single process's output.
    let (_, whole) = resume::uninterrupted(dir.path(), cluster);
    assert!(
        whole.lines == reference.lines && whole.db == reference.db,
        "the uninterrupted cluster's output differs from the single process's:\noutput: {}\ndatabase: {}",
        line_differences(&whole.lines, &reference.lines),
        line_differences(&whole.db, &reference.db)
    );
    // Each run is killed once it has committed a checkpoint past a random record of its
    // quarter of the input (the second, third, fourth), so every kill falls mid-run.
    let kill_at = resume::KillAt::Records(TICKS);
    let runs = resume::killed_and_resumed_as(dir.path(), 3, kill_at, 0xc1a5, cluster);
    assert!(
        runs.killed_running >= 3,
        "only {} of the 3 kills fell while the cluster ran",
        runs.killed_running
    );
    assert!(
        runs.any_resumed(),
        "no run resumed from a checkpoint: {:?}",
        runs.resumed_from
    );
    runs.assert_same(dir, &reference, "the cluster's output");
}

/// Merges and tick indicators keep checkpoint state too: two sources of the same ticks give
/// 1m bars merged into 1m and 5m bars, and tick indicators run on the ticks.
#[test]
fn merges_and_tick_indicators_killed_and_resumed_equal_an_uninterrupted_run() {
    let dir = scratch();
    write_ticks(&dir.path().join("ticks.csv"));
    let yaml = |recovery: &str| {
        format!(
            "pipeline: merged\nworkers: 2\n{recovery}sources:\n  \
             live: {{type: file, path: ticks.csv, max_delay: 2s}}\n  \
             copy: {{type: file, path: ticks.csv, max_delay: 2s}}\n\
             operators:\n  \
             live_1m: {{type: bars, from: live, interval: 1m}}\n  \
             copy_1m: {{type: bars, from: copy, interval: 1m}}\n  \
             both_1m: {{type: bars, from: [live_1m, copy_1m], interval: 1m}}\n  \
             both_5m: {{type: bars, from: [copy_1m, live_1m], interval: 5m}}\n  \
             ticks_ta: {{type: tick_indicators, from: live, every: 10s, indicators: [{{tick_rsi: {{moves: 14}}}}, {{price_velocity: {{ticks: 50}}}}]}}\n\
             sinks:\n  \
             out: {{type: file, path: out/out.jsonl, from: [both_1m, both_5m, ticks_ta]}}\n  \
             db: {{type: sqlite, path: out/store.db, from: [both_1m, both_5m, ticks_ta]}}\n"
        )
    };
    let (reference_time, reference) = resume::reference_run(dir.path(), &yaml(""));
    assert!(
        reference.lines.iter().any(|l| l.contains("tick_rsi")),
        "the run gave no tick indicator rows"
    );

    write(dir.path(), "pipeline.yaml", &yaml(RECOVERY));
    let runs = resume::killed_and_resumed(dir.path(), 3, reference_time, 0x3e76e);
    assert!(
        runs.any_resumed(),
        "no run resumed from a checkpoint: {:?}",
        runs.resumed_from
    );
    runs.assert_same(dir, &reference, "the merged output");
}

/// Backfill, then live: a bars file (a history that ends within moments) merged with the
/// bars of a long tick file. Checkpoints go on after the history has ended, and the merge
/// keeps the windows the history's bars left undecided at each cut.
#[test]
fn a_history_merged_with_live_ticks_checkpoints_after_the_history_ends() {
    let dir = scratch();
    write_ticks(&dir.path().join("ticks.csv"));
    // The day before the ticks and their first half hour.
    let history = minute_bars_csv(
        &dir.path().join("history.csv"),
        20,
        ms("2024-01-01T14:30:00Z"),
        24 * 60 + 30,
        29,
    );
    let yaml = |recovery: &str| {
        format!(
            "pipeline: backfilled\nworkers: 2\n{recovery}sources:\n  \
             history: {{type: file, path: history.csv, kind: bars, interval: 1m}}\n  \
             live: {{type: file, path: ticks.csv, max_delay: 2s}}\n\
             operators:\n  \
             live_1m: {{type: bars, from: live, interval: 1m}}\n  \
             both_1m: {{type: bars, from: [history, live_1m], interval: 1m}}\n  \
             both_5m: {{type: bars, from: [live_1m, history], interval: 5m}}\n  \
             ta: {{type: indicators, from: both_1m, indicators: [{{sma: {{period: 50}}}}, {{rsi: {{period: 14}}}}, {{macd: {{fast: 12, slow: 26, signal: 9}}}}]}}\n\
             sinks:\n  \
             out: {{type: file, path: out/out.jsonl, from: [both_1m, both_5m, ta]}}\n  \
             db: {{type: sqlite, path: out/store.db, from: [both_1m, both_5m, ta]}}\n"
        )
    };
    let (reference_time, reference) = resume::reference_run(dir.path(), &yaml(""));
    let first_live = iso(ms("2024-01-02T14:30:00Z"));
    assert!(
        reference.lines.iter().any(|l| l.contains(&first_live)),
        "the run gave no bars of the live ticks"
    );

    write(dir.path(), "pipeline.yaml", &yaml(RECOVERY));
    let runs = resume::killed_and_resumed(dir.path(), 3, reference_time, 0xbac4f111);
    // The history is read within moments: a checkpoint holding more than it has ended
    // already (before, none was taken once a source had ended).
    let newest = runs
        .resumed_from
        .iter()
        .chain([&runs.final_resumed])
        .flatten()
        .max()
        .copied()
        .unwrap_or(0);
    println!("history: {history} bars; the newest checkpoint resumed from held {newest} records");
    assert!(
        newest > history + TICKS / 10,
        "no run resumed from a checkpoint well past the history's end ({history} bars): {:?}",
        runs.resumed_from
    );
    runs.assert_same(dir, &reference, "the backfilled output");
}

#[test]
fn a_synthetic_market_killed_and_resumed_equals_an_uninterrupted_run() {
    synthetic_killed_twice(RECOVERY);
}

#[test]
fn checkpoints_kept_in_postgres_resume_as_from_sqlite() {
    let db = pg::TestDb::new("recovery");
    synthetic_killed_twice(&format!(
        "recovery: {{database: \"{}\", checkpoint_interval: 100ms}}\n",
        db.url
    ));
    let kept = db.count("marketflow_checkpoints");
    assert!(
        (1..=2).contains(&kept),
        "the PostgreSQL recovery store keeps {kept} checkpoints"
    );
}

/// The synthetic market killed at two random moments and resumed, its checkpoints kept as
/// `recovery` says: the output and database equal an uninterrupted run's.
fn synthetic_killed_twice(recovery: &str) {
    let dir = scratch();
    let yaml = |recovery: &str| {
        format!(
            "pipeline: synthetic\nworkers: 2\n{recovery}sources:\n  m: {{type: synthetic, symbols: [A, B, C, D], seed: 5, rate: 50, count: 1500000, max_delay: 1s, disorder: 2s}}\noperators:\n  bars_1m: {{type: bars, from: m, interval: 1m}}\n  ta: {{type: indicators, from: bars_1m, indicators: [{{ema: {{period: 12}}}}, {{rsi: {{period: 14}}}}]}}\nsinks:\n  out: {{type: file, path: out/out.jsonl, from: [bars_1m, ta]}}\n  db: {{type: sqlite, path: out/store.db, from: [m, bars_1m, ta]}}\n"
        )
    };
    let (reference_time, reference) = resume::reference_run(dir.path(), &yaml(""));

    write(dir.path(), "pipeline.yaml", &yaml(recovery));
    let runs = resume::killed_and_resumed(dir.path(), 2, reference_time, 0x51);
    assert!(runs.any_resumed(), "no run resumed from a checkpoint");
    runs.assert_same(dir, &reference, "the synthetic market's output");
}

#[test]
fn a_changed_pipeline_refuses_to_resume_naming_what_changed() {
    let dir = scratch();
    write(
        dir.path(),
        "ticks.csv",
        &tick_csv(
            3,
            &["AAPL", "MSFT"],
            ms("2024-01-02T14:30:00Z"),
            20_000,
            250,
            0,
        ),
    );
    write(dir.path(), "pipeline.yaml", &pipeline(RECOVERY, 20));
    run_ok(dir.path(), &["run", "pipeline.yaml", "--no-server"]);

    write(dir.path(), "pipeline.yaml", &pipeline(RECOVERY, 30));
    let out = run_in(
        dir.path(),
        &["run", "pipeline.yaml", "--no-server", "--resume"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a changed indicator resumed");
    assert!(
        stderr.contains("operator `ta` no longer fits") && stderr.contains("sma_30"),
        "{stderr}"
    );

    write(dir.path(), "pipeline.yaml", &pipeline(RECOVERY, 20));
    let out = run_in(
        dir.path(),
        &[
            "run",
            "pipeline.yaml",
            "--no-server",
            "--resume",
            "--workers",
            "3",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "another worker count resumed");
    assert!(
        stderr.contains("taken with 2 workers") && stderr.contains("--workers 2"),
        "{stderr}"
    );

    // Without --resume it starts over.
    write(dir.path(), "pipeline.yaml", &pipeline(RECOVERY, 30));
    run_ok(dir.path(), &["run", "pipeline.yaml", "--no-server"]);
}

#[test]
fn what_checkpoints_cannot_cover_is_refused_clearly() {
    let dir = scratch();
    write(
        dir.path(),
        "synthetic.yaml",
        &format!("pipeline: s\n{RECOVERY}sources:\n  m: {{type: synthetic, symbols: [A], pace: realtime, start: now-1h}}\nsinks:\n  o: {{type: null, from: m}}\n"),
    );
    let out = run_in(dir.path(), &["run", "synthetic.yaml", "--no-server"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("source `m` (synthetic) cannot start again from a checkpoint"),
        "{stderr}"
    );

    write(
        dir.path(),
        "plain.yaml",
        "pipeline: p\nsources:\n  m: {type: synthetic, symbols: [A], count: 10}\nsinks:\n  o: {type: null, from: m}\n",
    );
    let out = run_in(
        dir.path(),
        &["run", "plain.yaml", "--no-server", "--resume"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("--resume needs `recovery: {path: FILE}`"),
        "{stderr}"
    );

    for (recovery, expected) in [
        (
            "{checkpoint_interval: 1s}",
            "`path`) or a PostgreSQL database (`database`)",
        ),
        (
            "{path: a.db, database: \"postgres://x@127.0.0.1/db\"}",
            "one of the two",
        ),
        (
            "{database: \"mysql://x@127.0.0.1/db\"}",
            "recovery.database",
        ),
    ] {
        write(
            dir.path(),
            "store.yaml",
            &format!("pipeline: p\nrecovery: {recovery}\nsources:\n  m: {{type: synthetic, symbols: [A], count: 10}}\nsinks:\n  o: {{type: null, from: m}}\n"),
        );
        let out = run_in(dir.path(), &["run", "store.yaml", "--no-server"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{recovery} was accepted");
        assert!(stderr.contains(expected), "{recovery}: {stderr}");
    }
}

/// The synthetic market in real time from now goes on from now after a resume, like a live
/// feed: its count continues from the cut, so a `count:` run still ends after that many.
#[test]
fn a_realtime_synthetic_market_resumes_from_now() {
    let dir = scratch();
    write(
        dir.path(),
        "pipeline.yaml",
        &format!("pipeline: realtime\n{RECOVERY}sources:\n  m: {{type: synthetic, symbols: [A, B], pace: realtime, rate: 400, count: 2000}}\noperators:\n  bars_1s: {{type: bars, from: m, interval: 1s}}\nsinks:\n  db: {{type: sqlite, path: out/store.db, from: [bars_1s]}}\n"),
    );
    let spawn = |log: &str, resume: bool| {
        let mut args = vec!["run", "pipeline.yaml", "--no-server"];
        if resume {
            args.push("--resume");
        }
        marketflow()
            .current_dir(dir.path())
            .env("RUST_LOG", "marketflow=info")
            .env("NO_COLOR", "1")
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join(log)).unwrap())
            .spawn()
            .expect("marketflow starts")
    };
    let mut child = spawn("first.log", false);
    let started = std::time::Instant::now();
    let last = loop {
        let text = std::fs::read_to_string(dir.path().join("first.log")).unwrap_or_default();
        if let Some(n) = resume::checkpoints_in(&text)
            .1
            .last()
            .filter(|n| **n >= 100)
        {
            break *n;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "waited 60s for a checkpoint past 100 ticks:\n{text}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    let status = wait_with_deadline(
        spawn("resumed.log", true),
        std::time::Duration::from_secs(60),
    );
    let text = std::fs::read_to_string(dir.path().join("resumed.log")).unwrap();
    assert!(status.success(), "the resumed run failed:\n{text}");
    let resumed = resume::checkpoints_in(&text).0;
    assert!(
        resumed.is_some_and(|r| r >= last),
        "resumed from {resumed:?}, not from the checkpoint at {last}:\n{text}"
    );
    assert!(
        text.contains("synthetic market finished") && text.contains("ticks=2000"),
        "the resumed market did not end at its count:\n{text}"
    );
}
