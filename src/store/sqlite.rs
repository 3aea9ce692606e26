//! The embedded SQLite store: the same tables and upserts as PostgreSQL in one file
//! (times as epoch milliseconds), written in one transaction per batch.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use marketflow_operators::{Bar, IndicatorRow, Interval, Symbol, Tick};
use rusqlite::{params, Connection, OptionalExtension};

use super::SYMBOL_SPANS_SQL;
use super::{
    indicator_from_columns, outputs_json, BarColumns, BarQuery, Batch, IndicatorQuery, StoreError,
    SymbolSpan, Table, TickQuery,
};

/// The migrations, in order: (version, name, SQL).
pub const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "0001_tables.sql",
        include_str!("../../migrations/sqlite/0001_tables.sql"),
    ),
    (
        2,
        "0002_source.sql",
        include_str!("../../migrations/sqlite/0002_source.sql"),
    ),
];

/// Opens (creating) a database file with the settings for one writer and many readers.
pub fn open(path: &Path) -> Result<Connection, StoreError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| StoreError::Config(format!("creating {}: {e}", parent.display())))?;
    }
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    // WAL: readers (the server) never block the writer; NORMAL sync is durable across
    // process crashes, which is what a restarted pipeline relies on.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(conn)
}

/// Applies the migrations not yet recorded, each in its own transaction.
pub fn migrate(conn: &mut Connection) -> Result<Vec<String>, StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS marketflow_migrations (
             version INTEGER PRIMARY KEY, name TEXT NOT NULL,
             applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')))",
    )?;
    let mut applied = Vec::new();
    for (version, name, sql) in MIGRATIONS {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let done = tx
            .query_row(
                "SELECT 1 FROM marketflow_migrations WHERE version = ?1",
                [version],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        if !done {
            tx.execute_batch(sql)?;
            tx.execute(
                "INSERT INTO marketflow_migrations (version, name) VALUES (?1, ?2)",
                params![version, name],
            )?;
            applied.push((*name).to_owned());
        }
        tx.commit()?;
    }
    Ok(applied)
}

const TICK_UPSERT: &str = "INSERT INTO realtime_prices (symbol, ts, seq, price, volume) \
     VALUES (?1, ?2, ?3, ?4, ?5) \
     ON CONFLICT (symbol, ts, seq) DO UPDATE SET price = excluded.price, volume = excluded.volume";

const BAR_SET: &str = "end_ts = excluded.end_ts, open = excluded.open, high = excluded.high, \
     low = excluded.low, close = excluded.close, volume = excluded.volume, \
     trades = excluded.trades, vwap = excluded.vwap, revision = excluded.revision, \
     source = excluded.source";

fn intraday_upsert() -> String {
    format!(
        "INSERT INTO intraday_ohlcv (symbol, interval, ts, end_ts, open, high, low, close, volume, trades, vwap, revision, source) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) \
         ON CONFLICT (symbol, interval, ts) DO UPDATE SET {BAR_SET} \
         WHERE intraday_ohlcv.revision <= excluded.revision"
    )
}

fn daily_upsert() -> String {
    format!(
        "INSERT INTO historical_ohlcv (symbol, ts, end_ts, open, high, low, close, volume, trades, vwap, revision, source) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) \
         ON CONFLICT (symbol, ts) DO UPDATE SET {BAR_SET} \
         WHERE historical_ohlcv.revision <= excluded.revision"
    )
}

fn analytics_upsert(table: Table) -> String {
    format!(
        "INSERT INTO {table} (symbol, interval, ts, indicator_id, indicator, outputs, revision) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
         ON CONFLICT (symbol, interval, indicator_id, ts) DO UPDATE SET \
         indicator = excluded.indicator, outputs = excluded.outputs, revision = excluded.revision \
         WHERE {table}.revision <= excluded.revision",
        table = table.name()
    )
}

/// Writes a batch in one transaction: all of it or nothing.
pub fn write(conn: &mut Connection, batch: &Batch) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    {
        let mut ticks = tx.prepare_cached(TICK_UPSERT)?;
        for t in &batch.ticks {
            ticks.execute(params![
                t.symbol.as_str(),
                t.ts,
                t.seq as i64,
                t.price,
                t.volume
            ])?;
        }
        let mut intraday = tx.prepare_cached(&intraday_upsert())?;
        for b in &batch.intraday_bars {
            intraday.execute(params![
                b.symbol.as_str(),
                b.interval.to_string(),
                b.start,
                b.end,
                b.open,
                b.high,
                b.low,
                b.close,
                b.volume.to_f64(),
                b.trades as i64,
                b.vwap(),
                b.revision,
                b.source.as_str()
            ])?;
        }
        let mut daily = tx.prepare_cached(&daily_upsert())?;
        for b in &batch.daily_bars {
            daily.execute(params![
                b.symbol.as_str(),
                b.start,
                b.end,
                b.open,
                b.high,
                b.low,
                b.close,
                b.volume.to_f64(),
                b.trades as i64,
                b.vwap(),
                b.revision,
                b.source.as_str()
            ])?;
        }
        for (table, rows) in batch.analytics() {
            if rows.is_empty() {
                continue;
            }
            let mut statement = tx.prepare_cached(&analytics_upsert(table))?;
            for r in rows {
                statement.execute(params![
                    r.symbol.as_str(),
                    r.interval.to_string(),
                    r.ts,
                    r.id.as_str(),
                    r.kind.name(),
                    outputs_json(r),
                    r.revision
                ])?;
            }
        }
    }
    tx.commit()?;
    Ok(())
}

/// Deletes rows past each table's retention, by the wall clock as TimescaleDB does.
pub fn apply_retention(conn: &Connection, now_ms: i64) -> Result<usize, StoreError> {
    let mut deleted = 0;
    for table in Table::ALL {
        if let Some(keep) = table.retention() {
            let cutoff = now_ms - keep.as_millis() as i64;
            deleted += conn.execute(
                &format!("DELETE FROM {} WHERE ts < ?1", table.name()),
                [cutoff],
            )?;
        }
    }
    Ok(deleted)
}

/// Read queries on a few connections, run on tokio's blocking threads: at most
/// [`MAX_READERS`] at once, so a flood of requests queues instead of growing threads and
/// connections; `/health`'s ping has a connection of its own, so it answers under load.
pub struct SqliteStore {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    readers: tokio::sync::Semaphore,
    /// `/health`'s connection; concurrent pings wait for it rather than open more.
    health: std::sync::Arc<tokio::sync::Mutex<Option<Connection>>>,
}

/// Queries run at once at most (each holds a connection and a blocking thread).
pub const MAX_READERS: usize = 8;

impl SqliteStore {
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        if !path.exists() {
            return Err(StoreError::Config(format!(
                "{} does not exist (a pipeline with a sqlite sink creates it)",
                path.display()
            )));
        }
        let store = SqliteStore {
            path: path.to_owned(),
            idle: Mutex::new(Vec::new()),
            readers: tokio::sync::Semaphore::new(MAX_READERS),
            health: Default::default(),
        };
        let conn = store.take()?;
        // A file the pipeline's sink is still creating is not a store yet.
        let applied: i64 = conn
            .query_row("SELECT count(*) FROM marketflow_migrations", [], |r| {
                r.get(0)
            })
            .unwrap_or(0);
        if applied < MIGRATIONS.len() as i64 {
            return Err(StoreError::Config(format!(
                "{} has no tables yet (its sink is creating them)",
                path.display()
            )));
        }
        store.put(conn);
        Ok(store)
    }

    fn take(&self) -> Result<Connection, StoreError> {
        if let Some(conn) = self.idle.lock().ok().and_then(|mut idle| idle.pop()) {
            return Ok(conn);
        }
        self.connect()
    }

    /// A new read-only connection.
    fn connect(&self) -> Result<Connection, StoreError> {
        let conn = Connection::open_with_flags(
            &self.path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        Ok(conn)
    }

    fn put(&self, conn: Connection) {
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < MAX_READERS {
                idle.push(conn);
            }
        }
    }

    /// Runs `query` on a pooled connection on a blocking thread.
    async fn with<T: Send + 'static>(
        &self,
        query: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let _permit = self
            .readers
            .acquire()
            .await
            .map_err(|_| StoreError::Stopped)?;
        let conn = self.take()?;
        let (conn, result) = tokio::task::spawn_blocking(move || {
            let result = query(&conn);
            (conn, result)
        })
        .await
        .map_err(|_| StoreError::Stopped)?;
        self.put(conn);
        result
    }

    /// Answers on its own connection, not behind the queries in the queue.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut slot = self.health.clone().lock_owned().await;
        let conn = match slot.take() {
            Some(conn) => conn,
            None => self.connect()?,
        };
        let (conn, result) = tokio::task::spawn_blocking(move || {
            let result = conn.query_row("SELECT 1", [], |_| Ok(()));
            (conn, result)
        })
        .await
        .map_err(|_| StoreError::Stopped)?;
        *slot = Some(conn);
        result.map_err(StoreError::from)
    }

    pub async fn ticks(&self, q: &TickQuery) -> Result<Vec<Tick>, StoreError> {
        let q = q.clone();
        self.with(move |c| {
            let mut statement = c.prepare_cached(
                "SELECT ts, seq, price, volume FROM realtime_prices \
                 WHERE symbol = ?1 AND ts >= ?2 AND ts < ?3 \
                 ORDER BY ts DESC, seq DESC LIMIT ?4",
            )?;
            let symbol = q.symbol;
            let mut ticks = statement
                .query_map(
                    params![
                        symbol.as_str(),
                        q.start.unwrap_or(i64::MIN),
                        q.end.unwrap_or(i64::MAX),
                        q.limit as i64
                    ],
                    |r| {
                        let ts: i64 = r.get(0)?;
                        Ok(Tick {
                            symbol: symbol.clone(),
                            ts,
                            seq: r.get::<_, i64>(1)? as u64,
                            price: r.get(2)?,
                            volume: r.get(3)?,
                            wm: ts,
                        })
                    },
                )?
                .collect::<Result<Vec<_>, _>>()?;
            ticks.reverse();
            Ok(ticks)
        })
        .await
    }

    pub async fn prices_before(
        &self,
        symbol: &Symbol,
        before: Vec<i64>,
    ) -> Result<Vec<Option<f64>>, StoreError> {
        let symbol = symbol.clone();
        self.with(move |c| {
            let mut statement = c.prepare_cached(
                "SELECT price FROM realtime_prices WHERE symbol = ?1 AND ts < ?2 \
                 ORDER BY ts DESC, seq DESC LIMIT 1",
            )?;
            let mut prices = Vec::with_capacity(before.len());
            for t in before {
                prices.push(
                    statement
                        .query_row(params![symbol.as_str(), t], |r| r.get(0))
                        .optional()?,
                );
            }
            Ok(prices)
        })
        .await
    }

    pub async fn realtime_interval(&self, symbol: &Symbol) -> Result<Option<String>, StoreError> {
        let symbol = symbol.clone();
        self.with(move |c| {
            let mut statement = c.prepare_cached(super::REALTIME_INTERVAL_SQL)?;
            Ok(statement.query_row([symbol.as_str()], |r| r.get(0))?)
        })
        .await
    }

    pub async fn bars(&self, q: &BarQuery) -> Result<Vec<Bar>, StoreError> {
        let q = q.clone();
        self.with(move |c| {
            let cols =
                "symbol, ts, end_ts, open, high, low, close, volume, trades, vwap, revision, source";
            let start = q.start.unwrap_or(i64::MIN);
            let end = q.end.unwrap_or(i64::MAX);
            let limit = q.limit as i64;
            let daily = Table::for_bars(q.interval) == Table::HistoricalOhlcv;
            let sql = if daily {
                format!(
                    "SELECT {cols} FROM historical_ohlcv WHERE symbol = ?1 AND ts >= ?2 AND ts < ?3 \
                     ORDER BY ts DESC LIMIT ?4"
                )
            } else {
                format!(
                    "SELECT {cols} FROM intraday_ohlcv WHERE symbol = ?1 AND ts >= ?2 AND ts < ?3 \
                     AND interval = ?5 ORDER BY ts DESC LIMIT ?4"
                )
            };
            let mut statement = c.prepare_cached(&sql)?;
            let interval = q.interval.to_string();
            let mut rows = if daily {
                statement.query(params![q.symbol.as_str(), start, end, limit])?
            } else {
                statement.query(params![q.symbol.as_str(), start, end, limit, interval])?
            };
            let mut bars = Vec::new();
            while let Some(r) = rows.next()? {
                bars.push(bar_from_row(r, q.interval)?);
            }
            bars.reverse();
            Ok(bars)
        })
        .await
    }

    pub async fn indicators(&self, q: &IndicatorQuery) -> Result<Vec<IndicatorRow>, StoreError> {
        let q = q.clone();
        self.with(move |c| {
            let table = Table::for_indicators(q.interval).name();
            let mut statement = c.prepare_cached(&format!(
                "SELECT symbol, interval, ts, indicator_id, indicator, outputs, revision FROM {table} \
                 WHERE symbol = ?1 AND interval = ?2 AND ts >= ?3 AND ts < ?4 \
                 AND (?5 IS NULL OR indicator_id = ?5 OR indicator = ?5) \
                 ORDER BY ts DESC, indicator_id DESC LIMIT ?6"
            ))?;
            let mut rows = statement.query(params![
                q.symbol.as_str(),
                q.interval.to_string(),
                q.start.unwrap_or(i64::MIN),
                q.end.unwrap_or(i64::MAX),
                q.indicator,
                q.limit as i64
            ])?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                let symbol: String = r.get(0)?;
                let interval: String = r.get(1)?;
                let id: String = r.get(3)?;
                let kind: String = r.get(4)?;
                let outputs: String = r.get(5)?;
                out.push(indicator_from_columns(
                    &symbol,
                    &interval,
                    r.get(2)?,
                    &id,
                    &kind,
                    &outputs,
                    r.get(6)?,
                )?);
            }
            out.reverse();
            Ok(out)
        })
        .await
    }

    pub async fn has_symbol(&self, symbol: &Symbol) -> Result<bool, StoreError> {
        let symbol = symbol.clone();
        self.with(move |c| {
            let mut statement = c.prepare_cached(super::SYMBOL_EXISTS_SQL)?;
            Ok(statement.query_row([symbol.as_str()], |r| r.get(0))?)
        })
        .await
    }

    pub async fn symbols(&self, count_ticks: bool) -> Result<Vec<SymbolSpan>, StoreError> {
        self.with(move |c| {
            let sql = if count_ticks {
                super::SYMBOL_SPANS_COUNTED_SQL
            } else {
                SYMBOL_SPANS_SQL
            };
            let mut statement = c.prepare_cached(sql)?;
            let spans = statement
                .query_map([], |r| {
                    Ok(SymbolSpan {
                        symbol: r.get(0)?,
                        first_ts: r.get(1)?,
                        last_ts: r.get(2)?,
                        ticks: if count_ticks { Some(r.get(3)?) } else { None },
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(spans)
        })
        .await
    }
}

fn bar_from_row(r: &rusqlite::Row<'_>, interval: Interval) -> Result<Bar, StoreError> {
    let symbol: String = r.get(0)?;
    let source: Option<String> = r.get(11)?;
    BarColumns {
        symbol: &symbol,
        interval,
        start: r.get(1)?,
        end: r.get(2)?,
        ohlc: [r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?],
        volume: r.get(7)?,
        trades: r.get(8)?,
        vwap: r.get(9)?,
        revision: r.get(10)?,
        source: source.as_deref(),
    }
    .into_bar()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The symbol list seeks through the ticks' primary key; it never scans the ticks.
    #[test]
    fn the_symbol_list_does_not_scan_the_ticks() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = open(&dir.path().join("s.db")).unwrap();
        migrate(&mut conn).unwrap();
        let mut plan = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {SYMBOL_SPANS_SQL}"))
            .unwrap();
        let steps: Vec<String> = plan
            .query_map([], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            steps
                .iter()
                .all(|s| !s.contains("SCAN realtime_prices") && !s.contains("SCAN r")),
            "{steps:#?}"
        );
        for (symbol, ts) in [("B", 5), ("A", 3), ("A", 9), ("C", 1), ("B", 2)] {
            conn.execute(
                "INSERT INTO realtime_prices (symbol, ts, seq, price, volume) VALUES (?1, ?2, ?2, 1, 1)",
                rusqlite::params![symbol, ts],
            )
            .unwrap();
        }
        let spans: Vec<(String, i64, i64)> = conn
            .prepare(SYMBOL_SPANS_SQL)
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            spans,
            [("A".into(), 3, 9), ("B".into(), 2, 5), ("C".into(), 1, 1)]
        );
    }
}
