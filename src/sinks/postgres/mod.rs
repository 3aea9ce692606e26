//! `type: postgres` — PostgreSQL or TimescaleDB: batches by size and time, binary COPY into
//! a staging table and an upsert per table in one transaction, retried on a new connection
//! when the server goes away. A batch is acknowledged (records counted, committed watermark
//! advanced) only once committed, and every write is an idempotent upsert, so a restart of
//! the server or of the pipeline neither loses nor duplicates a row.

use std::time::{Duration as StdDuration, Instant};

use anyhow::Context as _;
use serde::Deserialize;
use tokio::time::sleep_until;

use schemars::JsonSchema;

use crate::config::de::OneOrMany;
use crate::config::de::Spanned;
use crate::config::values::Duration;
use crate::connector::{Backoff, Sink, SinkContext, SinkEvent, Task, TaskError};
use crate::metrics::metrics;
use crate::store::postgres::{self as pg, PgWriter, TimescaleMode};
use crate::store::{Batch, Location};

/// Writes records to the tables of `migrations/postgres`.
#[derive(Deserialize, JsonSchema, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct PostgresSinkConfig {
    /// The streams to store.
    pub from: OneOrMany,
    /// Connection URL, e.g. `${DATABASE_URL}`; never logged with its password.
    pub url: String,
    /// `auto` (default): TimescaleDB when the server has it; `required`; `off`.
    #[serde(default)]
    pub timescaledb: TimescaleMode,
    /// Apply the migrations at start (default true).
    #[serde(default = "yes")]
    pub migrate: bool,
    /// Rows per transaction at most (default 50000).
    #[serde(
        default = "default_batch_size",
        deserialize_with = "crate::config::values::count_within::<_, 1, 1_000_000>"
    )]
    #[schemars(with = "usize")]
    pub batch_size: usize,
    /// Longest a row waits for its batch to fill (default 200ms).
    #[serde(default = "default_flush_interval")]
    pub flush_interval: Duration,
    /// `auto` (default): the seed's retention, by TimescaleDB's policies or, without it, by
    /// this sink every hour; `off`: keep everything (TimescaleDB's policies are removed).
    #[serde(default)]
    pub retention: Retention,
}

#[derive(Deserialize, JsonSchema, Debug, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Retention {
    #[default]
    Auto,
    Off,
}

fn yes() -> bool {
    true
}

fn default_batch_size() -> usize {
    50_000
}

fn default_flush_interval() -> Duration {
    Duration(200)
}

/// How often plain-PostgreSQL retention runs.
const RETENTION_EVERY: StdDuration = StdDuration::from_secs(3600);
const MAX_BACKOFF: StdDuration = StdDuration::from_secs(5);
/// The first wait before a retry; doubled each time up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: StdDuration = StdDuration::from_millis(100);

impl Sink for PostgresSinkConfig {
    const TYPE: &'static str = "postgres";
    const ABOUT: &'static str =
        "PostgreSQL or TimescaleDB tables, written with binary COPY upserts (see storage.md)";

    fn inputs(&self) -> &[Spanned<String>] {
        &self.from.0
    }

    fn store(&self) -> Option<Location> {
        Some(Location::Postgres(self.url.clone()))
    }

    /// Every worker writes its symbols over its own connection.
    fn parallel(&self) -> bool {
        true
    }

    fn build(&self, ctx: SinkContext) -> Task {
        let config = self.clone();
        Task::Async(Box::pin(async move {
            run(config, ctx).await.map_err(TaskError::from)
        }))
    }
}

/// The connection state of the sink.
struct Connection {
    url: String,
    name: String,
    writer: Option<PgWriter>,
}

impl Connection {
    async fn writer(&mut self) -> Result<&mut PgWriter, tokio_postgres::Error> {
        if self.writer.as_ref().is_none_or(|w| w.client().is_closed()) {
            let client = pg::connect(&self.url).await?;
            self.writer = Some(PgWriter::new(client).await?);
            tracing::info!(sink = %self.name, database = %pg::describe(&self.url), "connected");
        }
        Ok(self.writer.as_mut().expect("connected above"))
    }

    /// Deletes rows past the retention windows (plain PostgreSQL); a failure is logged and
    /// tried again at the next period.
    async fn apply_retention(&mut self, deleted: &prometheus::IntCounter) {
        let name = self.name.clone();
        match self.writer().await {
            Ok(w) => match w.apply_retention().await {
                Ok(n) => deleted.inc_by(n),
                Err(e) => tracing::warn!(sink = %name, error = %e, "retention failed"),
            },
            Err(e) => tracing::warn!(sink = %name, error = %e, "retention: not connected"),
        }
    }

    /// Commits `batch`, retrying with backoff on a new connection while the failure is
    /// transient (server restarting, connection lost); any other error is returned.
    async fn commit(&mut self, batch: &Batch) -> anyhow::Result<()> {
        let m = metrics();
        let retries = m.sink_retries.with_label_values(&[self.name.as_str()]);
        let mut backoff = Backoff::new(FIRST_BACKOFF, MAX_BACKOFF, 0.5);
        loop {
            let attempt = async { self.writer().await?.write(batch).await }.await;
            match attempt {
                Ok(()) => return Ok(()),
                Err(e) if pg::is_transient(&e) => {
                    retries.inc();
                    let wait = backoff.wait();
                    tracing::warn!(sink = %self.name, error = %e, retry_in_ms = wait.as_millis() as u64, "write failed; retrying");
                    self.writer = None;
                    tokio::time::sleep(wait).await;
                }
                Err(e) => {
                    m.sink_errors.with_label_values(&[self.name.as_str()]).inc();
                    return Err(e).context(format!("sink {}: writing to PostgreSQL", self.name));
                }
            }
        }
    }
}

async fn run(config: PostgresSinkConfig, mut ctx: SinkContext) -> anyhow::Result<()> {
    let name = ctx.name.clone();
    let m = metrics();
    let label = [name.as_str()];
    let (batches, seconds, deleted) = (
        m.sink_batches.with_label_values(&label),
        m.sink_batch_seconds.with_label_values(&label),
        m.sink_retention_deleted.with_label_values(&label),
    );
    let mut conn = Connection {
        url: config.url.clone(),
        name: name.clone(),
        writer: None,
    };
    // One writer sets the retention up and applies it; every writer migrates (the
    // migrations take a lock, so the others find them applied).
    let first = ctx.writer.is_first();
    let timescaledb = prepare(&config, &mut conn, first).await?;
    let engine_retention = config.retention == Retention::Auto && !timescaledb && first;
    let mut next_retention = tokio::time::Instant::now() + RETENTION_EVERY;

    let linger = StdDuration::from_millis(config.flush_interval.0.max(0) as u64);
    let mut batch = Batch::default();
    let mut deadline: Option<tokio::time::Instant> = None;
    // The watermark covered by the records received so far, and by the batch being built.
    let mut received_progress = i64::MIN;
    let mut open = true;
    while open || !batch.is_empty() {
        let flush_now = !open || batch.len() >= config.batch_size;
        if !flush_now {
            tokio::select! {
                event = ctx.records.recv() => match event {
                    Some(SinkEvent::Records { records: rs, .. }) => {
                        if batch.is_empty() {
                            deadline = Some(tokio::time::Instant::now() + linger);
                        }
                        for r in rs {
                            batch.push(r);
                        }
                        continue;
                    }
                    // Upserts: a resumed run writes the same rows again.
                    Some(SinkEvent::Checkpoint(_)) => continue,
                    Some(SinkEvent::Progress(p)) => {
                        received_progress = received_progress.max(p);
                        if !batch.is_empty() {
                            continue;
                        }
                        ctx.ack.acknowledge(received_progress);
                        continue;
                    }
                    None => {
                        open = false;
                        continue;
                    }
                },
                _ = sleep_until(deadline.unwrap_or_else(|| tokio::time::Instant::now() + RETENTION_EVERY)), if deadline.is_some() => {}
                _ = sleep_until(next_retention), if engine_retention => {
                    next_retention += RETENTION_EVERY;
                    conn.apply_retention(&deleted).await;
                    continue;
                }
            }
        }
        if batch.is_empty() {
            continue;
        }
        let started = Instant::now();
        conn.commit(&batch).await?;
        seconds.observe(started.elapsed().as_secs_f64());
        ctx.writer.wrote(batch.len());
        batches.inc();
        ctx.ack.acknowledge(received_progress);
        batch = Batch::default();
        deadline = None;
    }
    ctx.ack.acknowledge(i64::MAX);
    Ok(())
}

/// Connects (waiting for the server as a write would), applies the migrations when
/// asked, and tells whether TimescaleDB manages the tables.
async fn prepare(
    config: &PostgresSinkConfig,
    conn: &mut Connection,
    set_retention: bool,
) -> anyhow::Result<bool> {
    let mut backoff = Backoff::new(FIRST_BACKOFF, MAX_BACKOFF, 0.5);
    let mut client = loop {
        match pg::connect(&conn.url).await {
            Ok(client) => break client,
            Err(e) if pg::is_transient(&e) => {
                metrics()
                    .sink_retries
                    .with_label_values(&[conn.name.as_str()])
                    .inc();
                tracing::warn!(sink = %conn.name, database = %pg::describe(&conn.url), error = %e, "cannot connect; retrying");
                tokio::time::sleep(backoff.wait()).await;
            }
            Err(e) => {
                return Err(e).context(format!(
                    "sink {}: connecting to {}",
                    conn.name,
                    pg::describe(&conn.url)
                ))
            }
        }
    };
    if config.migrate {
        let report = pg::migrate(&mut client, config.timescaledb)
            .await
            .with_context(|| format!("sink {}: migrating", conn.name))?;
        tracing::info!(sink = %conn.name, mode = %report.mode(), applied = ?report.applied, "migrations");
    }
    let timescaledb = pg::uses_timescaledb(&client).await.with_context(|| {
        format!(
            "sink {}: the tables are missing; set `migrate: true` or run `marketflow migrate`",
            conn.name
        )
    })?;
    if timescaledb && set_retention {
        pg::set_retention_policies(&client, config.retention == Retention::Off)
            .await
            .with_context(|| format!("sink {}: setting the retention policies", conn.name))?;
    }
    if config.timescaledb == TimescaleMode::Required && !timescaledb {
        anyhow::bail!(
            "sink {}: `timescaledb: required` but the tables are plain PostgreSQL",
            conn.name
        );
    }
    Ok(timescaledb)
}
