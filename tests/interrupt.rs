//! A live pipeline stops cleanly on SIGINT/SIGTERM: sources stop, complete windows are
//! written, incomplete ones are dropped, and the exit status is 0.

mod support;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::*;

fn stops_cleanly_on(signal: &str) {
    let dir = scratch();
    write(
        dir.path(),
        "live.yaml",
        concat!(
            "pipeline: live\n",
            "sources:\n",
            "  ticks: {type: synthetic, symbols: [AAPL, MSFT], rate: 20, start: now-10m, pace: realtime, max_delay: 1s}\n",
            "operators:\n",
            "  bars_1m: {type: bars, from: ticks, interval: 1m}\n",
            "sinks:\n",
            "  out: {type: stdout, from: bars_1m}\n",
        ),
    );
    let mut child = marketflow()
        .current_dir(dir.path())
        .args(["run", "live.yaml"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let _watchdog = watchdog(
        child.id(),
        Duration::from_secs(120),
        "the pipeline's bars and exit",
    );
    // The ten minutes of history are caught up at once: wait for their bars on stdout.
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut bars = Vec::new();
    while bars.len() < 10 {
        let line = lines
            .next()
            .expect("the pipeline prints bars before it is stopped")
            .unwrap();
        bars.push(serde_json::from_str::<serde_json::Value>(&line).unwrap());
    }
    let stopped_at = chrono::Utc::now().timestamp_millis();
    let status = std::process::Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    for line in lines {
        bars.push(serde_json::from_str(&line.unwrap()).unwrap());
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the pipeline did not stop");
        std::thread::yield_now();
    };
    assert!(status.success(), "exit status {status}");
    // Only complete windows were written: none ends after the moment of the signal.
    for bar in &bars {
        let end = ms(bar["end"].as_str().unwrap());
        assert!(end <= stopped_at + 2_000, "bar {bar} ends after the stop");
    }
}

#[test]
fn sigint_drains_and_exits_zero() {
    stops_cleanly_on("-INT");
}

#[test]
fn sigterm_drains_and_exits_zero() {
    stops_cleanly_on("-TERM");
}
