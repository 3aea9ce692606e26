//! Storage against real databases: the same queries over PostgreSQL and SQLite, idempotent
//! reruns, a SIGKILLed run restarted, and PostgreSQL restarting in the middle of a run.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Stdio};

use marketflow::store::{postgres, sqlite, BarQuery, Batch, IndicatorQuery, Location, Store};
use marketflow_operators::fixed::Fixed;
use marketflow_operators::indicators::IndicatorKind;
use marketflow_operators::{Bar, IndicatorRow, Interval, Record, Symbol, Tick};
use support::pg::{block_on, Cluster, TestDb};
use support::*;

const T0: i64 = 1_704_205_800_000; // 2024-01-02T14:30:00Z
const MINUTE: i64 = 60_000;

fn sym(s: &str) -> Symbol {
    Symbol::new(s).unwrap()
}

fn tick(symbol: &str, ts: i64, seq: u64, price: f64) -> Record {
    Record::Tick(Tick {
        symbol: sym(symbol),
        ts,
        price,
        volume: 10.0,
        seq,
        wm: ts,
    })
}

fn bar(symbol: &str, interval: Interval, start: i64, close: f64, revision: u32) -> Record {
    Record::Bar(Bar {
        symbol: sym(symbol),
        interval,
        start,
        end: start + interval.millis(),
        open: close - 1.0,
        high: close + 2.0,
        low: close - 2.0,
        close,
        volume: Fixed::from_f64(100.0),
        notional: Fixed::from_f64(100.0 * close),
        trades: 7,
        revision,
        seq: 0,
        wm: start,
        source: Default::default(),
    })
}

fn rsi(symbol: &str, interval: Interval, ts: i64, value: f64) -> Record {
    Record::Indicator(IndicatorRow {
        symbol: sym(symbol),
        interval,
        ts,
        id: "rsi_14".into(),
        kind: IndicatorKind::Rsi,
        outputs: [value, f64::NAN, f64::NAN],
        revision: 0,
    })
}

fn macd(symbol: &str, ts: i64, v: f64) -> Record {
    Record::Indicator(IndicatorRow {
        symbol: sym(symbol),
        interval: Interval::M1,
        ts,
        id: "macd_12_26_9".into(),
        kind: IndicatorKind::Macd,
        outputs: [v, v / 2.0, v / 2.0],
        revision: 0,
    })
}

/// A known data set: 300 ticks and 60 one-minute bars per symbol, daily bars, indicator
/// rows on 1m and 1d, a revised bar and a stale revision that must not win.
fn records() -> Vec<Record> {
    let mut out = Vec::new();
    for (k, s) in ["AAPL", "MSFT"].iter().enumerate() {
        for i in 0..300 {
            out.push(tick(
                s,
                T0 + i * 1_000,
                i as u64,
                100.0 + k as f64 + i as f64 / 100.0,
            ));
        }
        // Two ticks at one instant are two rows.
        out.push(tick(s, T0, 1_000, 99.0));
        for i in 0..60 {
            let ts = T0 + i * MINUTE;
            out.push(bar(s, Interval::M1, ts, 100.0 + i as f64, 0));
            out.push(rsi(s, Interval::M1, ts, 50.0 + i as f64 / 10.0));
            out.push(macd(s, ts, i as f64 / 100.0));
        }
        out.push(bar(s, Interval::M5, T0, 105.0, 0));
        for d in 0..5 {
            let ts = T0 + d * 86_400_000;
            out.push(bar(s, Interval::D1, ts, 150.0 + d as f64, 0));
            out.push(rsi(s, Interval::D1, ts, 40.0 + d as f64));
        }
    }
    // A revision replaces the bar; a late older revision does not undo it.
    out.push(bar("AAPL", Interval::M1, T0, 999.0, 2));
    out.push(bar("AAPL", Interval::M1, T0, 555.0, 1));
    out
}

fn write_postgres(url: &str, records: &[Record]) {
    block_on(async {
        let mut client = postgres::connect(url).await.unwrap();
        postgres::migrate(&mut client, postgres::TimescaleMode::Auto)
            .await
            .unwrap();
        let mut writer = postgres::PgWriter::new(client).await.unwrap();
        // Two batches, so that the stale revision arrives in a later transaction.
        let (a, b) = records.split_at(records.len() - 1);
        for part in [a, b] {
            let mut batch = Batch::default();
            part.iter().cloned().for_each(|r| batch.push(r));
            writer.write(&batch).await.unwrap();
        }
    });
}

fn write_sqlite(path: &Path, records: &[Record]) {
    let mut conn = sqlite::open(path).unwrap();
    sqlite::migrate(&mut conn).unwrap();
    let (a, b) = records.split_at(records.len() - 1);
    for part in [a, b] {
        let mut batch = Batch::default();
        part.iter().cloned().for_each(|r| batch.push(r));
        sqlite::write(&mut conn, &batch).unwrap();
    }
}

/// Every query the server makes, with its answer as JSON lines.
async fn answers(store: &Store) -> Vec<String> {
    let json = |r: &Record| {
        let mut out = Vec::new();
        marketflow::codec::write_record_json(&mut out, r);
        String::from_utf8(out).unwrap()
    };
    let mut out = Vec::new();
    for symbol in ["AAPL", "MSFT", "NONE"] {
        let symbol = sym(symbol);
        for t in store.latest_ticks(&symbol, 5).await.unwrap() {
            out.push(json(&Record::Tick(t)));
        }
        for (interval, start, end, limit) in [
            (Interval::M1, None, None, 10),
            (Interval::M1, Some(T0), Some(T0 + 3 * MINUTE), 100),
            (Interval::M1, Some(T0 + 50 * MINUTE), None, 1000),
            (Interval::M5, None, None, 10),
            (Interval::D1, None, Some(T0 + 2 * 86_400_000), 10),
        ] {
            let query = BarQuery {
                symbol: symbol.clone(),
                interval,
                start,
                end,
                limit,
            };
            out.push(format!("bars {query:?}"));
            for b in store.bars(&query).await.unwrap() {
                out.push(json(&Record::Bar(b)));
            }
        }
        for (interval, indicator, limit) in [
            (Interval::M1, None, 6),
            (Interval::M1, Some("rsi_14"), 3),
            (Interval::M1, Some("macd"), 3),
            (Interval::D1, Some("rsi"), 10),
        ] {
            let query = IndicatorQuery {
                symbol: symbol.clone(),
                interval,
                indicator: indicator.map(str::to_owned),
                start: Some(T0),
                end: None,
                limit,
            };
            out.push(format!("indicators {query:?}"));
            for r in store.indicators(&query).await.unwrap() {
                out.push(json(&Record::Indicator(r)));
            }
        }
    }
    for span in store.symbols().await.unwrap() {
        out.push(format!("{span:?}"));
    }
    out
}

#[test]
fn postgres_and_sqlite_answer_every_query_the_same() {
    let records = records();
    let db = TestDb::new("queries");
    write_postgres(&db.url, &records);
    let dir = scratch();
    let file = dir.path().join("store.db");
    write_sqlite(&file, &records);

    let from_postgres = block_on(async {
        answers(
            &Store::open(&Location::Postgres(db.url.clone()))
                .await
                .unwrap(),
        )
        .await
    });
    let from_sqlite = block_on(async {
        answers(&Store::open(&Location::Sqlite(file.clone())).await.unwrap()).await
    });
    assert_eq!(from_postgres, from_sqlite);

    let text = from_sqlite.join("\n");
    // The latest 5 ticks in time order.
    let first_ticks: Vec<&String> = from_sqlite.iter().take(5).collect();
    assert!(
        first_ticks[0].contains("\"ts\":\"2024-01-02T14:34:55Z\""),
        "{first_ticks:?}"
    );
    assert!(
        first_ticks[4].contains("\"ts\":\"2024-01-02T14:34:59Z\""),
        "{first_ticks:?}"
    );
    // Revision 2 won over the later revision 1.
    assert!(text.contains("\"close\":999,"), "the revised bar is stored");
    assert!(
        !text.contains("\"close\":555,"),
        "a stale revision does not win"
    );
    // A range gives exactly its bars: [14:30, 14:33) is three bars.
    let range = from_sqlite
        .iter()
        .skip_while(|l| !l.contains("start: Some(1704205800000), end: Some(1704205980000)"))
        .skip(1)
        .take_while(|l| l.starts_with('{'))
        .count();
    assert_eq!(range, 3);
    assert!(text.contains("\"values\":{\"macd\":0.59,\"signal\":0.295,\"hist\":0.295}"));
    assert!(text.contains("SymbolSpan { symbol: \"AAPL\""));
    assert!(
        !text.contains("\"symbol\":\"NONE\""),
        "an unknown symbol has no rows"
    );
}

fn store_pipeline(dir: &Path, ticks: &str, url: &str) -> std::path::PathBuf {
    write(
        dir,
        "p.yaml",
        &format!(
            "pipeline: store\n\
             sources:\n  ticks: {{type: file, path: {ticks}, format: csv}}\n\
             operators:\n\
             \x20 bars_1m: {{type: bars, from: ticks, interval: 1m}}\n\
             \x20 bars_1d: {{type: bars, from: bars_1m, interval: 1d}}\n\
             \x20 ta: {{type: indicators, from: bars_1m, indicators: [{{rsi: {{}}}}, {{macd: {{}}}}]}}\n\
             sinks:\n\
             \x20 db: {{type: postgres, from: [ticks, bars_1m, bars_1d, ta], url: \"{url}\", batch_size: 2000, retention: off}}\n"
        ),
    )
}

fn ticks_csv(count: usize) -> String {
    tick_csv(5, &["AAPL", "MSFT", "NVDA"], T0, count, 600, 0)
}

#[test]
fn running_a_pipeline_twice_gives_the_same_rows() {
    let db = TestDb::new("twice");
    let dir = scratch();
    write(dir.path(), "ticks.csv", &ticks_csv(20_000));
    store_pipeline(dir.path(), "ticks.csv", &db.url);
    run_ok(dir.path(), &["run", "p.yaml"]);
    let first = db.dump();
    assert_eq!(db.count("realtime_prices"), 20_000);
    assert!(db.count("intraday_ohlcv") > 100);
    assert!(db.count("intraday_analytics") > 100);
    run_ok(dir.path(), &["run", "p.yaml", "--workers", "2"]);
    assert_eq!(first, db.dump());
}

/// Starts `marketflow run p.yaml` reading ticks from a FIFO; returns the child and the
/// FIFO's writing end.
fn run_from_fifo(dir: &Path, extra: &[&str]) -> (Child, std::fs::File) {
    let fifo = dir.join("ticks.fifo");
    if !fifo.exists() {
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(status.success());
    }
    let child = marketflow()
        .current_dir(dir)
        .args(["run", "p.yaml"])
        .args(extra)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Opening blocks until the pipeline opens the FIFO for reading.
    let writer = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    (child, writer)
}

/// Waits until `table` holds `rows` rows (the pipeline commits on its own schedule).
fn wait_for_rows(db: &TestDb, table: &str, rows: i64, child: &mut Child) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        if db.count(table) >= rows {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "waited 120 s for {rows} rows in {table} (found {})",
            db.count(table)
        );
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the pipeline exited ({status}) before committing {rows} rows to {table}");
        }
        std::thread::yield_now();
    }
}

#[test]
fn a_run_killed_and_restarted_ends_with_the_rows_of_an_uninterrupted_run() {
    let csv = ticks_csv(30_000);
    let half = csv.lines().take(15_001).collect::<Vec<_>>().join("\n") + "\n";

    let reference = TestDb::new("uninterrupted");
    let dir = scratch();
    write(dir.path(), "ticks.csv", &csv);
    store_pipeline(dir.path(), "ticks.csv", &reference.url);
    run_ok(dir.path(), &["run", "p.yaml"]);

    let db = TestDb::new("killed");
    let killed_dir = scratch();
    store_pipeline(killed_dir.path(), "ticks.fifo", &db.url);
    let (mut child, mut fifo) = run_from_fifo(killed_dir.path(), &[]);
    fifo.write_all(half.as_bytes()).unwrap();
    fifo.flush().unwrap();
    wait_for_rows(&db, "realtime_prices", 15_000, &mut child);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    drop(fifo);
    assert!(db.count("realtime_prices") < 30_000);

    write(killed_dir.path(), "ticks.csv", &csv);
    store_pipeline(killed_dir.path(), "ticks.csv", &db.url);
    run_ok(killed_dir.path(), &["run", "p.yaml"]);
    assert_eq!(db.dump(), reference.dump());
}

#[test]
fn postgres_restarting_during_a_run_loses_and_duplicates_nothing() {
    let csv = ticks_csv(30_000);
    let (first, second): (Vec<&str>, Vec<&str>) = {
        let lines: Vec<&str> = csv.lines().collect();
        (lines[..15_001].to_vec(), lines[15_001..].to_vec())
    };
    let cluster = Cluster::start();
    let reference = TestDb::on(&cluster.admin_url(), "reference");
    let dir = scratch();
    write(dir.path(), "ticks.csv", &csv);
    store_pipeline(dir.path(), "ticks.csv", &reference.url);
    run_ok(dir.path(), &["run", "p.yaml"]);

    let db = TestDb::on(&cluster.admin_url(), "restarted");
    let run_dir = scratch();
    store_pipeline(run_dir.path(), "ticks.fifo", &db.url);
    let (mut child, mut fifo) = run_from_fifo(run_dir.path(), &["--metrics-file", "metrics.txt"]);
    fifo.write_all((first.join("\n") + "\n").as_bytes())
        .unwrap();
    fifo.flush().unwrap();
    wait_for_rows(&db, "realtime_prices", 15_000, &mut child);

    cluster.pg_ctl_stop();
    fifo.write_all((second.join("\n") + "\n").as_bytes())
        .unwrap();
    drop(fifo);
    // The sink reports each failed attempt; restart the server after the first.
    let _watch = watchdog(
        child.id(),
        std::time::Duration::from_secs(120),
        "the sink to retry",
    );
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut log = String::new();
    loop {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap() == 0 {
            panic!("the pipeline ended without retrying:\n{log}");
        }
        log.push_str(&line);
        if line.contains("retrying") {
            break;
        }
    }
    cluster.pg_ctl_start();
    let drain = std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut rest);
        rest
    });
    let status = child.wait().unwrap();
    let rest = drain.join().unwrap();
    assert!(status.success(), "exit {status}:\n{log}{rest}");
    assert_eq!(db.dump(), reference.dump());
    let metrics = std::fs::read_to_string(run_dir.path().join("metrics.txt")).unwrap();
    let retries: u64 = metrics
        .lines()
        .find(|l| l.starts_with("marketflow_sink_retries_total{sink=\"db\"}"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(retries > 0, "{metrics}");
}

#[test]
fn migrate_reports_its_mode_and_applies_each_migration_once() {
    let db = TestDb::new("migrate");
    let dir = scratch();
    let first = run_ok(dir.path(), &["migrate", "--database-url", &db.url]);
    assert!(
        first.contains("mode: plain PostgreSQL") || first.contains("mode: TimescaleDB"),
        "{first}"
    );
    assert!(first.contains("applied: 0001_tables.sql"), "{first}");
    let second = run_ok(dir.path(), &["migrate", "--database-url", &db.url]);
    assert!(
        second.contains("already applied: 0001_tables.sql"),
        "{second}"
    );
    assert!(!second.contains("\napplied:"), "{second}");
    let lite = run_ok(
        dir.path(),
        &["migrate", "--database-url", "sqlite:x/store.db"],
    );
    assert!(lite.contains("applied: 0001_tables.sql"), "{lite}");
}

#[test]
fn the_demo_store_opens_in_the_sqlite3_shell() {
    let dir = scratch();
    let mut child = marketflow()
        .current_dir(dir.path())
        .args(["run"])
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _watchdog = watchdog(
        child.id(),
        std::time::Duration::from_secs(120),
        "the demo's store to open",
    );
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("sqlite store open") {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "the demo ended early"
        );
    }
    let pid = child.id().to_string();
    std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    assert!(child.wait().unwrap().success());
    let out = std::process::Command::new("sqlite3")
        .arg(dir.path().join("data/marketflow.db"))
        .arg("PRAGMA integrity_check; SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name; SELECT count(*) >= 0 FROM realtime_prices;")
        .output()
        .expect("the sqlite3 shell (Debian package sqlite3; scripts/setup.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.starts_with("ok\n"), "{text}");
    for table in [
        "historical_ohlcv",
        "intraday_analytics",
        "intraday_ohlcv",
        "realtime_prices",
    ] {
        assert!(text.contains(table), "{text}");
    }
}

/// A pipeline that regenerates its history on each start (the demo: a synthetic day ending
/// now) with `clear: true` keeps one history across restarts: the second run's store has
/// the ticks of one run, and its bars count exactly those ticks.
#[test]
fn a_restarted_synthetic_pipeline_with_clear_keeps_one_history() {
    let dir = scratch();
    write(
        dir.path(),
        "p.yaml",
        "pipeline: restart\n\
         sources:\n  ticks: {type: synthetic, symbols: [AAPL, MSFT], start: now-2h, count: 3000}\n\
         operators:\n  bars_1m: {type: bars, from: ticks, interval: 1m}\n\
         sinks:\n  store: {type: sqlite, from: [ticks, bars_1m], path: s.db, clear: true}\n",
    );
    let db = dir.path().join("s.db");
    let counts = || {
        let conn = rusqlite::Connection::open(&db).unwrap();
        let ticks: i64 = conn
            .query_row("SELECT count(*) FROM realtime_prices", [], |r| r.get(0))
            .unwrap();
        let trades: i64 = conn
            .query_row(
                "SELECT coalesce(sum(trades), 0) FROM intraday_ohlcv WHERE interval = '1m'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        (ticks, trades)
    };
    run_ok(dir.path(), &["run", "p.yaml"]);
    assert_eq!(counts(), (3000, 3000));
    run_ok(dir.path(), &["run", "p.yaml"]);
    assert_eq!(counts(), (3000, 3000), "a restart mixed two histories");
}
