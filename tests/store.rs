//! Storage against real databases: the same queries over PostgreSQL and SQLite, idempotent
//! reruns, a SIGKILLed run restarted, and PostgreSQL restarting in the middle of a run.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Stdio};

use marketflow::store::{postgres, Location, Store};
use support::pg::{block_on, Cluster, TestDb};
use support::queries::{answers, records, write_postgres, write_sqlite, T0};
use support::*;

#[test]
fn postgres_and_sqlite_answer_every_query_the_same() {
    let records = records();
    let db = TestDb::new("queries");
    write_postgres(&db.url, &records, postgres::TimescaleMode::Auto);
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
        .take_while(|l| l.starts_with('{') || l.starts_with("source"))
        .filter(|l| l.starts_with('{'))
        .count();
    assert_eq!(range, 3);
    // The predecessor API's queries: ticks in a range, prices before times, the tick
    // analytics' interval, bar sources, tick counts.
    let ticks = from_sqlite
        .iter()
        .skip_while(|l| !l.starts_with("ticks TickQuery"))
        .skip(1)
        .take_while(|l| l.starts_with('{'))
        .count();
    assert_eq!(ticks, 3);
    assert!(
        text.contains("prices before [1704205800000, 1704205800001, 1704205805500, 1704215800000]: [None, Some(99.0), Some(100.05), Some(102.99)]"),
        "{text}"
    );
    assert!(text.contains("realtime interval Some(5s)"), "{text}");
    assert!(text.contains("source \"history_5m+live\""));
    assert!(text.contains("ticks: Some(301)"), "{text}");
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
    run_ok(
        dir.path(),
        &[
            "run",
            "p.yaml",
            "--workers",
            "2",
            "--metrics-file",
            "m.prom",
        ],
    );
    assert_eq!(first, db.dump());
    // Each worker wrote its symbols over its own connection.
    let written = metric_series(
        &dir.path().join("m.prom"),
        "marketflow_sink_writer_records_total",
    );
    let writers: Vec<&String> = written
        .iter()
        .filter(|(_, n)| **n > 0.0)
        .map(|(l, _)| l)
        .collect();
    assert_eq!(
        writers,
        ["sink=\"db\",writer=\"0\"", "sink=\"db\",writer=\"1\""],
        "{written:?}"
    );
    assert_eq!(
        written.values().sum::<f64>(),
        sink_total(&dir.path().join("m.prom"))
    );

    // A cluster of two processes: each writes its share.
    run_cluster(dir.path(), 2, 1, &["--metrics-file", "m{process}.prom"]);
    assert_eq!(first, db.dump());
    for (process, writer) in [("0", "0"), ("1", "1")] {
        let path = dir.path().join(format!("m{process}.prom"));
        let written = metric_series(&path, "marketflow_sink_writer_records_total");
        let own = written
            .get(&format!("sink=\"db\",writer=\"{writer}\""))
            .copied();
        assert!(
            own.is_some_and(|n| n > 0.0),
            "process {process} wrote nothing: {written:?}"
        );
    }
}

/// The records the sink `db` wrote, by the metrics file.
fn sink_total(path: &Path) -> f64 {
    metric_series(path, "marketflow_sink_records_total")["sink=\"db\""]
}

/// Starts `marketflow run p.yaml` reading ticks from a FIFO; returns the child and the
/// FIFO's writing end.
fn run_from_fifo(dir: &Path, extra: &[&str]) -> (Child, std::fs::File) {
    let fifo = dir.join("ticks.fifo");
    if !fifo.exists() {
        support::fifo(dir, "ticks.fifo");
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
