//! TimescaleDB for real: a throwaway cluster with TimescaleDB preloaded (the vendored 2.28.3,
//! installed by scripts/test.sh from ../shared/tools/install-timescaledb.sh). `retention: off`
//! removes the retention policies, so history older than the windows survives its write;
//! `auto` puts them back; the `source` column is added to the compressed hypertables. A
//! server where the extension is installed but not preloaded falls back to plain tables
//! with a warning under `auto`, and `required` says what to configure. The query suite
//! answers alike on TimescaleDB and plain PostgreSQL, and the policies are in the catalog.

mod support;

use support::pg::{block_on, timescaledb_present, Cluster, TestDb};
use support::{marketflow, scratch, write};

/// Does now what TimescaleDB's policies would do later, short of retention: compresses
/// every chunk of the compressed hypertables and refreshes the continuous aggregate (its
/// scheduler may be running the same policies: `if_not_compressed` makes that harmless).
/// Returns how many chunks are compressed.
fn compress_and_refresh(url: &str) -> i64 {
    block_on(async {
        let client = marketflow::store::postgres::connect(url).await.unwrap();
        let chunks = client
            .query(
                "SELECT c::text FROM timescaledb_information.hypertables h,
                        LATERAL show_chunks(format('%I.%I', h.hypertable_schema, h.hypertable_name)::regclass) c
                  WHERE h.compression_enabled",
                &[],
            )
            .await
            .unwrap();
        for chunk in chunks {
            let chunk: String = chunk.get(0);
            let compress = format!("SELECT compress_chunk('{chunk}', if_not_compressed => true)");
            if let Err(e) = client.batch_execute(&compress).await {
                // The scheduler's own run of the policy got there first.
                let already = e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_OBJECT);
                assert!(already, "compressing {chunk}: {e:?}");
            }
        }
        client
            .batch_execute("CALL refresh_continuous_aggregate('ohlcv_5m_from_ticks', NULL, NULL)")
            .await
            .unwrap_or_else(|e| panic!("refreshing the continuous aggregate: {e:?}"));
        client
            .query_one(
                "SELECT count(*) FROM timescaledb_information.chunks WHERE is_compressed",
                &[],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
    })
}

fn query_i64(url: &str, sql: &str) -> i64 {
    block_on(async {
        let client = marketflow::store::postgres::connect(url).await.unwrap();
        client.query_one(sql, &[]).await.unwrap().get::<_, i64>(0)
    })
}

/// Ticks of January 2024, far older than the 5-day tick retention.
fn old_ticks(n: usize) -> String {
    let mut csv = String::from("ts,symbol,price,volume\n");
    for i in 0..n {
        csv.push_str(&format!(
            "{},OLD,{}.5,10\n",
            support::iso(1_704_205_800_000 + i as i64 * 1000),
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
    assert_eq!(db.count("realtime_prices"), 600, "ticks of 2024 kept");
    assert_eq!(db.count("intraday_ohlcv"), 10);
    // What TimescaleDB's policies would do in the next minutes, done now: the history
    // stays (no retention policy is left to delete it).
    let compressed = compress_and_refresh(&db.url);
    assert!(compressed > 0, "no chunk was compressed");
    assert_eq!(
        db.count("realtime_prices"),
        600,
        "ticks of 2024 kept after compression"
    );
    assert_eq!(
        db.count("intraday_ohlcv"),
        10,
        "1m bars kept (and compressed)"
    );
    println!(
        "retention off: 600 ticks and 10 bars of January 2024 kept, {compressed} chunks compressed"
    );
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

/// The storage query suite gives the same answers from TimescaleDB (hypertables, compressed
/// chunks' settings, a continuous aggregate) as from plain tables; the migration's
/// hypertables, compression, retention and continuous-aggregate policies are in the catalog.
#[test]
fn timescaledb_answers_every_query_as_plain_postgres_and_has_its_policies() {
    use marketflow::store::postgres::TimescaleMode;
    use marketflow::store::{Location, Store};
    use support::queries::{answers, records, write_postgres};
    if !timescaledb_present() {
        return;
    }
    let cluster = Cluster::start_with("-c shared_preload_libraries=timescaledb");
    let timescale = TestDb::on(&cluster.admin_url(), "tsdb_queries");
    // The catalog right after the migration, with the seed's retention.
    block_on(async {
        let mut client = marketflow::store::postgres::connect(&timescale.url)
            .await
            .unwrap();
        marketflow::store::postgres::migrate(&mut client, TimescaleMode::Required)
            .await
            .unwrap();
    });
    let jobs = |proc_name: &str| {
        query_i64(
            &timescale.url,
            &format!(
                "SELECT count(*) FROM timescaledb_information.jobs WHERE proc_name = '{proc_name}'"
            ),
        )
    };
    let catalog = [
        ("hypertables", query_i64(&timescale.url, "SELECT count(*) FROM timescaledb_information.hypertables")),
        ("compressed hypertables", query_i64(&timescale.url, "SELECT count(*) FROM timescaledb_information.hypertables WHERE compression_enabled")),
        ("compression policies", jobs("policy_compression")),
        ("retention policies", jobs("policy_retention")),
        ("continuous aggregates", query_i64(&timescale.url, "SELECT count(*) FROM timescaledb_information.continuous_aggregates")),
        ("continuous-aggregate policies", jobs("policy_refresh_continuous_aggregate")),
    ];
    println!("TimescaleDB catalog after migrate: {catalog:?}");
    assert_eq!(catalog.map(|(_, n)| n), [6, 4, 4, 4, 1, 1], "{catalog:?}");
    // The same data set in both modes (the plain database on this server or the local one,
    // migrated with TimescaleDB off even where the server has it).
    let records = records();
    write_postgres(&timescale.url, &records, TimescaleMode::Required);
    // The data set is older than the compression windows: compress it now, so the queries
    // read compressed chunks.
    let compressed = compress_and_refresh(&timescale.url);
    assert!(compressed > 0, "no chunk was compressed");
    let plain = TestDb::new("plain_queries");
    write_postgres(&plain.url, &records, TimescaleMode::Off);
    let answers_of = |url: &str| {
        block_on(async {
            answers(
                &Store::open(&Location::Postgres(url.to_owned()))
                    .await
                    .unwrap(),
            )
            .await
        })
    };
    let (from_timescale, from_plain) = (answers_of(&timescale.url), answers_of(&plain.url));
    assert!(from_plain.len() > 100, "{} answers", from_plain.len());
    assert_eq!(from_timescale, from_plain);
    println!(
        "{} query answers identical on TimescaleDB ({compressed} compressed chunks) and plain PostgreSQL",
        from_plain.len()
    );
}
