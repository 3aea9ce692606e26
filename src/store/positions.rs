//! Source positions kept between runs: for each pipeline and resume key, the position its
//! sinks acknowledged as durable. A history source resumes after it, so that an
//! interrupted backfill asks only for the pages it had not stored.
//!
//! The table is created on first use (it belongs to no tier and has the same shape on
//! TimescaleDB and plain PostgreSQL): `marketflow_positions(pipeline, key, position,
//! updated_at)`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{Location, StoreError};

const SQLITE_TABLE: &str = "CREATE TABLE IF NOT EXISTS marketflow_positions (
    pipeline TEXT NOT NULL, key TEXT NOT NULL, position INTEGER NOT NULL,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (pipeline, key))";

const POSTGRES_TABLE: &str = "CREATE TABLE IF NOT EXISTS marketflow_positions (
    pipeline   text        NOT NULL,
    key        text        NOT NULL,
    position   bigint      NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (pipeline, key))";

/// The positions table of one store.
#[derive(Clone)]
pub enum Positions {
    Sqlite(Arc<Mutex<rusqlite::Connection>>),
    Postgres(Arc<tokio_postgres::Client>),
}

impl Positions {
    /// Opens the store at `location` and creates the table if needed.
    pub async fn open(location: &Location) -> Result<Positions, StoreError> {
        match location {
            Location::Sqlite(path) => {
                let path = path.clone();
                let conn = tokio::task::spawn_blocking(move || {
                    let conn = super::sqlite::open(&path)?;
                    conn.execute_batch(SQLITE_TABLE)?;
                    Ok::<_, StoreError>(conn)
                })
                .await
                .map_err(|_| StoreError::Stopped)??;
                Ok(Positions::Sqlite(Arc::new(Mutex::new(conn))))
            }
            Location::Postgres(url) => {
                let client = super::postgres::connect(url).await?;
                // Two runs creating it at once: the loser's error is harmless.
                if let Err(e) = client.batch_execute(POSTGRES_TABLE).await {
                    if client
                        .query_opt("SELECT to_regclass('marketflow_positions')::text", &[])
                        .await?
                        .and_then(|r| r.get::<_, Option<String>>(0))
                        .is_none()
                    {
                        return Err(e.into());
                    }
                }
                Ok(Positions::Postgres(Arc::new(client)))
            }
        }
    }

    /// Every position kept for `pipeline`, by key.
    pub async fn load(&self, pipeline: &str) -> Result<HashMap<String, u64>, StoreError> {
        match self {
            Positions::Sqlite(conn) => {
                let (conn, pipeline) = (conn.clone(), pipeline.to_owned());
                tokio::task::spawn_blocking(move || {
                    let conn = conn.lock().map_err(|_| StoreError::Stopped)?;
                    let mut statement = conn.prepare(
                        "SELECT key, position FROM marketflow_positions WHERE pipeline = ?1",
                    )?;
                    let rows = statement.query_map([&pipeline], |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
                    })?;
                    let mut out = HashMap::new();
                    for row in rows {
                        let (key, position) = row?;
                        out.insert(key, position.max(0) as u64);
                    }
                    Ok(out)
                })
                .await
                .map_err(|_| StoreError::Stopped)?
            }
            Positions::Postgres(client) => {
                let rows = client
                    .query(
                        "SELECT key, position FROM marketflow_positions WHERE pipeline = $1",
                        &[&pipeline],
                    )
                    .await?;
                Ok(rows
                    .iter()
                    .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1).max(0) as u64))
                    .collect())
            }
        }
    }

    /// Keeps `position` for (`pipeline`, `key`).
    pub async fn save(&self, pipeline: &str, key: &str, position: u64) -> Result<(), StoreError> {
        let position = position.min(i64::MAX as u64) as i64;
        match self {
            Positions::Sqlite(conn) => {
                let (conn, pipeline, key) = (conn.clone(), pipeline.to_owned(), key.to_owned());
                tokio::task::spawn_blocking(move || {
                    let conn = conn.lock().map_err(|_| StoreError::Stopped)?;
                    conn.execute(
                        "INSERT INTO marketflow_positions (pipeline, key, position) VALUES (?1, ?2, ?3) \
                         ON CONFLICT (pipeline, key) DO UPDATE SET position = excluded.position, \
                         updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
                        rusqlite::params![pipeline, key, position],
                    )?;
                    Ok(())
                })
                .await
                .map_err(|_| StoreError::Stopped)?
            }
            Positions::Postgres(client) => {
                client
                    .execute(
                        "INSERT INTO marketflow_positions (pipeline, key, position) VALUES ($1, $2, $3) \
                         ON CONFLICT (pipeline, key) DO UPDATE SET position = excluded.position, \
                         updated_at = now()",
                        &[&pipeline, &key, &position],
                    )
                    .await?;
                Ok(())
            }
        }
    }
}
