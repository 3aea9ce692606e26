//! PostgreSQL (and TimescaleDB): connections and the column types shared by the parts
//! below: the migrations ([`migrate`]), the batch writer (binary COPY into a staging table,
//! then one upsert per table, in one transaction: `write`) and the read queries (`read`).

mod migrate;
mod read;
mod write;

pub use self::migrate::{
    migrate, set_retention_policies, uses_timescaledb, MigrationReport, TimescaleMode, MIGRATIONS,
};
pub use self::read::PgStore;
pub use self::write::{insert_bars_one_by_one, PgWriter};

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
