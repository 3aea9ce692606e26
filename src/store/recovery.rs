//! The recovery store: checkpoints of a running pipeline (`recovery:` in its file), kept
//! in a SQLite file or a PostgreSQL database so that `marketflow run --resume` continues
//! after a crash.
//!
//! A checkpoint at time `W` holds, for every source partition, where its input was cut
//! (everything with a watermark below `W` read, nothing after); for every stateful
//! operator instance, its state with everything below `W` applied; and for every sink
//! that resumes at an offset, the offset at which everything below `W` was durable. It is
//! written in one transaction once every part and every sink's acknowledgement is in.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension};
use serde::Deserialize;

use crate::config::values::{Duration, Secret};

/// `recovery:` in a pipeline.
#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RecoveryConfig {
    /// The SQLite file that keeps the checkpoints (created if missing).
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Or a PostgreSQL database (`postgres://…`, the password as `${VAR}`), such as the
    /// postgres sink's: its `marketflow_checkpoints` tables, keyed by pipeline name.
    #[serde(default)]
    pub database: Option<Secret>,
    /// Wall-clock time between checkpoints (default 10s).
    #[serde(default = "ten_seconds")]
    pub checkpoint_interval: Duration,
}

fn one() -> usize {
    1
}

fn ten_seconds() -> Duration {
    Duration(10_000)
}

/// The layout of the store's tables; a store of another layout is refused.
const FORMAT_VERSION: &str = "1";

/// Checkpoints kept besides the newest (older ones are deleted as new ones commit).
const KEPT: i64 = 1;

/// What a run must share with the run that wrote the checkpoints to resume from them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Identity {
    pub pipeline: String,
    /// Worker threads per process.
    pub workers: usize,
    /// Processes of the cluster (1 when the store was written before clusters took
    /// checkpoints).
    #[serde(default = "one")]
    pub processes: usize,
    /// Each stateful operator's name and what its state depends on (type, interval,
    /// calendar, indicators, state version).
    pub operators: BTreeMap<String, String>,
}

/// One committed checkpoint.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Checkpoint {
    /// Its time: everything with a watermark below it is in.
    pub time: i64,
    /// When it was committed (ms since the epoch).
    pub committed_at: i64,
    /// Records the sources had read up to it.
    pub records: u64,
    /// Source cuts by (source, partition), as the engine encodes them.
    pub sources: BTreeMap<(String, usize), Vec<u8>>,
    /// Operator states by (operator, worker).
    pub operators: BTreeMap<(String, usize), Vec<u8>>,
    /// Byte offsets of the sinks that resume at one, by sink.
    pub sinks: BTreeMap<String, u64>,
}

/// Why checkpoints cannot be kept or resumed from.
#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error("recovery store {path}: {error}")]
    Sqlite {
        path: String,
        error: rusqlite::Error,
    },
    #[error("recovery store {path}: {error}")]
    Postgres {
        path: String,
        error: tokio_postgres::Error,
    },
    #[error("creating {path} for the recovery store: {error}")]
    Directory { path: String, error: std::io::Error },
    #[error("recovery store {path} was written by marketflow's store format {found}, this one reads {FORMAT_VERSION}; run without --resume to start over")]
    Format { path: String, found: String },
    #[error("cannot resume: {0}; run without --resume to start over (the checkpoints are then discarded)")]
    Changed(String),
    #[error("recovery: {0}")]
    Config(String),
}

/// One row of a checkpoint: a source cut, an operator state or a sink offset.
type Part = (String, String, i64, Vec<u8>);

/// Where the checkpoints are kept.
enum Backend {
    Sqlite(Connection),
    /// A PostgreSQL database, used from the worker thread that commits checkpoints
    /// through a runtime of its own; rows carry the pipeline's name.
    Postgres {
        runtime: tokio::runtime::Runtime,
        client: tokio_postgres::Client,
        pipeline: String,
    },
}

/// The store of one pipeline's checkpoints.
pub struct RecoveryStore {
    backend: Backend,
    /// The file, or the database without its credentials, for messages.
    path: String,
}

const SQLITE_TABLES: &str = "
    CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS checkpoints (time INTEGER PRIMARY KEY,
        committed_at INTEGER NOT NULL, records INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS parts (time INTEGER NOT NULL, kind TEXT NOT NULL,
        name TEXT NOT NULL, idx INTEGER NOT NULL, value BLOB NOT NULL,
        PRIMARY KEY (time, kind, name, idx));";

const POSTGRES_TABLES: &str = "
    CREATE TABLE IF NOT EXISTS marketflow_recovery_meta (pipeline TEXT NOT NULL,
        key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (pipeline, key));
    CREATE TABLE IF NOT EXISTS marketflow_checkpoints (pipeline TEXT NOT NULL,
        time BIGINT NOT NULL, committed_at BIGINT NOT NULL, records BIGINT NOT NULL,
        PRIMARY KEY (pipeline, time));
    CREATE TABLE IF NOT EXISTS marketflow_checkpoint_parts (pipeline TEXT NOT NULL,
        time BIGINT NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL, idx BIGINT NOT NULL,
        value BYTEA NOT NULL, PRIMARY KEY (pipeline, time, kind, name, idx));";

impl RecoveryStore {
    /// Opens (or creates) the store `config` names, for pipeline `pipeline`.
    pub fn open(config: &RecoveryConfig, pipeline: &str) -> Result<RecoveryStore, RecoveryError> {
        match (&config.path, &config.database) {
            (Some(path), None) => RecoveryStore::open_sqlite(path),
            (None, Some(url)) => RecoveryStore::open_postgres(url.expose(), pipeline, true),
            _ => Err(RecoveryError::Config(
                "give `path` (a SQLite file) or `database` (a postgres:// URL)".into(),
            )),
        }
    }

    /// Opens the store `config` names to read only, as the processes of a cluster other
    /// than process 0 do (that one creates and writes it): no tables are made, no setting
    /// changed. `None` when the store has not been made yet.
    pub fn open_reader(
        config: &RecoveryConfig,
        pipeline: &str,
    ) -> Result<Option<RecoveryStore>, RecoveryError> {
        match (&config.path, &config.database) {
            (Some(path), None) => {
                if !path.exists() {
                    return Ok(None);
                }
                let shown = path.display().to_string();
                let sqlite = |error| RecoveryError::Sqlite {
                    path: shown.clone(),
                    error,
                };
                let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                    | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
                let conn = Connection::open_with_flags(path, flags).map_err(sqlite)?;
                // Process 0 may be writing: wait for it rather than fail.
                conn.busy_timeout(std::time::Duration::from_secs(30))
                    .map_err(sqlite)?;
                let made: bool = conn
                    .query_row(
                        "SELECT count(*) = 2 FROM sqlite_master WHERE name IN ('meta', 'checkpoints')",
                        [],
                        |r| r.get(0),
                    )
                    .map_err(sqlite)?;
                Ok(made.then(|| RecoveryStore {
                    backend: Backend::Sqlite(conn),
                    path: shown,
                }))
            }
            (None, Some(url)) => {
                let store = RecoveryStore::open_postgres(url.expose(), pipeline, false)?;
                let made = match &store.backend {
                    Backend::Postgres {
                        runtime, client, ..
                    } => runtime
                        .block_on(client.query_one(
                            "SELECT to_regclass('marketflow_recovery_meta') IS NOT NULL",
                            &[],
                        ))
                        .map(|row| row.get::<_, bool>(0))
                        .map_err(|e| store.postgres(e))?,
                    Backend::Sqlite(_) => true,
                };
                Ok(made.then_some(store))
            }
            _ => RecoveryStore::open(config, pipeline).map(Some),
        }
    }

    fn open_sqlite(path: &Path) -> Result<RecoveryStore, RecoveryError> {
        let shown = path.display().to_string();
        let sqlite = |error| RecoveryError::Sqlite {
            path: shown.clone(),
            error,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|error| RecoveryError::Directory {
                path: parent.display().to_string(),
                error,
            })?;
        }
        let conn = Connection::open(path).map_err(sqlite)?;
        // FULL: a committed checkpoint survives a power cut, not only a crash.
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;")
            .and_then(|()| conn.execute_batch(SQLITE_TABLES))
            .map_err(sqlite)?;
        Ok(RecoveryStore {
            backend: Backend::Sqlite(conn),
            path: shown,
        })
    }

    /// `create`: make the tables if they are missing.
    fn open_postgres(
        url: &str,
        pipeline: &str,
        create: bool,
    ) -> Result<RecoveryStore, RecoveryError> {
        let shown = without_password(url);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| RecoveryError::Config(format!("starting its runtime: {e}")))?;
        let client = runtime
            .block_on(async {
                let client = crate::store::postgres::connect(url).await?;
                if create {
                    client.batch_execute(POSTGRES_TABLES).await?;
                }
                Ok(client)
            })
            .map_err(|error| RecoveryError::Postgres {
                path: shown.clone(),
                error,
            })?;
        Ok(RecoveryStore {
            backend: Backend::Postgres {
                runtime,
                client,
                pipeline: pipeline.to_owned(),
            },
            path: shown,
        })
    }

    fn sqlite(&self, error: rusqlite::Error) -> RecoveryError {
        RecoveryError::Sqlite {
            path: self.path.clone(),
            error,
        }
    }

    fn postgres(&self, error: tokio_postgres::Error) -> RecoveryError {
        RecoveryError::Postgres {
            path: self.path.clone(),
            error,
        }
    }

    /// A value of the store's metadata.
    fn meta(&self, key: &str) -> Result<Option<String>, RecoveryError> {
        match &self.backend {
            Backend::Sqlite(conn) => conn
                .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
                .optional()
                .map_err(|e| self.sqlite(e)),
            Backend::Postgres {
                runtime,
                client,
                pipeline,
            } => runtime
                .block_on(client.query_opt(
                    "SELECT value FROM marketflow_recovery_meta WHERE pipeline = $1 AND key = $2",
                    &[pipeline, &key],
                ))
                .map(|row| row.map(|r| r.get(0)))
                .map_err(|e| self.postgres(e)),
        }
    }

    /// Starts a run: with `resume`, checks that this run matches the one that wrote the
    /// checkpoints and returns the newest (`None` if there is none); without, discards
    /// them. Either way the store then belongs to `identity`.
    pub fn begin(
        &mut self,
        identity: &Identity,
        resume: bool,
    ) -> Result<Option<Checkpoint>, RecoveryError> {
        if resume {
            if let Some(latest) = self.resume_point(identity)? {
                return Ok(Some(latest));
            }
        }
        let identity_json = serde_json::to_string(identity).unwrap_or_default();
        match &mut self.backend {
            Backend::Sqlite(conn) => {
                let result = conn.transaction().and_then(|tx| {
                    tx.execute("DELETE FROM parts", [])?;
                    tx.execute("DELETE FROM checkpoints", [])?;
                    tx.execute(
                        "INSERT OR REPLACE INTO meta (key, value) VALUES ('format_version', ?1), ('identity', ?2)",
                        params![FORMAT_VERSION, identity_json],
                    )?;
                    tx.commit()
                });
                result.map_err(|e| self.sqlite(e))?;
            }
            Backend::Postgres {
                runtime,
                client,
                pipeline,
            } => {
                let result = runtime.block_on(async {
                    let tx = client.transaction().await?;
                    let p: &String = pipeline;
                    tx.execute("DELETE FROM marketflow_checkpoint_parts WHERE pipeline = $1", &[p]).await?;
                    tx.execute("DELETE FROM marketflow_checkpoints WHERE pipeline = $1", &[p]).await?;
                    for (key, value) in [("format_version", FORMAT_VERSION), ("identity", identity_json.as_str())] {
                        tx.execute(
                            "INSERT INTO marketflow_recovery_meta (pipeline, key, value) VALUES ($1, $2, $3) \
                             ON CONFLICT (pipeline, key) DO UPDATE SET value = EXCLUDED.value",
                            &[p, &key, &value],
                        )
                        .await?;
                    }
                    tx.commit().await
                });
                result.map_err(|e| self.postgres(e))?;
            }
        }
        Ok(None)
    }

    /// The checkpoint to resume from, read only (the other processes of a cluster read
    /// what process 0 keeps): checks that this run matches the one that wrote it.
    pub fn resume_point(&self, identity: &Identity) -> Result<Option<Checkpoint>, RecoveryError> {
        if let Some(found) = self.meta("format_version")?.filter(|f| f != FORMAT_VERSION) {
            return Err(RecoveryError::Format {
                path: self.path.clone(),
                found,
            });
        }
        let Some(written) = self.meta("identity")? else {
            return Ok(None);
        };
        let before: Identity = serde_json::from_str(&written).map_err(|e| {
            RecoveryError::Changed(format!(
                "the store's pipeline description is unreadable ({e})"
            ))
        })?;
        check_same(&before, identity)?;
        self.latest()
    }

    /// The newest committed checkpoint.
    pub fn latest(&self) -> Result<Option<Checkpoint>, RecoveryError> {
        let (row, parts): (Option<(i64, i64, i64)>, Vec<Part>) = match &self.backend {
            Backend::Sqlite(conn) => {
                let read = || -> rusqlite::Result<_> {
                    let row = conn
                        .query_row(
                            "SELECT time, committed_at, records FROM checkpoints ORDER BY time DESC LIMIT 1",
                            [],
                            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                        )
                        .optional()?;
                    let Some(row) = row else {
                        return Ok((None, Vec::new()));
                    };
                    let mut statement =
                        conn.prepare("SELECT kind, name, idx, value FROM parts WHERE time = ?1")?;
                    let parts = statement
                        .query_map([row.0], |r| {
                            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                        })?
                        .collect::<rusqlite::Result<Vec<Part>>>()?;
                    Ok((Some(row), parts))
                };
                read().map_err(|e| self.sqlite(e))?
            }
            Backend::Postgres {
                runtime,
                client,
                pipeline,
            } => runtime
                .block_on(async {
                    let row: Option<(i64, i64, i64)> = client
                        .query_opt(
                            "SELECT time, committed_at, records FROM marketflow_checkpoints \
                             WHERE pipeline = $1 ORDER BY time DESC LIMIT 1",
                            &[pipeline],
                        )
                        .await?
                        .map(|r| (r.get(0), r.get(1), r.get(2)));
                    let Some(row) = row else {
                        return Ok((None, Vec::new()));
                    };
                    let parts = client
                        .query(
                            "SELECT kind, name, idx, value FROM marketflow_checkpoint_parts \
                             WHERE pipeline = $1 AND time = $2",
                            &[pipeline, &row.0],
                        )
                        .await?
                        .iter()
                        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
                        .collect();
                    Ok((Some(row), parts))
                })
                .map_err(|e| self.postgres(e))?,
        };
        let Some((time, committed_at, records)) = row else {
            return Ok(None);
        };
        let mut checkpoint = Checkpoint {
            time,
            committed_at,
            records: records.max(0) as u64,
            ..Checkpoint::default()
        };
        for (kind, name, index, value) in parts {
            let index = index.max(0) as usize;
            match kind.as_str() {
                "source" => {
                    checkpoint.sources.insert((name, index), value);
                }
                "operator" => {
                    checkpoint.operators.insert((name, index), value);
                }
                _ => {
                    let offset = value
                        .get(..8)
                        .and_then(|b| b.try_into().ok())
                        .map_or(0, u64::from_le_bytes);
                    checkpoint.sinks.insert(name, offset);
                }
            }
        }
        Ok(Some(checkpoint))
    }

    /// Writes `checkpoint` and drops those older than the [`KEPT`] before it, in one
    /// transaction.
    pub fn commit(&mut self, checkpoint: &Checkpoint) -> Result<(), RecoveryError> {
        let t = checkpoint.time;
        let records = checkpoint.records.min(i64::MAX as u64) as i64;
        let mut parts: Vec<Part> = Vec::new();
        for ((name, index), value) in &checkpoint.sources {
            parts.push(("source".into(), name.clone(), *index as i64, value.clone()));
        }
        for ((name, index), value) in &checkpoint.operators {
            parts.push((
                "operator".into(),
                name.clone(),
                *index as i64,
                value.clone(),
            ));
        }
        for (name, offset) in &checkpoint.sinks {
            parts.push((
                "sink".into(),
                name.clone(),
                0,
                offset.to_le_bytes().to_vec(),
            ));
        }
        match &mut self.backend {
            Backend::Sqlite(conn) => {
                let result = conn.transaction().and_then(|tx| {
                    {
                        let mut part = tx.prepare(
                            "INSERT OR REPLACE INTO parts (time, kind, name, idx, value) VALUES (?1, ?2, ?3, ?4, ?5)",
                        )?;
                        for (kind, name, index, value) in &parts {
                            part.execute(params![t, kind, name, index, value])?;
                        }
                    }
                    tx.execute(
                        "INSERT OR REPLACE INTO checkpoints (time, committed_at, records) VALUES (?1, ?2, ?3)",
                        params![t, checkpoint.committed_at, records],
                    )?;
                    let oldest_kept: Option<i64> = tx
                        .query_row(
                            "SELECT time FROM checkpoints ORDER BY time DESC LIMIT 1 OFFSET ?1",
                            [KEPT],
                            |r| r.get(0),
                        )
                        .optional()?;
                    if let Some(oldest) = oldest_kept {
                        tx.execute("DELETE FROM parts WHERE time < ?1", [oldest])?;
                        tx.execute("DELETE FROM checkpoints WHERE time < ?1", [oldest])?;
                    }
                    tx.commit()
                });
                result.map_err(|e| self.sqlite(e))
            }
            Backend::Postgres {
                runtime,
                client,
                pipeline,
            } => {
                let result = runtime.block_on(async {
                    let tx = client.transaction().await?;
                    let p: &String = pipeline;
                    let insert = tx
                        .prepare(
                            "INSERT INTO marketflow_checkpoint_parts (pipeline, time, kind, name, idx, value) \
                             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (pipeline, time, kind, name, idx) \
                             DO UPDATE SET value = EXCLUDED.value",
                        )
                        .await?;
                    for (kind, name, index, value) in &parts {
                        tx.execute(&insert, &[p, &t, kind, name, index, value]).await?;
                    }
                    tx.execute(
                        "INSERT INTO marketflow_checkpoints (pipeline, time, committed_at, records) \
                         VALUES ($1, $2, $3, $4) ON CONFLICT (pipeline, time) DO UPDATE SET \
                         committed_at = EXCLUDED.committed_at, records = EXCLUDED.records",
                        &[p, &t, &checkpoint.committed_at, &records],
                    )
                    .await?;
                    let oldest_kept: Option<i64> = tx
                        .query_opt(
                            "SELECT time FROM marketflow_checkpoints WHERE pipeline = $1 \
                             ORDER BY time DESC LIMIT 1 OFFSET $2",
                            &[p, &KEPT],
                        )
                        .await?
                        .map(|r| r.get(0));
                    if let Some(oldest) = oldest_kept {
                        for table in ["marketflow_checkpoint_parts", "marketflow_checkpoints"] {
                            tx.execute(
                                &format!("DELETE FROM {table} WHERE pipeline = $1 AND time < $2"),
                                &[p, &oldest],
                            )
                            .await?;
                        }
                    }
                    tx.commit().await
                });
                result.map_err(|e| self.postgres(e))
            }
        }
    }

    /// How many checkpoints it holds (pruning keeps this small).
    pub fn count(&self) -> Result<i64, RecoveryError> {
        match &self.backend {
            Backend::Sqlite(conn) => conn
                .query_row("SELECT count(*) FROM checkpoints", [], |r| r.get(0))
                .map_err(|e| self.sqlite(e)),
            Backend::Postgres {
                runtime,
                client,
                pipeline,
            } => runtime
                .block_on(client.query_one(
                    "SELECT count(*) FROM marketflow_checkpoints WHERE pipeline = $1",
                    &[pipeline],
                ))
                .map(|r| r.get(0))
                .map_err(|e| self.postgres(e)),
        }
    }
}

/// A database URL fit for messages: `postgres://user@host/db` without its password.
fn without_password(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (userinfo, host) = rest.rsplit_once('@').unwrap_or(("", rest));
            let user = userinfo.split(':').next().unwrap_or_default();
            let at = if userinfo.is_empty() { "" } else { "@" };
            format!("{scheme}://{user}{at}{host}")
        }
        None => "the PostgreSQL database".to_owned(),
    }
}

/// Refuses a resume whose pipeline no longer fits the saved state, naming what changed.
fn check_same(before: &Identity, now: &Identity) -> Result<(), RecoveryError> {
    if before.pipeline != now.pipeline {
        return Err(RecoveryError::Changed(format!(
            "the checkpoints are of pipeline `{}`, not `{}`",
            before.pipeline, now.pipeline
        )));
    }
    if before.processes != now.processes {
        return Err(RecoveryError::Changed(format!(
            "the checkpoints were taken by {} processes, this run has {}; run with --processes {}",
            before.processes, now.processes, before.processes
        )));
    }
    if before.workers != now.workers {
        return Err(RecoveryError::Changed(format!(
            "the checkpoints were taken with {} workers, this run has {}; run with --workers {}",
            before.workers, now.workers, before.workers
        )));
    }
    for (name, shape) in &before.operators {
        match now.operators.get(name) {
            None => {
                return Err(RecoveryError::Changed(format!(
                    "operator `{name}` has saved state but is no longer in the pipeline"
                )))
            }
            Some(now_shape) if now_shape != shape => {
                return Err(RecoveryError::Changed(format!(
                    "the state of operator `{name}` no longer fits it: it was {shape}, it is now {now_shape}"
                )))
            }
            Some(_) => {}
        }
    }
    if let Some(name) = now
        .operators
        .keys()
        .find(|n| !before.operators.contains_key(*n))
    {
        return Err(RecoveryError::Changed(format!(
            "operator `{name}` is new: it has no saved state"
        )));
    }
    Ok(())
}
