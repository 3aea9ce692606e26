//! `type: store` — ticks a pipeline recorded in its database (`realtime_prices` of a
//! SQLite or PostgreSQL store), read again in their arrival order: what `marketflow
//! replay --source NAME=store` reads.
//!
//! A recorded tick keeps its sequence number, whose top byte is the index of the source
//! it came from and whose next bits are that source's partition. Each recorded partition
//! is read in sequence order and stamped again with `max_delay`, so a replay sees the
//! same watermarks, hence the same late ticks, as the run that recorded them.

use anyhow::Context as _;
use futures_util::{pin_mut, TryStreamExt};
use marketflow_operators::{Symbol, Tick};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::config::diagnostic::Diagnostic;
use crate::config::values::{Duration, Parsed, TimePoint};
use crate::connector::{
    report_watermark, Source, SourceContext, SourceEvent, Stamper, StreamType, Task, TaskError,
};
use crate::dead_letter::Rejected;
use crate::metrics::metrics;
use crate::store::postgres::PgTime;
use crate::store::Location;

/// Ticks recorded in a store, in arrival order.
#[derive(Deserialize, JsonSchema, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct StoreSourceConfig {
    /// The database: a SQLite file, or a `postgres://` URL (put its password in
    /// `${VAR}`).
    pub database: String,
    /// Which source of the recording pipeline (its place under `sources:`, from 0) the
    /// ticks came from (default 0).
    #[serde(default)]
    pub source_index: u8,
    /// Only these symbols (default: all).
    #[serde(default)]
    pub symbols: Vec<String>,
    /// Ticks at or after this time (`2025-01-02`, RFC 3339, `-7d`; default: the first).
    #[serde(default)]
    pub from: Option<Parsed<TimePoint>>,
    /// Ticks before this time (default: the last).
    #[serde(default)]
    pub to: Option<Parsed<TimePoint>>,
    /// The recording source's `max_delay`: the watermark trails the latest event time by
    /// this much (default 0s).
    #[serde(
        default,
        deserialize_with = "crate::config::values::duration_within::<_, 0, 86_400_000>"
    )]
    #[schemars(with = "Duration")]
    pub max_delay: Duration,
    /// Partitions of this source (default 1); recorded partition `q` is read by
    /// partition `q mod partitions`. A replay uses the recording source's count.
    #[serde(
        default = "one",
        deserialize_with = "crate::config::values::count_within::<_, 1, 1024>"
    )]
    pub partitions: usize,
}

fn one() -> usize {
    1
}

/// Ticks per batch sent to the dataflow.
const BATCH: usize = 4096;
/// Bits below the recording source's index.
const SOURCE_SHIFT: u32 = 56;

impl Source for StoreSourceConfig {
    const TYPE: &'static str = "store";
    const ABOUT: &'static str =
        "ticks a pipeline recorded in its SQLite or PostgreSQL store, again in arrival order";

    fn output(&self) -> StreamType {
        StreamType::Ticks
    }

    fn is_finite(&self) -> bool {
        true
    }

    fn partitions(&self) -> usize {
        self.partitions
    }

    fn max_delay(&self) -> i64 {
        self.max_delay.0
    }

    fn check(&self, path: &str) -> Vec<Diagnostic> {
        let mut problems = Vec::new();
        if let (Some(from), Some(to)) = (&self.from, &self.to) {
            let now = chrono::Utc::now().timestamp_millis();
            if from.value.resolve(now) >= to.value.resolve(now) {
                problems.push(Diagnostic::new(
                    to.pos,
                    format!("{path}.to"),
                    "`to` must be after `from`",
                ));
            }
        }
        problems
    }

    fn build(&self, ctx: SourceContext) -> Task {
        let config = self.clone();
        match Location::parse(&self.database) {
            Location::Sqlite(path) => {
                Task::Blocking(Box::new(move || read_sqlite(&config, &path, &ctx)))
            }
            Location::Postgres(url) => {
                Task::Async(Box::pin(
                    async move { read_postgres(&config, &url, &ctx).await },
                ))
            }
        }
    }
}

impl StoreSourceConfig {
    /// `[from, to)` in ms.
    fn range(&self) -> (i64, i64) {
        let now = chrono::Utc::now().timestamp_millis();
        (
            self.from
                .as_ref()
                .map_or(i64::MIN, |t| t.value.resolve(now)),
            self.to.as_ref().map_or(i64::MAX, |t| t.value.resolve(now)),
        )
    }
}

/// Stamps what one partition reads and hands it over in batches.
struct Sender<'a> {
    ctx: &'a SourceContext,
    symbols: &'a [String],
    stamper: Stamper,
    batch: Vec<Tick>,
    records: u64,
}

impl<'a> Sender<'a> {
    fn new(config: &'a StoreSourceConfig, ctx: &'a SourceContext) -> Sender<'a> {
        Sender {
            ctx,
            symbols: &config.symbols,
            stamper: Stamper::for_partition(config.max_delay.0, ctx.partition),
            batch: Vec::with_capacity(BATCH),
            records: 0,
        }
    }

    /// Takes one recorded tick (`symbol`, ts, seq, price, volume); returns a full batch to
    /// send.
    fn push(
        &mut self,
        symbol: &str,
        (ts, seq, price, volume): (i64, i64, f64, f64),
    ) -> Option<SourceEvent> {
        if !self.symbols.is_empty() && !self.symbols.iter().any(|s| s == symbol) {
            return None;
        }
        let symbol = match Symbol::new(symbol) {
            Ok(symbol) => symbol,
            Err(e) => {
                let detail = format!("recorded tick {seq}: {e}");
                let what = Rejected::Line {
                    line: seq as u64,
                    text: symbol.as_bytes(),
                };
                self.ctx
                    .dead_letters
                    .reject(&self.ctx.name, "malformed", &detail, what);
                return None;
            }
        };
        let recorded = seq as u64;
        let mut tick = Tick {
            symbol,
            ts,
            price,
            volume,
            seq: recorded,
            wm: 0,
        };
        self.stamper.stamp_tick(&mut tick);
        // Its recorded number orders it among ticks of the same instant, as it did live;
        // the engine sets the source's own index again.
        tick.seq = recorded & ((1 << SOURCE_SHIFT) - 1);
        self.batch.push(tick);
        (self.batch.len() >= BATCH).then(|| self.take())
    }

    fn take(&mut self) -> SourceEvent {
        self.records += self.batch.len() as u64;
        metrics()
            .source_records
            .with_label_values(&[self.ctx.name.as_str()])
            .inc_by(self.batch.len() as u64);
        report_watermark(&self.ctx.name, self.stamper.watermark());
        SourceEvent::Ticks {
            records: std::mem::take(&mut self.batch),
            position: self.records,
        }
    }

    /// The last batch, if any.
    fn finish(&mut self) -> Option<SourceEvent> {
        (!self.batch.is_empty()).then(|| self.take())
    }
}

const SQLITE_QUERY: &str = "SELECT symbol, ts, seq, price, volume FROM realtime_prices \
     WHERE (seq >> 56) = ?1 AND ((seq >> 40) & 65535) % ?2 = ?3 AND ts >= ?4 AND ts < ?5 \
     ORDER BY seq";

fn read_sqlite(
    config: &StoreSourceConfig,
    path: &std::path::Path,
    ctx: &SourceContext,
) -> Result<(), TaskError> {
    let shown = path.display();
    let conn = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("source {}: opening {shown}", ctx.name))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .context("setting a busy timeout")?;
    let (from, to) = config.range();
    let mut statement = conn
        .prepare(SQLITE_QUERY)
        .with_context(|| format!("source {}: {shown} has no recorded ticks table", ctx.name))?;
    let params = rusqlite::params![
        config.source_index as i64,
        ctx.partitions as i64,
        ctx.partition as i64,
        from,
        to
    ];
    let mut rows = statement
        .query(params)
        .with_context(|| format!("source {}: reading {shown}", ctx.name))?;
    let mut sender = Sender::new(config, ctx);
    let read = |e: rusqlite::Error| anyhow::anyhow!("source {}: reading {shown}: {e}", ctx.name);
    while let Some(row) = rows.next().map_err(read)? {
        let symbol: String = row.get(0).map_err(read)?;
        let fields = (
            row.get(1).map_err(read)?,
            row.get(2).map_err(read)?,
            row.get(3).map_err(read)?,
            row.get(4).map_err(read)?,
        );
        if let Some(event) = sender.push(&symbol, fields) {
            ctx.out.blocking_send(event)?;
        }
        if ctx.shutdown.is_triggered() {
            return Ok(());
        }
    }
    if let Some(event) = sender.finish() {
        ctx.out.blocking_send(event)?;
    }
    tracing::info!(source = %ctx.name, ticks = sender.records, "finished reading {shown}");
    Ok(())
}

const POSTGRES_QUERY: &str = "SELECT symbol, ts, seq, price, volume FROM realtime_prices \
     WHERE (seq >> 56) = $1 AND ((seq >> 40) & 65535) % $2 = $3 AND ts >= $4 AND ts < $5 \
     ORDER BY seq";

async fn read_postgres(
    config: &StoreSourceConfig,
    url: &str,
    ctx: &SourceContext,
) -> Result<(), TaskError> {
    // The URL may hold a password: errors name the source, not the URL.
    let client = crate::store::postgres::connect(url)
        .await
        .with_context(|| format!("source {}: connecting to its database", ctx.name))?;
    let (from, to) = config.range();
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] = [
        &(config.source_index as i64),
        &(ctx.partitions as i64),
        &(ctx.partition as i64),
        &PgTime(from.max(MIN_PG_MS)),
        &PgTime(to.min(MAX_PG_MS)),
    ];
    let rows = client
        .query_raw(POSTGRES_QUERY, params)
        .await
        .with_context(|| format!("source {}: reading realtime_prices", ctx.name))?;
    pin_mut!(rows);
    let mut sender = Sender::new(config, ctx);
    let read = |e: tokio_postgres::Error| {
        anyhow::anyhow!("source {}: reading realtime_prices: {e}", ctx.name)
    };
    while let Some(row) = rows.try_next().await.map_err(read)? {
        let ts: PgTime = row.try_get(1).map_err(read)?;
        let fields = (
            ts.0,
            row.try_get(2).map_err(read)?,
            row.try_get(3).map_err(read)?,
            row.try_get(4).map_err(read)?,
        );
        if let Some(event) = sender.push(row.try_get(0).map_err(read)?, fields) {
            ctx.out.send(event).await?;
        }
        if ctx.shutdown.is_triggered() {
            return Ok(());
        }
    }
    if let Some(event) = sender.finish() {
        ctx.out.send(event).await?;
    }
    tracing::info!(source = %ctx.name, ticks = sender.records, "finished reading realtime_prices");
    Ok(())
}

/// The instants PostgreSQL's timestamptz holds comfortably (years 1 to 9999).
const MIN_PG_MS: i64 = -62_135_596_800_000;
const MAX_PG_MS: i64 = 253_402_300_799_000;
