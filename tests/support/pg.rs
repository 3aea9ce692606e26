//! A real PostgreSQL for the tests: the server named by `MARKETFLOW_TEST_DATABASE_URL`
//! (an admin URL such as `postgres://postgres@127.0.0.1:5432/postgres`) or, when it is
//! unset, a throwaway cluster made with the Debian binaries. Each test gets its own
//! database, dropped at the end.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// Runs `future` to completion on a fresh current-thread runtime.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// The admin URL of the shared server.
fn admin_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| match std::env::var("MARKETFLOW_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => {
            let cluster = Cluster::start();
            let url = cluster.admin_url();
            // Lives as long as the test process: a watchdog stops it when we exit.
            cluster.stop_when_process_exits();
            std::mem::forget(cluster);
            url
        }
    })
}

/// A database of its own for one test.
pub struct TestDb {
    pub url: String,
    admin: String,
    name: String,
}

impl TestDb {
    pub fn new(tag: &str) -> TestDb {
        TestDb::on(admin_url(), tag)
    }

    /// A database on the server of `admin`.
    pub fn on(admin: &str, tag: &str) -> TestDb {
        let name = format!("mf_test_{tag}_{}", std::process::id());
        let statements = [
            format!("DROP DATABASE IF EXISTS {name}"),
            format!("CREATE DATABASE {name}"),
        ];
        block_on(async {
            let client = marketflow::store::postgres::connect(admin)
                .await
                .unwrap_or_else(|e| panic!("connecting to the test server {admin}: {e}"));
            for statement in &statements {
                client.batch_execute(statement).await.unwrap();
            }
        });
        TestDb {
            url: marketflow::store::postgres::with_database(admin, &name),
            admin: admin.to_owned(),
            name,
        }
    }

    /// Every row of the marketflow tables, as sorted text: for comparing two databases.
    pub fn dump(&self) -> Vec<String> {
        block_on(async {
            let client = marketflow::store::postgres::connect(&self.url)
                .await
                .unwrap();
            let mut rows = Vec::new();
            for table in marketflow::store::Table::ALL {
                let name = table.name();
                for row in client
                    .simple_query(&format!("SELECT '{name}', t::text FROM {name} AS t"))
                    .await
                    .unwrap()
                {
                    if let tokio_postgres::SimpleQueryMessage::Row(row) = row {
                        rows.push(format!(
                            "{} {}",
                            row.get(0).unwrap_or(""),
                            row.get(1).unwrap_or("")
                        ));
                    }
                }
            }
            rows.sort();
            rows
        })
    }

    /// Rows in one table.
    pub fn count(&self, table: &str) -> i64 {
        block_on(async {
            let client = marketflow::store::postgres::connect(&self.url)
                .await
                .unwrap();
            client
                .query_one(&format!("SELECT count(*) FROM {table}"), &[])
                .await
                .map(|r| r.get::<_, i64>(0))
                .unwrap_or(-1)
        })
    }
    /// Holds an exclusive lock on `table` until the lock is dropped: writers to it wait,
    /// as behind a slow database.
    pub fn lock(&self, table: &str) -> TableLock {
        let (url, statement) = (
            self.url.clone(),
            format!("BEGIN; LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"),
        );
        let (locked_tx, locked) = std::sync::mpsc::channel();
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let holder = std::thread::spawn(move || {
            block_on(async {
                let client = marketflow::store::postgres::connect(&url).await.unwrap();
                client.batch_execute(&statement).await.unwrap();
                locked_tx.send(()).unwrap();
                let _ = released.await;
                client.batch_execute("COMMIT").await.unwrap();
            })
        });
        locked
            .recv_timeout(std::time::Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("locking {table}: {e}"));
        TableLock {
            release: Some(release),
            holder: Some(holder),
        }
    }

    /// Sessions waiting for a lock on `table`.
    pub fn waiting_on(&self, table: &str) -> i64 {
        let query = format!(
            "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = '{table}'::regclass"
        );
        block_on(async {
            let client = marketflow::store::postgres::connect(&self.url)
                .await
                .unwrap();
            client
                .query_one(&query, &[])
                .await
                .unwrap()
                .get::<_, i64>(0)
        })
    }
}

/// A table lock held by [`TestDb::lock`]; dropping it commits and releases the lock.
pub struct TableLock {
    release: Option<tokio::sync::oneshot::Sender<()>>,
    holder: Option<std::thread::JoinHandle<()>>,
}

impl Drop for TableLock {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            let _ = release.send(());
        }
        if let Some(holder) = self.holder.take() {
            let _ = holder.join();
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let statement = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let admin = self.admin.clone();
        let _ = std::thread::spawn(move || {
            block_on(async {
                if let Ok(client) = marketflow::store::postgres::connect(&admin).await {
                    let _ = client.batch_execute(&statement).await;
                }
            })
        })
        .join();
    }
}

/// A PostgreSQL cluster in a temporary directory, stopped when dropped.
pub struct Cluster {
    dir: PathBuf,
    bin: PathBuf,
    pub port: u16,
    /// Extra server options.
    options: String,
}

impl Cluster {
    pub fn start() -> Cluster {
        Cluster::start_with("")
    }

    /// A throwaway cluster started with extra server options (`-c name=value ...`).
    pub fn start_with(options: &str) -> Cluster {
        let bin = postgres_bin();
        let dir = std::env::temp_dir().join(format!(
            "marketflow-pg-{}-{}",
            std::process::id(),
            super::free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let port = super::free_port();
        let cluster = Cluster {
            dir,
            bin,
            port,
            options: options.to_owned(),
        };
        cluster.give_to_postgres_user();
        let out = cluster
            .command("initdb")
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "-D"])
            .arg(cluster.data())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        cluster.pg_ctl_start();
        cluster
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// A Debian binary, run as the `postgres` user when we are root (initdb refuses root).
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if is_root() {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(path);
            cmd
        } else {
            Command::new(path)
        }
    }

    fn give_to_postgres_user(&self) {
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&self.dir)
                .status()
                .unwrap();
            assert!(status.success());
        }
    }

    pub fn pg_ctl_start(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off {}",
            self.port,
            self.dir.display(),
            self.options
        );
        let out = self
            .command("pg_ctl")
            .args(["-w", "-t", "60", "-l"])
            .arg(self.dir.join("log"))
            .arg("-D")
            .arg(self.data())
            .args(["-o", &options, "start"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
        );
    }

    pub fn pg_ctl_stop(&self) {
        let out = self
            .command("pg_ctl")
            .args(["-w", "-t", "60", "-m", "fast", "-D"])
            .arg(self.data())
            .arg("stop")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl stop failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts a shell that stops this cluster once the test process has gone.
    #[allow(
        clippy::zombie_processes,
        reason = "the watchdog must outlive this process"
    )]
    fn stop_when_process_exits(&self) {
        let pg_ctl = self.bin.join("pg_ctl");
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {run} {pg_ctl} -m immediate -D {data} stop; rm -rf {dir}",
            pid = std::process::id(),
            run = if is_root() { "runuser -u postgres --" } else { "" },
            pg_ctl = pg_ctl.display(),
            data = self.data().display(),
            dir = self.dir.display()
        );
        Command::new("sh")
            .args(["-c", &script])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .args(["-m", "immediate", "-D"])
            .arg(self.data())
            .arg("stop")
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// The newest Debian PostgreSQL binaries (`/usr/lib/postgresql/N/bin`).
fn postgres_bin() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin).expect(
        "PostgreSQL server binaries (Debian package postgresql; scripts/setup.sh installs it)",
    )
}

/// Whether the local PostgreSQL has TimescaleDB; when it cannot, says why (a failure on CI
/// when the installer is at hand, a visible skip when it is not).
pub fn timescaledb_present() -> bool {
    let sharedir = Command::new(postgres_bin().join("pg_config"))
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
    super::skipped(
        "TimescaleDB is not installed and ../shared/tools/install-timescaledb.sh is absent",
    );
    false
}
