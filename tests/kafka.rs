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

const SYMBOLS: [&str; 5] = ["AAPL", "MSFT", "NVDA", "AMZN", "GOOGL"];
const START: i64 = 1_704_205_800_000; // 2024-01-02T14:30:00Z

/// `n` ticks in event-time order over the symbols, as JSON lines, with their keys.
fn ticks(n: usize) -> Vec<(String, String)> {
    let mut rng = Lcg(7);
    (0..n)
        .map(|i| {
            let symbol = SYMBOLS[rng.below(SYMBOLS.len() as u64) as usize];
            let ts = START + i as i64 * 37;
            let price = 100.0 + rng.below(10_000) as f64 / 100.0;
            let volume = 1 + rng.below(500);
            let value = format!(
                r#"{{"type":"tick","symbol":"{symbol}","ts":{ts},"price":{price},"volume":{volume}}}"#
            );
            (symbol.to_owned(), value)
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

#[test]
fn kafka_to_bars_to_kafka_equals_a_file_run_and_commits_behind_the_sinks() {
    let Some(broker) = kafka::start() else { return };
    let messages = ticks(20_000);
    broker.create_topic("ticks", 4);
    broker.produce("ticks", &messages);

    let dir = scratch();
    let lines: String = messages.iter().map(|(_, v)| format!("{v}\n")).collect();
    write(dir.path(), "ticks.jsonl", &lines);
    let graph = "operators:\n  bars_1m: {type: bars, from: ticks, interval: 1m}\n  bars_5m: {type: bars, from: bars_1m, interval: 5m}\n";
    write(
        dir.path(),
        "file.yaml",
        &format!("pipeline: reference\nsources:\n  ticks: {{type: file, path: ticks.jsonl, max_delay: 5s}}\n{graph}sinks:\n  out: {{type: file, from: [bars_1m, bars_5m], path: reference.jsonl}}\n"),
    );
    run_ok(dir.path(), &["run", "file.yaml"]);
    let reference = sorted_lines(&dir.path().join("reference.jsonl"));
    assert!(
        reference.len() > 50,
        "expected bars, got {}",
        reference.len()
    );

    for workers in ["1", "2"] {
        let group = format!("bars-{workers}");
        let prefix = format!("out{workers}");
        write(
            dir.path(),
            "kafka.yaml",
            &format!("pipeline: kafka\nsources:\n  ticks: {{type: kafka, brokers: \"{b}\", topic: ticks, group: {group}, start: earliest, stop: end, max_delay: 5s}}\n{graph}sinks:\n  out: {{type: file, from: [bars_1m, bars_5m], path: kafka.jsonl}}\n  topic: {{type: kafka, brokers: \"{b}\", from: [bars_1m, bars_5m], topic: \"{prefix}.{{kind}}.{{interval}}\"}}\n", b = broker.address),
        );
        run_ok(dir.path(), &["run", "kafka.yaml", "--workers", workers]);
        assert_eq!(
            sorted_lines(&dir.path().join("kafka.jsonl")),
            reference,
            "bars from Kafka with {workers} workers differ from the file run"
        );
        // The output topics hold the same bars, each symbol's in order.
        let mut from_topics = Vec::new();
        for interval in ["1m", "5m"] {
            let topic = format!("{prefix}.bars.{interval}");
            let expected = reference
                .iter()
                .filter(|l| l.contains(&format!("\"interval\":\"{interval}\"")))
                .count();
            let read = consume_all(&broker, &topic, expected);
            let mut last: BTreeMap<(i32, String), String> = BTreeMap::new();
            for (partition, _, bar) in &read {
                let symbol = bar["symbol"].as_str().unwrap().to_owned();
                let start = bar["start"].as_str().unwrap().to_owned();
                if let Some(before) = last.insert((*partition, symbol.clone()), start.clone()) {
                    assert!(
                        before < start,
                        "{symbol} out of order in {topic}: {before} then {start}"
                    );
                }
                from_topics.push(bar.to_string());
            }
        }
        from_topics.sort();
        let mut reference_values: Vec<String> = reference
            .iter()
            .map(|l| serde_json::from_str::<Value>(l).unwrap().to_string())
            .collect();
        reference_values.sort();
        assert_eq!(
            from_topics, reference_values,
            "the output topics hold the bars"
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
    let mut messages = ticks(600);
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
