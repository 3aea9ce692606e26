//! `marketflow bench-kafka`: ticks/s from a Kafka topic through 1m bars into a null sink,
//! against a bare rdkafka consumer loop over the same topic, measured in the same run.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use marketflow_operators::Record;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::{bench_market, thousands};
use crate::codec::write_record_json;
use crate::engine::{self, RunOptions};
use crate::spec;

/// Arguments of `marketflow bench-kafka`.
#[derive(clap::Args, Debug, Clone)]
pub struct KafkaBenchArgs {
    /// The broker to measure against (a scratch topic is created on it).
    #[arg(long, env = "KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    pub brokers: String,
    /// Ticks produced to the topic.
    #[arg(long, default_value_t = 1_000_000)]
    pub ticks: u64,
    /// Number of symbols.
    #[arg(long, default_value_t = 50)]
    pub symbols: usize,
    /// Partitions of the scratch topic.
    #[arg(long, default_value_t = 4)]
    pub partitions: i32,
    /// Worker threads of the engine run.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
}

pub fn run(args: &KafkaBenchArgs) -> anyhow::Result<()> {
    let topic = format!("marketflow-bench-{}", std::process::id());
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", &args.brokers);
    create_topic(&client, &topic, args.partitions)?;
    let started = Instant::now();
    let per_partition = produce(&client, &topic, args)?;
    let produced = started.elapsed().as_secs_f64();
    println!(
        "marketflow bench-kafka: {} ticks of {} symbols produced to {topic} ({} partitions) on {} in {produced:.1}s ({}/s)",
        thousands(args.ticks),
        args.symbols,
        args.partitions,
        args.brokers,
        thousands((args.ticks as f64 / produced) as u64),
    );
    let single = bare_loop(
        &client,
        &topic,
        &(0..args.partitions).collect::<Vec<_>>(),
        args.ticks,
    )?;
    let parallel = bare_per_partition(&client, &topic, &per_partition)?;
    let engine = engine_run(&topic, args)?;
    let rate = |s: f64| thousands((args.ticks as f64 / s) as u64);
    println!("{:<58} {:>12}", "mode", "ticks/s");
    println!(
        "{:<58} {:>12}",
        "bare consumer loop, one consumer for every partition",
        rate(single)
    );
    println!(
        "{:<58} {:>12}",
        "bare consumer loops, one per partition (baseline)",
        rate(parallel)
    );
    println!(
        "{:<58} {:>12}  {:.2}x the baseline",
        format!("engine: kafka -> 1m bars -> null, {} workers", args.workers),
        rate(engine),
        parallel / engine
    );
    Ok(())
}

fn create_topic(client: &ClientConfig, topic: &str, partitions: i32) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = client.create()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    for result in runtime.block_on(admin.create_topics([&new], &AdminOptions::new()))? {
        result.map_err(|(t, e)| anyhow::anyhow!("creating topic {t}: {e}"))?;
    }
    Ok(())
}

/// Produces the ticks, each symbol to one partition (chosen here, so that the messages per
/// partition are known without asking the broker); returns the count per partition.
fn produce(client: &ClientConfig, topic: &str, args: &KafkaBenchArgs) -> anyhow::Result<Vec<u64>> {
    let producer: BaseProducer = client
        .clone()
        .set("linger.ms", "50")
        .set("compression.type", "lz4")
        .create()?;
    let mut market = bench_market(args.symbols, args.ticks, 10.0)?;
    let mut value = Vec::with_capacity(128);
    let partitions = args.partitions.max(1);
    let mut counts = vec![0u64; partitions as usize];
    for _ in 0..args.ticks {
        let Some(tick) = market.next_arrival(i64::MAX) else {
            break;
        };
        value.clear();
        write_record_json(&mut value, &Record::Tick(tick.clone()));
        let partition = (tick.symbol.route_hash() % partitions as u64) as i32;
        counts[partition as usize] += 1;
        let mut record = BaseRecord::to(topic)
            .partition(partition)
            .key(tick.symbol.as_str())
            .payload(&value[..]);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(5));
                }
            }
        }
    }
    producer
        .flush(Duration::from_secs(300))
        .context("delivering the benchmark ticks")?;
    Ok(counts)
}

/// Seconds for one consumer assigned `partitions` to receive `count` messages.
fn bare_loop(
    client: &ClientConfig,
    topic: &str,
    partitions: &[i32],
    count: u64,
) -> anyhow::Result<f64> {
    let consumer: BaseConsumer = client.clone().set("group.id", "bench-bare").create()?;
    let mut assignment = TopicPartitionList::new();
    for &p in partitions {
        assignment.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let started = Instant::now();
    let mut read = 0u64;
    let mut bytes = 0usize;
    while read < count {
        if started.elapsed() > Duration::from_secs(600) {
            anyhow::bail!("the bare loop read {read} of {count} messages in 600 s");
        }
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            use rdkafka::message::Message as _;
            bytes += message?.payload().map_or(0, <[u8]>::len);
            read += 1;
        }
    }
    std::hint::black_box(bytes);
    Ok(started.elapsed().as_secs_f64())
}

/// Seconds for one bare consumer per partition, on threads of their own, to read the topic
/// (the engine reads each partition with its own consumer too).
fn bare_per_partition(client: &ClientConfig, topic: &str, counts: &[u64]) -> anyhow::Result<f64> {
    let started = Instant::now();
    std::thread::scope(|scope| {
        let handles: Vec<_> = counts
            .iter()
            .enumerate()
            .map(|(p, &n)| scope.spawn(move || bare_loop(client, topic, &[p as i32], n)))
            .collect();
        handles.into_iter().try_for_each(|h| {
            h.join()
                .map_err(|_| anyhow::anyhow!("a bare loop panicked"))?
                .map(drop)
        })
    })?;
    Ok(started.elapsed().as_secs_f64())
}

/// Seconds for the engine to read the topic into 1m bars.
fn engine_run(topic: &str, args: &KafkaBenchArgs) -> anyhow::Result<f64> {
    let yaml = format!(
        "pipeline: bench-kafka\nsources:\n  ticks: {{type: kafka, brokers: \"{}\", topic: {topic}, group: bench-engine, start: earliest, stop: end}}\noperators:\n  bars_1m: {{type: bars, from: ticks, interval: 1m}}\nsinks:\n  out: {{type: null, from: bars_1m}}\n",
        args.brokers
    );
    let pipeline =
        spec::load_str("bench-kafka.yaml", &yaml, &|_| None).map_err(|e| anyhow::anyhow!("{e}"))?;
    let started = Instant::now();
    engine::run(
        &pipeline,
        &RunOptions {
            workers: Some(args.workers),
            ..RunOptions::default()
        },
    )?;
    Ok(started.elapsed().as_secs_f64())
}
