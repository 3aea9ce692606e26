//! `marketflow replay`: a pipeline's graph run again with one source replaced by what it
//! recorded (its store, a file of its ticks, its Kafka topic) gives the live run's bars,
//! indicators and late ticks exactly; `--from`/`--to` narrow it and `--speed` paces it.

mod support;

use std::path::Path;

use support::*;

/// A synthetic market with ticks out of order beyond `max_delay` (so some are late and
/// dead-lettered), two workers, the recorded ticks in the store and in a file.
fn live_pipeline(sink: &str) -> String {
    format!(
        "pipeline: replayed
workers: 2
dead_letter: {{path: late.jsonl}}
sources:
  market:
    type: synthetic
    symbols: [AAPL, MSFT, NVDA, AMZN]
    seed: 23
    rate: 3
    start: 2025-03-03T14:00:00Z
    count: 150000
    max_delay: 1s
    disorder: 3s
operators:
  bars_1m: {{type: bars, from: market, interval: 1m}}
  bars_5m: {{type: bars, from: bars_1m, interval: 5m}}
  ta_1m: {{type: indicators, from: bars_1m, indicators: [{{sma: {{period: 20}}}}, {{rsi: {{period: 14}}}}, {{macd: {{fast: 12, slow: 26, signal: 9}}}}, {{bollinger: {{period: 20, stddev: 2}}}}]}}
  ta_5m: {{type: indicators, from: bars_5m, indicators: [{{ema: {{period: 12}}}}, {{atr: {{period: 14}}}}]}}
sinks:
  db: {{{sink}, from: [market, bars_1m, bars_5m, ta_1m, ta_5m]}}
  ticks: {{type: file, path: ticks.jsonl, from: [market]}}
  out: {{type: file, path: out.jsonl, from: [bars_1m, bars_5m, ta_1m, ta_5m]}}
"
    )
}

/// The derived tables (bars and indicators), which a replay must rebuild.
const DERIVED: [&str; 5] = [
    "intraday_ohlcv",
    "historical_ohlcv",
    "realtime_analytics",
    "intraday_analytics",
    "daily_analytics",
];

fn sqlite_clear_derived(db: &Path) {
    let conn = rusqlite::Connection::open(db).unwrap();
    for table in DERIVED {
        conn.execute(&format!("DELETE FROM {table}"), []).unwrap();
    }
}

/// What a run left: its sorted output file and dead letters.
fn outputs(dir: &Path) -> (Vec<String>, Vec<String>) {
    let mut late: Vec<String> = sorted_lines(&dir.join("late.jsonl"))
        .into_iter()
        .map(|l| {
            // The dead letter's own arrival time differs between runs.
            let mut v: serde_json::Value = serde_json::from_str(&l).unwrap();
            if let Some(o) = v.as_object_mut() {
                o.remove("at");
            }
            v.to_string()
        })
        .collect();
    late.sort();
    (sorted_lines(&dir.join("out.jsonl")), late)
}

fn clear_outputs(dir: &Path) {
    for file in ["out.jsonl", "late.jsonl", "ticks.jsonl.replayed"] {
        let _ = std::fs::remove_file(dir.join(file));
    }
}

#[test]
fn replay_from_the_sqlite_store_and_from_a_file_equals_the_live_run() {
    let dir = scratch();
    write(
        dir.path(),
        "live.yaml",
        &live_pipeline("type: sqlite, path: store.db"),
    );
    run_ok(dir.path(), &["run", "live.yaml", "--no-server"]);
    let db = dir.path().join("store.db");
    let live_db = sqlite_dump(&db);
    let (live_out, live_late) = outputs(dir.path());
    let bars = live_out
        .iter()
        .filter(|l| l.contains("\"type\":\"bar\""))
        .count();
    assert!(bars > 400, "the live run made {bars} bars");
    assert!(
        !live_late.is_empty(),
        "the live run had no late ticks to reproduce"
    );
    std::fs::rename(
        dir.path().join("ticks.jsonl"),
        dir.path().join("recorded.jsonl"),
    )
    .unwrap();

    // From the store: the derived tables are emptied, and the replay fills them again.
    sqlite_clear_derived(&db);
    clear_outputs(dir.path());
    let printed = run_ok(
        dir.path(),
        &["replay", "live.yaml", "--source", "market=store"],
    );
    assert!(
        printed.contains("150000 records"),
        "the replay's summary: {printed}"
    );
    assert!(
        sqlite_dump(&db) == live_db,
        "the store after a replay from it differs from the live run's"
    );
    let (out, late) = outputs(dir.path());
    assert!(
        out == live_out,
        "bars and indicators replayed from the store differ"
    );
    assert!(
        late == live_late,
        "late ticks replayed from the store differ"
    );

    // From the file of recorded ticks, into a fresh store.
    std::fs::remove_file(&db).unwrap();
    clear_outputs(dir.path());
    run_ok(
        dir.path(),
        &[
            "replay",
            "live.yaml",
            "--source",
            "market=file:recorded.jsonl",
            "--workers",
            "1",
        ],
    );
    assert!(
        sqlite_dump(&db) == live_db,
        "the store replayed from a file differs"
    );
    let (out, late) = outputs(dir.path());
    assert!(
        out == live_out,
        "bars and indicators replayed from a file differ"
    );
    assert!(late == live_late, "late ticks replayed from a file differ");
}

#[test]
fn replay_from_the_postgres_store_equals_the_live_run() {
    let db = pg::TestDb::new("replay");
    let dir = scratch();
    write(
        dir.path(),
        "live.yaml",
        &live_pipeline(&format!(
            "type: postgres, url: \"{}\", retention: off",
            db.url
        )),
    );
    run_ok(dir.path(), &["run", "live.yaml", "--no-server"]);
    let live_db = db.dump();
    let (live_out, live_late) = outputs(dir.path());
    assert!(db.count("intraday_ohlcv") > 400);
    pg::block_on(async {
        let client = marketflow::store::postgres::connect(&db.url).await.unwrap();
        for table in DERIVED {
            client
                .batch_execute(&format!("DELETE FROM {table}"))
                .await
                .unwrap();
        }
    });
    assert_eq!(db.count("intraday_ohlcv"), 0);
    clear_outputs(dir.path());
    run_ok(
        dir.path(),
        &["replay", "live.yaml", "--source", "market=store"],
    );
    assert!(
        db.dump() == live_db,
        "the database after a replay from it differs from the live run's"
    );
    let (out, late) = outputs(dir.path());
    assert!(
        out == live_out,
        "bars and indicators replayed from PostgreSQL differ"
    );
    assert!(
        late == live_late,
        "late ticks replayed from PostgreSQL differ"
    );
}

#[test]
fn a_replay_narrowed_to_a_range_and_paced_keeps_to_it() {
    let dir = scratch();
    write(
        dir.path(),
        "live.yaml",
        &live_pipeline("type: sqlite, path: store.db"),
    );
    run_ok(dir.path(), &["run", "live.yaml", "--no-server"]);
    clear_outputs(dir.path());
    std::fs::rename(
        dir.path().join("ticks.jsonl"),
        dir.path().join("recorded.jsonl"),
    )
    .unwrap();
    // Five minutes of event time at 600x: half a second of pacing.
    let printed = run_ok(
        dir.path(),
        &[
            "replay",
            "live.yaml",
            "--source",
            "market=file:recorded.jsonl",
            "--from",
            "2025-03-03T14:20:00Z",
            "--to",
            "2025-03-03T14:25:00Z",
            "--speed",
            "600x",
        ],
    );
    let kept: u64 = printed
        .split_whitespace()
        .nth(2)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a record count in {printed}"));
    assert!(
        (2_000..6_000).contains(&kept),
        "kept {kept} ticks of five minutes: {printed}"
    );
    let (out, _) = outputs(dir.path());
    let (from, to) = (ms("2025-03-03T14:20:00Z"), ms("2025-03-03T14:25:00Z"));
    let starts: Vec<i64> = out
        .iter()
        .filter(|l| l.contains("\"interval\":\"1m\",\"start\""))
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            ms(v["start"].as_str().unwrap())
        })
        .collect();
    assert_eq!(
        starts.len(),
        4 * 5,
        "one 1m bar per symbol and minute of the range"
    );
    assert!(
        starts.iter().all(|s| (from..to).contains(s)),
        "bars outside the range: {starts:?}"
    );
}

#[test]
fn replay_mistakes_are_named() {
    let dir = scratch();
    write(
        dir.path(),
        "live.yaml",
        &live_pipeline("type: sqlite, path: store.db"),
    );
    for (args, expected) in [
        (
            vec!["--source", "nope=store"],
            "no source `nope`; its sources are: market",
        ),
        (
            vec!["--source", "market=kafka"],
            "does not read a Kafka topic",
        ),
        (
            vec!["--source", "market=tape"],
            "write `store`, `file:PATH` or `kafka`",
        ),
        (vec!["--source", "market"], "NAME=store"),
        (
            vec!["--source", "market=store", "--speed", "fast"],
            "is not a speed",
        ),
        (
            vec![
                "--source",
                "market=store",
                "--from",
                "2025-03-04",
                "--to",
                "2025-03-03",
            ],
            "--to must be after --from",
        ),
    ] {
        let mut all = vec!["replay", "live.yaml"];
        all.extend(args.iter().copied());
        let out = run_in(dir.path(), &all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{all:?} succeeded");
        assert!(stderr.contains(expected), "{all:?}: {stderr}");
    }
}

#[test]
fn replay_from_kafka_equals_the_live_run() {
    let Some(broker) = kafka::start() else { return };
    broker.create_topic("recorded", 3);
    let mut rng = Lcg(5);
    let start = ms("2025-03-03T14:00:00Z");
    let messages: Vec<(String, String)> = (0..60_000)
        .map(|i| {
            let symbol = ["AAPL", "MSFT", "NVDA"][rng.below(3) as usize];
            // Up to 4 s out of order with a 2 s max_delay: some ticks are late.
            let ts = start + i * 20 - rng.below(4_000) as i64;
            let price = 100.0 + rng.below(1_000) as f64 / 100.0;
            let value = format!(
                r#"{{"type":"tick","symbol":"{symbol}","ts":{ts},"price":{price},"volume":{}}}"#,
                1 + rng.below(100)
            );
            (symbol.to_owned(), value)
        })
        .collect();
    broker.produce("recorded", &messages);
    let dir = scratch();
    write(
        dir.path(),
        "live.yaml",
        &format!(
            "pipeline: from-kafka
dead_letter: {{path: late.jsonl}}
sources:
  market: {{type: kafka, brokers: \"{}\", topic: recorded, group: live, start: earliest, stop: end, max_delay: 2s}}
operators:
  bars_1m: {{type: bars, from: market, interval: 1m}}
  ta_1m: {{type: indicators, from: bars_1m, indicators: [{{sma: {{period: 5}}}}, {{rsi: {{period: 14}}}}]}}
sinks:
  out: {{type: file, path: out.jsonl, from: [bars_1m, ta_1m]}}
",
            broker.address
        ),
    );
    run_ok(
        dir.path(),
        &["run", "live.yaml", "--no-server", "--workers", "2"],
    );
    let (live_out, live_late) = outputs(dir.path());
    assert!(
        live_out.len() > 100 && !live_late.is_empty(),
        "{} lines, {} late",
        live_out.len(),
        live_late.len()
    );
    clear_outputs(dir.path());
    let printed = run_ok(
        dir.path(),
        &[
            "replay",
            "live.yaml",
            "--source",
            "market=kafka",
            "--workers",
            "2",
        ],
    );
    assert!(printed.contains("60000 records"), "{printed}");
    let (out, late) = outputs(dir.path());
    assert!(
        out == live_out,
        "bars and indicators replayed from Kafka differ"
    );
    assert!(late == live_late, "late ticks replayed from Kafka differ");
}
