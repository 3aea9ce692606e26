//! The batch writer: binary COPY into a staging table, then one upsert per table, in one
//! transaction.

use super::*;

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
