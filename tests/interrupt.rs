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

/// `marketflow serve` over a store, with a client that pipelines requests and never reads
/// its answers (so the drain has a response it cannot finish), and stderr read line by line.
fn serve_with_a_stalled_client() -> (
    std::process::Child,
    std::net::TcpStream,
    std::sync::mpsc::Receiver<String>,
    tempfile::TempDir,
) {
    use std::io::Write as _;
    let dir = scratch();
    write(
        dir.path(),
        "ticks.csv",
        "ts,symbol,price,volume\n2025-01-10T14:30:00Z,AAPL,100,5\n",
    );
    write(
        dir.path(),
        "fill.yaml",
        "pipeline: fill\nsources:\n  t: {type: file, path: ticks.csv, format: csv}\n\
         sinks:\n  s: {type: sqlite, from: t, path: store.db}\n",
    );
    run_ok(dir.path(), &["run", "fill.yaml"]);
    let mut child = marketflow()
        .current_dir(dir.path())
        .args(["serve", "--store", "store.db", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let addr: std::net::SocketAddr = first
        .trim()
        .strip_prefix("serving on http://")
        .and_then(|a| a.trim_end_matches('/').parse().ok())
        .unwrap_or_else(|| panic!("expected the address, got {first:?}"));
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&addr.into()).unwrap();
    let mut stalled: std::net::TcpStream = socket.into();
    // More response bytes than the kernel's socket buffers can hold (they grow to a few MB on
    // loopback), so that a response stays in flight whatever the buffer tuning.
    let requests = "GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n".repeat(400);
    stalled.write_all(requests.as_bytes()).unwrap();
    // The first bytes of a response: the server is answering, and stays stuck writing the
    // rest (else a signal sent before it read the requests finds nothing to drain).
    stalled
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut first_bytes = [0u8; 64];
    std::io::Read::read_exact(&mut stalled, &mut first_bytes)
        .expect("waited 30s for the server to start answering the stalled client");
    (child, stalled, rx, dir)
}

fn signal(child: &std::process::Child, name: &str) {
    std::process::Command::new("kill")
        .args([name, &child.id().to_string()])
        .status()
        .unwrap();
}

/// Waits for a stderr line containing `what`.
fn wait_for_line(lines: &std::sync::mpsc::Receiver<String>, what: &str) {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let left = until.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(what) => return,
            Ok(_) => {}
            Err(_) => panic!("waited 30s for a log line with `{what}`"),
        }
    }
}

/// While the server drains after a first signal, a second exits at once with 130.
#[test]
fn a_second_signal_exits_at_once_while_draining() {
    let (child, _stalled, lines, _dir) = serve_with_a_stalled_client();
    signal(&child, "-INT");
    wait_for_line(&lines, "signal again to exit at once");
    signal(&child, "-INT");
    let status = wait_with_deadline(child, Duration::from_secs(3));
    assert_eq!(status.code(), Some(130));
}

/// One signal drains in a bounded time, even with a response the client never reads.
#[test]
fn one_signal_drains_within_a_bound() {
    let (child, _stalled, lines, _dir) = serve_with_a_stalled_client();
    signal(&child, "-TERM");
    wait_for_line(&lines, "signal again to exit at once");
    let status = wait_with_deadline(child, Duration::from_secs(15));
    assert!(status.success(), "{status}");
}
