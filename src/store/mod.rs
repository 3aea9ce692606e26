//! Storage: the tables records are written to (the seed's tiers), batches of upserts, and
//! the read interface the server queries, over PostgreSQL (TimescaleDB when present) and
//! an embedded SQLite file with the same results.

pub mod positions;
pub mod postgres;
pub mod recovery;
pub mod sqlite;

use std::path::PathBuf;

use marketflow_operators::time::{DAY, MINUTE};
use marketflow_operators::{Bar, IndicatorRow, Interval, Record, Symbol, Tick};
use rustc_hash::FxHashMap;

/// The tables of the seed's storage tiers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Table {
    RealtimePrices,
    IntradayOhlcv,
    HistoricalOhlcv,
    RealtimeAnalytics,
    IntradayAnalytics,
    DailyAnalytics,
}

impl Table {
    pub const ALL: [Table; 6] = [
        Table::RealtimePrices,
        Table::IntradayOhlcv,
        Table::HistoricalOhlcv,
        Table::RealtimeAnalytics,
        Table::IntradayAnalytics,
        Table::DailyAnalytics,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Table::RealtimePrices => "realtime_prices",
            Table::IntradayOhlcv => "intraday_ohlcv",
            Table::HistoricalOhlcv => "historical_ohlcv",
            Table::RealtimeAnalytics => "realtime_analytics",
            Table::IntradayAnalytics => "intraday_analytics",
            Table::DailyAnalytics => "daily_analytics",
        }
    }

    /// Bars below a day are intraday; daily bars are historical.
    pub fn for_bars(interval: Interval) -> Table {
        if interval.millis() >= DAY {
            Table::HistoricalOhlcv
        } else {
            Table::IntradayOhlcv
        }
    }

    /// Indicators on bars below a minute are realtime, below a day intraday, else daily.
    pub fn for_indicators(interval: Interval) -> Table {
        if interval.millis() < MINUTE {
            Table::RealtimeAnalytics
        } else if interval.millis() < DAY {
            Table::IntradayAnalytics
        } else {
            Table::DailyAnalytics
        }
    }

    /// How long rows are kept (the seed's retention policies); `None`: for ever.
    pub fn retention(self) -> Option<std::time::Duration> {
        const HOUR: u64 = 3600;
        let secs = match self {
            Table::RealtimePrices => 5 * 24 * HOUR,
            Table::IntradayOhlcv => 2 * 365 * 24 * HOUR,
            Table::RealtimeAnalytics => HOUR,
            Table::IntradayAnalytics => 90 * 24 * HOUR,
            Table::HistoricalOhlcv | Table::DailyAnalytics => return None,
        };
        Some(std::time::Duration::from_secs(secs))
    }
}

/// Records bound for the tables, with one row per primary key: a later record with the
/// same key (a revised bar) replaces the earlier one, as the upsert would.
#[derive(Default, Debug)]
pub struct Batch {
    pub ticks: Vec<Tick>,
    pub intraday_bars: Vec<Bar>,
    pub daily_bars: Vec<Bar>,
    pub indicators: [Vec<IndicatorRow>; 3],
    tick_keys: FxHashMap<(Symbol, i64, u64), usize>,
    bar_keys: FxHashMap<(Symbol, Interval, i64), (bool, usize)>,
    indicator_keys: FxHashMap<(Symbol, Interval, compact_str::CompactString, i64), usize>,
    rows: usize,
}

impl Batch {
    pub fn push(&mut self, record: Record) {
        match record {
            Record::Tick(tick) => {
                let key = (tick.symbol.clone(), tick.ts, tick.seq);
                upsert(
                    &mut self.ticks,
                    &mut self.tick_keys,
                    key,
                    tick,
                    &mut self.rows,
                );
            }
            Record::Bar(bar) => {
                let daily = Table::for_bars(bar.interval) == Table::HistoricalOhlcv;
                let rows = if daily {
                    &mut self.daily_bars
                } else {
                    &mut self.intraday_bars
                };
                let key = (bar.symbol.clone(), bar.interval, bar.start);
                match self.bar_keys.get(&key) {
                    Some(&(_, i)) if rows[i].revision <= bar.revision => rows[i] = bar,
                    Some(_) => {}
                    None => {
                        self.bar_keys.insert(key, (daily, rows.len()));
                        rows.push(bar);
                        self.rows += 1;
                    }
                }
            }
            Record::Indicator(row) => {
                let slot = match Table::for_indicators(row.interval) {
                    Table::RealtimeAnalytics => 0,
                    Table::IntradayAnalytics => 1,
                    _ => 2,
                };
                let key = (row.symbol.clone(), row.interval, row.id.clone(), row.ts);
                upsert(
                    &mut self.indicators[slot],
                    &mut self.indicator_keys,
                    key,
                    row,
                    &mut self.rows,
                );
            }
        }
    }

    /// Rows in the batch (after de-duplication).
    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// The indicator rows of each analytics table.
    pub fn analytics(&self) -> [(Table, &[IndicatorRow]); 3] {
        [
            (Table::RealtimeAnalytics, &self.indicators[0]),
            (Table::IntradayAnalytics, &self.indicators[1]),
            (Table::DailyAnalytics, &self.indicators[2]),
        ]
    }
}

fn upsert<K: std::hash::Hash + Eq, V>(
    rows: &mut Vec<V>,
    keys: &mut FxHashMap<K, usize>,
    key: K,
    value: V,
    count: &mut usize,
) {
    match keys.get(&key) {
        Some(&i) => rows[i] = value,
        None => {
            keys.insert(key, rows.len());
            rows.push(value);
            *count += 1;
        }
    }
}

/// The JSON object of an indicator row's outputs: `{"value":61.2}`.
pub fn outputs_json(row: &IndicatorRow) -> String {
    let mut out = Vec::with_capacity(48);
    crate::codec::write_indicator_values(&mut out, row);
    String::from_utf8(out).unwrap_or_default()
}

/// Rebuilds an indicator row from its stored columns.
pub fn indicator_from_columns(
    symbol: &str,
    interval: &str,
    ts: i64,
    id: &str,
    kind: &str,
    outputs: &str,
    revision: i64,
) -> Result<IndicatorRow, StoreError> {
    let bad = |what: String| StoreError::Corrupt(format!("{symbol} {id} at {ts}: {what}"));
    let values: FxHashMap<String, Option<f64>> =
        serde_json::from_str(outputs).map_err(|e| bad(e.to_string()))?;
    let interval = Interval::parse(interval).map_err(|e| bad(e.to_string()))?;
    crate::codec::indicator_row(symbol, interval, ts, id, kind, &values, revision as u32)
        .map_err(|e| bad(e.to_string()))
}

/// The stored columns of a bar, read back into a bar.
pub struct BarColumns<'a> {
    pub symbol: &'a str,
    pub interval: Interval,
    pub start: i64,
    pub end: i64,
    pub ohlc: [f64; 4],
    pub volume: f64,
    pub trades: i64,
    pub vwap: Option<f64>,
    pub revision: i64,
    /// Where the bar came from (empty when not recorded).
    pub source: Option<&'a str>,
}

impl BarColumns<'_> {
    pub fn into_bar(self) -> Result<Bar, StoreError> {
        let volume = marketflow_operators::fixed::Fixed::from_f64(self.volume);
        Ok(Bar {
            symbol: Symbol::new(self.symbol).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            interval: self.interval,
            start: self.start,
            end: self.end,
            open: self.ohlc[0],
            high: self.ohlc[1],
            low: self.ohlc[2],
            close: self.ohlc[3],
            volume,
            notional: marketflow_operators::fixed::Fixed::from_f64(
                self.vwap.unwrap_or(0.0) * self.volume,
            ),
            trades: self.trades as u64,
            revision: self.revision as u32,
            seq: 0,
            wm: self.start,
            source: self.source.unwrap_or_default().into(),
        })
    }
}

/// Ticks of one symbol: the latest `limit` with `start <= ts < end`, in time order.
#[derive(Clone, Debug)]
pub struct TickQuery {
    pub symbol: Symbol,
    pub start: Option<i64>,
    pub end: Option<i64>,
    pub limit: usize,
}

/// Bars of one symbol and interval: the latest `limit` with `start <= ts < end`, in time order.
#[derive(Clone, Debug)]
pub struct BarQuery {
    pub symbol: Symbol,
    pub interval: Interval,
    pub start: Option<i64>,
    pub end: Option<i64>,
    pub limit: usize,
}

/// Indicator rows of one symbol and interval, optionally one indicator (an id such as
/// `rsi_14` or a name such as `rsi`): the latest `limit` in range, in time order.
#[derive(Clone, Debug)]
pub struct IndicatorQuery {
    pub symbol: Symbol,
    pub interval: Interval,
    pub indicator: Option<String>,
    pub start: Option<i64>,
    pub end: Option<i64>,
    pub limit: usize,
}

/// A symbol with data, and the span of its data.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SymbolSpan {
    pub symbol: String,
    pub first_ts: i64,
    pub last_ts: i64,
    /// Ticks stored for it (counted only when asked: it reads every tick).
    pub ticks: Option<i64>,
}

/// Symbols with their first and last timestamps over ticks and bars; the same SQL on
/// both databases.
/// The span of every symbol. Ticks are the big table: its symbols are walked through the
/// primary key (one index seek per symbol, each with a seek for its first and last tick)
/// instead of a scan of every tick; the bar tables are smaller by the ticks per bar.
pub(crate) const SYMBOL_SPANS_SQL: &str = "WITH RECURSIVE tick_symbols(symbol) AS (
     SELECT min(symbol) FROM realtime_prices
     UNION ALL
     SELECT (SELECT min(r.symbol) FROM realtime_prices r WHERE r.symbol > t.symbol)
     FROM tick_symbols t WHERE t.symbol IS NOT NULL
 )
 SELECT symbol, min(first_ts), max(last_ts) FROM (
     SELECT t.symbol,
            (SELECT min(r.ts) FROM realtime_prices r WHERE r.symbol = t.symbol) AS first_ts,
            (SELECT max(r.ts) FROM realtime_prices r WHERE r.symbol = t.symbol) AS last_ts
     FROM tick_symbols t WHERE t.symbol IS NOT NULL
     UNION ALL
     SELECT symbol, min(ts), max(ts) FROM intraday_ohlcv GROUP BY symbol
     UNION ALL
     SELECT symbol, min(ts), max(ts) FROM historical_ohlcv GROUP BY symbol
 ) AS spans GROUP BY symbol ORDER BY symbol";

/// [`SYMBOL_SPANS_SQL`] with each symbol's tick count as a fourth column.
pub(crate) const SYMBOL_SPANS_COUNTED_SQL: &str =
    "SELECT s.symbol, min(s.first_ts), max(s.last_ts), \
     (SELECT count(*) FROM realtime_prices r WHERE r.symbol = s.symbol) FROM (
     SELECT symbol, min(ts) AS first_ts, max(ts) AS last_ts FROM realtime_prices GROUP BY symbol
     UNION ALL
     SELECT symbol, min(ts), max(ts) FROM intraday_ohlcv GROUP BY symbol
     UNION ALL
     SELECT symbol, min(ts), max(ts) FROM historical_ohlcv GROUP BY symbol
 ) AS s GROUP BY s.symbol ORDER BY s.symbol";

/// The finest interval of a symbol's real-time (tick) analytics: one index seek.
pub(crate) const REALTIME_INTERVAL_SQL: &str =
    "SELECT min(interval) FROM realtime_analytics WHERE symbol = $1";

/// Whether a symbol has ticks or bars (`$1` is the symbol; SQLite reads `$1` as parameter 1).
pub(crate) const SYMBOL_EXISTS_SQL: &str =
    "SELECT EXISTS (SELECT 1 FROM realtime_prices WHERE symbol = $1)
     OR EXISTS (SELECT 1 FROM intraday_ohlcv WHERE symbol = $1)
     OR EXISTS (SELECT 1 FROM historical_ohlcv WHERE symbol = $1)";

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("stored data is not valid: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Config(String),
    #[error("the store task stopped")]
    Stopped,
}

/// Where a store lives: a PostgreSQL URL or a SQLite file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    Postgres(String),
    Sqlite(PathBuf),
}

impl Location {
    /// `postgres://…` / `postgresql://…` (or `host=… user=…` settings) is PostgreSQL;
    /// `sqlite://PATH`, `sqlite:PATH` or a plain path is SQLite.
    pub fn parse(text: &str) -> Location {
        if text.starts_with("postgres://")
            || text.starts_with("postgresql://")
            || text.contains("host=")
        {
            Location::Postgres(text.to_owned())
        } else {
            let path = text
                .strip_prefix("sqlite://")
                .or_else(|| text.strip_prefix("sqlite:"))
                .unwrap_or(text);
            Location::Sqlite(PathBuf::from(path))
        }
    }
}

/// The read interface of the server, over either database.
pub enum Store {
    Postgres(postgres::PgStore),
    Sqlite(sqlite::SqliteStore),
}

impl Store {
    /// Opens a store for reading (the tables must exist: a sink or `migrate` made them).
    pub async fn open(location: &Location) -> Result<Store, StoreError> {
        Ok(match location {
            Location::Postgres(url) => Store::Postgres(postgres::PgStore::connect(url).await?),
            Location::Sqlite(path) => Store::Sqlite(sqlite::SqliteStore::open(path)?),
        })
    }

    /// The latest ticks of a symbol in a range, in time order.
    pub async fn ticks(&self, query: &TickQuery) -> Result<Vec<Tick>, StoreError> {
        match self {
            Store::Postgres(s) => s.ticks(query).await,
            Store::Sqlite(s) => s.ticks(query).await,
        }
    }

    /// The latest `limit` ticks of a symbol, in time order.
    pub async fn latest_ticks(
        &self,
        symbol: &Symbol,
        limit: usize,
    ) -> Result<Vec<Tick>, StoreError> {
        self.ticks(&TickQuery {
            symbol: symbol.clone(),
            start: None,
            end: None,
            limit,
        })
        .await
    }

    /// For each time of `before`, the price of the symbol's last tick before it.
    pub async fn prices_before(
        &self,
        symbol: &Symbol,
        before: Vec<i64>,
    ) -> Result<Vec<Option<f64>>, StoreError> {
        match self {
            Store::Postgres(s) => s.prices_before(symbol, before).await,
            Store::Sqlite(s) => s.prices_before(symbol, before).await,
        }
    }

    /// The finest interval of the symbol's real-time analytics (tick indicator windows).
    pub async fn realtime_interval(&self, symbol: &Symbol) -> Result<Option<Interval>, StoreError> {
        let text = match self {
            Store::Postgres(s) => s.realtime_interval(symbol).await?,
            Store::Sqlite(s) => s.realtime_interval(symbol).await?,
        };
        text.map(|t| {
            Interval::parse(&t).map_err(|_| StoreError::Corrupt(format!("interval `{t}`")))
        })
        .transpose()
    }

    pub async fn bars(&self, query: &BarQuery) -> Result<Vec<Bar>, StoreError> {
        match self {
            Store::Postgres(s) => s.bars(query).await,
            Store::Sqlite(s) => s.bars(query).await,
        }
    }

    pub async fn indicators(
        &self,
        query: &IndicatorQuery,
    ) -> Result<Vec<IndicatorRow>, StoreError> {
        match self {
            Store::Postgres(s) => s.indicators(query).await,
            Store::Sqlite(s) => s.indicators(query).await,
        }
    }

    /// Every symbol with ticks or bars, with its first and last timestamps (and its tick
    /// count with `count_ticks`).
    pub async fn symbols(&self, count_ticks: bool) -> Result<Vec<SymbolSpan>, StoreError> {
        match self {
            Store::Postgres(s) => s.symbols(count_ticks).await,
            Store::Sqlite(s) => s.symbols(count_ticks).await,
        }
    }

    /// Whether the symbol has any ticks or bars.
    pub async fn has_symbol(&self, symbol: &Symbol) -> Result<bool, StoreError> {
        match self {
            Store::Postgres(s) => s.has_symbol(symbol).await,
            Store::Sqlite(s) => s.has_symbol(symbol).await,
        }
    }

    /// `sqlite` or `postgres`.
    pub fn kind(&self) -> &'static str {
        match self {
            Store::Postgres(_) => "postgres",
            Store::Sqlite(_) => "sqlite",
        }
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Store::Postgres(s) => s.ping().await,
            Store::Sqlite(s) => s.ping().await,
        }
    }
}
