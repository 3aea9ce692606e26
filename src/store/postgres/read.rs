//! The read queries, over a few connections.

use super::*;

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
            .query_one(crate::store::REALTIME_INTERVAL_SQL, &[&symbol.as_str()])
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
            .query_one(crate::store::SYMBOL_EXISTS_SQL, &[&symbol.as_str()])
            .await?;
        Ok(row.try_get(0)?)
    }

    pub async fn symbols(&self, count_ticks: bool) -> Result<Vec<SymbolSpan>, StoreError> {
        let sql = if count_ticks {
            crate::store::SYMBOL_SPANS_COUNTED_SQL
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
