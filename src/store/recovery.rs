//! The recovery store: checkpoints of a running pipeline (`recovery:` in its file), kept
//! in a SQLite file so that `marketflow run --resume` continues after a crash.
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

use crate::config::values::Duration;

/// `recovery:` in a pipeline.
#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RecoveryConfig {
    /// The SQLite file that keeps the checkpoints (created if missing).
    pub path: PathBuf,
    /// Wall-clock time between checkpoints (default 10s).
    #[serde(default = "ten_seconds")]
    pub checkpoint_interval: Duration,
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
    pub workers: usize,
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
    #[error("creating {path} for the recovery store: {error}")]
    Directory { path: String, error: std::io::Error },
    #[error("recovery store {path} was written by marketflow's store format {found}, this one reads {FORMAT_VERSION}; run without --resume to start over")]
    Format { path: String, found: String },
    #[error("cannot resume: {0}; run without --resume to start over (the checkpoints are then discarded)")]
    Changed(String),
}

/// The store of one pipeline's checkpoints.
pub struct RecoveryStore {
    conn: Connection,
    path: String,
}

impl RecoveryStore {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path) -> Result<RecoveryStore, RecoveryError> {
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
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
             CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS checkpoints (time INTEGER PRIMARY KEY,
                 committed_at INTEGER NOT NULL, records INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS parts (time INTEGER NOT NULL, kind TEXT NOT NULL,
                 name TEXT NOT NULL, idx INTEGER NOT NULL, value BLOB NOT NULL,
                 PRIMARY KEY (time, kind, name, idx));",
        )
        .map_err(sqlite)?;
        Ok(RecoveryStore { conn, path: shown })
    }

    fn sqlite(&self, error: rusqlite::Error) -> RecoveryError {
        RecoveryError::Sqlite {
            path: self.path.clone(),
            error,
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
        let meta = |key: &str| -> Result<Option<String>, rusqlite::Error> {
            self.conn
                .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
                .optional()
        };
        let format = meta("format_version").map_err(|e| self.sqlite(e))?;
        let written = meta("identity").map_err(|e| self.sqlite(e))?;
        if resume {
            if let Some(found) = format.filter(|f| f != FORMAT_VERSION) {
                return Err(RecoveryError::Format {
                    path: self.path.clone(),
                    found,
                });
            }
            if let Some(written) = written {
                let before: Identity = serde_json::from_str(&written).map_err(|e| {
                    RecoveryError::Changed(format!(
                        "the store's pipeline description is unreadable ({e})"
                    ))
                })?;
                check_same(&before, identity)?;
                let latest = self.latest()?;
                if latest.is_some() {
                    return Ok(latest);
                }
            }
        }
        let tx = self.conn.transaction().map_err(|e| RecoveryError::Sqlite {
            path: self.path.clone(),
            error: e,
        })?;
        let identity_json = serde_json::to_string(identity).unwrap_or_default();
        let result = (|| {
            tx.execute("DELETE FROM parts", [])?;
            tx.execute("DELETE FROM checkpoints", [])?;
            tx.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('format_version', ?1), ('identity', ?2)",
                params![FORMAT_VERSION, identity_json],
            )?;
            tx.commit()
        })();
        result.map_err(|e| self.sqlite(e))?;
        Ok(None)
    }

    /// The newest committed checkpoint.
    pub fn latest(&self) -> Result<Option<Checkpoint>, RecoveryError> {
        let row = self
            .conn
            .query_row(
                "SELECT time, committed_at, records FROM checkpoints ORDER BY time DESC LIMIT 1",
                [],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                },
            )
            .optional()
            .map_err(|e| self.sqlite(e))?;
        let Some((time, committed_at, records)) = row else {
            return Ok(None);
        };
        let mut checkpoint = Checkpoint {
            time,
            committed_at,
            records: records.max(0) as u64,
            ..Checkpoint::default()
        };
        let mut statement = self
            .conn
            .prepare("SELECT kind, name, idx, value FROM parts WHERE time = ?1")
            .map_err(|e| self.sqlite(e))?;
        let rows = statement
            .query_map([time], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, Vec<u8>>(3)?,
                ))
            })
            .map_err(|e| self.sqlite(e))?;
        for row in rows {
            let (kind, name, index, value) = row.map_err(|e| self.sqlite(e))?;
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
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction()
            .map_err(|error| RecoveryError::Sqlite {
                path: path.clone(),
                error,
            })?;
        let result = (|| {
            let t = checkpoint.time;
            {
                let mut part = tx.prepare(
                    "INSERT OR REPLACE INTO parts (time, kind, name, idx, value) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?;
                for ((name, index), value) in &checkpoint.sources {
                    part.execute(params![t, "source", name, *index as i64, value])?;
                }
                for ((name, index), value) in &checkpoint.operators {
                    part.execute(params![t, "operator", name, *index as i64, value])?;
                }
                for (name, offset) in &checkpoint.sinks {
                    part.execute(params![
                        t,
                        "sink",
                        name,
                        0i64,
                        offset.to_le_bytes().to_vec()
                    ])?;
                }
            }
            tx.execute(
                "INSERT OR REPLACE INTO checkpoints (time, committed_at, records) VALUES (?1, ?2, ?3)",
                params![t, checkpoint.committed_at, checkpoint.records.min(i64::MAX as u64) as i64],
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
        })();
        result.map_err(|error| RecoveryError::Sqlite { path, error })
    }

    /// How many checkpoints it holds (pruning keeps this small).
    pub fn count(&self) -> Result<i64, RecoveryError> {
        self.conn
            .query_row("SELECT count(*) FROM checkpoints", [], |r| r.get(0))
            .map_err(|e| self.sqlite(e))
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
