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
