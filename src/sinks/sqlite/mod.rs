//! `type: sqlite` — the embedded store: the tables of `migrations/sqlite` in one file,
//! one transaction per batch. A batch is cut when the channel is momentarily empty or
//! `batch_size` rows are waiting, so a quiet stream is committed at once and a busy one
//! in large transactions.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context as _;
use serde::Deserialize;

use schemars::JsonSchema;

use crate::config::de::OneOrMany;
use crate::config::de::Spanned;
use crate::connector::{Sink, SinkContext, SinkEvent, Task, TaskError};
use crate::metrics::metrics;
use crate::store::{sqlite, Batch, Location};

/// Writes records to a SQLite database file.
#[derive(Deserialize, JsonSchema, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct SqliteSinkConfig {
    /// The streams to store.
    pub from: OneOrMany,
    /// The database file; created with its tables when missing.
    pub path: PathBuf,
    /// Rows per transaction at most (default 50000).
    #[serde(
        default = "default_batch_size",
        deserialize_with = "crate::config::values::count_within::<_, 1, 1_000_000>"
    )]
    #[schemars(with = "usize")]
    pub batch_size: usize,
    /// `auto` (default): delete rows past the seed's retention every hour; `off`.
    #[serde(default)]
    pub retention: super::postgres::Retention,
    /// Delete every stored row when the run starts (default false): for a pipeline that
    /// regenerates its history on each start, such as the synthetic demo, so a restart does
    /// not leave two histories whose bars disagree with their ticks.
    #[serde(default)]
    pub clear: bool,
}

fn default_batch_size() -> usize {
    50_000
}

const RETENTION_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

impl Sink for SqliteSinkConfig {
    const TYPE: &'static str = "sqlite";
    const ABOUT: &'static str = "the store's tables in one SQLite file (the embedded default)";

    fn inputs(&self) -> &[Spanned<String>] {
        &self.from.0
    }

    fn store(&self) -> Option<Location> {
        Some(Location::Sqlite(self.path.clone()))
    }

    fn build(&self, ctx: SinkContext) -> Task {
        let config = self.clone();
        Task::Blocking(Box::new(move || {
            run(&config, ctx)
                .with_context(|| format!("sqlite store {}", config.path.display()))
                .map_err(TaskError::from)
        }))
    }
}

fn run(config: &SqliteSinkConfig, mut ctx: SinkContext) -> anyhow::Result<()> {
    let mut conn = sqlite::open(&config.path)?;
    let applied = sqlite::migrate(&mut conn)?;
    tracing::info!(sink = %ctx.name, path = %config.path.display(), ?applied, "sqlite store open");
    if config.clear {
        let tx = conn.transaction()?;
        for table in crate::store::Table::ALL {
            tx.execute(&format!("DELETE FROM {}", table.name()), [])?;
        }
        tx.commit()?;
        tracing::info!(sink = %ctx.name, "cleared the stored rows (`clear: true`)");
    }
    let m = metrics();
    let label = [ctx.name.as_str()];
    let (batches, seconds, deleted) = (
        m.sink_batches.with_label_values(&label),
        m.sink_batch_seconds.with_label_values(&label),
        m.sink_retention_deleted.with_label_values(&label),
    );
    let mut batch = Batch::default();
    let mut progress = i64::MIN;
    let mut next_retention = Instant::now() + RETENTION_EVERY;
    let mut open = true;
    while open || !batch.is_empty() {
        // Take what is waiting without blocking; block only with nothing to commit.
        let event = match ctx.records.try_recv() {
            Ok(event) => Some(event),
            Err(tokio::sync::mpsc::error::TryRecvError::Empty) if batch.is_empty() => {
                ctx.records.blocking_recv()
            }
            Err(_) => None,
        };
        match event {
            Some(SinkEvent::Records { records: rs, .. }) => {
                for r in rs {
                    batch.push(r);
                }
                if batch.len() < config.batch_size {
                    continue;
                }
            }
            // Upserts: a resumed run writes the same rows again.
            Some(SinkEvent::Checkpoint(_)) => continue,
            Some(SinkEvent::Progress(p)) => {
                progress = progress.max(p);
                if !batch.is_empty() {
                    continue;
                }
                ctx.ack.acknowledge(progress);
                continue;
            }
            None => {
                if ctx.records.is_closed() && ctx.records.is_empty() {
                    open = false;
                }
                if batch.is_empty() {
                    continue;
                }
            }
        }
        let started = Instant::now();
        sqlite::write(&mut conn, &batch)?;
        seconds.observe(started.elapsed().as_secs_f64());
        ctx.writer.wrote(batch.len());
        batches.inc();
        ctx.ack.acknowledge(progress);
        batch = Batch::default();
        if config.retention == super::postgres::Retention::Auto && Instant::now() >= next_retention
        {
            next_retention = Instant::now() + RETENTION_EVERY;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            deleted.inc_by(sqlite::apply_retention(&conn, now)? as u64);
        }
    }
    ctx.ack.acknowledge(i64::MAX);
    Ok(())
}
