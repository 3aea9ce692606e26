//! `type: kafka` — ticks or bars from Kafka topics. Each topic partition is a partition
//! of the source: the engine spreads them over every worker, each is read by its own
//! consumer (assigned, not subscribed, so placement is deterministic), stamps its own
//! watermark from the payloads' event times, and commits to the consumer group only the
//! offset every sink has acknowledged.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration as StdDuration, Instant};

use anyhow::Context as _;
use marketflow_operators::time::parse_timestamp;
use marketflow_operators::{Bar, Interval, Tick};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::codec::{self, NaiveTime};
use crate::config::diagnostic::Diagnostic;
use crate::config::values::{Duration, Parsed};
use crate::connector::{
    report_watermark, Position, RecordsKind, ReplayRange, RestartFrom, Source, SourceContext,
    SourceEvent, Stamper, StreamType, Task, TaskError,
};
use crate::dead_letter::Rejected;
use crate::metrics::metrics;

/// Ticks or bars read from Kafka.
#[derive(Deserialize, JsonSchema, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceConfig {
    /// Bootstrap brokers, `host:port[,host:port...]`.
    pub brokers: String,
    /// The topic to read (or `topics`).
    #[serde(default)]
    pub topic: Option<String>,
    /// Several topics read as one stream; their partitions are all partitions of the source.
    #[serde(default)]
    pub topics: Vec<String>,
    /// Consumer group that offsets are committed to (default `marketflow`).
    #[serde(default = "default_group")]
    pub group: String,
    /// `json` (default): marketflow's record shapes; `seed`: the predecessor's tick messages
    /// (`{"symbol","price","timestamp","volume","source"}`, a naive `timestamp` read in
    /// `timezone`, UTC by default).
    #[serde(default)]
    pub format: KafkaFormat,
    /// `ticks` (default) or `bars`.
    #[serde(default)]
    pub kind: RecordsKind,
    /// Interval of the bars (required with `kind: bars`).
    #[serde(default)]
    pub interval: Option<Parsed<Interval>>,
    /// Where to start: `committed` (default: the group's offsets, else the earliest),
    /// `earliest`, `latest`, or an RFC 3339 time (the first message at or after it).
    #[serde(default)]
    pub start: Parsed<StartAt>,
    /// `never` (default), or `end`: stop at the end offsets the partitions had when the
    /// source started (replays, one-off jobs).
    #[serde(default)]
    pub stop: StopAt,
    /// Bounded out-of-orderness: each partition's watermark trails its latest event time
    /// by this much (default 0s).
    #[serde(
        default,
        deserialize_with = "crate::config::values::duration_within::<_, 0, 86_400_000>"
    )]
    #[schemars(with = "Duration")]
    pub max_delay: Duration,
    /// After this long without a message, a partition stops holding the watermark back
    /// (default: it always holds it).
    #[serde(
        default,
        deserialize_with = "crate::config::values::optional_duration_within::<_, 1, 86_400_000>"
    )]
    #[schemars(with = "Option<Duration>")]
    pub idle_timeout: Option<Duration>,
    /// Time zone of timestamps written without a UTC offset (default: they are rejected).
    #[serde(default)]
    pub timezone: Option<Parsed<chrono_tz::Tz>>,
    /// librdkafka properties passed through, e.g. `security.protocol`, `sasl.username:
    /// ${KAFKA_USER}`.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// The (topic, partition) pairs found by `prepare`.
    #[serde(skip)]
    #[schemars(skip)]
    discovered: Arc<OnceLock<Vec<(String, i32)>>>,
}

fn default_group() -> String {
    "marketflow".into()
}

/// Message encodings.
#[derive(Deserialize, JsonSchema, Debug, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum KafkaFormat {
    #[default]
    Json,
    Seed,
}

/// Where reading starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StartAt {
    #[default]
    Committed,
    Earliest,
    Latest,
    /// The first message with a timestamp at or after this (ms).
    Time(i64),
}

impl FromStr for StartAt {
    type Err = String;
    fn from_str(text: &str) -> Result<StartAt, String> {
        match text.trim() {
            "committed" => Ok(StartAt::Committed),
            "earliest" => Ok(StartAt::Earliest),
            "latest" => Ok(StartAt::Latest),
            other => parse_timestamp(other)
                .map(StartAt::Time)
                .map_err(|e| format!("{e}; or write `committed`, `earliest` or `latest`")),
        }
    }
}

/// Where reading ends.
#[derive(Deserialize, JsonSchema, Debug, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StopAt {
    #[default]
    Never,
    End,
}

/// How long metadata, offset and watermark requests may take.
const REQUEST_TIMEOUT: StdDuration = StdDuration::from_secs(15);
/// Messages per batch sent to the worker at most.
const BATCH: usize = 4096;

impl KafkaSourceConfig {
    fn topic_names(&self) -> Vec<String> {
        self.topic.iter().chain(&self.topics).cloned().collect()
    }

    /// librdkafka settings shared by every client of this source.
    fn client(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", &self.group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set(
                "enable.partition.eof",
                if self.stop == StopAt::End {
                    "true"
                } else {
                    "false"
                },
            )
            .set("auto.offset.reset", "earliest");
        for (key, value) in &self.options {
            config.set(key, value);
        }
        config
    }

    /// How timestamps without an offset are read: in `timezone`; the predecessor's
    /// messages (`format: seed`) carry naive UTC times unless `timezone` says otherwise.
    fn naive(&self) -> NaiveTime {
        match (&self.timezone, self.format) {
            (Some(tz), _) => NaiveTime::In(tz.value),
            (None, KafkaFormat::Seed) => NaiveTime::In(chrono_tz::UTC),
            (None, KafkaFormat::Json) => NaiveTime::Reject,
        }
    }
}

impl Source for KafkaSourceConfig {
    const TYPE: &'static str = "kafka";
    const ABOUT: &'static str =
        "ticks or bars from Kafka topics; topic partitions are spread over the workers";

    fn output(&self) -> StreamType {
        self.kind
            .stream_type(self.interval.as_ref().map(|i| i.value))
    }

    fn check(&self, path: &str) -> Vec<Diagnostic> {
        let mut problems = Vec::new();
        let at = self.start.pos;
        if self.topic_names().is_empty() {
            problems.push(
                Diagnostic::new(at, format!("{path}.topic"), "name a `topic` (or `topics`)")
                    .help("e.g. `topic: market.prices.raw`"),
            );
        }
        if self.kind == RecordsKind::Bars && self.interval.is_none() {
            problems.push(Diagnostic::new(
                at,
                format!("{path}.interval"),
                "`kind: bars` needs the bars' `interval`",
            ));
        }
        if self.format == KafkaFormat::Seed && self.kind == RecordsKind::Bars {
            problems.push(Diagnostic::new(
                at,
                format!("{path}.format"),
                "`format: seed` reads the predecessor's tick messages; use `format: json` for bars",
            ));
        }
        problems
    }

    fn is_finite(&self) -> bool {
        self.stop == StopAt::End
    }

    fn prepare(&self) -> anyhow::Result<()> {
        if self.discovered.get().is_some() {
            return Ok(());
        }
        let consumer: BaseConsumer<Quiet> = self
            .client()
            .create_with_context(Quiet)
            .context("creating a Kafka client")?;
        let mut found = Vec::new();
        for topic in self.topic_names() {
            let metadata = consumer
                .fetch_metadata(Some(&topic), REQUEST_TIMEOUT)
                .with_context(|| {
                    format!(
                        "reading the metadata of topic {topic} from {}",
                        self.brokers
                    )
                })?;
            let partitions: Vec<i32> = metadata
                .topics()
                .iter()
                .filter(|t| t.name() == topic && t.error().is_none())
                .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                .collect();
            if partitions.is_empty() {
                anyhow::bail!(
                    "topic {topic} has no partitions on {} (does it exist?)",
                    self.brokers
                );
            }
            let mut partitions = partitions;
            partitions.sort_unstable();
            found.extend(partitions.into_iter().map(|p| (topic.clone(), p)));
        }
        let _ = self.discovered.set(found);
        Ok(())
    }

    fn partitions(&self) -> usize {
        self.discovered.get().map_or(1, Vec::len)
    }

    fn max_delay(&self) -> i64 {
        self.max_delay.0
    }

    fn restart_from(&self) -> RestartFrom {
        RestartFrom::Position
    }

    /// The topic again from `from` (or the earliest offset) to the end offsets it has now,
    /// in a group of its own so that the live group's offsets stay where they are.
    fn for_replay(&self, range: &ReplayRange) -> Option<Self> {
        let mut replay = self.clone();
        replay.start.value = range.from.map_or(StartAt::Earliest, StartAt::Time);
        replay.stop = StopAt::End;
        replay.group = format!("{}.replay", self.group);
        replay.discovered = Arc::default();
        Some(replay)
    }

    fn idle_timeout(&self) -> Option<StdDuration> {
        self.idle_timeout.map(Duration::as_std)
    }

    fn build(&self, ctx: SourceContext) -> Task {
        let config = self.clone();
        Task::Blocking(Box::new(move || {
            let Some((topic, partition)) = config
                .discovered
                .get()
                .and_then(|d| d.get(ctx.partition))
                .cloned()
            else {
                return Err(anyhow::anyhow!("the Kafka source was not prepared").into());
            };
            PartitionReader::open(&config, ctx, topic, partition)?.run()
        }))
    }
}

/// How far before a checkpoint's cut a resumed partition fetches from.
const REWIND: i64 = 1 << 16;

/// One topic partition being read.
struct PartitionReader<'a> {
    config: &'a KafkaSourceConfig,
    ctx: SourceContext,
    consumer: BaseConsumer<Quiet>,
    topic: String,
    partition: i32,
    /// Where `stop: end` stops: the end offset when the source started. The partition is
    /// done once its position has passed it and the consumer has reported the partition's
    /// end (some brokers answer end-offset requests loosely; the fetch's end is exact).
    end: Option<i64>,
    /// The consumer reported the end of the partition since the last message.
    at_partition_end: bool,
    stamper: Stamper,
    /// The next offset to read (the position of the last message read, plus one).
    position: Option<i64>,
    /// No message has been read yet (a gap before the first is the broker's doing).
    first_read: bool,
    /// The position of the last batch handed to the worker.
    sent: Option<Position>,
    committed: Option<Position>,
    lag: prometheus::IntGauge,
    records: prometheus::IntCounter,
}

impl<'a> PartitionReader<'a> {
    fn open(
        config: &'a KafkaSourceConfig,
        ctx: SourceContext,
        topic: String,
        partition: i32,
    ) -> anyhow::Result<PartitionReader<'a>> {
        let consumer: BaseConsumer<Quiet> = config
            .client()
            .create_with_context(Quiet)
            .context("creating a Kafka consumer")?;
        let (low, high) = consumer
            .fetch_watermarks(&topic, partition, REQUEST_TIMEOUT)
            .with_context(|| format!("reading the offsets of {topic}/{partition}"))?;
        // After a checkpoint, where it cut the partition; otherwise as configured.
        let start = match ctx.restart.and_then(|r| r.position) {
            Some(position) => position.min(i64::MAX as u64) as i64,
            None => start_offset(config, &consumer, &topic, partition, (low, high))?,
        };
        // After a checkpoint, fetch from a little before the cut and drop what precedes it:
        // some brokers (tansu) answer a fetch inside a stored batch from the next batch.
        let fetch_from = if ctx.restart.is_some() {
            start.saturating_sub(REWIND).max(low)
        } else {
            start
        };
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset(&topic, partition, Offset::Offset(fetch_from))?;
        consumer.assign(&assignment)?;
        tracing::info!(source = %ctx.name, topic = %topic, partition, start, end = high, "reading");
        let partition_label = partition.to_string();
        let m = metrics();
        Ok(PartitionReader {
            end: (config.stop == StopAt::End).then_some(high),
            at_partition_end: false,
            stamper: match ctx.restart.and_then(|r| r.stamper) {
                Some(state) => Stamper::restored(config.max_delay.0, state),
                None => Stamper::for_partition(config.max_delay.0, ctx.partition),
            },
            position: Some(start),
            first_read: true,
            sent: None,
            committed: None,
            lag: m.kafka_consumer_lag.with_label_values(&[
                ctx.name.as_str(),
                topic.as_str(),
                partition_label.as_str(),
            ]),
            records: m.source_records.with_label_values(&[ctx.name.as_str()]),
            config,
            ctx,
            consumer,
            topic,
            partition,
        })
    }

    /// Reads until the end (`stop: end`), the run stops, or an error.
    fn run(mut self) -> Result<(), TaskError> {
        // The starting offset first, so that a checkpoint cut before any message still
        // knows where the partition began.
        self.send(Vec::new(), Vec::new())?;
        let mut last_lag = Instant::now();
        loop {
            self.commit_acknowledged(CommitMode::Async);
            if self.ctx.shutdown.is_triggered() || self.at_end() {
                break;
            }
            let (ticks, bars) = self.read_batch();
            self.send(ticks, bars)?;
            if last_lag.elapsed() >= StdDuration::from_secs(5) {
                last_lag = Instant::now();
                self.report_lag();
            }
        }
        self.finish();
        Ok(())
    }

    fn at_end(&self) -> bool {
        self.at_partition_end
            && matches!((self.end, self.position), (Some(end), Some(p)) if p >= end)
    }

    /// Waits up to 100 ms for a message, then takes what else is ready, up to a batch.
    fn read_batch(&mut self) -> (Vec<Tick>, Vec<Bar>) {
        let (mut ticks, mut bars) = (Vec::new(), Vec::new());
        let mut wait = StdDuration::from_millis(100);
        while ticks.len() + bars.len() < BATCH {
            let Some(result) = self.consumer.poll(wait) else {
                break;
            };
            wait = StdDuration::ZERO;
            let message = match result {
                Ok(message) => message,
                Err(KafkaError::PartitionEOF(_)) => {
                    self.at_partition_end = true;
                    break;
                }
                Err(e) => {
                    tracing::warn!(source = %self.ctx.name, topic = %self.topic, partition = self.partition, error = %e, "Kafka error; retrying");
                    metrics()
                        .source_reconnects
                        .with_label_values(&[self.ctx.name.as_str()])
                        .inc();
                    break;
                }
            };
            let offset = message.offset();
            // A message before the position was read already (a broker may answer a fetch
            // from the start of the batch holding the asked offset, or again).
            if self.position.is_some_and(|p| offset < p) {
                continue;
            }
            if self.position.is_some_and(|p| offset > p) && self.first_read {
                tracing::warn!(source = %self.ctx.name, topic = %self.topic, partition = self.partition, expected = ?self.position, offset, "the broker skipped offsets; those messages are missing");
            }
            self.first_read = false;
            self.position = Some(offset + 1);
            self.at_partition_end = false;
            let payload = message.payload().unwrap_or_default();
            match decode(self.config, payload) {
                Ok(Decoded::Tick(tick)) => ticks.push(tick),
                Ok(Decoded::Bar(bar)) => bars.push(bar),
                Err(reason) => self.reject(offset, payload, &reason),
            }
            if self.at_end() {
                break;
            }
        }
        (ticks, bars)
    }

    fn reject(&self, offset: i64, payload: &[u8], reason: &str) {
        let detail = format!(
            "{}/{} offset {offset}: {reason}",
            self.topic, self.partition
        );
        self.ctx.dead_letters.reject(
            &self.ctx.name,
            "malformed",
            &detail,
            Rejected::Message {
                topic: &self.topic,
                partition: self.partition,
                offset,
                payload,
            },
        );
    }

    /// Hands the batch to the worker. A batch of only malformed messages is sent empty,
    /// so that its position can be acknowledged too.
    fn send(&mut self, mut ticks: Vec<Tick>, mut bars: Vec<Bar>) -> Result<(), TaskError> {
        let Some(position) = self.position.map(|p| p.max(0) as u64) else {
            return Ok(());
        };
        if self.sent >= Some(position) {
            return Ok(());
        }
        ticks.iter_mut().for_each(|t| self.stamper.stamp_tick(t));
        bars.iter_mut().for_each(|b| self.stamper.stamp_bar(b));
        self.records.inc_by((ticks.len() + bars.len()) as u64);
        let event = match self.config.kind {
            RecordsKind::Ticks => SourceEvent::Ticks {
                records: ticks,
                position,
            },
            RecordsKind::Bars => SourceEvent::Bars {
                records: bars,
                position,
            },
        };
        self.ctx.out.blocking_send(event)?;
        self.sent = Some(position);
        report_watermark(&self.ctx.name, self.stamper.watermark());
        Ok(())
    }

    /// Commits the position every sink has acknowledged, when it moved.
    fn commit_acknowledged(&mut self, mode: CommitMode) {
        let acked = *self.ctx.acked.borrow();
        let Some(acked) = acked.filter(|a| Some(*a) > self.committed) else {
            return;
        };
        let mut offsets = TopicPartitionList::new();
        if offsets
            .add_partition_offset(&self.topic, self.partition, Offset::Offset(acked as i64))
            .is_err()
        {
            return;
        }
        match self.consumer.commit(&offsets, mode) {
            Ok(()) => {
                self.committed = Some(acked);
                metrics()
                    .kafka_committed_offset
                    .with_label_values(&[
                        self.ctx.name.as_str(),
                        self.topic.as_str(),
                        self.partition.to_string().as_str(),
                    ])
                    .set(acked as i64);
            }
            Err(e) => {
                tracing::warn!(source = %self.ctx.name, topic = %self.topic, partition = self.partition, error = %e, "commit failed; retried with the next acknowledgement")
            }
        }
    }

    fn report_lag(&self) {
        if let (Ok((_, high)), Some(position)) = (
            self.consumer
                .fetch_watermarks(&self.topic, self.partition, REQUEST_TIMEOUT),
            self.position,
        ) {
            self.lag.set((high - position).max(0));
        }
    }

    /// Closes the partition's input (nothing more comes), then commits the sinks'
    /// acknowledgements until they cover everything sent, or the run no longer acknowledges
    /// (its worker ended: it bounds how long a stuck sink is waited for).
    fn finish(&mut self) {
        self.ctx.out.close();
        if self.at_end() {
            tracing::info!(source = %self.ctx.name, topic = %self.topic, partition = self.partition, "read to the end; committing offsets as the sinks acknowledge");
        }
        loop {
            self.commit_acknowledged(CommitMode::Sync);
            if self.committed >= self.sent || self.ctx.acked.has_changed().is_err() {
                break;
            }
            // Nothing to poll for: wait for the acknowledgement to move.
            std::thread::park_timeout(StdDuration::from_millis(20));
        }
        self.commit_acknowledged(CommitMode::Sync);
    }
}

/// The consumers' client context: librdkafka's errors go to the log as warnings, except
/// the end of a partition, which `stop: end` waits for and is no error.
struct Quiet;

impl ClientContext for Quiet {
    fn error(&self, error: KafkaError, reason: &str) {
        let end = matches!(
            error,
            KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)
        );
        if !end {
            tracing::warn!(%error, reason, "Kafka client error");
        }
    }
}

impl ConsumerContext for Quiet {}

/// A decoded message.
enum Decoded {
    Tick(Tick),
    Bar(Bar),
}

fn decode(config: &KafkaSourceConfig, payload: &[u8]) -> Result<Decoded, String> {
    match config.kind {
        RecordsKind::Ticks => codec::parse_tick_json(payload, config.naive())
            .map(Decoded::Tick)
            .map_err(|e| e.to_string()),
        RecordsKind::Bars => codec::parse_bar_json(
            payload,
            config.interval.as_ref().map(|i| i.value),
            config.naive(),
        )
        .map(Decoded::Bar)
        .map_err(|e| e.to_string()),
    }
}

/// The first offset to read, by `start`.
fn start_offset(
    config: &KafkaSourceConfig,
    consumer: &BaseConsumer<Quiet>,
    topic: &str,
    partition: i32,
    (low, high): (i64, i64),
) -> anyhow::Result<i64> {
    let mut list = TopicPartitionList::new();
    list.add_partition(topic, partition);
    Ok(match config.start.value {
        StartAt::Earliest => low,
        StartAt::Latest => high,
        StartAt::Committed => {
            let committed = consumer
                .committed_offsets(list, REQUEST_TIMEOUT)
                .with_context(|| format!("reading the committed offset of {topic}/{partition}"))?;
            match committed
                .find_partition(topic, partition)
                .map(|p| p.offset())
            {
                Some(Offset::Offset(n)) => n.max(low),
                _ => low,
            }
        }
        StartAt::Time(ms) => {
            let mut at = TopicPartitionList::new();
            at.add_partition_offset(topic, partition, Offset::Offset(ms))?;
            let found = consumer
                .offsets_for_times(at, REQUEST_TIMEOUT)
                .with_context(|| format!("finding the offset of {topic}/{partition} at {ms} ms"))?;
            match found.find_partition(topic, partition).map(|p| p.offset()) {
                Some(Offset::Offset(n)) => n,
                _ => high,
            }
        }
    })
}
