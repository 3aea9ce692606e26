//! The schema: numbered migrations, TimescaleDB hypertables and retention policies.

use super::*;

/// The migrations, in order: (version, name, SQL).
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "0001_tables.sql",
        include_str!("../../../migrations/postgres/0001_tables.sql"),
    ),
    (
        2,
        "0002_timescaledb.sql",
        include_str!("../../../migrations/postgres/0002_timescaledb.sql"),
    ),
    (
        3,
        "0003_source.sql",
        include_str!("../../../migrations/postgres/0003_source.sql"),
    ),
];

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

/// The advisory lock migrators hold: one at a time per database.
const MIGRATION_LOCK: i64 = 7208021;

/// Applies the migrations not yet recorded, each once and in its own transaction. The
/// single decision between TimescaleDB and plain tables is made here. Migrators take turns
/// (every writer of a parallel sink, every process of a cluster starts by migrating): the
/// extension and the migrations table are created under the same lock as the migrations.
pub async fn migrate(
    client: &mut Client,
    want: TimescaleMode,
) -> Result<MigrationReport, StoreError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let report = migrate_locked(client, want).await;
    // On an error the session's end releases it (the caller drops the client).
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await?;
    report
}

async fn migrate_locked(
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
