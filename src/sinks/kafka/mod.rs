//! `type: kafka` — records as JSON messages keyed by symbol (so each symbol's records keep
//! their order in one partition), from an idempotent producer with `acks=all`. The broker's
//! delivery reports drive the sink's acknowledgements; a record that cannot be delivered
//! within `delivery_timeout` stops the pipeline with the broker's error.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use anyhow::Context as _;
use marketflow_operators::Record;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::codec::write_record_json;
use crate::config::de::{OneOrMany, Spanned};
use crate::config::values::Duration;
use crate::connector::{Backoff, Sink, SinkContext, SinkEvent, Task, TaskError};
use crate::metrics::metrics;

/// Writes records to Kafka topics.
#[derive(Deserialize, JsonSchema, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    /// The streams to write.
    pub from: OneOrMany,
    /// Bootstrap brokers, `host:port[,host:port...]`.
    pub brokers: String,
    /// A topic name, or a template with `{kind}` (`ticks`, `bars`, `indicators`) and
    /// `{interval}`. Default: the predecessor's topics, `market.prices.raw` for ticks,
    /// `market.prices.ohlcv` for bars, `market.analytics` for indicators.
    #[serde(default)]
    pub topic: Option<String>,
    /// Compression of the batches: `lz4` (default), `zstd`, `gzip`, `snappy` or `none`.
    #[serde(default)]
    pub compression: Compression,
    /// Longest a record may wait for the broker before the pipeline stops (default 2m;
    /// 1s to 1d).
    #[serde(
        default = "default_delivery_timeout",
        deserialize_with = "crate::config::values::duration_within::<_, 1_000, 86_400_000>"
    )]
    #[schemars(with = "Duration")]
    pub delivery_timeout: Duration,
    /// Partitions of the topics this sink creates (default 3; 1 to 100000).
    #[serde(
        default = "default_partitions",
        deserialize_with = "crate::config::values::count_within::<_, 1, 100_000>"
    )]
    pub partitions: usize,
    /// Replication factor of the topics this sink creates (default 1; 1 to 32767).
    #[serde(
        default = "default_replication",
        deserialize_with = "crate::config::values::count_within::<_, 1, 32_767>"
    )]
    pub replication: usize,
    /// librdkafka properties passed through (`linger.ms`, `security.protocol`, ...).
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

/// Batch compression codecs librdkafka supports.
#[derive(Deserialize, JsonSchema, Debug, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    #[default]
    Lz4,
    Zstd,
    Gzip,
    Snappy,
    None,
}

impl Compression {
    /// librdkafka's name for it (`compression.type`).
    fn name(self) -> &'static str {
        match self {
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::None => "none",
        }
    }
}
fn default_delivery_timeout() -> Duration {
    Duration(120_000)
}
fn default_partitions() -> usize {
    3
}
fn default_replication() -> usize {
    1
}

impl Sink for KafkaSinkConfig {
    const TYPE: &'static str = "kafka";
    const ABOUT: &'static str =
        "JSON messages keyed by symbol, from an idempotent producer (acks=all); topics are created when missing";

    /// Every worker produces its symbols with its own producer (a symbol's records keep
    /// their order: one worker holds them).
    fn parallel(&self) -> bool {
        true
    }

    fn inputs(&self) -> &[Spanned<String>] {
        &self.from.0
    }

    fn build(&self, ctx: SinkContext) -> Task {
        let config = self.clone();
        Task::Async(Box::pin(async move {
            run(config, ctx).await.map_err(TaskError::from)
        }))
    }
}

/// Delivery reports, counted as they arrive on the producer's polling thread.
#[derive(Default)]
struct Deliveries {
    delivered: AtomicU64,
    failure: Mutex<Option<String>>,
}

/// The producer's context: counts deliveries and keeps the first failure.
#[derive(Clone)]
struct Reports {
    deliveries: Arc<Deliveries>,
    produced: prometheus::IntCounter,
    errors: prometheus::IntCounter,
}

impl ClientContext for Reports {}

impl ProducerContext for Reports {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.produced.inc();
                self.deliveries.delivered.fetch_add(1, Ordering::SeqCst);
            }
            Err((error, message)) => {
                self.errors.inc();
                if let Ok(mut failure) = self.deliveries.failure.lock() {
                    failure.get_or_insert_with(|| {
                        use rdkafka::message::Message as _;
                        format!("delivering to {}: {error}", message.topic())
                    });
                }
            }
        }
    }
}

/// The topic a record goes to.
fn topic_for(template: Option<&str>, record: &Record) -> String {
    let (kind, interval) = match record {
        Record::Tick(_) => ("ticks", None),
        Record::Bar(b) => ("bars", Some(b.interval)),
        Record::Indicator(i) => ("indicators", Some(i.interval)),
    };
    match template {
        Some(t) => t.replace("{kind}", kind).replace(
            "{interval}",
            &interval.map(|i| i.to_string()).unwrap_or_default(),
        ),
        None => match record {
            Record::Tick(_) => "market.prices.raw".into(),
            Record::Bar(_) => "market.prices.ohlcv".into(),
            Record::Indicator(_) => "market.analytics".into(),
        },
    }
}

fn symbol_of(record: &Record) -> &str {
    match record {
        Record::Tick(t) => t.symbol.as_str(),
        Record::Bar(b) => b.symbol.as_str(),
        Record::Indicator(i) => i.symbol.as_str(),
    }
}

/// The producer, the topics it has made sure of, and what waits for delivery.
struct Writer {
    config: KafkaSinkConfig,
    name: String,
    producer: ThreadedProducer<Reports>,
    admin: AdminClient<DefaultClientContext>,
    deliveries: Arc<Deliveries>,
    topics: HashSet<String>,
    sent: u64,
    /// Deliveries counted in the sink's metrics so far.
    counted: u64,
    /// (records sent before it, progress) of each progress not yet acknowledged.
    pending: VecDeque<(u64, i64, tokio::time::Instant)>,
    buf: Vec<u8>,
}

/// Errors of a broker that is away or busy, which a retry may get past.
fn transient(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::BrokerTransportFailure
            | RDKafkaErrorCode::AllBrokersDown
            | RDKafkaErrorCode::RequestTimedOut
            | RDKafkaErrorCode::OperationTimedOut
            | RDKafkaErrorCode::NotController
            | RDKafkaErrorCode::BrokerNotAvailable
            | RDKafkaErrorCode::LeaderNotAvailable
            | RDKafkaErrorCode::NetworkException
            | RDKafkaErrorCode::CoordinatorNotAvailable
    )
}

impl Writer {
    fn open(config: KafkaSinkConfig, name: &str) -> anyhow::Result<Writer> {
        let mut client = ClientConfig::new();
        client
            .set("bootstrap.servers", &config.brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", config.compression.name())
            .set("linger.ms", "20")
            .set(
                "message.timeout.ms",
                config.delivery_timeout.0.max(1).to_string(),
            );
        for (key, value) in &config.options {
            client.set(key, value);
        }
        let deliveries = Arc::new(Deliveries::default());
        let m = metrics();
        let reports = Reports {
            deliveries: deliveries.clone(),
            produced: m.kafka_produced.with_label_values(&[name]),
            errors: m.kafka_produce_errors.with_label_values(&[name]),
        };
        let producer = client
            .create_with_context(reports)
            .context("creating the Kafka producer")?;
        let admin = client.create().context("creating a Kafka admin client")?;
        Ok(Writer {
            config,
            name: name.to_owned(),
            producer,
            admin,
            deliveries,
            topics: HashSet::new(),
            sent: 0,
            counted: 0,
            pending: VecDeque::new(),
            buf: Vec::with_capacity(512),
        })
    }

    /// Creates `topic` when it is missing, with `cleanup.policy=delete` (never compacted
    /// by key: that kept one bar per symbol in the predecessor).
    async fn ensure_topic(&mut self, topic: &str) -> anyhow::Result<()> {
        if self.topics.contains(topic) {
            return Ok(());
        }
        let new = NewTopic::new(
            topic,
            // Both are range-checked when the pipeline is read, so they fit an i32.
            self.config.partitions as i32,
            TopicReplication::Fixed(self.config.replication as i32),
        )
        .set("cleanup.policy", "delete");
        let options = AdminOptions::new().operation_timeout(Some(StdDuration::from_secs(30)));
        // A broker that is away (restarting, unreachable) is waited for, as deliveries
        // are, up to `delivery_timeout`; a refusal fails at once.
        let give_up = tokio::time::Instant::now() + self.config.delivery_timeout.as_std();
        let mut backoff = Backoff::new(
            StdDuration::from_millis(100),
            StdDuration::from_secs(2),
            0.5,
        );
        loop {
            let failure = match self.admin.create_topics([&new], &options).await {
                Ok(results) => match results.into_iter().find_map(Result::err) {
                    None | Some((_, RDKafkaErrorCode::TopicAlreadyExists)) => break,
                    Some((_, code)) if !transient(code) => {
                        anyhow::bail!("creating topic {topic}: {code}")
                    }
                    Some((_, code)) => code.to_string(),
                },
                Err(e) => e.to_string(),
            };
            let wait = backoff.wait();
            if tokio::time::Instant::now() + wait > give_up {
                anyhow::bail!(
                    "creating topic {topic}: {failure} (still failing after delivery_timeout {})",
                    self.config.delivery_timeout
                );
            }
            tracing::warn!(sink = %self.name, %topic, error = %failure, "cannot create the topic yet; retrying");
            tokio::time::sleep(wait).await;
        }
        self.topics.insert(topic.to_owned());
        Ok(())
    }

    async fn write(&mut self, records: Vec<Record>) -> anyhow::Result<()> {
        for record in &records {
            let topic = topic_for(self.config.topic.as_deref(), record);
            self.ensure_topic(&topic).await?;
            self.buf.clear();
            write_record_json(&mut self.buf, record);
            let mut message = BaseRecord::to(&topic)
                .key(symbol_of(record))
                .payload(&self.buf[..]);
            loop {
                match self.producer.send(message) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        // The local queue is full: wait for deliveries to make room.
                        message = back;
                        tokio::time::sleep(StdDuration::from_millis(5)).await;
                        self.check_failure()?;
                    }
                    Err((e, _)) => return Err(e).context(format!("producing to {topic}")),
                }
            }
            self.sent += 1;
        }
        Ok(())
    }

    fn check_failure(&self) -> anyhow::Result<()> {
        match self.deliveries.failure.lock().ok().and_then(|f| f.clone()) {
            Some(failure) => anyhow::bail!("sink {}: {failure}", self.name),
            None => Ok(()),
        }
    }

    /// Acknowledges every progress whose records the broker has all confirmed; fails when
    /// a delivery failed or took longer than `delivery_timeout`.
    fn acknowledge(&mut self, ctx: &SinkContext) -> anyhow::Result<()> {
        self.check_failure()?;
        let delivered = self.deliveries.delivered.load(Ordering::SeqCst);
        ctx.writer
            .wrote(delivered.saturating_sub(self.counted) as usize);
        self.counted = self.counted.max(delivered);
        while let Some(&(sent, progress, since)) = self.pending.front() {
            if delivered < sent {
                if since.elapsed() > self.config.delivery_timeout.as_std() {
                    anyhow::bail!(
                        "sink {}: the broker confirmed {delivered} of {sent} records within {}",
                        self.name,
                        self.config.delivery_timeout
                    );
                }
                break;
            }
            ctx.ack.acknowledge(progress);
            self.pending.pop_front();
        }
        Ok(())
    }
}

async fn run(config: KafkaSinkConfig, mut ctx: SinkContext) -> anyhow::Result<()> {
    let mut writer = Writer::open(config, &ctx.name)?;
    let mut tick = tokio::time::interval(StdDuration::from_millis(20));
    loop {
        tokio::select! {
            event = ctx.records.recv() => match event {
                Some(SinkEvent::Records { records, .. }) => writer.write(records).await?,
                Some(SinkEvent::Progress(p)) => {
                    let at = tokio::time::Instant::now();
                    writer.pending.push_back((writer.sent, p, at));
                }
                // Upserts downstream or at least once: it resumes by sending again.
                Some(SinkEvent::Checkpoint(_)) => {}
                None => break,
            },
            _ = tick.tick() => {}
        }
        writer.acknowledge(&ctx)?;
    }
    // Everything is produced: wait for the last deliveries.
    let timeout = writer.config.delivery_timeout.as_std();
    tokio::task::block_in_place(|| writer.producer.flush(timeout))
        .with_context(|| format!("sink {}: flushing within {timeout:?}", ctx.name))?;
    writer
        .pending
        .push_back((writer.sent, i64::MAX, tokio::time::Instant::now()));
    writer.acknowledge(&ctx)?;
    Ok(())
}
