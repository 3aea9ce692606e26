//! TimescaleDB for real: a throwaway cluster with TimescaleDB preloaded (the vendored 2.28.3,
//! installed by scripts/test.sh from ../shared/tools/install-timescaledb.sh). `retention: off`
//! removes the retention policies, so history older than the windows survives its write;
//! `auto` puts them back; the `source` column is added to the compressed hypertables. A
//! server where the extension is installed but not preloaded falls back to plain tables
//! with a warning under `auto`, and `required` says what to configure.

mod support;

use std::path::PathBuf;

use support::pg::{block_on, Cluster, TestDb};
use support::{marketflow, scratch, write};

/// Whether the local PostgreSQL has TimescaleDB; when it cannot, says why (a failure on CI
/// when the installer is at hand, a visible skip when it is not).
fn timescaledb_present() -> bool {
    let sharedir = std::process::Command::new("/usr/lib/postgresql/15/bin/pg_config")
        .arg("--sharedir")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    let installed = sharedir
        .map(|d| PathBuf::from(d).join("extension/timescaledb.control"))
        .is_some_and(|p| p.exists());
    if installed {
        return true;
    }
    let installer =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/tools/install-timescaledb.sh");
    assert!(
        !(installer.exists() && std::env::var_os("CI").is_some()),
        "TimescaleDB is not installed though {} is here (scripts/test.sh runs it)",
        installer.display()
    );
    support::skipped(
        "TimescaleDB is not installed and ../shared/tools/install-timescaledb.sh is absent",
    );
    false
}

fn query_i64(url: &str, sql: &str) -> i64 {
    block_on(async {
        let client = marketflow::store::postgres::connect(url).await.unwrap();
        client.query_one(sql, &[]).await.unwrap().get::<_, i64>(0)
    })
}

/// Ticks of 2020, far older than the 5-day tick retention.
fn old_ticks(n: usize) -> String {
    let mut csv = String::from("ts,symbol,price,volume\n");
    for i in 0..n {
        csv.push_str(&format!(
            "{},OLD,{}.5,10\n",
            support::iso(1_577_977_800_000 + i as i64 * 1000),
            100 + i % 7
        ));
    }
    csv
}

fn pipeline(url: &str, retention: &str) -> String {
    format!(
        "pipeline: ts\n\
         sources:\n  ticks: {{type: file, path: ticks.csv, format: csv}}\n\
         operators:\n  bars_1m: {{type: bars, from: ticks, interval: 1m}}\n\
         sinks:\n  db: {{type: postgres, from: [ticks, bars_1m], url: \"{url}\", timescaledb: required, retention: {retention}}}\n"
    )
}

#[test]
fn retention_off_keeps_old_history_and_auto_puts_the_policies_back() {
    if !timescaledb_present() {
        return;
    }
    let cluster = Cluster::start_with("-c shared_preload_libraries=timescaledb");
    let db = TestDb::on(&cluster.admin_url(), "tsdb");
    let dir = scratch();
    write(dir.path(), "ticks.csv", &old_ticks(600));
    write(dir.path(), "off.yaml", &pipeline(&db.url, "off"));
    support::run_ok(dir.path(), &["run", "off.yaml", "--no-server"]);
    let policies =
        "SELECT count(*) FROM timescaledb_information.jobs WHERE proc_name = 'policy_retention'";
    assert_eq!(
        query_i64(
            &db.url,
            "SELECT count(*) FROM timescaledb_information.hypertables"
        ),
        6
    );
    assert_eq!(
        query_i64(&db.url, policies),
        0,
        "`retention: off` removes the policies"
    );
    assert_eq!(db.count("realtime_prices"), 600, "ticks of 2020 kept");
    assert_eq!(db.count("intraday_ohlcv"), 10);
    assert_eq!(
        query_i64(
            &db.url,
            "SELECT count(*) FROM intraday_ohlcv WHERE source = 'ticks'"
        ),
        10,
        "the source column of the compressed hypertable"
    );

    write(dir.path(), "auto.yaml", &pipeline(&db.url, "auto"));
    support::run_ok(dir.path(), &["run", "auto.yaml", "--no-server"]);
    assert_eq!(
        query_i64(&db.url, policies),
        4,
        "`retention: auto` puts the seed's policies back"
    );
}

#[test]
fn installed_but_not_preloaded_falls_back_or_says_what_to_set() {
    if !timescaledb_present() {
        return;
    }
    let cluster = Cluster::start();
    let db = TestDb::on(&cluster.admin_url(), "nopreload");
    let out = marketflow()
        .args(["migrate", "--database-url", &db.url])
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("plain"), "{stdout}");
    assert!(stderr.contains("shared_preload_libraries"), "{stderr}");
    let db = TestDb::on(&cluster.admin_url(), "nopreload_required");
    let out = marketflow()
        .args([
            "migrate",
            "--database-url",
            &db.url,
            "--timescaledb",
            "required",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("shared_preload_libraries = 'timescaledb'"),
        "{stderr}"
    );
}
