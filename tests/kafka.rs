//! The Kafka source and sink against a real Kafka-protocol broker (tansu) on loopback:
//! a round trip equal to a file run, offsets committed behind the sinks, malformed
//! messages dead-lettered with their offsets.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;
use support::*;

const START: i64 = 1_704_205_800_000; // 2024-01-02T14:30:00Z

/// `n` ticks of `symbols` symbols in event-time order, as JSON lines, with their keys.
fn ticks(n: usize, symbols: usize) -> Vec<(String, String)> {
    let names: Vec<String> = (0..symbols).map(|i| format!("SYM{i:02}")).collect();
    let mut rng = Lcg(7);
    (0..n)
        .map(|i| {
            let symbol = &names[rng.below(symbols as u64) as usize];
            let ts = START + i as i64 * 37;
            let price = 100.0 + rng.below(10_000) as f64 / 100.0;
            let volume = 1 + rng.below(500);
            let value = format!(
                r#"{{"type":"tick","symbol":"{symbol}","ts":{ts},"price":{price},"volume":{volume}}}"#
            );
            (symbol.clone(), value)
        })
        .collect()
}

/// Reads every message of `topic` from the start until `count` have arrived.
fn consume_all(broker: &kafka::Broker, topic: &str, count: usize) -> Vec<(i32, i64, Value)> {
    let consumer: BaseConsumer = broker
        .client()
        .set("group.id", "test-reader")
        .create()
        .unwrap();
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    for p in metadata.topics()[0].partitions() {
        assignment
            .add_partition_offset(topic, p.id(), Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut out = Vec::new();
    while out.len() < count {
        assert!(
            Instant::now() < deadline,
            "read {} of {count} messages from {topic} within 60 s",
            out.len()
        );
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            let value = serde_json::from_slice(m.payload().unwrap()).unwrap();
            out.push((m.partition(), m.offset(), value));
        }
    }
    out
}

fn committed(broker: &kafka::Broker, group: &str, topic: &str, partitions: i32) -> i64 {
    let consumer: BaseConsumer = broker.client().set("group.id", group).create().unwrap();
    let mut list = TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition(topic, p);
    }
    let found = consumer
        .committed_offsets(list, Duration::from_secs(10))
        .unwrap();
    found
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(n) => n,
            _ => 0,
        })
        .sum()
}

/// Database rows with the ticks' sequence numbers masked: a source numbers its ticks in its
/// own arrival order (a file by line, Kafka by partition), which is not part of the data.
fn without_tick_seq(rows: Vec<String>) -> Vec<String> {
    let mut rows: Vec<String> = rows
        .into_iter()
        .map(|row| match row.strip_prefix("realtime_prices (") {
            Some(fields) => {
                let mut fields: Vec<&str> = fields.split(',').collect();
                if fields.len() > 2 {
                    fields[2] = "_";
                }
                format!("realtime_prices ({}", fields.join(","))
            }
            None => row,
        })
        .collect();
    rows.sort();
    rows
}

/// Reads the topics' messages and checks that each symbol's records (per indicator id) come
/// in event-time order within their partition; returns them as sorted JSON text.
fn read_in_order(broker: &kafka::Broker, topics: &[(String, usize)]) -> Vec<String> {
    let mut all = Vec::new();
    for (topic, expected) in topics {
        let mut last: BTreeMap<(i32, String), String> = BTreeMap::new();
        for (partition, _, record) in consume_all(broker, topic, *expected) {
            let symbol = record["symbol"].as_str().unwrap().to_owned();
            let key = format!("{symbol} {}", record["id"].as_str().unwrap_or_default());
            let at = record["start"]
                .as_str()
                .or(record["ts"].as_str())
                .unwrap()
                .to_owned();
            if let Some(before) = last.insert((partition, key.clone()), at.clone()) {
                assert!(
                    before < at,
                    "{key} out of order in {topic}: {before} then {at}"
                );
            }
            all.push(record.to_string());
        }
    }
    all.sort();
    all
}

#[test]
fn kafka_to_bars_and_indicators_to_kafka_and_postgres_equals_a_file_run() {
    let Some(broker) = kafka::start() else { return };
    let messages = ticks(1_000_000, 50);
    broker.create_topic("ticks", 4);
    broker.produce("ticks", &messages);

    let dir = scratch();
    let lines: String = messages.iter().map(|(_, v)| format!("{v}\n")).collect();
    write(dir.path(), "ticks.jsonl", &lines);
    let graph = "operators:\n  bars_1m: {type: bars, from: ticks, interval: 1m}\n  bars_5m: {type: bars, from: bars_1m, interval: 5m}\n  ta_1m: {type: indicators, from: bars_1m, indicators: [{sma: {period: 20}}, {rsi: {period: 14}}, {macd: {fast: 12, slow: 26, signal: 9}}]}\n";
    let reference_db = pg::TestDb::new("kafka_reference");
    write(
        dir.path(),
        "file.yaml",
        &format!("pipeline: reference\nsources:\n  ticks: {{type: file, path: ticks.jsonl, max_delay: 5s}}\n{graph}sinks:\n  out: {{type: file, from: [bars_1m, bars_5m, ta_1m], path: reference.jsonl}}\n  db: {{type: postgres, url: \"{}\", from: [ticks, bars_1m, bars_5m, ta_1m], retention: off}}\n", reference_db.url),
    );
    run_ok(dir.path(), &["run", "file.yaml"]);
    let reference = sorted_lines(&dir.path().join("reference.jsonl"));
    let count = |needle: &str| reference.iter().filter(|l| l.contains(needle)).count();
    let (bars_1m, bars_5m, rows_1m) = (
        count("\"interval\":\"1m\",\"start\""),
        count("\"interval\":\"5m\""),
        count("\"type\":\"indicator\""),
    );
    assert!(
        bars_1m > 10_000 && rows_1m > 10_000,
        "{bars_1m} bars, {rows_1m} indicator rows"
    );
    let reference_dump = without_tick_seq(reference_db.dump());

    for workers in ["1", "2"] {
        let group = format!("bars-{workers}");
        let prefix = format!("out{workers}");
        let db = pg::TestDb::new(&format!("kafka_{workers}"));
        write(
            dir.path(),
            "kafka.yaml",
            &format!("pipeline: kafka\nsources:\n  ticks: {{type: kafka, brokers: \"{b}\", topic: ticks, group: {group}, start: earliest, stop: end, max_delay: 5s}}\n{graph}sinks:\n  out: {{type: file, from: [bars_1m, bars_5m, ta_1m], path: kafka.jsonl}}\n  topic: {{type: kafka, brokers: \"{b}\", from: [bars_1m, bars_5m, ta_1m], topic: \"{prefix}.{{kind}}.{{interval}}\"}}\n  db: {{type: postgres, url: \"{url}\", from: [ticks, bars_1m, bars_5m, ta_1m], retention: off}}\n", b = broker.address, url = db.url),
        );
        run_ok(dir.path(), &["run", "kafka.yaml", "--workers", workers]);
        assert!(
            sorted_lines(&dir.path().join("kafka.jsonl")) == reference,
            "bars and indicators from Kafka with {workers} workers differ from the file run"
        );
        let dump = without_tick_seq(db.dump());
        if dump != reference_dump {
            let missing: Vec<_> = reference_dump
                .iter()
                .filter(|r| !dump.contains(r))
                .take(3)
                .collect();
            let extra: Vec<_> = dump
                .iter()
                .filter(|r| !reference_dump.contains(r))
                .take(3)
                .collect();
            panic!(
                "the database of the Kafka run with {workers} workers differs from the file run's ({} rows against {}): missing {missing:?}, extra {extra:?}",
                dump.len(),
                reference_dump.len()
            );
        }
        let topics = [
            (format!("{prefix}.bars.1m"), bars_1m),
            (format!("{prefix}.bars.5m"), bars_5m),
            (format!("{prefix}.indicators.1m"), rows_1m),
        ];
        let mut reference_values: Vec<String> = reference
            .iter()
            .map(|l| serde_json::from_str::<Value>(l).unwrap().to_string())
            .collect();
        reference_values.sort();
        assert!(
            read_in_order(&broker, &topics) == reference_values,
            "the output topics of the run with {workers} workers hold other records"
        );
        // Offsets are committed only as far as the sinks acknowledged: here, everything.
        let done = committed(&broker, &group, "ticks", 4);
        assert_eq!(done, messages.len() as i64, "committed offsets of {group}");
    }
}

/// A database slower than the topic: the source reads both partitions to the end while the
/// sink waits on a locked table, and still commits the group's offsets to the end once the
/// sink has written everything.
#[test]
fn offsets_are_committed_to_the_end_behind_a_sink_slower_than_the_source() {
    let Some(broker) = kafka::start() else { return };
    let messages = ticks(20_000, 5);
    broker.create_topic("slow", 2);
    broker.produce("slow", &messages);
    let dir = scratch();
    let db = pg::TestDb::new("kafka_slow_sink");
    run_ok(dir.path(), &["migrate", "--database-url", &db.url]);
    write(
        dir.path(),
        "p.yaml",
        &format!("pipeline: slow\nsources:\n  ticks: {{type: kafka, brokers: \"{}\", topic: slow, group: slow, start: earliest, stop: end}}\noperators:\n  bars_1m: {{type: bars, from: ticks, interval: 1m}}\nsinks:\n  db: {{type: postgres, url: \"{}\", from: [ticks, bars_1m], migrate: false, retention: off}}\n", broker.address, db.url),
    );
    let lock = db.lock("realtime_prices");
    let log = dir.path().join("run.log");
    let child = marketflow()
        .env("RUST_LOG", "info")
        .current_dir(dir.path())
        .args(["run", "p.yaml", "--workers", "2"])
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let read_to_end = |n: usize| {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.matches("read to the end").count() >= n
    };
    let until = Instant::now() + Duration::from_secs(120);
    while !(read_to_end(2) && db.waiting_on("realtime_prices") > 0) {
        assert!(
            Instant::now() < until,
            "waited 120 s for both partitions to be read to the end with the sink held on its lock; log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The slow database: held longer than the source used to wait for the sinks (10 s)
    // before it stopped committing.
    std::thread::sleep(Duration::from_secs(12));
    assert_eq!(
        committed(&broker, "slow", "slow", 2),
        0,
        "committed before the sink wrote"
    );
    drop(lock);
    let status = wait_with_deadline(child, Duration::from_secs(120));
    assert!(
        status.success(),
        "the run failed ({status}):\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert_eq!(db.count("realtime_prices"), messages.len() as i64);
    assert_eq!(
        committed(&broker, "slow", "slow", 2),
        messages.len() as i64,
        "committed offsets of the group behind the slow sink"
    );
}

#[test]
fn malformed_messages_are_dead_lettered_with_their_offsets() {
    let Some(broker) = kafka::start() else { return };
    broker.create_topic("mixed", 1);
    let mut messages = ticks(600, 5);
    messages.insert(100, ("AAPL".into(), "not json".into()));
    messages.insert(
        200,
        (
            "AAPL".into(),
            r#"{"type":"tick","symbol":"AAPL","ts":"yesterday","price":1,"volume":1}"#.into(),
        ),
    );
    messages.insert(
        300,
        (
            "AAPL".into(),
            r#"{"type":"tick","symbol":"bad symbol!","ts":1704205800000,"price":1,"volume":1}"#
                .into(),
        ),
    );
    broker.produce("mixed", &messages);
    let dir = scratch();
    write(
        dir.path(),
        "p.yaml",
        &format!("pipeline: mixed\nsources:\n  ticks: {{type: kafka, brokers: \"{}\", topic: mixed, start: earliest, stop: end}}\noperators:\n  bars: {{type: bars, from: ticks, interval: 1m}}\nsinks:\n  out: {{type: file, from: bars, path: bars.jsonl}}\ndead_letter: {{path: dead.jsonl}}\n", broker.address),
    );
    run_ok(dir.path(), &["run", "p.yaml"]);
    let dead: Vec<Value> = sorted_lines(&dir.path().join("dead.jsonl"))
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut offsets: Vec<i64> = dead.iter().map(|d| d["offset"].as_i64().unwrap()).collect();
    offsets.sort_unstable();
    assert_eq!(offsets, [100, 200, 300], "{dead:?}");
    assert!(dead
        .iter()
        .all(|d| d["topic"] == "mixed" && d["partition"] == 0));
    let bars = sorted_lines(&dir.path().join("bars.jsonl"));
    let trades: u64 = bars
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["trades"]
                .as_u64()
                .unwrap()
        })
        .sum();
    assert_eq!(trades, 600, "every good tick is in a bar");
}

/// The 1m bars of AAPL in the SQLite store `db`, oldest first (none while it is missing).
fn stored_bar_starts(db: &std::path::Path) -> Vec<String> {
    let Ok(conn) =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return Vec::new();
    };
    let Ok(mut query) = conn.prepare(
        "SELECT ts FROM intraday_ohlcv WHERE symbol = 'AAPL' AND interval = '1m' ORDER BY ts",
    ) else {
        return Vec::new();
    };
    query
        .query_map([], |row| row.get::<_, i64>(0))
        .map(|rows| rows.filter_map(Result::ok).map(iso).collect())
        .unwrap_or_default()
}

/// One minute of ticks of AAPL and MSFT, as CSV rows.
fn minute_of_ticks(minute: i64) -> String {
    let mut rows = String::new();
    for second in (0..60).step_by(5) {
        let ts = START + minute * 60_000 + second * 1000;
        let price = 100 + minute;
        rows.push_str(&format!(
            "{},AAPL,{price},10\n{},MSFT,{price},5\n",
            iso(ts),
            iso(ts)
        ));
    }
    rows
}

async fn subscribe_bars(ws: &mut http::Ws) {
    let subscribe = serde_json::json!({"action": "subscribe", "streams": ["bars:1m:AAPL"]});
    http::ws_send(ws, subscribe).await;
}

fn write_to(feed: &mut Option<std::fs::File>, rows: String) {
    use std::io::Write as _;
    let file = feed.as_mut().expect("the feed is open");
    file.write_all(rows.as_bytes()).unwrap();
    file.flush().unwrap();
}

/// Reads a client's snapshot and live bars until the bar starting at `last`: their starts,
/// in the order they came.
async fn bar_starts_until(ws: &mut http::Ws, last: &str) -> Vec<String> {
    let mut starts = Vec::new();
    loop {
        let message = http::ws_next(ws).await.unwrap_or_else(|| {
            panic!("the connection ended before the bar at {last}: got {starts:?}")
        });
        match message["type"].as_str() {
            Some("bar") => {
                let start = message["start"].as_str().unwrap().to_owned();
                let done = start == last;
                starts.push(start);
                if done {
                    return starts;
                }
            }
            Some("snapshot" | "subscribed") => {}
            other => panic!("unexpected {other:?}: {message}"),
        }
    }
}

/// `serve --live`: engine -> Kafka -> a `serve` process of its own -> WebSocket clients.
/// The engine commits bars to its store and sends them to Kafka; clients that subscribe
/// before, during and after the flow each get the snapshot from the store, then every
/// later bar exactly once: together, every bar of the run once and in order.
#[test]
fn serve_live_streams_each_bar_once_from_kafka() {
    let Some(broker) = kafka::start() else { return };
    let dir = scratch();
    let fifo = fifo(dir.path(), "ticks.fifo");
    write(
        dir.path(),
        "engine.yaml",
        &format!(
            "pipeline: engine\n\
             sources:\n  ticks: {{type: file, path: ticks.fifo, format: csv, max_delay: 1s}}\n\
             operators:\n  bars_1m: {{type: bars, from: ticks, interval: 1m}}\n\
             sinks:\n  store: {{type: sqlite, from: [ticks, bars_1m], path: store.db, batch_size: 50}}\n  \
             topics: {{type: kafka, brokers: \"{}\", from: [ticks, bars_1m]}}\n",
            broker.address
        ),
    );
    let engine = marketflow()
        .current_dir(dir.path())
        .args(["run", "engine.yaml", "--no-server"])
        .spawn()
        .unwrap();
    let _engine_deadline = watchdog(engine.id(), Duration::from_secs(240), "the engine");
    let mut feed = Some(std::fs::OpenOptions::new().write(true).open(&fifo).unwrap());
    write_to(&mut feed, "ts,symbol,price,volume\n".to_owned());
    write_to(&mut feed, (0..20).map(minute_of_ticks).collect());
    let db = dir.path().join("store.db");
    let until = Instant::now() + Duration::from_secs(60);
    while stored_bar_starts(&db).len() < 15 {
        assert!(
            Instant::now() < until,
            "waited 60s for the engine to store 15 bars (it has {})",
            stored_bar_starts(&db).len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let live = format!("kafka://{}", broker.address);
    let server = http::Serving::start(
        dir.path(),
        &[
            "serve",
            "--store",
            "store.db",
            "--live",
            &live,
            "--listen",
            "127.0.0.1:0",
        ],
    );
    http::block_on(async {
        let addr = server.addr;
        // The feed is connected once it has found the engine's topics.
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            let health = http::get(addr, "/health").await.json();
            if health["sources"][0]["status"] == "ok" {
                break;
            }
            assert!(
                Instant::now() < until,
                "the live feed did not connect: {health}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut before = http::ws_connect(addr, "/ws").await;
        subscribe_bars(&mut before).await;
        // The rest of the hour, with a client subscribing while it flows.
        write_to(&mut feed, (20..40).map(minute_of_ticks).collect());
        let mut during = http::ws_connect(addr, "/ws").await;
        subscribe_bars(&mut during).await;
        write_to(&mut feed, (40..60).map(minute_of_ticks).collect());
        // The end of input closes the last windows; the engine then ends.
        drop(feed.take());
        let last = iso(START + 59 * 60_000);
        let expected: Vec<String> = (0..60).map(|m| iso(START + m * 60_000)).collect();
        for (name, ws) in [("before", &mut before), ("during", &mut during)] {
            let got = bar_starts_until(ws, &last).await;
            assert_eq!(got, expected, "the client subscribed {name} the flow");
        }
        // Once the engine is done, a new client's snapshot alone is the whole hour.
        let mut after = http::ws_connect(addr, "/ws").await;
        subscribe_bars(&mut after).await;
        assert_eq!(
            bar_starts_until(&mut after, &last).await,
            expected,
            "the client subscribed after the flow"
        );
        let live: Vec<String> = http::get(addr, "/metrics")
            .await
            .text()
            .lines()
            .filter(|l| l.contains("source=\"live\"") && !l.starts_with('#'))
            .map(str::to_owned)
            .collect();
        println!("serve --live: 3 clients got the 60 bars once each; {live:?}");
    });
    let status = wait_with_deadline(engine, Duration::from_secs(60));
    assert!(status.success(), "the engine: {status}");
    drop(server);
}

/// Every message of `topic` now, read from the start until each partition reports its
/// end (tansu's end offsets can lag what a fetch returns; the fetch's end is exact).
fn read_topic(broker: &kafka::Broker, topic: &str) -> Vec<Value> {
    let consumer: BaseConsumer = broker
        .client()
        .set("group.id", "test-topic-reader")
        .set("enable.partition.eof", "true")
        .create()
        .unwrap();
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    let partitions: Vec<i32> = metadata.topics()[0]
        .partitions()
        .iter()
        .map(|p| p.id())
        .collect();
    for p in &partitions {
        assignment
            .add_partition_offset(topic, *p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut out = Vec::new();
    let mut at_end = std::collections::BTreeSet::new();
    while at_end.len() < partitions.len() {
        assert!(
            Instant::now() < deadline,
            "read {} messages of {topic}; {} of {} partitions reported their end within 60 s",
            out.len(),
            at_end.len(),
            partitions.len()
        );
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                at_end.remove(&m.partition());
                out.push(serde_json::from_slice(m.payload().unwrap()).unwrap());
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            _ => {}
        }
    }
    out
}

/// A record's identity in an output topic: what a later copy of it must repeat exactly.
fn record_key(record: &Value) -> String {
    format!(
        "{} {} {} {}",
        record["symbol"],
        record["interval"],
        record.get("start").unwrap_or(&record["ts"]),
        record.get("id").unwrap_or(&Value::Null)
    )
}

/// Fails naming what `got` lacks and has beyond `expected` (both sorted).
fn assert_same_rows(what: &str, got: &[String], expected: &[String]) {
    assert!(
        got == expected,
        "{what} differs from the uninterrupted run's: {}",
        line_differences(got, expected)
    );
}

/// The records of `prefix.TOPIC` for each of `topics`: how many messages, and the distinct
/// records, sorted; a record sent again must repeat its first copy exactly.
fn distinct_records(broker: &kafka::Broker, prefix: &str, topics: &[&str]) -> (usize, Vec<String>) {
    let mut by_key: BTreeMap<String, String> = BTreeMap::new();
    let mut copies = 0;
    for record in topics
        .iter()
        .flat_map(|t| read_topic(broker, &format!("{prefix}.{t}")))
    {
        copies += 1;
        let text = record.to_string();
        if let Some(before) = by_key.insert(record_key(&record), text.clone()) {
            assert_eq!(
                before, text,
                "a record sent again differs from its first copy"
            );
        }
    }
    let mut distinct: Vec<String> = by_key.into_values().collect();
    distinct.sort();
    (copies, distinct)
}

#[test]
fn killed_three_times_and_resumed_the_database_equals_an_uninterrupted_run() {
    let Some(broker) = kafka::start() else { return };
    let messages = ticks(1_000_000, 20);
    broker.create_topic("chaos", 4);
    broker.produce("chaos", &messages);
    let dir = scratch();
    let pipeline = |name: &str, recovery: &str| {
        format!(
            "pipeline: {name}\nworkers: 2\n{recovery}sources:\n  ticks: {{type: kafka, brokers: \"{b}\", topic: chaos, group: {name}, start: earliest, stop: end, max_delay: 5s}}\noperators:\n  bars_1m: {{type: bars, from: ticks, interval: 1m}}\n  bars_5m: {{type: bars, from: bars_1m, interval: 5m}}\n  ta_1m: {{type: indicators, from: bars_1m, indicators: [{{sma: {{period: 20}}}}, {{rsi: {{period: 14}}}}, {{macd: {{fast: 12, slow: 26, signal: 9}}}}]}}\nsinks:\n  topic: {{type: kafka, brokers: \"{b}\", from: [bars_1m, bars_5m, ta_1m], topic: \"{name}.{{kind}}.{{interval}}\"}}\n  db: {{type: sqlite, path: {name}.db, from: [ticks, bars_1m, bars_5m, ta_1m]}}\n",
            b = broker.address
        )
    };
    write(dir.path(), "reference.yaml", &pipeline("reference", ""));
    let started = Instant::now();
    run_ok(dir.path(), &["run", "reference.yaml", "--no-server"]);
    let reference_ms = started.elapsed().as_millis().max(300) as u64;
    println!("the uninterrupted run took {reference_ms} ms");
    let dump = |db: &str| sqlite_dump(&dir.path().join(db));
    let reference_db = dump("reference.db");
    let topics = ["bars.1m", "bars.5m", "indicators.1m"];
    let mut reference_records: Vec<String> = topics
        .iter()
        .flat_map(|t| read_topic(&broker, &format!("reference.{t}")))
        .map(|v| v.to_string())
        .collect();
    reference_records.sort();
    assert!(
        reference_records.len() > 10_000,
        "{} records",
        reference_records.len()
    );

    write(
        dir.path(),
        "chaos.yaml",
        &pipeline(
            "chaos",
            "recovery: {path: chaos-recovery.db, checkpoint_interval: 100ms}\n",
        ),
    );
    let mut rng = Lcg(0xc4a05);
    for kill in 1..=3 {
        let log = dir.path().join(format!("chaos{kill}.log"));
        let mut child = marketflow()
            .current_dir(dir.path())
            .env("RUST_LOG", "marketflow=info")
            .env("NO_COLOR", "1")
            .args(["run", "chaos.yaml", "--no-server", "--resume"])
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        // A random moment of the run: the point of the test, not a synchronisation.
        let at = reference_ms * 2 / 5 + rng.below(reference_ms / 2);
        std::thread::sleep(Duration::from_millis(at));
        let _ = child.kill();
        let _ = child.wait();
        let text = std::fs::read_to_string(&log).unwrap();
        let committed_checkpoints = text.matches("checkpoint committed").count();
        let resumed = text
            .lines()
            .find(|l| l.contains("resuming from the checkpoint"))
            .and_then(|l| l.split("records=").nth(1))
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or("0");
        println!("kill {kill} at {at} ms: resumed from record {resumed}, committed {committed_checkpoints} checkpoints");
        // The group's offsets never pass what the sinks acknowledged: at most everything.
        assert!(committed(&broker, "chaos", "chaos", 4) <= messages.len() as i64);
    }
    run_ok(
        dir.path(),
        &["run", "chaos.yaml", "--no-server", "--resume"],
    );
    assert_same_rows(
        "the database after three kills",
        &dump("chaos.db"),
        &reference_db,
    );
    let (copies, distinct) = distinct_records(&broker, "chaos", &topics);
    assert_same_rows(
        "the output topics after three kills",
        &distinct,
        &reference_records,
    );
    println!(
        "output topics: {copies} messages, {} distinct, equal to the uninterrupted run's ({} duplicates, at least once)",
        distinct.len(),
        copies - distinct.len()
    );
    assert_eq!(
        committed(&broker, "chaos", "chaos", 4),
        messages.len() as i64,
        "final committed offsets"
    );
}

#[test]
fn a_broker_cut_off_for_10_s_mid_run_loses_nothing() {
    let Some((broker, proxy)) = kafka::start_behind_proxy() else {
        return;
    };
    let messages = ticks(1_000_000, 20);
    broker.create_topic("outage", 4);
    broker.produce("outage", &messages);
    let dir = scratch();
    let pipeline = |name: &str| {
        format!(
            "pipeline: {name}\nworkers: 2\nsources:\n  ticks: {{type: kafka, brokers: \"{b}\", topic: outage, group: {name}, start: earliest, stop: end, max_delay: 5s}}\noperators:\n  bars_1m: {{type: bars, from: ticks, interval: 1m}}\n  bars_5m: {{type: bars, from: bars_1m, interval: 5m}}\n  ta_1m: {{type: indicators, from: bars_1m, indicators: [{{sma: {{period: 20}}}}, {{rsi: {{period: 14}}}}]}}\nsinks:\n  topic: {{type: kafka, brokers: \"{b}\", from: [bars_1m, bars_5m, ta_1m], topic: \"{name}.{{kind}}.{{interval}}\"}}\n  db: {{type: sqlite, path: {name}.db, from: [ticks, bars_1m, bars_5m, ta_1m]}}\n  progress: {{type: file, path: {name}.jsonl, from: [bars_1m]}}\n",
            b = proxy.address
        )
    };
    write(dir.path(), "reference.yaml", &pipeline("reference"));
    let started = Instant::now();
    run_ok(dir.path(), &["run", "reference.yaml", "--no-server"]);
    let reference_time = started.elapsed();
    let reference_db = sqlite_dump(&dir.path().join("reference.db"));
    let bars_1m = sorted_lines(&dir.path().join("reference.jsonl")).len();
    let topics = ["bars.1m", "bars.5m", "indicators.1m"];
    let (_, reference_records) = distinct_records(&broker, "reference", &topics);
    assert!(bars_1m > 5_000, "{bars_1m} bars");

    write(dir.path(), "outage.yaml", &pipeline("outage"));
    let log = dir.path().join("outage.log");
    let started = Instant::now();
    let child = marketflow()
        .current_dir(dir.path())
        .env("RUST_LOG", "marketflow=info,rdkafka=warn")
        .env("NO_COLOR", "1")
        .args(["run", "outage.yaml", "--no-server"])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    // Cut the broker off once the first bars are out, well before the last.
    let progress = dir.path().join("outage.jsonl");
    let deadline = Instant::now() + Duration::from_secs(60);
    let written = loop {
        let lines = std::fs::read_to_string(&progress).map_or(0, |t| t.lines().count());
        if lines > 0 {
            break lines;
        }
        assert!(
            Instant::now() < deadline,
            "the pipeline wrote no bar within 60 s:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    proxy.cut();
    assert!(
        written < bars_1m / 2,
        "the run was past half its bars ({written} of {bars_1m}) before the broker was cut off"
    );
    // The outage itself: ten seconds without a broker.
    std::thread::sleep(Duration::from_secs(10));
    let during = std::fs::read_to_string(&progress).map_or(0, |t| t.lines().count());
    proxy.restore();
    println!(
        "broker cut off at {written} of {bars_1m} 1m bars for 10 s ({during} written by its end)"
    );
    let status = wait_with_deadline(child, Duration::from_secs(180));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "the run failed after the outage:\n{text}");
    println!(
        "the run took {:.1} s with the outage, {:.1} s without",
        started.elapsed().as_secs_f64(),
        reference_time.as_secs_f64()
    );

    assert_same_rows(
        "the database after the outage",
        &sqlite_dump(&dir.path().join("outage.db")),
        &reference_db,
    );
    let (copies, distinct) = distinct_records(&broker, "outage", &topics);
    assert_same_rows(
        "the output topics after the outage",
        &distinct,
        &reference_records,
    );
    println!(
        "output topics: {copies} messages, {} distinct, equal to the uninterrupted run's",
        distinct.len()
    );
    assert_eq!(
        committed(&broker, "outage", "outage", 4),
        messages.len() as i64,
        "final committed offsets"
    );
}

#[test]
fn sasl_and_ssl_options_reach_librdkafka_with_credentials_from_the_environment() {
    // tansu 0.6 speaks neither TLS (its acceptor is built and unused) nor SASL users it can
    // be given in memory, so no handshake can succeed here: what this shows is that the
    // client is built with OpenSSL and takes SASL_SSL and SCRAM, that the credentials come
    // from the environment, and that a failed handshake stops the run with an error naming
    // the source and broker, the password never printed.
    let Some(broker) = kafka::start() else { return };
    broker.create_topic("secured", 1);
    let dir = scratch();
    let pipeline = |protocol: &str| {
        format!(
            "pipeline: secured\nsources:\n  ticks: {{type: kafka, brokers: \"{}\", topic: secured, stop: end, options: {{security.protocol: {protocol}, sasl.mechanisms: SCRAM-SHA-256, sasl.username: \"${{KAFKA_USER}}\", sasl.password: \"${{KAFKA_PASSWORD}}\"}}}}\nsinks:\n  out: {{type: null, from: ticks}}\n",
            broker.address
        )
    };
    let run = |yaml: &str| {
        write(dir.path(), "secured.yaml", yaml);
        let output = marketflow()
            .current_dir(dir.path())
            .env("KAFKA_USER", "alice")
            .env("KAFKA_PASSWORD", "hunter2-not-for-logs")
            .env("RUST_LOG", "debug")
            .args(["run", "secured.yaml", "--no-server"])
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(!output.status.success(), "the run succeeded:\n{text}");
        assert!(
            !text.contains("hunter2"),
            "the password reached the output:\n{text}"
        );
        text
    };
    let text = run(&pipeline("SASL_SSL"));
    assert!(
        text.contains("source ticks") && text.contains(&broker.address),
        "the error names neither the source nor the broker:\n{text}"
    );
    assert!(
        !text.contains("OpenSSL not available") && !text.contains("Unsupported value"),
        "the client does not take SASL_SSL:\n{text}"
    );
    // A misspelt property is librdkafka's to refuse: the options do reach it.
    let text = run(&pipeline("SASL_SSSL"));
    assert!(
        text.contains("security.protocol"),
        "a wrong security.protocol is not named:\n{text}"
    );
}
