//! Backfill throughput: a year of 5-minute bars for 50 symbols from the fake TwelveData
//! REST server (tests/support/rest.rs), through `marketflow backfill` into SQLite; bars/s
//! and pages/s. The baseline, in the same run: a bare client asking the same fake for the
//! same pages one after another and reading their JSON, storing nothing.
//! `cargo bench --bench backfill`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Instant;

use chrono::NaiveDate;
use support::rest::{equity_bars, FakeRest, Series, MINUTE};

const SYMBOLS: usize = 50;
const KEY: &str = "bench-key";

fn main() {
    let first = NaiveDate::from_ymd_opt(2024, 11, 1).unwrap();
    let last = NaiveDate::from_ymd_opt(2025, 10, 31).unwrap();
    let fake = FakeRest::start(KEY);
    let symbols: Vec<String> = (0..SYMBOLS).map(|i| format!("S{i:02}")).collect();
    let mut fixture_bars = 0;
    for (i, s) in symbols.iter().enumerate() {
        let bars = equity_bars(i as u64 + 7, first, last, &[], &[], 5);
        fixture_bars += bars.len();
        fake.add(
            s,
            Series {
                timezone: chrono_tz::America::New_York,
                interval: 5 * MINUTE,
                bars,
            },
        );
    }
    let dir = support::scratch();
    let yaml = format!(
        "pipeline: bench\n\
         sources:\n  history: {{type: twelvedata_history, symbols: [{}], interval: 5m, start: 2024-11-01, end: 2025-11-01, api_key: \"${{TD_KEY}}\", url: \"{}\", credits_per_minute: 100000}}\n\
         sinks:\n  store: {{type: sqlite, from: [history], path: store.db}}\n",
        symbols.join(", "),
        fake.url()
    );
    support::write(dir.path(), "bench.yaml", &yaml);

    let started = Instant::now();
    let out = support::marketflow()
        .current_dir(dir.path())
        .args(["backfill", "bench.yaml"])
        .env("TD_KEY", KEY)
        .output()
        .expect("marketflow runs");
    let seconds = started.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "backfill failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = fake.log();
    let pages = log.iter().filter(|l| l.status == 200).count();
    let conn = rusqlite::Connection::open(dir.path().join("store.db")).unwrap();
    let stored: i64 = conn
        .query_row("SELECT count(*) FROM intraday_ohlcv", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        stored as usize, fixture_bars,
        "every fixture bar stored once"
    );

    // Baseline: the same pages, asked one by one by a bare client that only reads them.
    let urls: Vec<String> = log
        .iter()
        .filter(|l| l.status == 200)
        .map(|l| {
            let query: Vec<String> = l
                .query
                .iter()
                .map(|(k, v)| format!("{k}={}", v.replace(' ', "%20")))
                .collect();
            format!("{}{}?{}", fake.url(), l.path, query.join("&"))
        })
        .collect();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let started = Instant::now();
    let read: usize = runtime.block_on(async {
        let client = reqwest::Client::new();
        let mut rows = 0;
        for url in &urls {
            let body = client.get(url).send().await.unwrap().bytes().await.unwrap();
            let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
            rows += json["values"].as_array().map_or(0, Vec::len);
        }
        rows
    });
    let baseline = started.elapsed().as_secs_f64();
    assert_eq!(read, fixture_bars, "the baseline read every bar");

    println!(
        "backfill: {SYMBOLS} symbols, {fixture_bars} bars, {pages} pages in {seconds:.2}s: {:.0} bars/s, {:.1} pages/s (stored in SQLite)",
        fixture_bars as f64 / seconds,
        pages as f64 / seconds
    );
    println!(
        "baseline: the same {} pages fetched and parsed one by one in {baseline:.2}s: {:.0} bars/s, {:.1} pages/s",
        urls.len(),
        read as f64 / baseline,
        urls.len() as f64 / baseline
    );
    println!(
        "ratio: marketflow backfill (fetch, convert, store) runs at {:.2}x the bare fetch-and-parse loop",
        baseline / seconds
    );
}
