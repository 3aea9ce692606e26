//! PostgreSQL (and TimescaleDB): migrations, the batch writer (binary COPY into a staging
//! table, then one upsert per table, in one transaction) and the read queries.

use std::pin::pin;
use std::sync::{Arc, Mutex};

use bytes::{BufMut, BytesMut};
use marketflow_operators::{Bar, IndicatorRow, Interval, Symbol, Tick};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{accepts, to_sql_checked, FromSql, IsNull, ToSql, Type};
use tokio_postgres::{Client, NoTls, Row};

use super::SYMBOL_SPANS_SQL;
use super::{
    indicator_from_columns, outputs_json, BarColumns, BarQuery, Batch, IndicatorQuery, StoreError,
    SymbolSpan, Table, TickQuery,
};

/// The migrations, in order: (version, name, SQL).
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "0001_tables.sql",
        include_str!("../../migrations/postgres/0001_tables.sql"),
    ),
    (
        2,
        "0002_timescaledb.sql",
        include_str!("../../migrations/postgres/0002_timescaledb.sql"),
    ),
    (
        3,
        "0003_source.sql",
        include_str!("../../migrations/postgres/0003_source.sql"),
    ),
];

/// Milliseconds since 2000-01-01, PostgreSQL's timestamp epoch.
const PG_EPOCH_MS: i64 = 946_684_800_000;

/// A `timestamptz` as epoch milliseconds, without going through a date library.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PgTime(pub i64);

impl ToSql for PgTime {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.put_i64((self.0 - PG_EPOCH_MS) * 1000);
        Ok(IsNull::No)
    }
    accepts!(TIMESTAMPTZ);
    to_sql_checked!();
}

impl<'a> FromSql<'a> for PgTime {
    fn from_sql(
        _ty: &Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let bytes: [u8; 8] = raw.try_into()?;
        Ok(PgTime(
            i64::from_be_bytes(bytes).div_euclid(1000) + PG_EPOCH_MS,
        ))
    }
    accepts!(TIMESTAMPTZ);
}

/// JSON text sent as `jsonb` (format version 1 followed by the text).
#[derive(Debug)]
struct Jsonb(String);

impl ToSql for Jsonb {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.put_u8(1);
        out.put_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }
    accepts!(JSONB);
    to_sql_checked!();
}

/// Connects and drives the connection on the current runtime.
pub async fn connect(url: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "postgres connection closed");
        }
    });
    Ok(client)
}

/// `url` with its database replaced by `name` (query parameters kept).
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, ""), |(b, q)| (b, q));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    if query.is_empty() {
        format!("{base}/{name}")
    } else {
        format!("{base}/{name}?{query}")
    }
}

/// Where the URL points, without its password: for logs.
pub fn describe(url: &str) -> String {
    match url.parse::<tokio_postgres::Config>() {
        Ok(config) => {
            let host = config
                .get_hosts()
                .first()
                .map(|h| match h {
                    tokio_postgres::config::Host::Tcp(name) => name.clone(),
                    tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
                })
                .unwrap_or_default();
            let port = config.get_ports().first().copied().unwrap_or(5432);
            format!(
                "postgres://{}@{host}:{port}/{}",
                config.get_user().unwrap_or(""),
                config.get_dbname().unwrap_or("")
            )
        }
        Err(_) => "postgres (unparsable URL)".to_owned(),
    }
}

/// Whether an error is worth retrying on a new connection: the server went away or is
/// starting or stopping, as opposed to a mistake in the request or the configuration.
pub fn is_transient(error: &tokio_postgres::Error) -> bool {
    match error.code() {
        None => true,
        Some(code) => {
            let class = &code.code()[..2];
            matches!(class, "08" | "53" | "57" | "40") || *code == SqlState::CANNOT_CONNECT_NOW
        }
    }
}

/// `timescaledb:` of a postgres sink and of `marketflow migrate`.
#[derive(
    serde::Deserialize,
    schemars::JsonSchema,
    clap::ValueEnum,
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
)]
#[serde(rename_all = "snake_case")]
pub enum TimescaleMode {
    /// Use TimescaleDB when the server has it, plain tables otherwise.
    #[default]
    Auto,
    /// Fail unless TimescaleDB is available.
    Required,
    /// Plain tables even when TimescaleDB is available.
    Off,
}

/// What `migrate` did.
#[derive(Debug, Clone)]
pub struct MigrationReport {
    /// `true` when the tables are TimescaleDB hypertables.
    pub timescaledb: bool,
    pub server_version: String,
    pub applied: Vec<String>,
    pub already: Vec<String>,
}

impl MigrationReport {
    pub fn mode(&self) -> String {
        if self.timescaledb {
            "TimescaleDB (hypertables, compression, retention and continuous aggregate policies)"
                .to_owned()
        } else {
            "plain PostgreSQL (timescaledb not available or not wanted; retention by the engine)"
                .to_owned()
        }
    }
}

/// Applies the migrations not yet recorded, each once and in its own transaction. The
/// single decision between TimescaleDB and plain tables is made here.
pub async fn migrate(
    client: &mut Client,
    want: TimescaleMode,
) -> Result<MigrationReport, StoreError> {
    let server_version: String = client.query_one("SHOW server_version", &[]).await?.get(0);
    let timescaledb = match want {
        TimescaleMode::Off => false,
        TimescaleMode::Auto | TimescaleMode::Required => {
            let available = client
                .query_opt(
                    "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'",
                    &[],
                )
                .await?
                .is_some();
            // Installed but not preloaded, the extension's library refuses to load and the
            // server ends the session: check first, and fall back (or say what to set).
            let preloaded = client
                .query_one("SHOW shared_preload_libraries", &[])
                .await?
                .get::<_, String>(0)
                .split(',')
                .any(|l| l.trim().trim_matches('"') == "timescaledb");
            let why_not = match (available, preloaded) {
                (false, _) => Some("the server has no timescaledb extension"),
                (true, false) => Some(
                    "timescaledb is installed but not loaded: add `shared_preload_libraries = 'timescaledb'` to postgresql.conf and restart the server",
                ),
                (true, true) => None,
            };
            let installed = why_not.is_none()
                && match client
                    .batch_execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
                    .await
                {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::warn!(error = %e, "timescaledb is available but could not be enabled");
                        false
                    }
                };
            match why_not {
                Some(why) if want == TimescaleMode::Required => {
                    return Err(StoreError::Config(format!(
                        "`timescaledb: required` but {why}"
                    )));
                }
                Some(why) if available => {
                    tracing::warn!("using plain PostgreSQL tables: {why}");
                }
                _ if !installed && want == TimescaleMode::Required => {
                    return Err(StoreError::Config(
                        "`timescaledb: required` but the server has no usable timescaledb extension"
                            .to_owned(),
                    ));
                }
                _ => {}
            }
            installed
        }
    };
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS marketflow_migrations (
                 version    integer PRIMARY KEY,
                 name       text NOT NULL,
                 mode       text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await?;
    let mut report = MigrationReport {
        timescaledb,
        server_version,
        applied: Vec::new(),
        already: Vec::new(),
    };
    let mode = if timescaledb { "timescaledb" } else { "plain" };
    for (version, name, sql) in MIGRATIONS {
        let tx = client.transaction().await?;
        // One migrator at a time: the lock is held until this transaction ends.
        tx.execute("SELECT pg_advisory_xact_lock(7208021)", &[])
            .await?;
        let done = tx
            .query_opt(
                "SELECT 1 FROM marketflow_migrations WHERE version = $1",
                &[version],
            )
            .await?
            .is_some();
        if done {
            report.already.push((*name).to_owned());
            continue;
        }
        tx.batch_execute(&format!(
            "SET LOCAL marketflow.timescaledb = '{}'",
            if timescaledb { "on" } else { "off" }
        ))
        .await?;
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO marketflow_migrations (version, name, mode) VALUES ($1, $2, $3)",
            &[version, name, &mode],
        )
        .await?;
        tx.commit().await?;
        report.applied.push((*name).to_owned());
    }
    Ok(report)
}

/// Makes TimescaleDB's retention policies match the sink's `retention`: the seed's windows
/// (`keep` false: `auto`) or none at all (`off`, so replayed or backfilled history older than
/// the windows is not deleted right after it is written).
pub async fn set_retention_policies(
    client: &Client,
    keep_everything: bool,
) -> Result<(), tokio_postgres::Error> {
    for table in Table::ALL {
        let Some(window) = table.retention() else {
            continue;
        };
        let statement = if keep_everything {
            format!(
                "SELECT remove_retention_policy('{}', if_exists => TRUE)",
                table.name()
            )
        } else {
            format!(
                "SELECT add_retention_policy('{}', INTERVAL '{} seconds', if_not_exists => TRUE)",
                table.name(),
                window.as_secs()
            )
        };
        client.batch_execute(&statement).await?;
    }
    Ok(())
}

/// Whether the tables of this database are hypertables (then TimescaleDB applies the
/// retention; otherwise the writer does).
pub async fn uses_timescaledb(client: &Client) -> Result<bool, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT 1 FROM marketflow_migrations WHERE version = 2 AND mode = 'timescaledb'",
            &[],
        )
        .await?;
    Ok(row.is_some())
}

/// Column lists and conflict handling of each table.
struct TableSql {
    table: Table,
    columns: &'static str,
    types: &'static [Type],
    key: &'static str,
    /// `SET` list of the upsert.
    update: &'static str,
    /// When the upsert replaces a row: bars and indicator rows keep a newer revision.
    condition: &'static str,
}

const TICK_SQL: TableSql = TableSql {
    table: Table::RealtimePrices,
    columns: "symbol, ts, seq, price, volume",
    types: &[
        Type::TEXT,
        Type::TIMESTAMPTZ,
        Type::INT8,
        Type::FLOAT8,
        Type::FLOAT8,
    ],
    key: "symbol, ts, seq",
    update: "price = EXCLUDED.price, volume = EXCLUDED.volume",
    condition: "",
};

const BAR_UPDATE: &str = "end_ts = EXCLUDED.end_ts, open = EXCLUDED.open, high = EXCLUDED.high, \
     low = EXCLUDED.low, close = EXCLUDED.close, volume = EXCLUDED.volume, \
     trades = EXCLUDED.trades, vwap = EXCLUDED.vwap, revision = EXCLUDED.revision, \
     source = EXCLUDED.source";

const INTRADAY_SQL: TableSql = TableSql {
    table: Table::IntradayOhlcv,
    columns: "symbol, interval, ts, end_ts, open, high, low, close, volume, trades, vwap, revision, source",
    types: &[
        Type::TEXT,
        Type::TEXT,
        Type::TIMESTAMPTZ,
        Type::TIMESTAMPTZ,
        Type::FLOAT8,
        Type::FLOAT8,
        Type::FLOAT8,
        Type::FLOAT8,
        Type::FLOAT8,
        Type::INT8,
        Type::FLOAT8,
        Type::INT4,
        Type::TEXT,
    ],
    key: "symbol, interval, ts",
    update: BAR_UPDATE,
    condition: "WHERE intraday_ohlcv.revision <= EXCLUDED.revision",
};

const DAILY_SQL: TableSql = TableSql {
    table: Table::HistoricalOhlcv,
    columns: "symbol, ts, end_ts, open, high, low, close, volume, trades, vwap, revision, source",
    types: &[
        Type::TEXT,
        Type::TIMESTAMPTZ,
        Type::TIMESTAMPTZ,
        Type::FLOAT8,
        Type::FLOAT8,
        Type::FLOAT8,
        Type::FLOAT8,
        Type::FLOAT8,
        Type::INT8,
        Type::FLOAT8,
        Type::INT4,
        Type::TEXT,
    ],
    key: "symbol, ts",
    update: BAR_UPDATE,
    condition: "WHERE historical_ohlcv.revision <= EXCLUDED.revision",
};

const ANALYTICS_COLUMNS: &str = "symbol, interval, ts, indicator_id, indicator, outputs, revision";
const ANALYTICS_TYPES: &[Type] = &[
    Type::TEXT,
    Type::TEXT,
    Type::TIMESTAMPTZ,
    Type::TEXT,
    Type::TEXT,
    Type::JSONB,
    Type::INT4,
];
const ANALYTICS_KEY: &str = "symbol, interval, indicator_id, ts";
const ANALYTICS_UPDATE: &str =
    "indicator = EXCLUDED.indicator, outputs = EXCLUDED.outputs, revision = EXCLUDED.revision";

fn analytics_sql(table: Table) -> TableSql {
    TableSql {
        table,
        columns: ANALYTICS_COLUMNS,
        types: ANALYTICS_TYPES,
        key: ANALYTICS_KEY,
        update: ANALYTICS_UPDATE,
        condition: match table {
            Table::RealtimeAnalytics => "WHERE realtime_analytics.revision <= EXCLUDED.revision",
            Table::DailyAnalytics => "WHERE daily_analytics.revision <= EXCLUDED.revision",
            _ => "WHERE intraday_analytics.revision <= EXCLUDED.revision",
        },
    }
}

/// Writes batches over one connection; the caller reconnects on transient errors.
pub struct PgWriter {
    client: Client,
}

impl PgWriter {
    /// Prepares the session: one temporary staging table per target table, emptied at
    /// every commit.
    pub async fn new(client: Client) -> Result<PgWriter, tokio_postgres::Error> {
        let mut setup = String::new();
        for table in Table::ALL {
            let name = table.name();
            setup.push_str(&format!(
                "CREATE TEMP TABLE IF NOT EXISTS stage_{name} (LIKE {name} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS;"
            ));
        }
        client.batch_execute(&setup).await?;
        Ok(PgWriter { client })
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Writes a batch in one transaction: all of it or nothing.
    pub async fn write(&mut self, batch: &Batch) -> Result<(), tokio_postgres::Error> {
        let tx = self.client.transaction().await?;
        if !batch.ticks.is_empty() {
            let writer = copy_in(&tx, &TICK_SQL).await?;
            let mut writer = pin!(writer);
            for t in &batch.ticks {
                writer
                    .as_mut()
                    .write(&[
                        &t.symbol.as_str(),
                        &PgTime(t.ts),
                        &(t.seq as i64),
                        &t.price,
                        &t.volume,
                    ])
                    .await?;
            }
            writer.finish().await?;
            upsert(&tx, &TICK_SQL).await?;
        }
        for (sql, bars) in [
            (&INTRADAY_SQL, &batch.intraday_bars),
            (&DAILY_SQL, &batch.daily_bars),
        ] {
            if bars.is_empty() {
                continue;
            }
            let writer = copy_in(&tx, sql).await?;
            let mut writer = pin!(writer);
            let daily = sql.table == Table::HistoricalOhlcv;
            for b in bars.iter() {
                let (symbol, interval) = (b.symbol.as_str(), b.interval.to_string());
                let (start, end) = (PgTime(b.start), PgTime(b.end));
                let (volume, trades) = (b.volume.to_f64(), b.trades as i64);
                let (vwap, revision) = (b.vwap(), b.revision as i32);
                let source = b.source.as_str();
                let mut row: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(13);
                row.push(&symbol);
                if !daily {
                    row.push(&interval);
                }
                row.extend_from_slice(&[
                    &start, &end, &b.open, &b.high, &b.low, &b.close, &volume, &trades, &vwap,
                    &revision, &source,
                ]);
                writer.as_mut().write(&row).await?;
            }
            writer.finish().await?;
            upsert(&tx, sql).await?;
        }
        for (table, rows) in batch.analytics() {
            if rows.is_empty() {
                continue;
            }
            let sql = analytics_sql(table);
            let writer = copy_in(&tx, &sql).await?;
            let mut writer = pin!(writer);
            for r in rows {
                writer
                    .as_mut()
                    .write(&[
                        &r.symbol.as_str(),
                        &r.interval.to_string(),
                        &PgTime(r.ts),
                        &r.id.as_str(),
                        &r.kind.name(),
                        &Jsonb(outputs_json(r)),
                        &(r.revision as i32),
                    ])
                    .await?;
            }
            writer.finish().await?;
            upsert(&tx, &sql).await?;
        }
        tx.commit().await
    }

    /// Deletes rows past each table's retention (plain PostgreSQL only: TimescaleDB has
    /// its own policies). Returns the number of rows deleted.
    pub async fn apply_retention(&self) -> Result<u64, tokio_postgres::Error> {
        let mut deleted = 0;
        for table in Table::ALL {
            if let Some(keep) = table.retention() {
                deleted += self
                    .client
                    .execute(
                        &format!(
                            "DELETE FROM {} WHERE ts < now() - make_interval(secs => $1)",
                            table.name()
                        ),
                        &[&(keep.as_secs() as f64)],
                    )
                    .await?;
            }
        }
        Ok(deleted)
    }
}

async fn copy_in(
    tx: &tokio_postgres::Transaction<'_>,
    sql: &TableSql,
) -> Result<BinaryCopyInWriter, tokio_postgres::Error> {
    let sink = tx
        .copy_in(&format!(
            "COPY stage_{} ({}) FROM STDIN BINARY",
            sql.table.name(),
            sql.columns
        ))
        .await?;
    Ok(BinaryCopyInWriter::new(sink, sql.types))
}

async fn upsert(
    tx: &tokio_postgres::Transaction<'_>,
    sql: &TableSql,
) -> Result<u64, tokio_postgres::Error> {
    let name = sql.table.name();
    tx.execute(
        &format!(
            "INSERT INTO {name} ({cols}) SELECT {cols} FROM stage_{name} \
             ON CONFLICT ({key}) DO UPDATE SET {update} {condition}",
            cols = sql.columns,
            key = sql.key,
            update = sql.update,
            condition = sql.condition,
        ),
        &[],
    )
    .await
}

/// Writes one row per statement, as the system we replace did: the baseline of the
/// storage benchmark.
pub async fn insert_bars_one_by_one(
    client: &Client,
    bars: &[Bar],
) -> Result<(), tokio_postgres::Error> {
    let statement = client
        .prepare(&format!(
            "INSERT INTO intraday_ohlcv ({}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13) \
             ON CONFLICT ({}) DO UPDATE SET {BAR_UPDATE}",
            INTRADAY_SQL.columns, INTRADAY_SQL.key
        ))
        .await?;
    for b in bars {
        client
            .execute(
                &statement,
                &[
                    &b.symbol.as_str(),
                    &b.interval.to_string(),
                    &PgTime(b.start),
                    &PgTime(b.end),
                    &b.open,
                    &b.high,
                    &b.low,
                    &b.close,
                    &b.volume.to_f64(),
                    &(b.trades as i64),
                    &b.vwap(),
                    &(b.revision as i32),
                    &b.source.as_str(),
                ],
            )
            .await?;
    }
    Ok(())
}

/// Read queries over a few connections, reconnecting one that closed.
pub struct PgStore {
    url: String,
    clients: Vec<Mutex<Arc<Client>>>,
    next: std::sync::atomic::AtomicUsize,
}

const READ_CONNECTIONS: usize = 4;

impl PgStore {
    pub async fn connect(url: &str) -> Result<PgStore, StoreError> {
        let mut clients = Vec::with_capacity(READ_CONNECTIONS);
        for _ in 0..READ_CONNECTIONS {
            clients.push(Mutex::new(Arc::new(connect(url).await?)));
        }
        Ok(PgStore {
            url: url.to_owned(),
            clients,
            next: Default::default(),
        })
    }

    async fn client(&self) -> Result<Arc<Client>, StoreError> {
        let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % self.clients.len();
        let current = self.clients[i]
            .lock()
            .map_err(|_| StoreError::Stopped)?
            .clone();
        if !current.is_closed() {
            return Ok(current);
        }
        let fresh = Arc::new(connect(&self.url).await?);
        *self.clients[i].lock().map_err(|_| StoreError::Stopped)? = fresh.clone();
        Ok(fresh)
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        self.client().await?.simple_query("SELECT 1").await?;
        Ok(())
    }

    pub async fn ticks(&self, q: &TickQuery) -> Result<Vec<Tick>, StoreError> {
        let (start, end) = range(q.start, q.end);
        let rows = self
            .client()
            .await?
            .query(
                "SELECT symbol, ts, seq, price, volume FROM realtime_prices \
                 WHERE symbol = $1 AND ts >= $2 AND ts < $3 \
                 ORDER BY ts DESC, seq DESC LIMIT $4",
                &[&q.symbol.as_str(), &start, &end, &(q.limit as i64)],
            )
            .await?;
        let mut ticks = rows
            .iter()
            .map(|r| {
                let ts: PgTime = r.try_get(1)?;
                let seq: i64 = r.try_get(2)?;
                Ok(Tick {
                    symbol: q.symbol.clone(),
                    ts: ts.0,
                    price: r.try_get(3)?,
                    volume: r.try_get(4)?,
                    seq: seq as u64,
                    wm: ts.0,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        ticks.reverse();
        Ok(ticks)
    }

    pub async fn prices_before(
        &self,
        symbol: &Symbol,
        before: Vec<i64>,
    ) -> Result<Vec<Option<f64>>, StoreError> {
        // One round trip: an index seek per time.
        let times: Vec<PgTime> = before.iter().map(|&t| range(Some(t), None).0).collect();
        let rows = self
            .client()
            .await?
            .query(
                "SELECT (SELECT r.price FROM realtime_prices r WHERE r.symbol = $1 AND r.ts < t.at \
                 ORDER BY r.ts DESC, r.seq DESC LIMIT 1) \
                 FROM unnest($2::timestamptz[]) WITH ORDINALITY AS t(at, i) ORDER BY t.i",
                &[&symbol.as_str(), &times],
            )
            .await?;
        rows.iter()
            .map(|r| Ok(r.try_get::<_, Option<f64>>(0)?))
            .collect()
    }

    pub async fn realtime_interval(&self, symbol: &Symbol) -> Result<Option<String>, StoreError> {
        let row = self
            .client()
            .await?
            .query_one(super::REALTIME_INTERVAL_SQL, &[&symbol.as_str()])
            .await?;
        Ok(row.try_get(0)?)
    }

    pub async fn bars(&self, q: &BarQuery) -> Result<Vec<Bar>, StoreError> {
        let (start, end) = range(q.start, q.end);
        let limit = q.limit as i64;
        let client = self.client().await?;
        let cols =
            "symbol, ts, end_ts, open, high, low, close, volume, trades, vwap, revision, source";
        let rows = if Table::for_bars(q.interval) == Table::HistoricalOhlcv {
            client
                .query(
                    &format!(
                        "SELECT {cols} FROM historical_ohlcv WHERE symbol = $1 AND ts >= $2 \
                         AND ts < $3 ORDER BY ts DESC LIMIT $4"
                    ),
                    &[&q.symbol.as_str(), &start, &end, &limit],
                )
                .await?
        } else {
            client
                .query(
                    &format!(
                        "SELECT {cols} FROM intraday_ohlcv WHERE symbol = $1 AND interval = $2 \
                         AND ts >= $3 AND ts < $4 ORDER BY ts DESC LIMIT $5"
                    ),
                    &[
                        &q.symbol.as_str(),
                        &q.interval.to_string(),
                        &start,
                        &end,
                        &limit,
                    ],
                )
                .await?
        };
        let mut bars = rows
            .iter()
            .map(|r| bar_from_row(r, q.interval))
            .collect::<Result<Vec<_>, _>>()?;
        bars.reverse();
        Ok(bars)
    }

    pub async fn indicators(&self, q: &IndicatorQuery) -> Result<Vec<IndicatorRow>, StoreError> {
        let (start, end) = range(q.start, q.end);
        let table = Table::for_indicators(q.interval).name();
        let interval = q.interval.to_string();
        let rows = self
            .client()
            .await?
            .query(
                &format!(
                    "SELECT symbol, interval, ts, indicator_id, indicator, outputs::text, revision \
                     FROM {table} WHERE symbol = $1 AND interval = $2 AND ts >= $3 AND ts < $4 \
                     AND ($5::text IS NULL OR indicator_id = $5 OR indicator = $5) \
                     ORDER BY ts DESC, indicator_id DESC LIMIT $6"
                ),
                &[
                    &q.symbol.as_str(),
                    &interval,
                    &start,
                    &end,
                    &q.indicator,
                    &(q.limit as i64),
                ],
            )
            .await?;
        let mut out = rows
            .iter()
            .map(|r| {
                let ts: PgTime = r.try_get(2)?;
                let revision: i32 = r.try_get(6)?;
                indicator_from_columns(
                    r.try_get(0)?,
                    r.try_get(1)?,
                    ts.0,
                    r.try_get(3)?,
                    r.try_get(4)?,
                    r.try_get(5)?,
                    revision as i64,
                )
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        out.reverse();
        Ok(out)
    }

    pub async fn has_symbol(&self, symbol: &Symbol) -> Result<bool, StoreError> {
        let row = self
            .client()
            .await?
            .query_one(super::SYMBOL_EXISTS_SQL, &[&symbol.as_str()])
            .await?;
        Ok(row.try_get(0)?)
    }

    pub async fn symbols(&self, count_ticks: bool) -> Result<Vec<SymbolSpan>, StoreError> {
        let sql = if count_ticks {
            super::SYMBOL_SPANS_COUNTED_SQL
        } else {
            SYMBOL_SPANS_SQL
        };
        let rows = self.client().await?.query(sql, &[]).await?;
        rows.iter()
            .map(|r| {
                let first: PgTime = r.try_get(1)?;
                let last: PgTime = r.try_get(2)?;
                Ok(SymbolSpan {
                    symbol: r.try_get(0)?,
                    first_ts: first.0,
                    last_ts: last.0,
                    ticks: if count_ticks {
                        Some(r.try_get(3)?)
                    } else {
                        None
                    },
                })
            })
            .collect()
    }
}

/// An open range as timestamps the queries can bind.
fn range(start: Option<i64>, end: Option<i64>) -> (PgTime, PgTime) {
    // PostgreSQL's timestamptz spans 4713 BC to 294276 AD; these bounds are well inside.
    const MIN: i64 = -62_135_596_800_000; // 0001-01-01
    const MAX: i64 = 253_402_300_800_000; // 10000-01-01
    (
        PgTime(start.unwrap_or(MIN).max(MIN)),
        PgTime(end.unwrap_or(MAX).min(MAX)),
    )
}

fn bar_from_row(r: &Row, interval: Interval) -> Result<Bar, StoreError> {
    let start: PgTime = r.try_get(1)?;
    let end: PgTime = r.try_get(2)?;
    BarColumns {
        symbol: r.try_get(0)?,
        interval,
        start: start.0,
        end: end.0,
        ohlc: [r.try_get(3)?, r.try_get(4)?, r.try_get(5)?, r.try_get(6)?],
        volume: r.try_get(7)?,
        trades: r.try_get(8)?,
        vwap: r.try_get(9)?,
        revision: r.try_get::<_, i32>(10)? as i64,
        source: r.try_get(11)?,
    }
    .into_bar()
}
