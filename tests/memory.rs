//! Bounded memory in a burst: the demo pipeline (a day of synthetic history generated at
//! full speed, then live ticks) into its three sinks, and the same behind a sink ten times
//! slower than its SQLite store, stay within the memory budget: peak resident set at most
//! 200 MB, and at most 120 MB one minute after the start. RSS is sampled every 100 ms.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::http::{block_on, get, Serving};
use support::scratch;

const PEAK_BUDGET_MB: u64 = 200;
const SETTLED_BUDGET_MB: u64 = 120;
const RUN_FOR: Duration = Duration::from_secs(60);

/// The resident set of process `pid`, in MB.
fn rss_mb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024)
}

/// A metric's value summed over its label sets, from the server's `/metrics`.
fn metric(addr: SocketAddr, name: &str) -> f64 {
    let answer = block_on(get(addr, "/metrics"));
    assert_eq!(answer.status, 200, "GET /metrics");
    String::from_utf8_lossy(&answer.body)
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', '}', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

struct Profile {
    peak_mb: u64,
    peak_at: Duration,
    final_mb: u64,
}

/// Samples the resident set of `demo` every 100 ms for [`RUN_FOR`].
fn profile(demo: &Serving, label: &str) -> Profile {
    let pid = demo.child.id();
    let started = Instant::now();
    let mut profile = Profile {
        peak_mb: 0,
        peak_at: Duration::ZERO,
        final_mb: 0,
    };
    let mut next_report = Duration::from_secs(10);
    while started.elapsed() < RUN_FOR {
        std::thread::sleep(Duration::from_millis(100)); // the sampling period
        let rss = rss_mb(pid).unwrap_or_else(|| panic!("{label}: the demo exited early"));
        if rss > profile.peak_mb {
            profile.peak_mb = rss;
            profile.peak_at = started.elapsed();
        }
        profile.final_mb = rss;
        if started.elapsed() >= next_report {
            eprintln!("{label}: {:>2} s: {rss} MB", next_report.as_secs());
            next_report += Duration::from_secs(10);
        }
    }
    println!(
        "{label}: peak RSS {} MB at {:.1} s, RSS after {} s {} MB (budget {PEAK_BUDGET_MB} MB peak, {SETTLED_BUDGET_MB} MB after a minute)",
        profile.peak_mb,
        profile.peak_at.as_secs_f64(),
        RUN_FOR.as_secs(),
        profile.final_mb
    );
    profile
}

fn assert_within_budget(label: &str, profile: &Profile) {
    assert!(
        profile.peak_mb <= PEAK_BUDGET_MB,
        "{label}: peak RSS {} MB at {:.1} s is over {PEAK_BUDGET_MB} MB",
        profile.peak_mb,
        profile.peak_at.as_secs_f64()
    );
    assert!(
        profile.final_mb <= SETTLED_BUDGET_MB,
        "{label}: RSS {} MB after {} s is over {SETTLED_BUDGET_MB} MB",
        profile.final_mb,
        RUN_FOR.as_secs()
    );
}

#[test]
fn the_demo_stays_within_its_memory_budget() {
    let dir = scratch();
    let demo = Serving::start(dir.path(), &["run", "--listen", "127.0.0.1:0"]);
    let profile = profile(&demo, "demo");
    // The burst happened: the day of history (5 symbols x 5 ticks/s) went through.
    let ticks = metric(demo.addr, "marketflow_source_records_total");
    assert!(
        ticks > 2_000_000.0,
        "the demo generated only {ticks} ticks in a minute"
    );
    assert!(
        block_on(get(demo.addr, "/metrics"))
            .body
            .windows(29)
            .any(|w| w == b"marketflow_sink_queued_bytes{"),
        "/metrics exports marketflow_sink_queued_bytes per sink"
    );
    assert_within_budget("demo", &profile);
}

#[test]
fn the_demo_behind_a_sink_ten_times_slower_stays_within_its_memory_budget() {
    let dir = scratch();
    // The SQLite store takes some 300,000 records a second in the demo's burst: a fourth sink
    // that takes 30,000 holds the whole pipeline back to a tenth of that.
    let slow = "  slow: {type: null, from: [ticks, bars_1m, bars_5m, bars_1d, ta_1m, ta_5m, ta_1d, ta_ticks], rate: 30000}\n";
    let text = marketflow::DEMO_PIPELINE.replacen("server:\n", &format!("{slow}server:\n"), 1);
    assert!(
        text.contains("slow:"),
        "the demo pipeline has a `server:` section"
    );
    support::write(dir.path(), "slow.yaml", &text);
    let demo = Serving::start(dir.path(), &["run", "slow.yaml", "--listen", "127.0.0.1:0"]);
    let profile = profile(&demo, "demo behind a slow sink");
    let paused = metric(demo.addr, "marketflow_source_paused_seconds_total");
    let taken = metric(demo.addr, "marketflow_sink_records_total{sink=\"slow\"");
    eprintln!("sources paused {paused:.1} s; the slow sink took {taken} records");
    assert!(
        paused > 10.0,
        "the sources waited for the slow sink ({paused} s paused)"
    );
    assert!(taken > 0.0, "the slow sink took records");
    assert_within_budget("demo behind a slow sink", &profile);
}
