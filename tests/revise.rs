//! `late: revise`: ticks arriving after their window closed revise the bar, the coarser
//! bars built from it and the indicators on both; the final store equals a run on the same
//! ticks in time order, every revision reached the stores as an upsert with a higher
//! `revision`, and ticks later than `revise_for` are dead-lettered.

mod support;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;

use support::*;

const TICKS: usize = 300_000;

/// Ticks of the run killed and resumed: enough for it to take a few checkpoints.
const KILLED_TICKS: usize = 2_000_000;

/// A tick: event time, symbol, price, volume.
type Row = (i64, String, f64, u64);

/// `count` ticks of 20 symbols 30 ms apart; 1% arrive late by up to 30 s, 0.05% by 125 s
/// to 180 s (too late for `revise_for: 1m`). Returns the ticks in arrival order and the
/// indices of the too-late ones.
fn ticks(count: usize) -> (Vec<Row>, Vec<usize>) {
    let mut rng = Lcg(23);
    let start = ms("2024-01-02T14:30:00Z");
    let mut prices = [100.0f64; 20];
    let mut arrivals: Vec<(i64, usize, Row, bool)> = Vec::with_capacity(count);
    for i in 0..count {
        let s = rng.below(20) as usize;
        prices[s] = (prices[s] + (rng.below(5) as f64 - 2.0) / 100.0).max(1.0);
        let ts = start + i as i64 * 30;
        let roll = rng.below(10_000);
        // Too late only well before the end, where later ticks move the watermark past.
        let (delay, too_late) = match roll {
            0..=4 if i + 10_000 < count => (125_000 + rng.below(55_000) as i64, true),
            5..=104 => (1 + rng.below(30_000) as i64, false),
            _ => (0, false),
        };
        let price = (prices[s] * 100.0).round() / 100.0;
        let row = (ts, format!("S{s:02}"), price, 1 + rng.below(300));
        arrivals.push((ts + delay, i, row, too_late));
    }
    arrivals.sort_by_key(|a| (a.0, a.1));
    let too_late = arrivals
        .iter()
        .enumerate()
        .filter(|(_, a)| a.3)
        .map(|(i, _)| i)
        .collect();
    (arrivals.into_iter().map(|a| a.2).collect(), too_late)
}

fn write_csv<'a>(path: &Path, rows: impl Iterator<Item = &'a Row>) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    writeln!(out, "ts,symbol,price,volume").unwrap();
    for (ts, symbol, price, volume) in rows {
        writeln!(out, "{ts},{symbol},{price:.2},{volume}").unwrap();
    }
}

fn pipeline(ticks: &str, late: &str, workers: usize, extra_sink: &str) -> String {
    format!(
        "pipeline: revised
workers: {workers}
dead_letter: {{path: out/dead.jsonl}}
sources:
  ticks: {{type: file, path: {ticks}, max_delay: 2s}}
operators:
  bars_1m: {{type: bars, from: ticks, interval: 1m{late}}}
  bars_5m: {{type: bars, from: bars_1m, interval: 5m}}
  bars_1d: {{type: bars, from: bars_5m, interval: 1d}}
  ta_1m: {{type: indicators, from: bars_1m, indicators: [{{sma: {{period: 5}}}}, {{ema: {{period: 12}}}}, {{rsi: {{period: 14}}}}, {{macd: {{fast: 12, slow: 26, signal: 9}}}}, {{bollinger: {{period: 20, stddev: 2}}}}, {{atr: {{period: 14}}}}]}}
  ta_5m: {{type: indicators, from: bars_5m, indicators: [{{sma: {{period: 3}}}}, {{vwap: {{}}}}]}}
sinks:
  out: {{type: file, path: out/out.jsonl, from: [bars_1m, bars_5m, bars_1d, ta_1m, ta_5m]}}
  db: {{type: sqlite, path: out/store.db, from: [bars_1m, bars_5m, bars_1d, ta_1m, ta_5m]}}
{extra_sink}"
    )
}

const REVISE: &str = ", late: revise, revise_for: 1m";

/// Bars and indicator rows of a SQLite store without their revisions, sorted; and the
/// revision of each key.
fn store_rows(db: &Path) -> (Vec<String>, BTreeMap<String, i64>) {
    let conn = rusqlite::Connection::open(db).unwrap();
    let queries = [
        (
            "bar",
            "SELECT symbol || ' ' || interval || ' ' || ts, \
             printf('%!.17g %!.17g %!.17g %!.17g %!.17g %d %!.17g %s', open, high, low, close, volume, trades, vwap, source), \
             revision FROM intraday_ohlcv",
        ),
        (
            "bar",
            "SELECT symbol || ' 1d ' || ts, \
             printf('%!.17g %!.17g %!.17g %!.17g %!.17g %d %!.17g %s', open, high, low, close, volume, trades, vwap, source), \
             revision FROM historical_ohlcv",
        ),
        (
            "indicator",
            "SELECT symbol || ' ' || interval || ' ' || ts || ' ' || indicator_id, outputs, revision \
             FROM intraday_analytics",
        ),
    ];
    let mut rows = Vec::new();
    let mut revisions = BTreeMap::new();
    for (kind, sql) in queries {
        let mut statement = conn.prepare(sql).unwrap();
        let found = statement
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })
            .unwrap();
        for row in found {
            let (key, values, revision) = row.unwrap();
            rows.push(format!("{kind} {key} {values}"));
            revisions.insert(format!("{kind} {key}"), revision);
        }
    }
    rows.sort();
    (rows, revisions)
}

/// Every version the file sink wrote, by key in the store's terms, in order.
fn versions(path: &Path) -> BTreeMap<String, Vec<i64>> {
    let mut out: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for line in std::fs::read_to_string(path).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let revision = v["revision"].as_i64().unwrap_or(0);
        let key = match v["type"].as_str() {
            Some("bar") => format!(
                "bar {} {} {}",
                v["symbol"].as_str().unwrap(),
                v["interval"].as_str().unwrap(),
                ms(v["start"].as_str().unwrap())
            ),
            _ => format!(
                "indicator {} {} {} {}",
                v["symbol"].as_str().unwrap(),
                v["interval"].as_str().unwrap(),
                ms(v["ts"].as_str().unwrap()),
                v["id"].as_str().unwrap()
            ),
        };
        out.entry(key).or_default().push(revision);
    }
    out
}

/// Writes `late.csv` (the [`TICKS`] ticks in arrival order) and `sorted.csv` (the same in
/// time order, less those too late to revise: the reference); gives the too-late indices.
fn write_late_and_sorted(dir: &Path) -> Vec<usize> {
    let (arrived, too_late) = ticks(TICKS);
    write_csv(&dir.join("late.csv"), arrived.iter());
    let mut sorted: Vec<&Row> = arrived
        .iter()
        .enumerate()
        .filter(|(i, _)| too_late.binary_search(i).is_err())
        .map(|(_, r)| r)
        .collect();
    sorted.sort_by_key(|r| r.0);
    write_csv(&dir.join("sorted.csv"), sorted.into_iter());
    too_late
}

#[test]
fn late_ticks_revise_bars_and_indicators_to_equal_a_sorted_run() {
    let dir = scratch();
    let too_late = write_late_and_sorted(dir.path());
    assert!(too_late.len() > 5, "the input has ticks too late to revise");

    let reference = dir.path().join("reference");
    std::fs::create_dir_all(&reference).unwrap();
    write(&reference, "p.yaml", &pipeline("../sorted.csv", "", 1, ""));
    run_ok(&reference, &["run", "p.yaml", "--no-server"]);
    let (expected, _) = store_rows(&reference.join("out/store.db"));
    let dead = std::fs::read_to_string(reference.join("out/dead.jsonl")).unwrap_or_default();
    assert_eq!(dead.lines().count(), 0, "the sorted run has no late ticks");

    let db = pg::TestDb::new("revise");
    let revised = dir.path().join("revised");
    std::fs::create_dir_all(&revised).unwrap();
    let postgres = format!(
        "  pg: {{type: postgres, url: \"{}\", retention: off, from: [bars_1m, bars_5m, bars_1d, ta_1m, ta_5m]}}\n",
        db.url
    );
    write(
        &revised,
        "p.yaml",
        &pipeline("../late.csv", REVISE, 2, &postgres),
    );
    let log = run_ok(&revised, &["run", "p.yaml", "--no-server"]);
    let (got, stored_revision) = store_rows(&revised.join("out/store.db"));

    let missing: Vec<_> = expected
        .iter()
        .filter(|r| !got.contains(r))
        .take(5)
        .collect();
    let extra: Vec<_> = got
        .iter()
        .filter(|r| !expected.contains(r))
        .take(5)
        .collect();
    assert!(
        got == expected,
        "the revised store differs from the sorted run's: {} rows against {}; missing {missing:#?}, extra {extra:#?}",
        got.len(),
        expected.len()
    );

    // Every version reached the store with a higher revision; the store has the last.
    let written = versions(&revised.join("out/out.jsonl"));
    let mut revised_keys: BTreeMap<String, usize> = BTreeMap::new();
    for (key, revisions) in &written {
        assert!(
            revisions.windows(2).all(|w| w[0] < w[1]),
            "{key} was written with revisions {revisions:?}, not each higher"
        );
        assert_eq!(
            stored_revision.get(key),
            revisions.last(),
            "{key}: the store holds another version than the last written"
        );
        if revisions.len() > 1 {
            let kind: Vec<&str> = key.split(' ').collect();
            *revised_keys
                .entry(format!("{} {}", kind[0], kind[2]))
                .or_default() += 1;
        }
    }
    eprintln!("keys revised after they were first written: {revised_keys:?}");
    for kind in ["bar 1m", "bar 5m", "indicator 1m", "indicator 5m"] {
        assert!(
            revised_keys.get(kind).copied().unwrap_or(0) > 0,
            "no {kind} record was revised: {revised_keys:?}"
        );
    }

    // PostgreSQL applied the same upserts: the same rows at the same revisions.
    let pg_revisions = pg::block_on(async {
        let client = marketflow::store::postgres::connect(&db.url).await.unwrap();
        let mut out = BTreeMap::new();
        for (kind, sql) in [
            ("bar", "SELECT symbol || ' ' || interval || ' ' || (extract(epoch from ts) * 1000)::bigint, revision FROM intraday_ohlcv"),
            ("bar", "SELECT symbol || ' 1d ' || (extract(epoch from ts) * 1000)::bigint, revision FROM historical_ohlcv"),
            ("indicator", "SELECT symbol || ' ' || interval || ' ' || (extract(epoch from ts) * 1000)::bigint || ' ' || indicator_id, revision FROM intraday_analytics"),
        ] {
            for row in client.query(sql, &[]).await.unwrap() {
                let key: String = row.get(0);
                let revision: i32 = row.get(1);
                out.insert(format!("{kind} {key}"), i64::from(revision));
            }
        }
        out
    });
    assert!(
        pg_revisions == stored_revision,
        "PostgreSQL holds other revisions than SQLite ({} keys against {})",
        pg_revisions.len(),
        stored_revision.len()
    );

    // Ticks later than `revise_for` took the dead-letter path.
    let dead = std::fs::read_to_string(revised.join("out/dead.jsonl")).unwrap();
    let late = dead.lines().filter(|l| l.contains("\"late\"")).count();
    assert_eq!(
        late,
        too_late.len(),
        "ticks too late to revise are dead-lettered; log:\n{log}"
    );
}

#[test]
fn killed_while_revising_and_resumed_equals_an_uninterrupted_run() {
    let dir = scratch();
    let (arrived, _) = ticks(KILLED_TICKS);
    write_csv(&dir.path().join("late.csv"), arrived.iter());
    // Revisable for longer than a 5m window: every checkpoint holds closed bars of each
    // interval that may still change.
    let late = ", late: revise, revise_for: 6m";
    let yaml = |recovery: &str| format!("{recovery}{}", pipeline("late.csv", late, 2, ""));
    let (reference_time, reference) = resume::reference_run(dir.path(), &yaml(""));
    let revised = reference
        .lines
        .iter()
        .filter(|l| l.contains("\"revision\":"))
        .count();
    assert!(revised > 100, "the run revised only {revised} records");

    write(
        dir.path(),
        "pipeline.yaml",
        &yaml("recovery: {path: out/recovery.db, checkpoint_interval: 100ms}\n"),
    );
    let runs = resume::killed_and_resumed(dir.path(), 3, reference_time, 0x7e715e);
    assert!(
        runs.any_resumed(),
        "no run resumed from a checkpoint: {:?}",
        runs.resumed_from
    );
    runs.assert_same(dir, &reference, "the revised output");
}

#[test]
fn revision_mistakes_are_named() {
    let dir = scratch();
    write(dir.path(), "ticks.csv", "ts,symbol,price,volume\n");
    let cases: [(&str, &str, &[&str]); 2] = [
        (
            "  bars_1m: {type: bars, from: ticks, interval: 1m, late: revise}\n",
            "",
            &["operators.bars_1m.late", "needs `revise_for`"],
        ),
        (
            "  bars_1m: {type: bars, from: ticks, interval: 1m, revise_for: 1m}\n",
            "",
            &["operators.bars_1m.revise_for", "late: revise"],
        ),
    ];
    for (operators, header, expected) in cases {
        let text = format!(
            "pipeline: mistakes\n{header}sources:\n  ticks: {{type: file, path: ticks.csv}}\noperators:\n{operators}sinks:\n  out: {{type: null, from: [bars_1m]}}\n"
        );
        write(dir.path(), "p.yaml", &text);
        let output = run_in(dir.path(), &["run", "p.yaml", "--no-server"]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{operators} was accepted");
        for needle in expected {
            assert!(
                stderr.contains(needle),
                "the error for {operators} does not say `{needle}`:\n{stderr}"
            );
        }
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

/// Backfill, then live: a history of 1m bars (`history`) merged with the 1m bars of
/// `ticks` (built with `late`), in both orders of precedence, with a 5m cascade and
/// indicators on the merges.
fn merged_pipeline(ticks: &str, history: &str, late: &str) -> String {
    format!(
        "pipeline: backfilled
workers: 2
dead_letter: {{path: out/dead.jsonl}}
sources:
  ticks: {{type: file, path: {ticks}, max_delay: 2s}}
  history: {{type: file, path: {history}, kind: bars, interval: 1m}}
operators:
  live_1m: {{type: bars, from: ticks, interval: 1m{late}}}
  history_first: {{type: bars, from: [history, live_1m], interval: 1m}}
  live_first_5m: {{type: bars, from: [live_1m, history], interval: 5m}}
  ta: {{type: indicators, from: history_first, indicators: [{{sma: {{period: 5}}}}, {{rsi: {{period: 14}}}}]}}
sinks:
  out: {{type: file, path: out/out.jsonl, from: [history_first, live_first_5m, ta]}}
  db: {{type: sqlite, path: out/store.db, from: [history_first, live_first_5m, ta]}}
"
    )
}

/// Backfill, then live with `late: revise`: a history of 1m bars merged with the revised
/// bars of late ticks, in both orders of precedence, and a 5m cascade and indicators on the
/// merges. The merges revise too: the final store equals a run on the ticks in time order,
/// and every version of a merged bar was written with a higher revision.
#[test]
fn revised_bars_merged_with_a_history_equal_a_sorted_run() {
    let dir = scratch();
    write_late_and_sorted(dir.path());
    // An hour before the ticks and their first half hour.
    minute_bars_csv(
        &dir.path().join("history.csv"),
        20,
        ms("2024-01-02T13:30:00Z"),
        90,
        41,
    );
    let reference = dir.path().join("reference");
    std::fs::create_dir_all(&reference).unwrap();
    write(
        &reference,
        "p.yaml",
        &merged_pipeline("../sorted.csv", "../history.csv", ""),
    );
    run_ok(&reference, &["run", "p.yaml", "--no-server"]);
    let (expected, _) = store_rows(&reference.join("out/store.db"));

    let revised = dir.path().join("revised");
    std::fs::create_dir_all(&revised).unwrap();
    write(
        &revised,
        "p.yaml",
        &merged_pipeline("../late.csv", "../history.csv", REVISE),
    );
    run_ok(&revised, &["run", "p.yaml", "--no-server"]);
    let (got, stored_revision) = store_rows(&revised.join("out/store.db"));
    assert!(
        got == expected,
        "the revised merges differ from the sorted run's: {}",
        line_differences(&got, &expected)
    );

    let written = versions(&revised.join("out/out.jsonl"));
    let mut revised_keys: BTreeMap<String, usize> = BTreeMap::new();
    for (key, revisions) in &written {
        assert!(
            revisions.windows(2).all(|w| w[0] < w[1]),
            "{key} was written with revisions {revisions:?}, not each higher"
        );
        assert_eq!(stored_revision.get(key), revisions.last(), "{key}");
        if revisions.len() > 1 {
            let kind: Vec<&str> = key.split(' ').collect();
            *revised_keys
                .entry(format!("{} {}", kind[0], kind[2]))
                .or_default() += 1;
        }
    }
    eprintln!("merged keys revised after they were first written: {revised_keys:?}");
    for kind in ["bar 1m", "bar 5m", "indicator 1m"] {
        assert!(
            revised_keys.get(kind).copied().unwrap_or(0) > 0,
            "no {kind} record was revised: {revised_keys:?}"
        );
    }
}

/// The merges of revised bars keep their decided windows in checkpoints: killed 3 times
/// and resumed, the run ends with every version an uninterrupted run wrote.
#[test]
fn merged_revisions_killed_and_resumed_equal_an_uninterrupted_run() {
    let dir = scratch();
    let (arrived, _) = ticks(KILLED_TICKS);
    write_csv(&dir.path().join("late.csv"), arrived.iter());
    // The ticks' first two hours, and an hour before.
    minute_bars_csv(
        &dir.path().join("history.csv"),
        20,
        ms("2024-01-02T13:30:00Z"),
        180,
        43,
    );
    let late = ", late: revise, revise_for: 6m";
    let yaml = |recovery: &str| {
        format!(
            "{recovery}{}",
            merged_pipeline("late.csv", "history.csv", late)
        )
    };
    let (reference_time, reference) = resume::reference_run(dir.path(), &yaml(""));
    write(
        dir.path(),
        "pipeline.yaml",
        &yaml("recovery: {path: out/recovery.db, checkpoint_interval: 100ms}\n"),
    );
    let runs = resume::killed_and_resumed(dir.path(), 3, reference_time, 0x3e4e);
    assert!(
        runs.any_resumed(),
        "no run resumed from a checkpoint: {:?}",
        runs.resumed_from
    );
    runs.assert_same(dir, &reference, "the merged revised output");
}
