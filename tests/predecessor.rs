//! The predecessor's API as a drop-in: every request of `../shared/docs/predecessor.md` §4
//! (each route with each of its parameters) against `marketflow serve` on a known store,
//! checking status codes, field names and values.
//!
//! The store holds a fixed day (2024-01-02: ticks 09:30:00-09:34:59 New York, 78 five-minute
//! bars, indicator rows) and recent data relative to the wall clock (the predecessor's
//! `last_minutes`, `last_hours`, `last_days` and its 30-minute default are relative to now).

mod support;

use marketflow::store::{sqlite, Batch};
use marketflow_operators::fixed::Fixed;
use marketflow_operators::indicators::IndicatorKind;
use marketflow_operators::record::MAX_OUTPUTS;
use marketflow_operators::{Bar, IndicatorRow, Interval, Record, Symbol, Tick};
use serde_json::Value;
use support::http::{block_on, get, request, ws_connect, ws_next, ws_send, Serving};

const T0: i64 = 1_704_205_800_000; // 2024-01-02T14:30:00Z, 09:30 in New York
const MINUTE: i64 = 60_000;
const DAY: i64 = 86_400_000;

fn aapl() -> Symbol {
    Symbol::new("AAPL").unwrap()
}

fn bar(interval: Interval, start: i64, end: i64, close: f64) -> Record {
    Record::Bar(Bar {
        symbol: aapl(),
        interval,
        start,
        end,
        open: close - 0.5,
        high: close + 1.0,
        low: close - 1.0,
        close,
        volume: Fixed::from_f64(1000.0),
        notional: Fixed::from_f64(1000.0 * close),
        trades: 10,
        revision: 0,
        seq: 0,
        wm: start,
        source: "history_5m".into(),
    })
}

fn row(interval: Interval, ts: i64, id: &str, kind: IndicatorKind, values: &[f64]) -> Record {
    let mut outputs = [f64::NAN; MAX_OUTPUTS];
    outputs[..values.len()].copy_from_slice(values);
    Record::Indicator(IndicatorRow {
        symbol: aapl(),
        interval,
        ts,
        id: id.into(),
        kind,
        outputs,
        revision: 0,
    })
}

/// The predecessor's bar set on one bar, from its index: rsi_14 = 50 + i/10, macd = i,
/// signal i/2, hist i/4, Bollinger close ± 2, sma_20 = close − 1, mom_10 = 10, natr = 1.5.
fn bar_indicators(batch: &mut Vec<Record>, interval: Interval, ts: i64, i: usize, close: f64) {
    let f = i as f64;
    batch.push(row(
        interval,
        ts,
        "rsi_14",
        IndicatorKind::Rsi,
        &[50.0 + f / 10.0],
    ));
    batch.push(row(
        interval,
        ts,
        "macd_12_26_9",
        IndicatorKind::Macd,
        &[f, f / 2.0, f / 4.0],
    ));
    batch.push(row(
        interval,
        ts,
        "bollinger_20_2",
        IndicatorKind::Bollinger,
        &[close + 2.0, close, close - 2.0, 4.0 / close, 0.5],
    ));
    batch.push(row(
        interval,
        ts,
        "sma_20",
        IndicatorKind::Sma,
        &[close - 1.0],
    ));
    batch.push(row(
        interval,
        ts,
        "sma_50",
        IndicatorKind::Sma,
        &[close - 2.0],
    ));
    batch.push(row(interval, ts, "mom_10", IndicatorKind::Mom, &[10.0]));
    batch.push(row(interval, ts, "natr_14", IndicatorKind::Natr, &[1.5]));
    batch.push(row(
        interval,
        ts,
        "stochastic_14_3_3",
        IndicatorKind::Stochastic,
        &[80.0, 75.0],
    ));
}

/// The most recent weekday (in New York) at or before `now`, as days since the epoch.
fn recent_weekday(now: i64) -> i64 {
    let mut day = (now - 5 * 3_600_000).div_euclid(DAY);
    while (day + 3).rem_euclid(7) >= 5 {
        day -= 1;
    }
    day
}

struct Known {
    now: i64,
    /// Ticks stored in all.
    ticks: usize,
    recent_session: i64,
}

/// The known rows, and what the checks need to know of them.
fn known_rows() -> (Known, Vec<Record>) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut batch = Vec::new();
    let mut ticks = 0;
    let mut tick = |batch: &mut Vec<Record>, ts: i64, price: f64, seq: u64| {
        batch.push(Record::Tick(Tick {
            symbol: aapl(),
            ts,
            price,
            volume: 10.0,
            seq,
            wm: ts,
        }));
        ticks += 1;
    };
    // The fixed day: ticks 09:30:00 to 09:34:59, 78 five-minute bars, a session bar.
    for i in 0..300 {
        tick(
            &mut batch,
            T0 + i * 1000,
            100.0 + i as f64 / 100.0,
            i as u64,
        );
    }
    let m5 = Interval::parse("5m").unwrap();
    for i in 0..78 {
        let start = T0 + i as i64 * 5 * MINUTE;
        let close = 100.0 + i as f64;
        batch.push(bar(m5, start, start + 5 * MINUTE, close));
        bar_indicators(&mut batch, m5, start, i, close);
    }
    // Sessions 2023-12-29 and 2024-01-02 to 01-05 (14:30Z to 21:00Z).
    for (i, day) in [-4, 0, 1, 2, 3].into_iter().enumerate() {
        let start = T0 + day * DAY;
        let close = 200.0 + i as f64;
        batch.push(bar(Interval::D1, start, start + 390 * MINUTE, close));
        bar_indicators(&mut batch, Interval::D1, start, i, close);
    }
    // Recent: a tick a second for 10 minutes, a 5-minute bar for 3 hours, tick analytics
    // every 5 s, a session bar on the latest weekday.
    let recent = now - 600_000;
    for i in 0..600 {
        tick(
            &mut batch,
            recent + i * 1000,
            150.0 + i as f64 / 100.0,
            i as u64,
        );
    }
    let first_bar = (now - 3 * 3_600_000).div_euclid(5 * MINUTE) * 5 * MINUTE;
    for i in 0..36 {
        let start = first_bar + i * 5 * MINUTE;
        batch.push(bar(m5, start, start + 5 * MINUTE, 300.0 + i as f64));
        bar_indicators(&mut batch, m5, start, 100 + i as usize, 300.0 + i as f64);
    }
    let s5 = Interval::parse("5s").unwrap();
    for w in 0..120 {
        let ts = (recent / 5000) * 5000 + w * 5000;
        let f = w as f64;
        for (id, kind, values) in [
            ("price_velocity_10", IndicatorKind::PriceVelocity, vec![f]),
            (
                "price_velocity_50",
                IndicatorKind::PriceVelocity,
                vec![f / 2.0],
            ),
            ("tick_ratio_19", IndicatorKind::TickRatio, vec![1.5]),
            ("tick_vwap_20", IndicatorKind::TickVwap, vec![150.0]),
            (
                "volume_momentum_10",
                IndicatorKind::VolumeMomentum,
                vec![0.9],
            ),
            (
                "tick_bollinger_20_2",
                IndicatorKind::TickBollinger,
                vec![0.01, 0.25],
            ),
            ("tick_rsi_14", IndicatorKind::TickRsi, vec![55.0]),
        ] {
            batch.push(row(s5, ts, id, kind, &values));
        }
    }
    let recent_session = recent_weekday(now);
    let start = recent_session * DAY + 870 * MINUTE;
    batch.push(bar(Interval::D1, start, start + 390 * MINUTE, 250.0));
    bar_indicators(&mut batch, Interval::D1, start, 9, 250.0);
    (
        Known {
            now,
            ticks,
            recent_session,
        },
        batch,
    )
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect();
    k.sort();
    k
}

fn sorted(names: &[&str]) -> Vec<String> {
    let mut k: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
    k.sort();
    k
}

const TICK_ROW: &[&str] = &[
    "symbol",
    "price",
    "timestamp",
    "volume",
    "source",
    "timestamp_utc",
    "timestamp_est",
];
const BAR_ROW: &[&str] = &[
    "symbol",
    "timestamp",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "source",
    "timestamp_utc",
    "timestamp_est",
];
const DAILY_ROW: &[&str] = &[
    "symbol",
    "timestamp",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "source",
    "timestamp_utc",
    "date_est",
];

/// A time as the predecessor wrote `timestamp` (`2024-01-02 14:30:00+00:00`).
fn ms(text: &str) -> i64 {
    assert_eq!(text.as_bytes().get(10), Some(&b' '), "{text}");
    chrono::DateTime::parse_from_rfc3339(&text.replacen(' ', "T", 1))
        .unwrap_or_else(|e| panic!("`{text}`: {e}"))
        .timestamp_millis()
}

/// Times of `data`, checked newest first.
fn times(v: &Value) -> Vec<i64> {
    let t: Vec<i64> = v["data"]
        .as_array()
        .unwrap_or_else(|| panic!("no data list: {v}"))
        .iter()
        .map(|r| ms(r["timestamp"].as_str().unwrap()))
        .collect();
    assert!(t.windows(2).all(|w| w[0] > w[1]), "not newest first: {v}");
    t
}

#[test]
fn every_request_of_the_predecessor_api_is_answered_in_its_shape_from_sqlite() {
    let dir = support::scratch();
    let db = dir.path().join("store.db");
    let (known, records) = known_rows();
    let mut conn = sqlite::open(&db).unwrap();
    sqlite::migrate(&mut conn).unwrap();
    let mut batch = Batch::default();
    for r in records {
        batch.push(r);
    }
    sqlite::write(&mut conn, &batch).unwrap();
    replay(dir.path(), db.to_str().unwrap(), &known);
}

#[test]
fn every_request_of_the_predecessor_api_is_answered_in_its_shape_from_postgres() {
    let dir = support::scratch();
    let db = support::pg::TestDb::new("predecessor");
    let (known, records) = known_rows();
    support::queries::write_postgres(
        &db.url,
        &records,
        marketflow::store::postgres::TimescaleMode::Auto,
    );
    replay(dir.path(), &db.url, &known);
}

/// Plays every request against `marketflow serve --store STORE`.
fn replay(dir: &std::path::Path, store: &str, known: &Known) {
    let server = Serving::start(dir, &["serve", "--store", store, "--listen", "127.0.0.1:0"]);
    let addr = server.addr;
    block_on(async move {
        let ok = |path: String| async move {
            let a = get(addr, &path).await;
            assert_eq!(a.status, 200, "{path}: {}", a.text());
            a.json()
        };
        let fails = |path: &'static str, status: u16| async move {
            let a = get(addr, path).await;
            assert_eq!(a.status, status, "{path}: {}", a.text());
            let v = a.json();
            assert!(
                v["detail"].as_str().is_some_and(|d| !d.is_empty()),
                "{path}: {v}"
            );
            v
        };

        // GET /: the service document for an API client; the chart for a browser.
        let a = request(addr, "GET", "/", &[("accept", "*/*")]).await;
        let v = a.json();
        assert_eq!(v["status"], "online");
        assert!(v["endpoints"]["/api/v2/realtime/analytics/{symbol}"].is_string());
        let page = request(addr, "GET", "/", &[("accept", "text/html")]).await;
        assert!(page.text().contains("<html"), "the chart page");
        for page in ["/docs", "/redoc"] {
            assert_eq!(get(addr, page).await.status, 200, "{page}");
        }
        let health = ok("/health".into()).await;
        assert_eq!(health["services"]["database"], "connected");
        let metrics = get(addr, "/metrics").await;
        assert!(metrics.text().contains("marketflow_http_requests_total"));

        // Real-time prices.
        let v = ok("/api/v2/realtime/prices/AAPL".into()).await;
        assert_eq!(v["symbol"], "AAPL");
        assert_eq!(v["count"], 100);
        assert!(v["timezone_note"].is_string());
        let row = &v["data"][0];
        assert_eq!(keys(row), sorted(TICK_ROW));
        assert_eq!(row["price"], 150.0 + 599.0 / 100.0); // the newest tick, a JSON number
        assert_eq!(row["volume"], 10);
        assert_eq!(
            row["timestamp"].as_str().unwrap().replacen(' ', "T", 1),
            row["timestamp_utc"].as_str().unwrap()
        );
        assert!(row["timestamp_utc"].as_str().unwrap().ends_with("+00:00"));
        assert_eq!(times(&v)[0], known.now - 600_000 + 599_000);
        let v = ok("/api/v2/realtime/prices/aapl?limit=5".into()).await;
        assert_eq!(v["count"], 5);
        let v = ok("/api/v2/realtime/prices/AAPL?last_minutes=5&limit=5000".into()).await;
        let t = times(&v);
        assert!(
            !t.is_empty() && t.iter().all(|&t| t >= known.now - 300_000),
            "{v}"
        );
        let v = ok("/api/v2/realtime/prices/AAPL?date=2024-01-02&limit=1000".into()).await;
        assert_eq!(v["count"], 300);
        assert_eq!(v["data"][0]["timestamp_est"], "2024-01-02 09:34:59 EST");
        assert_eq!(v["data"][299]["timestamp_utc"], "2024-01-02T14:30:00+00:00");
        let v = ok(
            "/api/v2/realtime/prices/AAPL?date=2024-01-02&start_time=09:31&end_time=09:31:59"
                .into(),
        )
        .await;
        assert_eq!(v["count"], 60);
        assert_eq!(v["data"][0]["timestamp_est"], "2024-01-02 09:31:59 EST");
        assert_eq!(v["data"][59]["timestamp_est"], "2024-01-02 09:31:00 EST");
        let v = ok("/api/v2/realtime/prices/AAPL?date=2024-01-02&start_time=09:34:30".into()).await;
        assert_eq!(v["count"], 30, "to the end of the day: {v}");
        let v = ok(
            "/api/v2/realtime/prices/AAPL?start_date=2024-01-02&end_date=2024-01-02&limit=5000"
                .into(),
        )
        .await;
        assert_eq!(v["count"], 300);
        let v = ok("/api/v2/realtime/prices/AAPL?start_date=2024-01-03&limit=5000".into()).await;
        assert_eq!(v["count"], 600, "the recent ticks only");
        let v = ok("/api/v2/realtime/prices/AAPL?end_date=2024-01-01".into()).await;
        assert_eq!(v["count"], 0);
        assert!(v["message"].is_string() && v["data"] == serde_json::json!([]));
        let csv = get(addr, "/api/v2/realtime/prices/AAPL?limit=2&format=csv").await;
        assert_eq!(csv.status, 200);
        let text = csv.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], TICK_ROW.join(","), "{text}");
        assert_eq!(lines.len(), 3, "{text}");
        let v = ok("/api/v2/realtime/prices/MSFT".into()).await;
        assert_eq!(
            v["count"], 0,
            "an unknown symbol's list is empty, as before"
        );
        for (path, status) in [
            ("/api/v2/realtime/prices/AAPL?limit=0", 400),
            ("/api/v2/realtime/prices/AAPL?limit=5001", 400),
            ("/api/v2/realtime/prices/AAPL?last_minutes=1441", 400),
            ("/api/v2/realtime/prices/AAPL?date=2024-02-30", 400),
            (
                "/api/v2/realtime/prices/AAPL?date=2024-01-02&start_time=9am",
                400,
            ),
            ("/api/v2/realtime/prices/AAPL?format=xml", 400),
        ] {
            fails(path, status).await;
        }

        // The latest tick.
        let v = ok("/api/v2/realtime/prices/AAPL/latest?format=json".into()).await;
        assert_eq!(keys(&v), sorted(&["symbol", "data", "timezone_note"]));
        assert_eq!(v["data"]["price"], 150.0 + 599.0 / 100.0);
        let v = fails("/api/v2/realtime/prices/MSFT/latest", 404).await;
        assert_eq!(v["detail"], "No real-time data found for symbol MSFT");

        // Real-time analytics: the 8 tick indicators of the last 30 minutes by default.
        let v = ok("/api/v2/realtime/analytics/AAPL".into()).await;
        let indicators = [
            "price_velocity_10",
            "price_velocity_50",
            "tick_ratio",
            "tick_vwap_20",
            "volume_momentum",
            "bb_bandwidth",
            "bb_position",
            "tick_rsi_14",
        ];
        let mut listed = indicators.to_vec();
        listed.push("price");
        assert_eq!(v["indicators"], serde_json::json!(listed));
        assert_eq!(v["count"], 100);
        let row = &v["data"][0];
        let mut expected = indicators.to_vec();
        expected.extend([
            "symbol",
            "timestamp",
            "price",
            "timestamp_utc",
            "timestamp_est",
        ]);
        assert_eq!(keys(row), sorted(&expected));
        assert_eq!(row["price_velocity_10"], 119);
        assert_eq!(row["tick_ratio"], 1.5);
        assert_eq!(row["bb_position"], 0.25);
        assert_eq!(row["volume_momentum"], 0.9);
        // The price is the window's last tick.
        let newest = times(&v)[0];
        let recent = known.now - 600_000;
        let last = (0..600)
            .rev()
            .find(|i| recent + i * 1000 < newest + 5000)
            .unwrap();
        assert_eq!(row["price"], 150.0 + last as f64 / 100.0, "{row}");
        let v = ok(
            "/api/v2/realtime/analytics/AAPL?indicators=tick_rsi_14&indicators=tick_ratio&limit=3"
                .into(),
        )
        .await;
        assert_eq!(v["count"], 3);
        assert_eq!(
            keys(&v["data"][0]),
            sorted(&[
                "symbol",
                "timestamp",
                "price",
                "tick_rsi_14",
                "tick_ratio",
                "timestamp_utc",
                "timestamp_est"
            ])
        );
        let v = ok("/api/v2/realtime/analytics/AAPL?last_minutes=1&limit=1000".into()).await;
        let n = v["count"].as_u64().unwrap();
        assert!((1..=13).contains(&n), "a minute of 5 s windows: {n}");
        let v = ok(
            "/api/v2/realtime/analytics/AAPL?date=2024-01-02&start_time=09:30&end_time=10:00"
                .into(),
        )
        .await;
        assert_eq!(v["count"], 0);
        let csv = get(
            addr,
            "/api/v2/realtime/analytics/AAPL?indicators=tick_rsi_14&limit=2&format=csv",
        )
        .await;
        assert_eq!(
            csv.text().lines().next(),
            Some("symbol,timestamp,price,tick_rsi_14,timestamp_utc,timestamp_est")
        );
        assert_eq!(csv.text().lines().count(), 3);
        fails("/api/v2/realtime/analytics/AAPL?indicators=bogus", 400).await;
        fails("/api/v2/realtime/analytics/AAPL?last_minutes=181", 400).await;
        fails("/api/v2/realtime/analytics/AAPL?limit=1001", 400).await;

        // Symbols.
        let v = ok("/api/v2/realtime/symbols".into()).await;
        assert_eq!(v["count"], 1);
        let s = &v["symbols"][0];
        assert_eq!(
            keys(s),
            sorted(&[
                "symbol",
                "tick_count",
                "first_seen",
                "last_seen",
                "first_seen_est",
                "last_seen_est"
            ])
        );
        assert_eq!(s["tick_count"], known.ticks as u64);
        assert_eq!(s["first_seen_est"], "2023-12-29 09:30:00 EST"); // over ticks and bars

        // Intraday prices: 5min by default, newest first.
        let v = ok("/api/v2/intraday/prices/AAPL".into()).await;
        assert_eq!(v["interval"], "5min");
        assert_eq!(v["count"], 100);
        assert_eq!(keys(&v["data"][0]), sorted(BAR_ROW));
        assert_eq!(v["data"][0]["close"], 335);
        assert_eq!(v["data"][0]["source"], "history_5m");
        times(&v);
        for interval in ["1min", "15min", "30min", "1h", "2h", "4h"] {
            let v = ok(format!("/api/v2/intraday/prices/AAPL?interval={interval}")).await;
            assert_eq!(
                (v["count"].as_u64(), v["interval"].as_str()),
                (Some(0), Some(interval))
            );
        }
        let v = ok("/api/v2/intraday/prices/AAPL?interval=5m&limit=3".into()).await;
        assert_eq!(v["count"], 3);
        let v = ok(
            "/api/v2/intraday/prices/AAPL?date=2024-01-02&start_time=09:30&end_time=10:00".into(),
        )
        .await;
        assert_eq!(v["count"], 7, "09:30 to 10:00 included");
        assert_eq!(v["data"][0]["timestamp_est"], "2024-01-02 10:00:00 EST");
        let v = ok("/api/v2/intraday/prices/AAPL?last_hours=1".into()).await;
        let t = times(&v);
        assert!(
            (11..=13).contains(&t.len()) && t.iter().all(|&t| t >= known.now - 3_600_000),
            "{v}"
        );
        let v = ok(
            "/api/v2/intraday/prices/AAPL?start_date=2024-01-02&end_date=2024-01-02&limit=2000"
                .into(),
        )
        .await;
        assert_eq!(v["count"], 78);
        let v = ok("/api/v2/intraday/prices/AAPL?start_date=2024-01-02&limit=2000".into()).await;
        assert_eq!(v["count"], 78 + 36);
        let csv = get(
            addr,
            "/api/v2/intraday/prices/AAPL?date=2024-01-02&format=csv",
        )
        .await;
        assert_eq!(csv.text().lines().next(), Some(BAR_ROW.join(",").as_str()));
        assert_eq!(csv.text().lines().count(), 79);
        fails("/api/v2/intraday/prices/AAPL?interval=7min2", 400).await;
        fails("/api/v2/intraday/prices/AAPL?interval=1d", 400).await;
        fails("/api/v2/intraday/prices/AAPL?limit=2001", 400).await;
        fails("/api/v2/intraday/prices/AAPL?last_hours=169", 400).await;

        let v = ok("/api/v2/intraday/prices/AAPL/latest".into()).await;
        assert_eq!(v["interval"], "5min");
        assert_eq!(v["data"]["close"], 335);
        fails("/api/v2/intraday/prices/AAPL/latest?interval=1min", 404).await;
        // A parameter of another route is ignored, as FastAPI did; a misspelt one is not.
        let v = ok("/api/v2/intraday/prices/AAPL/latest?interval=5min&limit=1".into()).await;
        assert_eq!(v["data"]["close"], 335);
        let v = fails("/api/v2/intraday/prices/AAPL?limt=5", 400).await;
        assert!(v["detail"].as_str().unwrap().contains("`limit`"), "{v}");
        let v = ok("/api/v2/intraday/prices/AAPL/last/3?interval=5min".into()).await;
        assert_eq!(
            (v["count"].as_u64(), v["requested_count"].as_u64()),
            (Some(3), Some(3))
        );
        assert_eq!(v["data"][2]["close"], 333);
        fails("/api/v2/intraday/prices/AAPL/last/1001", 400).await;
        fails("/api/v2/intraday/prices/MSFT/last/3", 404).await;

        // Intraday analytics: wide rows, the predecessor's default keys.
        let v = ok("/api/v2/intraday/analytics/AAPL?date=2024-01-02&limit=1000".into()).await;
        assert_eq!(v["interval"], "5min");
        assert_eq!(
            v["indicators"],
            serde_json::json!(["rsi_14", "macd", "bb_upper", "bb_lower", "price"])
        );
        assert_eq!(v["count"], 78);
        let first = &v["data"][77]; // 09:30, bar 0
        assert_eq!(
            keys(first),
            sorted(&[
                "symbol",
                "timestamp",
                "price",
                "rsi_14",
                "macd",
                "bb_upper",
                "bb_lower",
                "timestamp_utc",
                "timestamp_est"
            ])
        );
        assert_eq!(first["timestamp_est"], "2024-01-02 09:30:00 EST");
        assert_eq!(first["price"], 100);
        assert_eq!(first["rsi_14"], 50);
        assert_eq!(first["bb_upper"], 102);
        assert_eq!(v["data"][0]["macd"], 77);
        let v = ok("/api/v2/intraday/analytics/AAPL?date=2024-01-02&start_time=10:00&end_time=10:00&indicators=macd_signal&indicators=macd_hist,bb_percent_b&indicators=momentum_10&indicators=atr_percent_14&indicators=stoch_k&indicators=sma_20&indicators=bb_bandwidth&indicators=sma_200".into()).await;
        assert_eq!(v["count"], 1);
        let r = &v["data"][0];
        assert_eq!(r["price"], 106);
        assert_eq!(r["macd_signal"], 3);
        assert_eq!(r["macd_hist"], 1.5);
        assert_eq!(r["bb_percent_b"], 0.5);
        assert_eq!(r["momentum_10"], 10);
        assert_eq!(r["atr_percent_14"], 1.5);
        assert_eq!(r["stoch_k"], 80);
        assert_eq!(r["sma_20"], 105);
        assert_eq!(r["bb_bandwidth"], 4.0 / 106.0);
        assert!(r["sma_200"].is_null(), "a key not computed is null: {r}");
        let v = ok("/api/v2/intraday/analytics/AAPL?last_hours=2".into()).await;
        let t = times(&v);
        assert!(!t.is_empty() && t.iter().all(|&t| t >= known.now - 7_200_000));
        let v = ok(
            "/api/v2/intraday/analytics/AAPL?start_date=2024-01-02&end_date=2024-01-02&limit=10"
                .into(),
        )
        .await;
        assert_eq!(v["count"], 10);
        assert_eq!(v["data"][0]["timestamp_est"], "2024-01-02 15:55:00 EST");
        let v = ok("/api/v2/intraday/analytics/AAPL?interval=15min".into()).await;
        assert_eq!(v["count"], 0);
        let csv = get(
            addr,
            "/api/v2/intraday/analytics/AAPL?date=2024-01-02&limit=3&format=csv",
        )
        .await;
        assert_eq!(
            csv.text().lines().next(),
            Some(
                "symbol,timestamp,price,rsi_14,macd,bb_upper,bb_lower,timestamp_utc,timestamp_est"
            )
        );
        assert_eq!(
            csv.text().lines().nth(1).map(|l| l.split(',').nth(2)),
            Some(Some("177"))
        );
        fails("/api/v2/intraday/analytics/AAPL?indicators=rsi14x", 400).await;
        fails("/api/v2/intraday/analytics/AAPL?last_hours=73", 400).await;
        let v = ok("/api/v2/intraday/analytics/AAPL/last/2".into()).await;
        assert_eq!(
            (v["count"].as_u64(), v["requested_count"].as_u64()),
            (Some(2), Some(2))
        );
        assert_eq!(v["data"][0]["price"], 335);
        fails("/api/v2/intraday/analytics/AAPL/last/501", 400).await;

        // Historical prices: session dates.
        let v = ok("/api/v2/historical/prices/AAPL".into()).await;
        assert_eq!(v["count"], 6);
        assert_eq!(keys(&v["data"][0]), sorted(DAILY_ROW));
        let mut date = Vec::new();
        marketflow_operators::time::write_timestamp(&mut date, known.recent_session * DAY);
        let date = String::from_utf8(date[..10].to_vec()).unwrap();
        assert_eq!(v["data"][0]["date_est"], date.as_str());
        assert_eq!(v["data"][5]["date_est"], "2023-12-29");
        let v =
            ok("/api/v2/historical/prices/AAPL?start_date=2024-01-03&end_date=2024-01-04".into())
                .await;
        let dates: Vec<&str> = v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["date_est"].as_str().unwrap())
            .collect();
        assert_eq!(dates, ["2024-01-04", "2024-01-03"]);
        let v = ok("/api/v2/historical/prices/AAPL?start_date=2024-01-02".into()).await;
        assert_eq!(v["count"], 5);
        let v = ok("/api/v2/historical/prices/AAPL?last_days=1".into()).await;
        assert_eq!(v["count"], 1, "{v}");
        assert_eq!(v["data"][0]["close"], 250);
        let csv = get(addr, "/api/v2/historical/prices/AAPL?limit=2&format=csv").await;
        assert_eq!(
            csv.text().lines().next(),
            Some(DAILY_ROW.join(",").as_str())
        );
        assert_eq!(csv.text().lines().count(), 3);
        fails("/api/v2/historical/prices/AAPL?last_days=2001", 400).await;
        fails(
            "/api/v2/historical/prices/AAPL?start_date=2024-01-04&end_date=2024-01-03",
            400,
        )
        .await;
        let v = ok("/api/v2/historical/prices/AAPL/latest".into()).await;
        assert_eq!(v["data"]["date_est"], date.as_str());
        let v = ok("/api/v2/historical/prices/AAPL/last/2".into()).await;
        assert_eq!(v["count"], 2);
        fails("/api/v2/historical/prices/MSFT/latest", 404).await;

        // Historical analytics.
        let v = ok("/api/v2/historical/analytics/AAPL".into()).await;
        assert_eq!(
            v["indicators"],
            serde_json::json!(["rsi_14", "macd", "sma_20", "sma_50", "price"])
        );
        assert_eq!(v["count"], 6);
        let r = &v["data"][5];
        assert_eq!(r["date_est"], "2023-12-29");
        assert_eq!(
            (r["price"].as_f64(), r["sma_50"].as_f64()),
            (Some(200.0), Some(198.0))
        );
        let v = ok("/api/v2/historical/analytics/AAPL?start_date=2024-01-02&end_date=2024-01-02&indicators=bb_middle".into()).await;
        assert_eq!(v["count"], 1);
        assert_eq!(v["data"][0]["bb_middle"], 201);
        let v = ok("/api/v2/historical/analytics/AAPL?last_days=1&limit=5".into()).await;
        assert_eq!(v["count"], 1);
        let csv = get(addr, "/api/v2/historical/analytics/AAPL?limit=1&format=csv").await;
        assert_eq!(
            csv.text().lines().next(),
            Some("symbol,timestamp,price,rsi_14,macd,sma_20,sma_50,timestamp_utc,date_est")
        );
        let v = ok("/api/v2/historical/prices/AAPL?limit=2".into()).await;
        assert_eq!(v["count"], 2);
        let v = ok("/api/v2/historical/analytics/AAPL/last/2".into()).await;
        assert_eq!(v["count"], 2);
        fails("/api/v2/historical/analytics/MSFT/last/2", 404).await;

        // WebSockets: the greeting, and an unsubscribe with extra keys.
        for (path, topic) in [
            ("/ws/prices/AAPL", "market.prices.raw"),
            ("/ws/analytics/AAPL?interval=5min", "market.analytics"),
        ] {
            let mut ws = ws_connect(addr, path).await;
            let hello = ws_next(&mut ws).await.expect("greeting");
            assert_eq!(hello["type"], "subscription");
            assert_eq!(hello["status"], "success");
            assert_eq!(hello["topic"], topic);
            assert_eq!(hello["symbol"], "AAPL");
            ws_send(
                &mut ws,
                serde_json::json!({"action": "unsubscribe", "symbol": "AAPL", "client": "dash"}),
            )
            .await;
            let mut reply = ws_next(&mut ws).await.expect("a reply");
            // Stored records of the snapshot may come first.
            while reply.get("status").is_none() {
                reply = ws_next(&mut ws).await.expect("the unsubscribe reply");
            }
            assert_eq!(reply["status"], "unsubscribed", "{path}");
        }
    });
}

/// The README's main command answers the predecessor's three analytics routes with data:
/// tick analytics, 5-minute analytics with its default keys, daily analytics (the demo's
/// sparse history gives the daily indicators their sessions).
#[test]
fn the_demo_answers_the_predecessors_analytics_routes() {
    let dir = support::scratch();
    let demo = Serving::start(dir.path(), &["run", "--listen", "127.0.0.1:0"]);
    let addr = demo.addr;
    block_on(async move {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(240);
        for (path, key) in [
            ("/api/v2/realtime/analytics/AAPL", "tick_rsi_14"),
            ("/api/v2/intraday/analytics/AAPL", "rsi_14"),
            ("/api/v2/historical/analytics/AAPL", "sma_50"),
        ] {
            // Rows appear once the demo's history has gone through the pipeline.
            let v = loop {
                let a = get(addr, path).await;
                // 503 until the pipeline's sink has created the store.
                assert!([200, 503].contains(&a.status), "{path}: {}", a.text());
                let v = a.json();
                let filled = a.status == 200
                    && v["data"]
                        .as_array()
                        .is_some_and(|rows| rows.iter().any(|r| r[key].is_number()));
                if filled {
                    break v;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "waited 240 s for {path} to have rows with `{key}`: {v}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            };
            let row = &v["data"][0];
            assert!(row["price"].is_number(), "{path}: {row}");
            eprintln!("{path}: {} rows, newest {row}", v["count"]);
        }
        let v = get(addr, "/api/v2/intraday/analytics/AAPL").await.json();
        assert_eq!(v["interval"], "5min");
        let row = &v["data"][0];
        for key in ["rsi_14", "macd", "bb_upper", "bb_lower"] {
            assert!(row[key].is_number(), "{key}: {row}");
        }
    });
    assert!(demo.interrupt().success(), "the demo exits 0 on Ctrl-C");
}
