//! The REST API over real TCP: `marketflow serve` on a store with known rows, every route,
//! every bad-input case, health, metrics, the OpenAPI document and the pages.

mod support;

use std::net::SocketAddr;
use std::path::Path;

use marketflow::store::Batch;
use marketflow_operators::{Interval, Record};
use serde_json::Value;
use support::http::{block_on, get, request, Serving};
use support::rows::{fill, sym};
use support::*;

fn serving(dir: &Path) -> Serving {
    let db = dir.join("store.db");
    fill(&db);
    Serving::start(
        dir,
        &[
            "serve",
            "--store",
            db.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
    )
}

fn data(v: &Value) -> &Vec<Value> {
    v["data"].as_array().expect("data is a list")
}

fn column<'a>(v: &'a Value, key: &str) -> Vec<&'a Value> {
    data(v).iter().map(|r| &r[key]).collect()
}

fn nums(v: &Value, key: &str) -> Vec<f64> {
    data(v)
        .iter()
        .map(|r| r[key].as_f64().expect("a number"))
        .collect()
}

async fn ok(addr: SocketAddr, path: &str) -> Value {
    let answer = get(addr, path).await;
    assert_eq!(answer.status, 200, "{path}: {}", answer.text());
    assert_eq!(answer.headers["content-type"], "application/json", "{path}");
    answer.json()
}

#[test]
fn every_route_answers_from_the_store() {
    let dir = scratch();
    let server = serving(dir.path());
    let addr = server.addr;
    block_on(async {
        // Ticks: the latest, in time order, or newest first; symbols are case-insensitive.
        let v = ok(addr, "/api/v3/realtime/prices/aapl?limit=3").await;
        assert_eq!(v["symbol"], "AAPL");
        assert_eq!(v["count"], 3);
        assert_eq!(nums(&v, "price"), [102.97, 102.98, 102.99]);
        assert_eq!(data(&v)[2]["ts"], "2024-01-02T14:34:59Z");
        assert_eq!(data(&v)[2]["timestamp_utc"], "2024-01-02T14:34:59Z");
        assert_eq!(data(&v)[2]["timestamp_est"], "2024-01-02T09:34:59-05:00");
        let v = ok(addr, "/api/v3/realtime/prices/AAPL?limit=2&order=desc").await;
        assert_eq!(nums(&v, "price"), [102.99, 102.98]);
        assert_eq!(ok(addr, "/api/v3/realtime/prices/AAPL").await["count"], 100);
        let v = ok(addr, "/api/v3/realtime/prices/AAPL/latest").await;
        assert_eq!(nums(&v, "price"), [102.99]);
        // A symbol with a slash, percent-encoded in the path.
        let v = ok(addr, "/api/v3/realtime/prices/eur%2Fusd/latest").await;
        assert_eq!(v["symbol"], "EUR/USD");
        assert_eq!(nums(&v, "price"), [302.99]);

        // Intraday bars: interval, [start, end), limit keeps the latest.
        let v = ok(addr, "/api/v3/intraday/prices/AAPL?interval=1m&start=2024-01-02T14:35:00Z&end=2024-01-02T14:40:00Z").await;
        assert_eq!(v["interval"], "1m");
        assert_eq!(v["count"], 5);
        assert_eq!(data(&v)[0]["start"], "2024-01-02T14:35:00Z");
        assert_eq!(data(&v)[0]["close"], 105.0);
        assert_eq!(data(&v)[0]["vwap"], 105.0);
        assert_eq!(data(&v)[4]["end"], "2024-01-02T14:40:00Z");
        let v = ok(addr, "/api/v3/intraday/prices/AAPL?interval=5min&limit=2").await;
        assert_eq!(v["interval"], "5m");
        assert_eq!(nums(&v, "close"), [122.0, 123.0]);
        let v = ok(
            addr,
            "/api/v3/intraday/prices/AAPL?start=1704205800000&limit=1",
        )
        .await;
        assert_eq!(
            data(&v)[0]["start"],
            "2024-01-02T16:29:00Z",
            "default interval 1m, latest in range"
        );
        let v = ok(addr, "/api/v3/intraday/prices/AAPL/latest?interval=5m").await;
        assert_eq!(nums(&v, "close"), [123.0]);
        let v = ok(
            addr,
            "/api/v3/intraday/prices/AAPL/last/3?interval=1m&order=desc",
        )
        .await;
        assert_eq!(nums(&v, "close"), [219.0, 218.0, 217.0]);
        // A known symbol with nothing in range is an empty answer, not an error.
        let v = ok(addr, "/api/v3/intraday/prices/AAPL?interval=15m").await;
        assert_eq!(v["count"], 0);
        // interval=1d on the intraday route gives the daily bars.
        let v = ok(
            addr,
            "/api/v3/intraday/prices/AAPL?interval=1d&start=2024-01-04",
        )
        .await;
        assert_eq!(v["count"], 3);

        // Daily bars by session date, both ends included.
        let v = ok(
            addr,
            "/api/v3/historical/prices/MSFT?start_date=2024-01-03&end_date=2024-01-05",
        )
        .await;
        assert_eq!(v["count"], 3);
        assert_eq!(
            column(&v, "date"),
            [
                &Value::from("2024-01-03"),
                &Value::from("2024-01-04"),
                &Value::from("2024-01-05")
            ]
        );
        assert_eq!(data(&v)[0]["close"], 210.0);
        assert_eq!(data(&v)[0]["timestamp_est"], "2024-01-03T09:30:00-05:00");
        let v = ok(addr, "/api/v3/historical/prices/MSFT?start_date=2024-01-06").await;
        assert_eq!(column(&v, "date"), [&Value::from("2024-01-06")]);
        assert_eq!(ok(addr, "/api/v3/historical/prices/MSFT").await["count"], 5);
        let v = ok(addr, "/api/v3/historical/prices/MSFT/latest").await;
        assert_eq!(column(&v, "date"), [&Value::from("2024-01-06")]);
        let v = ok(addr, "/api/v3/historical/prices/MSFT/last/2").await;
        assert_eq!(nums(&v, "close"), [230.0, 240.0]);

        // Indicator rows: by id, by name, every one, the seed's paths.
        let v = ok(
            addr,
            "/api/v3/analytics/AAPL?interval=1m&indicator=rsi_14&limit=2",
        )
        .await;
        assert_eq!(v["indicator"], "rsi_14");
        assert_eq!(data(&v)[1]["values"]["value"], 61.9);
        assert_eq!(data(&v)[1]["ts"], "2024-01-02T16:29:00Z");
        let v = ok(addr, "/api/v3/analytics/AAPL?indicator=macd&limit=1").await;
        assert_eq!(
            data(&v)[0]["values"],
            serde_json::json!({"macd": 119, "signal": 59.5, "hist": 29.75})
        );
        let v = ok(addr, "/api/v3/analytics/AAPL?limit=4").await;
        assert_eq!(v["count"], 4);
        assert_eq!(v["indicator"], Value::Null);
        let v = ok(addr, "/api/v3/intraday/analytics/AAPL?indicator=rsi&start=2024-01-02T14:30:00Z&end=2024-01-02T14:32:00Z").await;
        assert_eq!(v["count"], 2);
        let v = ok(
            addr,
            "/api/v3/intraday/analytics/AAPL/last/3?indicator=rsi_14",
        )
        .await;
        assert_eq!(v["count"], 3);
        assert_eq!(data(&v)[2]["ts"], "2024-01-02T16:29:00Z");
        let v = ok(addr, "/api/v3/historical/analytics/AAPL/last/2").await;
        assert_eq!(v["count"], 2);
        let v = ok(addr, "/api/v3/historical/analytics/AAPL?indicator=sma_20").await;
        assert_eq!(v["interval"], "1d");
        assert_eq!(v["count"], 5);
        // A shaped id that was never computed is an empty answer.
        assert_eq!(
            ok(addr, "/api/v3/analytics/AAPL?indicator=rsi_7").await["count"],
            0
        );

        // CSV, as the file sink writes it; the seed's `format` parameter.
        let csv = get(
            addr,
            "/api/v3/intraday/prices/AAPL?interval=5m&limit=2&format=csv",
        )
        .await;
        assert_eq!(csv.status, 200);
        assert!(csv.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv"));
        assert_eq!(
            csv.text(),
            "symbol,interval,start,end,open,high,low,close,volume,trades,vwap,revision\n\
             AAPL,5m,2024-01-02T16:20:00Z,2024-01-02T16:25:00Z,121.5,123,121,122,1000,10,122,0\n\
             AAPL,5m,2024-01-02T16:25:00Z,2024-01-02T16:30:00Z,122.5,124,122,123,1000,10,123,0\n"
        );
        let csv = get(
            addr,
            "/api/v3/analytics/AAPL?indicator=macd&limit=1&format=csv",
        )
        .await
        .text();
        assert_eq!(csv.lines().count(), 4, "{csv}"); // header + macd, signal, hist
        assert_eq!(
            ok(addr, "/api/v3/realtime/prices/AAPL/latest?format=json").await["count"],
            1
        );

        // Symbols (the predecessor's path also counts ticks).
        for path in ["/api/v3/symbols", "/api/v2/realtime/symbols"] {
            let v = ok(addr, path).await;
            assert_eq!(v["count"], 3);
            assert_eq!(v["symbols"][0]["symbol"], "AAPL");
            let time = |key: &str| {
                v["symbols"][0][key]
                    .as_str()
                    .unwrap()
                    .replace("+00:00", "Z")
                    .replacen(' ', "T", 1)
            };
            assert_eq!(time("first_seen"), "2024-01-02T14:30:00Z");
            assert_eq!(time("last_seen"), "2024-01-06T14:30:00Z");
        }

        // Health without a pipeline: the store only.
        let v = ok(addr, "/health").await;
        assert_eq!(v["status"], "ok");
        assert_eq!(
            v["store"],
            serde_json::json!({"status": "ok", "kind": "sqlite"})
        );

        // Pages and documents.
        let page = request(addr, "GET", "/", &[("accept", "text/html,*/*;q=0.8")]).await;
        assert_eq!(page.status, 200);
        assert!(page.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        assert!(page.text().contains("<canvas id=\"chart\">"));
        let info = request(addr, "GET", "/", &[("accept", "application/json")])
            .await
            .json();
        assert_eq!(info["service"], "marketflow");
        let docs = get(addr, "/docs").await;
        assert!(docs.text().contains("/openapi.json"));
        let openapi = ok(addr, "/openapi.json").await;
        assert!(openapi["paths"]["/api/v3/intraday/prices/{symbol}"]["get"].is_object());
        let head = request(addr, "HEAD", "/api/v3/symbols", &[]).await;
        assert_eq!((head.status, head.body.len()), (200, 0));

        // Metrics count requests by route template, never by raw path.
        let metrics = get(addr, "/metrics").await;
        assert_eq!(metrics.status, 200);
        let text = metrics.text();
        assert!(text.contains(r#"marketflow_http_requests_total{method="GET",route="/api/v3/realtime/prices/{symbol}",status="200"}"#), "{text}");
        assert!(text.contains("marketflow_http_request_seconds_bucket"));
        assert!(text.contains("marketflow_ws_clients 0"));
        assert!(!text.contains("route=\"/api/v3/realtime/prices/aapl"));
    });
}

#[test]
fn bad_input_gets_a_json_error() {
    let dir = scratch();
    let server = serving(dir.path());
    let addr = server.addr;
    let long = "X".repeat(40);
    let cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "GET",
            "/api/v3/intraday/prices/AAPL?limit=5001".into(),
            400,
            "bad_parameter",
        ),
        (
            "GET",
            "/api/v3/intraday/prices/AAPL?limit=0".into(),
            400,
            "bad_parameter",
        ),
        (
            "GET",
            "/api/v3/intraday/prices/AAPL?limit=ten".into(),
            400,
            "bad_parameter",
        ),
        (
            "GET",
            "/api/v3/realtime/prices/AAPL?limit=-1".into(),
            400,
            "bad_parameter",
        ),
        (
            "GET",
            "/api/v3/realtime/prices/AAPL?limit=99999999999999999999999".into(),
            400,
            "bad_parameter",
        ),
        (
            "GET",
            "/api/v3/intraday/prices/AAPL?limit=1&limit=2".into(),
            400,
            "bad_parameter",
        ),
        (
            "GET",
            "/api/v3/intraday/prices/AAPL?limt=5".into(),
            400,
            "unknown_parameter",
        ),
        (
            "GET",
            "/api/v3/symbols?x=1".into(),
            400,
            "unknown_parameter",
        ),
        (
            "GET",
            "/api/v3/intraday/prices/AAPL?interval=7x".into(),
            400,
            "bad_interval",
        ),
        (
            "GET",
            "/api/v3/intraday/prices/AAPL?interval=0m".into(),
            400,
            "bad_interval",
        ),
        (
            "GET",
            "/api/v3/analytics/AAPL?interval=2d".into(),
            400,
            "bad_interval",
        ),
        (
            "GET",
            "/api/v3/intraday/prices/AAPL?start=yesterday".into(),
            400,
            "bad_time",
        ),
        (
            "GET",
            "/api/v3/intraday/prices/AAPL?end=2024-13-45".into(),
            400,
            "bad_time",
        ),
        (
            "GET",
            "/api/v3/intraday/prices/AAPL?start=2024-01-03&end=2024-01-02".into(),
            400,
            "bad_range",
        ),
        (
            "GET",
            "/api/v3/intraday/prices/AAPL?start=2024-01-02&end=2024-01-02".into(),
            400,
            "bad_range",
        ),
        (
            "GET",
            "/api/v3/historical/prices/AAPL?start_date=2024-01-05&end_date=2024-01-03".into(),
            400,
            "bad_range",
        ),
        (
            "GET",
            "/api/v3/historical/prices/AAPL?start_date=01/02/2024".into(),
            400,
            "bad_time",
        ),
        (
            "GET",
            "/api/v3/historical/prices/AAPL?end_date=2024-01-02T00:00:00Z".into(),
            400,
            "bad_time",
        ),
        (
            "GET",
            "/api/v3/intraday/prices/AAPL?order=newest".into(),
            400,
            "bad_parameter",
        ),
        (
            "GET",
            "/api/v3/intraday/prices/AAPL/last/0".into(),
            400,
            "bad_parameter",
        ),
        (
            "GET",
            "/api/v3/intraday/prices/AAPL/last/5001".into(),
            400,
            "bad_parameter",
        ),
        (
            "GET",
            "/api/v3/historical/prices/AAPL/last/x".into(),
            400,
            "bad_parameter",
        ),
        (
            "GET",
            "/api/v3/analytics/AAPL?indicator=rsx".into(),
            404,
            "unknown_indicator",
        ),
        (
            "GET",
            "/api/v3/analytics/AAPL?indicator=rsi%3B%20DROP%20TABLE".into(),
            400,
            "bad_indicator",
        ),
        (
            "GET",
            "/api/v3/intraday/prices/A%20B".into(),
            400,
            "bad_symbol",
        ),
        (
            "GET",
            format!("/api/v3/intraday/prices/{long}"),
            400,
            "bad_symbol",
        ),
        (
            "GET",
            "/api/v3/realtime/prices/AAPL%27%3B--".into(),
            400,
            "bad_symbol",
        ),
        (
            "GET",
            "/api/v3/realtime/prices/%FF".into(),
            400,
            "bad_symbol",
        ),
        (
            "GET",
            "/api/v3/intraday/prices/NOPE".into(),
            404,
            "unknown_symbol",
        ),
        (
            "GET",
            "/api/v3/analytics/NOPE".into(),
            404,
            "unknown_symbol",
        ),
        (
            "GET",
            "/api/v3/historical/prices/NOPE/latest".into(),
            404,
            "unknown_symbol",
        ),
        ("GET", "/api/v3/anything".into(), 404, "not_found"),
        ("POST", "/api/v3/symbols".into(), 405, "method_not_allowed"),
        (
            "DELETE",
            "/api/v3/intraday/prices/AAPL".into(),
            405,
            "method_not_allowed",
        ),
        ("GET", "/ws".into(), 426, "websocket_required"),
        ("GET", "/ws/prices/AAPL".into(), 426, "websocket_required"),
        (
            "GET",
            "/ws/analytics/AAPL?interval=banana".into(),
            400,
            "bad_interval",
        ),
    ];
    block_on(async {
        for (method, path, status, code) in &cases {
            let answer = request(addr, method, path, &[]).await;
            assert_eq!(answer.status, *status, "{method} {path}: {}", answer.text());
            let v = answer.json();
            assert_eq!(v["error"]["code"], *code, "{method} {path}: {v}");
            let message = v["error"]["message"].as_str().unwrap();
            assert!(!message.is_empty());
            assert!(
                !message.contains("sqlite") && !message.contains("SELECT"),
                "{message}"
            );
        }
        // The message names the parameter and the valid choices.
        let v = get(addr, "/api/v3/intraday/prices/AAPL?intervl=5m")
            .await
            .json();
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("did you mean `interval`"),
            "{v}"
        );
        let v = get(addr, "/api/v3/analytics/AAPL?indicator=rsx")
            .await
            .json();
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("did you mean `rsi`"),
            "{v}"
        );
        // Still serving, and the rows are intact.
        assert_eq!(
            ok(addr, "/api/v3/realtime/prices/AAPL?limit=5").await["count"],
            5
        );
    });
}

#[test]
fn health_is_503_without_a_store() {
    let dir = scratch();
    let missing = dir.path().join("missing.db");
    let server = Serving::start(
        dir.path(),
        &[
            "serve",
            "--store",
            missing.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
    );
    block_on(async {
        let health = get(server.addr, "/health").await;
        assert_eq!(health.status, 503);
        let v = health.json();
        assert_eq!(v["status"], "degraded");
        assert_eq!(v["store"]["status"], "unavailable");
        let answer = get(server.addr, "/api/v3/symbols").await;
        assert_eq!(answer.status, 503);
        assert_eq!(answer.json()["error"]["code"], "store_unavailable");
        // Not ready, but alive: an orchestrator must not restart it for this.
        let ready = get(server.addr, "/health/ready").await;
        assert_eq!(ready.status, 503);
        assert_eq!(ready.json()["store"]["status"], "unavailable");
        let live = get(server.addr, "/health/live").await;
        assert_eq!(live.status, 200);
        assert_eq!(live.json()["status"], "alive");
    });
    // Once the store exists, the same server answers.
    fill(&missing);
    block_on(async {
        assert_eq!(get(server.addr, "/health").await.status, 200);
        assert_eq!(get(server.addr, "/health/ready").await.status, 200);
        assert_eq!(ok(server.addr, "/api/v3/symbols").await["count"], 3);
    });
    assert!(server.interrupt().success(), "serve exits 0 on SIGINT");
}

#[test]
fn serves_a_postgres_store_alike() {
    let db = support::pg::TestDb::new("server");
    let dir = scratch();
    // The same rows in both databases: written to SQLite, read back, written to PostgreSQL.
    let sqlite_path = dir.path().join("store.db");
    fill(&sqlite_path);
    let lite = Serving::start(
        dir.path(),
        &[
            "serve",
            "--store",
            sqlite_path.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
    );
    let records = stored_records(&sqlite_path);
    support::pg::block_on(async {
        let mut client = marketflow::store::postgres::connect(&db.url).await.unwrap();
        marketflow::store::postgres::migrate(
            &mut client,
            marketflow::store::postgres::TimescaleMode::Auto,
        )
        .await
        .unwrap();
        let mut writer = marketflow::store::postgres::PgWriter::new(client)
            .await
            .unwrap();
        let mut batch = Batch::default();
        for r in records {
            batch.push(r);
        }
        writer.write(&batch).await.unwrap();
    });
    let pg = Serving::start(
        dir.path(),
        &["serve", "--store", &db.url, "--listen", "127.0.0.1:0"],
    );
    block_on(async {
        for path in [
            "/api/v3/realtime/prices/AAPL?limit=7&order=desc",
            "/api/v3/intraday/prices/MSFT?interval=5m&start=2024-01-02T15:00:00Z",
            "/api/v3/historical/prices/EUR%2FUSD?start_date=2024-01-03",
            "/api/v3/analytics/AAPL?indicator=macd&limit=3",
            "/api/v3/symbols",
        ] {
            let a = ok(lite.addr, path).await;
            let b = ok(pg.addr, path).await;
            assert_eq!(a, b, "{path}");
        }
        assert_eq!(ok(pg.addr, "/health").await["store"]["kind"], "postgres");
        assert_eq!(
            get(pg.addr, "/api/v3/realtime/prices/NOPE").await.status,
            404
        );
    });
}

/// Every record of a SQLite store, read back through the store interface.
fn stored_records(path: &Path) -> Vec<Record> {
    use marketflow::store::{BarQuery, IndicatorQuery, Location, Store};
    support::pg::block_on(async {
        let store = Store::open(&Location::Sqlite(path.to_owned()))
            .await
            .unwrap();
        let mut out = Vec::new();
        for s in ["AAPL", "MSFT", "EUR/USD"] {
            let symbol = sym(s);
            out.extend(
                store
                    .latest_ticks(&symbol, 10_000)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(Record::Tick),
            );
            for interval in [Interval::M1, Interval::M5, Interval::D1] {
                let q = BarQuery {
                    symbol: symbol.clone(),
                    interval,
                    start: None,
                    end: None,
                    limit: 10_000,
                };
                out.extend(store.bars(&q).await.unwrap().into_iter().map(Record::Bar));
                let q = IndicatorQuery {
                    symbol: symbol.clone(),
                    interval,
                    indicator: None,
                    start: None,
                    end: None,
                    limit: 10_000,
                };
                out.extend(
                    store
                        .indicators(&q)
                        .await
                        .unwrap()
                        .into_iter()
                        .map(Record::Indicator),
                );
            }
        }
        out
    })
}

#[test]
fn made_up_methods_share_one_metric_label() {
    let dir = scratch();
    let server = serving(dir.path());
    block_on(async {
        for i in 0..50 {
            let method = format!("INVENTED{i}");
            let answer = support::http::request(server.addr, &method, "/health", &[]).await;
            assert_eq!(answer.status, 405, "{method}");
        }
        let metrics = get(server.addr, "/metrics").await.text();
        let lines: Vec<&str> = metrics
            .lines()
            .filter(|l| l.starts_with("marketflow_http_requests_total{"))
            .collect();
        assert!(
            lines.iter().all(|l| !l.contains("INVENTED")),
            "a made-up method became a label:\n{}",
            lines.join("\n")
        );
        let other = lines
            .iter()
            .find(|l| l.contains("method=\"other\"") && l.contains("status=\"405\""))
            .unwrap_or_else(|| panic!("no `other` label:\n{}", lines.join("\n")));
        assert!(other.ends_with(" 50"), "{other}");
    });
}

#[test]
fn head_answers_carry_the_content_length_of_the_get() {
    let dir = scratch();
    let server = serving(dir.path());
    block_on(async {
        for path in [
            "/openapi.json",
            "/api/v3/symbols",
            "/api/v3/intraday/prices/AAPL",
        ] {
            let got = get(server.addr, path).await;
            let head = support::http::request(server.addr, "HEAD", path, &[]).await;
            assert_eq!(head.status, got.status, "{path}");
            assert!(head.body.is_empty(), "{path}: HEAD has no body");
            let length = head
                .headers
                .get("content-length")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_else(|| panic!("{path}: HEAD without Content-Length"));
            assert_eq!(length, got.body.len().to_string(), "{path}");
        }
    });
}

/// `/metrics` of a running pipeline: every documented counter is there from the start at 0,
/// times are in seconds (no `_ms` names), and `promtool check metrics` finds nothing to say.
#[test]
fn metrics_are_declared_at_zero_and_promtool_clean() {
    let dir = scratch();
    write(
        dir.path(),
        "ticks.csv",
        "ts,symbol,price,volume\n2025-01-10T14:30:00Z,AAPL,100,5\n2025-01-10T14:31:00Z,AAPL,101,5\n",
    );
    write(
        dir.path(),
        "p.yaml",
        "pipeline: m\n\
         sources:\n  ticks: {type: file, path: ticks.csv, format: csv}\n\
         operators:\n  bars_1m: {type: bars, from: ticks, interval: 1m}\n\
         sinks:\n  store: {type: sqlite, from: [ticks, bars_1m], path: m.db}\n  \
         live: {type: websocket, from: [bars_1m]}\n\
         server: {listen: 127.0.0.1:8000, store: store}\n",
    );
    let server = Serving::start(dir.path(), &["run", "p.yaml", "--listen", "127.0.0.1:0"]);
    let metrics = block_on(async { get(server.addr, "/metrics").await.text() });
    for series in [
        "marketflow_source_reconnects_total{source=\"ticks\"} 0",
        "marketflow_dead_letters_total{reason=\"malformed\",stage=\"ticks\"} 0",
        "marketflow_late_records_total{operator=\"bars_1m\"} 0",
        "marketflow_sink_errors_total{sink=\"store\"} 0",
        "marketflow_sink_retries_total{sink=\"live\"} 0",
        "marketflow_ws_disconnects_total{reason=\"closed\"} 0",
        "marketflow_http_connections_refused_total{cap=\"total\"} 0",
    ] {
        assert!(metrics.contains(series), "no `{series}` in:\n{metrics}");
    }
    assert!(
        !metrics.contains("_ms{") && !metrics.contains("_ms "),
        "{metrics}"
    );
    let present = std::process::Command::new("promtool")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if tool_present(present, "promtool") {
        use std::io::Write as _;
        let mut child = std::process::Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(metrics.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && said.trim().is_empty(),
            "promtool: {said}"
        );
    }
    server.interrupt();
}
