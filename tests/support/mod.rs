//! Helpers shared by the integration tests: running the binary, scratch directories,
//! generated tick files.
#![allow(dead_code)]

pub mod feeds;
pub mod http;
pub mod kafka;
pub mod pg;
pub mod queries;
pub mod rest;
pub mod resume;
pub mod rows;
pub mod tls;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// For a test that needs an outside tool: false (skip, with a note) when `tool` is missing
/// on a developer's machine; on CI (`CI` set), where scripts/setup.sh installs it, a missing
/// tool fails the test.
pub fn tool_present(present: bool, tool: &str) -> bool {
    if !present {
        assert!(
            std::env::var_os("CI").is_none(),
            "{tool} is not installed (scripts/setup.sh installs it)"
        );
        skipped(&format!(
            "{tool} is not installed (scripts/setup.sh installs it)"
        ));
    }
    present
}

/// Reports a skipped test: on stderr, and in the file `MARKETFLOW_SKIPS` names, which
/// scripts/test.sh prints in its summary.
pub fn skipped(why: &str) {
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    eprintln!("skipped: {test}: {why}");
    if let Some(path) = std::env::var_os("MARKETFLOW_SKIPS") {
        use std::io::Write as _;
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(file, "{test}: {why}");
        }
    }
}

/// The `marketflow` binary built for these tests.
pub fn marketflow() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_marketflow"));
    cmd.env("RUST_LOG", "warn");
    cmd
}

/// Runs `marketflow` with `args` in `dir`, returning its output.
pub fn run_in(dir: &Path, args: &[&str]) -> Output {
    marketflow()
        .current_dir(dir)
        .args(args)
        .output()
        .expect("marketflow runs")
}

/// Runs and asserts success, returning stdout.
pub fn run_ok(dir: &Path, args: &[&str]) -> String {
    let out = run_in(dir, args);
    assert!(
        out.status.success(),
        "marketflow {args:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A scratch directory removed at the end of the test.
pub fn scratch() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&path, text).unwrap();
    path
}

/// A named pipe `name` in `dir` (a file source that streams until its writer closes).
pub fn fifo(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let made = Command::new("mkfifo")
        .arg(&path)
        .status()
        .expect("mkfifo runs");
    assert!(made.success(), "mkfifo {}", path.display());
    path
}

/// The lines of a file, sorted.
pub fn sorted_lines(path: &Path) -> Vec<String> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines.sort();
    lines
}

/// How two line lists differ, as multisets: counts and the first few lines one has more
/// often than the other (a line written twice shows as extra).
pub fn line_differences(got: &[String], expected: &[String]) -> String {
    let (mut a, mut b) = (got.to_vec(), expected.to_vec());
    a.sort();
    b.sort();
    let (mut missing, mut extra) = (Vec::new(), Vec::new());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) if x == y => (i, j) = (i + 1, j + 1),
            (Some(x), Some(y)) if x < y => {
                extra.push(x.clone());
                i += 1;
            }
            (Some(x), None) => {
                extra.push(x.clone());
                i += 1;
            }
            (_, Some(y)) => {
                missing.push(y.clone());
                j += 1;
            }
            (None, None) => break,
        }
    }
    missing.truncate(5);
    extra.truncate(5);
    format!(
        "{} lines against {} expected; missing {missing:#?}; extra {extra:#?}",
        got.len(),
        expected.len(),
    )
}

/// A deterministic pseudo-random sequence (splitmix64).
pub struct Lcg(pub u64);

impl Lcg {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Formats epoch ms as RFC 3339 UTC with milliseconds.
pub fn iso(ms: i64) -> String {
    marketflow_operators::time::format_timestamp(ms)
}

/// Parses RFC 3339 into epoch ms.
pub fn ms(text: &str) -> i64 {
    marketflow_operators::time::parse_timestamp(text).unwrap()
}

/// Ticks as CSV: `count` ticks over `symbols`, event times moving forward by up to
/// `step_ms` each, delivered up to `disorder_ms` out of order.
pub fn tick_csv(
    seed: u64,
    symbols: &[&str],
    start: i64,
    count: usize,
    step_ms: u64,
    disorder_ms: i64,
) -> String {
    let mut rng = Lcg(seed);
    let mut ts = start;
    let mut rows: Vec<(i64, i64, String)> = Vec::new();
    for i in 0..count {
        ts += rng.below(step_ms + 1) as i64;
        let symbol = symbols[rng.below(symbols.len() as u64) as usize];
        let price = 100.0 + (rng.below(2_000) as f64 - 1_000.0) / 100.0;
        let volume = 1 + rng.below(500);
        let arrival = ts
            + if disorder_ms > 0 {
                rng.below(disorder_ms as u64) as i64
            } else {
                0
            };
        rows.push((
            arrival,
            i as i64,
            format!("{},{symbol},{price},{volume}", iso(ts)),
        ));
    }
    rows.sort();
    let mut out = String::from("ts,symbol,price,volume\n");
    for (_, _, row) in rows {
        out.push_str(&row);
        out.push('\n');
    }
    out
}

/// Writes 1m bars of symbols `S00`.. `S{symbols-1}` for `minutes` minutes from `first`, as
/// a bars file (`kind: bars`) reads them, on random prices; gives how many.
pub fn minute_bars_csv(path: &Path, symbols: usize, first: i64, minutes: i64, seed: u64) -> u64 {
    use std::io::Write as _;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    writeln!(out, "symbol,start,open,high,low,close,volume").unwrap();
    let mut rng = Lcg(seed);
    let mut bars = 0;
    for minute in 0..minutes {
        let start = iso(first + minute * 60_000);
        for s in 0..symbols {
            let open = 90.0 + rng.below(2_000) as f64 / 100.0;
            let close = 90.0 + rng.below(2_000) as f64 / 100.0;
            let (low, high) = (open.min(close) - 0.25, open.max(close) + 0.25);
            let volume = 1 + rng.below(5_000);
            writeln!(
                out,
                "S{s:02},{start},{open:.2},{high:.2},{low:.2},{close:.2},{volume}"
            )
            .unwrap();
            bars += 1;
        }
    }
    bars
}

/// Waits for `child` to exit; past `deadline` it is killed and the test fails, naming
/// what it waited for.
pub fn wait_with_deadline(
    mut child: std::process::Child,
    deadline: std::time::Duration,
) -> std::process::ExitStatus {
    let until = std::time::Instant::now() + deadline;
    loop {
        if let Some(status) = child.try_wait().expect("waiting for a child process") {
            return status;
        }
        if std::time::Instant::now() >= until {
            let _ = child.kill();
            panic!("a marketflow process did not exit within {deadline:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Runs `p.yaml` in `dir` as a cluster of `processes` processes with `workers` each, to
/// completion within a deadline. Every `{process}` in `extra` (more arguments of `run`)
/// becomes the process's index.
pub fn run_cluster(dir: &Path, processes: usize, workers: usize, extra: &[&str]) {
    let hosts: String = (0..processes)
        .map(|_| format!("127.0.0.1:{}\n", free_port()))
        .collect();
    write(dir, "hosts.txt", &hosts);
    let (n, w) = (processes.to_string(), workers.to_string());
    let children: Vec<_> = (0..processes)
        .map(|i| {
            let i = i.to_string();
            marketflow()
                .current_dir(dir)
                .args(["run", "p.yaml", "--workers", &w, "--processes", &n])
                .args(["--process", &i, "--hostfile", "hosts.txt"])
                .args(extra.iter().map(|a| a.replace("{process}", &i)))
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let status = wait_with_deadline(child, std::time::Duration::from_secs(120));
        assert!(status.success(), "a cluster process failed: {status}");
    }
}

/// A loopback port free a moment ago (the caller binds it soon after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The value of every series of `metric` in a Prometheus text file, by its labels
/// (`sink="db",writer="1"`).
pub fn metric_series(path: &Path, metric: &str) -> std::collections::BTreeMap<String, f64> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("reading metrics {}: {e}", path.display()));
    text.lines()
        .filter_map(|l| l.strip_prefix(metric)?.strip_prefix('{'))
        .filter_map(|l| {
            let (labels, value) = l.split_once("} ")?;
            Some((labels.to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

/// Kills process `pid` if it is still running after `deadline`, so that a test blocked
/// reading its output sees the end of it and fails, instead of hanging. Dropping the
/// watchdog calls it off.
pub struct Watchdog {
    cancel: Option<std::sync::mpsc::Sender<()>>,
}

pub fn watchdog(pid: u32, deadline: std::time::Duration, what: &'static str) -> Watchdog {
    let (cancel, cancelled) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = cancelled.recv_timeout(deadline) {
            eprintln!("waited {deadline:?} for {what}: killing process {pid}");
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    });
    Watchdog {
        cancel: Some(cancel),
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        if let Some(cancel) = self.cancel.take() {
            let _ = cancel.send(());
        }
    }
}

/// Every row of the marketflow tables of a SQLite store, as sorted text: for comparing two
/// stores byte for byte.
pub fn sqlite_dump(db: &Path) -> Vec<String> {
    let conn =
        rusqlite::Connection::open(db).unwrap_or_else(|e| panic!("opening {}: {e}", db.display()));
    let mut rows = Vec::new();
    for table in marketflow::store::Table::ALL {
        let name = table.name();
        let mut statement = conn.prepare(&format!("SELECT * FROM {name}")).unwrap();
        let width = statement.column_count();
        let found = statement
            .query_map([], |r| {
                let cells: Vec<String> = (0..width)
                    .map(|i| format!("{:?}", r.get_ref(i).unwrap()))
                    .collect();
                Ok(format!("{name} {}", cells.join("|")))
            })
            .unwrap();
        rows.extend(found.map(Result::unwrap));
    }
    rows.sort();
    rows
}
