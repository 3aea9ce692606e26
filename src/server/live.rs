//! `marketflow serve --live kafka://BROKERS[/TOPIC,TOPIC...]`: an API server running apart
//! from the engine feeds its WebSocket hub from the engine's Kafka topics.
//!
//! Each stream's snapshot comes from the store (merged into the hub on its first
//! subscription), live records from Kafka. Kafka delivers at least once and the store may
//! be ahead of or behind it, so the hub drops what a stream has already seen
//! ([`Hub::publish_new`]): a client gets every record once, with no gap at the seam. Reading
//! starts `lookback` before the server started, which covers what the engine had sent to
//! Kafka but not yet committed to the store.

use std::time::Duration;

use anyhow::Context as _;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message as _;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::codec::{self, NaiveTime};
use crate::hub::Hub;
use crate::metrics::metrics;
use crate::shutdown::Shutdown;
use crate::status::{FeedPhase, RunStatus};

/// The name the feed has in `/health` and the metrics.
pub const SOURCE: &str = "live";
/// The topics read by default: those the Kafka sink writes by default (the predecessor's).
pub const DEFAULT_TOPICS: [&str; 3] = [
    "market.prices.raw",
    "market.prices.ohlcv",
    "market.analytics",
];
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Records handed to the hub at once at most.
const BATCH: usize = 4096;

/// Where the live records come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveFeed {
    pub brokers: String,
    pub topics: Vec<String>,
    /// How far before the start reading begins.
    pub lookback: Duration,
}

impl LiveFeed {
    /// Reads `kafka://host:port[,host:port...][/topic,topic...]`.
    pub fn parse(url: &str, lookback: Duration) -> Result<LiveFeed, String> {
        let rest = url.strip_prefix("kafka://").ok_or_else(|| {
            format!("`{url}`: expected kafka://BROKERS[/TOPIC,...], e.g. kafka://127.0.0.1:9092")
        })?;
        let (brokers, topics) = rest.split_once('/').unwrap_or((rest, ""));
        if brokers.is_empty() {
            return Err(format!("`{url}` names no broker"));
        }
        let mut topics: Vec<String> = topics
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect();
        if topics.is_empty() {
            topics = DEFAULT_TOPICS.iter().map(|t| (*t).to_owned()).collect();
        }
        Ok(LiveFeed {
            brokers: brokers.to_owned(),
            topics,
            lookback,
        })
    }
}

/// Reads the feed into `hub` on a thread of its own until `stop` triggers.
pub fn spawn(
    feed: LiveFeed,
    hub: Hub,
    status: RunStatus,
    stop: Shutdown,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &feed.brokers)
        // Nothing is committed: each server reads from its own start.
        .set(
            "group.id",
            format!("marketflow-serve-{}", std::process::id()),
        )
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "latest")
        .create()
        .context("creating the Kafka consumer of the live feed")?;
    let started = super::now_ms();
    status.partition_started(SOURCE);
    status.feed_phase(SOURCE, FeedPhase::Connecting);
    std::thread::Builder::new()
        .name("marketflow-live".into())
        .spawn(move || {
            let reader = Reader {
                feed,
                consumer,
                hub,
                status,
                stop,
                from: started,
            };
            reader.run();
        })
        .context("starting the live feed's thread")
}

struct Reader {
    feed: LiveFeed,
    consumer: BaseConsumer,
    hub: Hub,
    status: RunStatus,
    stop: Shutdown,
    /// When the server started (ms): reading begins `lookback` before it.
    from: i64,
}

impl Reader {
    fn run(self) {
        let mut assigned: Vec<String> = Vec::new();
        let mut next_discovery = std::time::Instant::now();
        let mut batch = Vec::with_capacity(BATCH);
        let records = metrics().source_records.with_label_values(&[SOURCE]);
        let errors = metrics().source_decode_errors.with_label_values(&[SOURCE]);
        let repeats = metrics().source_replayed.with_label_values(&[SOURCE]);
        while !self.stop.is_triggered() {
            // Topics the engine has not created yet are looked for again every few seconds.
            if assigned.len() < self.feed.topics.len()
                && std::time::Instant::now() >= next_discovery
            {
                next_discovery = std::time::Instant::now() + Duration::from_secs(2);
                // Only the new partitions: assigning all again would move those being read
                // back to where they started (or, from their end, past unread messages).
                let added = self.discover(&mut assigned);
                if added.count() > 0 {
                    if let Err(e) = self.consumer.incremental_assign(&added) {
                        tracing::warn!(error = %e, "assigning the live feed's partitions");
                    }
                }
                if !assigned.is_empty() {
                    self.status.feed_phase(SOURCE, FeedPhase::Connected);
                }
            }
            if assigned.is_empty() {
                std::thread::park_timeout(Duration::from_millis(200));
                continue;
            }
            let mut wait = Duration::from_millis(100);
            while batch.len() < BATCH {
                let Some(result) = self.consumer.poll(wait) else {
                    break;
                };
                wait = Duration::ZERO;
                let message = match result {
                    Ok(message) => message,
                    Err(e) => {
                        tracing::warn!(error = %e, "live feed: Kafka error; retrying");
                        break;
                    }
                };
                let payload = message.payload().unwrap_or_default();
                match codec::parse_record_json(payload, NaiveTime::Reject) {
                    Ok(record) => batch.push(record),
                    Err(e) => {
                        errors.inc();
                        tracing::warn!(
                            topic = message.topic(),
                            partition = message.partition(),
                            offset = message.offset(),
                            error = %e,
                            "live feed: a message that is not a record was skipped"
                        );
                    }
                }
            }
            if !batch.is_empty() {
                records.inc_by(batch.len() as u64);
                let dropped = self.hub.publish_new(std::mem::take(&mut batch));
                repeats.inc_by(dropped as u64);
            }
        }
    }

    /// The partitions of topics that exist now and are not read yet, each from the first
    /// message `lookback` before the start; their topics join `assigned`.
    fn discover(&self, assigned: &mut Vec<String>) -> TopicPartitionList {
        let since = self.from - self.feed.lookback.as_millis() as i64;
        let mut added = TopicPartitionList::new();
        for topic in &self.feed.topics {
            if assigned.contains(topic) {
                continue;
            }
            let partitions = match self.consumer.fetch_metadata(Some(topic), REQUEST_TIMEOUT) {
                Ok(metadata) => metadata
                    .topics()
                    .iter()
                    .filter(|t| t.name() == topic && t.error().is_none())
                    .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                    .collect::<Vec<i32>>(),
                Err(e) => {
                    tracing::warn!(topic = %topic, error = %e, "live feed: reading topic metadata");
                    continue;
                }
            };
            if partitions.is_empty() {
                continue;
            }
            for partition in partitions {
                let start = self.start_offset(topic, partition, since);
                if added.add_partition_offset(topic, partition, start).is_err() {
                    continue;
                }
            }
            tracing::info!(topic = %topic, since, "live feed: reading");
            assigned.push(topic.clone());
        }
        added
    }

    /// The first offset at or after `since`; the partition's start when the broker cannot
    /// find offsets by time, its end when nothing is that recent.
    fn start_offset(&self, topic: &str, partition: i32, since: i64) -> Offset {
        let mut at = TopicPartitionList::new();
        if at
            .add_partition_offset(topic, partition, Offset::Offset(since))
            .is_err()
        {
            return Offset::Beginning;
        }
        match self.consumer.offsets_for_times(at, REQUEST_TIMEOUT) {
            Ok(found) => match found.find_partition(topic, partition).map(|p| p.offset()) {
                Some(Offset::Offset(n)) if n >= 0 => Offset::Offset(n),
                _ => Offset::End,
            },
            Err(e) => {
                tracing::warn!(topic, partition, error = %e, "live feed: no offsets by time; reading the partition from its start");
                Offset::Beginning
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_live_urls() {
        let minute = Duration::from_secs(60);
        let feed = LiveFeed::parse("kafka://a:9092,b:9092", minute).unwrap();
        assert_eq!(feed.brokers, "a:9092,b:9092");
        assert_eq!(feed.topics, DEFAULT_TOPICS);
        let feed = LiveFeed::parse("kafka://a:9092/x.bars, x.ticks", minute).unwrap();
        assert_eq!(feed.topics, ["x.bars", "x.ticks"]);
        assert!(LiveFeed::parse("http://a:9092", minute).is_err());
        assert!(LiveFeed::parse("kafka:///t", minute).is_err());
    }
}
