//! Hostile clients against a running server, one test per class of the hardening issue.
//! Each attack runs against a `marketflow` process of its own, so that its memory is
//! measured alone, while a well-behaved client beside it keeps asking. Every test checks
//! the same three things: the server's resident memory stays within [`BOUND`] of where it
//! was before the attack, the process stays up, and the well-behaved client is answered
//! throughout (each of its requests within a deadline, every answer 200).

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::http::{client_frame, frame};
use support::*;

/// How much the server may grow while it is attacked.
const BOUND: u64 = 100 << 20;
/// How long one request of the well-behaved client may take before the test fails.
const REQUEST_DEADLINE: Duration = Duration::from_secs(20);

/// A `marketflow run` process whose finite pipeline has filled its store and hub; it keeps
/// serving until killed.
struct Target {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
    /// How the well-behaved client asks.
    bystander: Bystander,
    /// The server's log lines (also copied to this test's stderr).
    log: std::sync::mpsc::Receiver<String>,
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The well-behaved client: from which address, with which key, over TLS or not.
#[derive(Clone)]
struct Bystander {
    from: [u8; 4],
    key: Option<String>,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Bystander {
    fn plain() -> Bystander {
        Bystander {
            from: [127, 0, 0, 1],
            key: None,
            tls: None,
        }
    }

    fn get(&self, addr: SocketAddr, path: &str) -> (u16, String) {
        let key = self
            .key
            .as_ref()
            .map(|k| format!("X-API-Key: {k}\r\n"))
            .unwrap_or_default();
        let head = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{key}Connection: close\r\n\r\n");
        let Some(config) = &self.tls else {
            return request_from(self.from, addr, &head);
        };
        let tcp = connect_from(self.from, addr);
        let mut stream = support::tls::connect_over(tcp, config, REQUEST_DEADLINE)
            .unwrap_or_else(|e| panic!("a TLS handshake with {addr}: {e}"));
        let (status, _, body) = support::tls::request(&mut stream, &head);
        (status, body)
    }
}

/// Starts a pipeline of `ticks` synthetic ticks over four symbols into a SQLite store and
/// the live hub, with `server` keys added to its server block, and waits until it is done.
/// Requests from one address, or with one key, are not rate-limited unless `server` sets
/// `rate_limit` (the well-behaved client and most attacks share 127.0.0.1, and the client
/// with a key asks as fast as it can).
fn target(ticks: u64, server: &str) -> Target {
    target_in(scratch(), ticks, server, Bystander::plain())
}

fn target_in(dir: tempfile::TempDir, ticks: u64, server: &str, bystander: Bystander) -> Target {
    let unlimited =
        ", rate_limit: {per_address: {rate: 1000000000/s}, per_key: {rate: 1000000000/s}}";
    let server = if server.contains("rate_limit") {
        server.to_owned()
    } else {
        format!("{server}{unlimited}")
    };
    write(
        dir.path(),
        "p.yaml",
        &format!(
            "pipeline: target\n\
             sources:\n  ticks: {{type: synthetic, symbols: [AAPL, MSFT, NVDA, AMZN], count: {ticks}, rate: 10, start: 2024-01-02T14:30:00Z}}\n\
             operators:\n  bars_1m: {{type: bars, from: ticks, interval: 1m}}\n  \
             ta: {{type: indicators, from: bars_1m, indicators: [{{sma: {{period: 5}}}}]}}\n\
             sinks:\n  store: {{type: sqlite, from: [ticks, bars_1m, ta], path: store.db}}\n  \
             live: {{type: websocket, from: [ticks, bars_1m, ta]}}\n\
             server: {{listen: 127.0.0.1:0, store: store, snapshot: 100{server}}}\n"
        ),
    );
    let mut child = marketflow()
        .current_dir(dir.path())
        .args(["run", "p.yaml"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("marketflow starts");
    let (lines, log) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().expect("stderr piped");
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            eprintln!("{line}");
            let _ = lines.send(line);
        }
    });
    let pid = child.id();
    let stdout = child.stdout.take().expect("stdout piped");
    let guard = watchdog(pid, Duration::from_secs(120), "the server's address");
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
    drop(guard);
    let addr = line
        .trim()
        .strip_prefix("serving on http://")
        .or_else(|| line.trim().strip_prefix("serving on https://"))
        .and_then(|rest| rest.trim_end_matches('/').parse().ok())
        .unwrap_or_else(|| panic!("expected `serving on http://ADDR/`, got {line:?}"));
    let target = Target {
        child,
        addr,
        dir,
        bystander,
        log,
    };
    let until = Instant::now() + Duration::from_secs(120);
    let finished = || {
        let (_, body) = target.bystander.get(addr, "/health");
        serde_json::from_str::<serde_json::Value>(&body)
            .is_ok_and(|h| h["pipeline"]["status"] == "finished")
    };
    while !finished() {
        assert!(
            Instant::now() < until,
            "waited 120s for the pipeline to finish"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    target
}

/// A blocking HTTP/1.1 request on a fresh connection: (status, body).
fn connect_from(from: [u8; 4], addr: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::from((from, 0)).into()).unwrap();
    socket
        .connect_timeout(&addr.into(), REQUEST_DEADLINE)
        .unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
    socket.into()
}

fn request_from(from: [u8; 4], addr: SocketAddr, head: &str) -> (u16, String) {
    let mut stream = connect_from(from, addr);
    stream.set_read_timeout(Some(REQUEST_DEADLINE)).unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    let mut answer = Vec::new();
    if let Err(e) = stream.read_to_end(&mut answer) {
        panic!("no whole answer to {head:?} within {REQUEST_DEADLINE:?}: {e}");
    }
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer to {head:?}: {answer:?}"));
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body.to_owned())
}

fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    get_from([127, 0, 0, 1], addr, path)
}

fn get_from(from: [u8; 4], addr: SocketAddr, path: &str) -> (u16, String) {
    request_from(
        from,
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    )
}

/// Resident memory of a process, in bytes.
fn rss(pid: u32) -> u64 {
    proc_status(pid, "VmRSS:") * 1024
}

fn threads(pid: u32) -> u64 {
    proc_status(pid, "Threads:")
}

fn proc_status(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// What the server did while it was attacked.
struct Report {
    peak_threads: u64,
    served: u64,
}

/// Runs `attack` against `target` while a well-behaved client asks for `/health` and a
/// bar query from 127.0.0.1 in a loop and the server's memory is sampled; checks the three
/// promises and prints what it measured under `class`.
fn under_attack(class: &str, target: &mut Target, attack: impl FnOnce(SocketAddr)) -> Report {
    let pid = target.child.id();
    let addr = target.addr;
    let before = rss(pid);
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(before));
    let peak_threads = Arc::new(AtomicU64::new(threads(pid)));
    let sampler = {
        let (stop, peak, peak_threads) = (stop.clone(), peak.clone(), peak_threads.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                peak.fetch_max(rss(pid), Ordering::SeqCst);
                peak_threads.fetch_max(threads(pid), Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let client = target.bystander.clone();
    let bystander = {
        let (stop, failures, client) = (stop.clone(), failures.clone(), client.clone());
        std::thread::spawn(move || {
            let mut served = 0u64;
            while !stop.load(Ordering::SeqCst) {
                for path in [
                    "/health",
                    "/api/v3/intraday/prices/AAPL?interval=1m&limit=5",
                ] {
                    let (status, body) = client.get(addr, path);
                    if status == 200 {
                        served += 1;
                    } else {
                        failures
                            .lock()
                            .unwrap()
                            .push(format!("{path}: {status} {body}"));
                    }
                }
            }
            served
        })
    };
    attack(addr);
    // One more round of the well-behaved client after the attack, then stop.
    let (status, _) = client.get(addr, "/health");
    stop.store(true, Ordering::SeqCst);
    let served = bystander.join().expect("the well-behaved client");
    sampler.join().unwrap();
    assert_eq!(status, 200, "{class}: /health after the attack");
    assert!(
        target.child.try_wait().unwrap().is_none(),
        "{class}: the server exited"
    );
    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{class}: the well-behaved client was refused: {failures:?}"
    );
    assert!(
        served > 0,
        "{class}: the well-behaved client was not served"
    );
    let grown = peak.load(Ordering::SeqCst).saturating_sub(before);
    let report = Report {
        peak_threads: peak_threads.load(Ordering::SeqCst),
        served,
    };
    println!(
        "{class}: server grew by {:.1} MB at most (bound {} MB), {} threads at most; the well-behaved client got {} answers",
        grown as f64 / 1048576.0,
        BOUND >> 20,
        report.peak_threads,
        served
    );
    assert!(
        grown < BOUND,
        "{class}: the server grew by {} MB",
        grown >> 20
    );
    report
}

/// A WebSocket upgrade by hand on a blocking socket; returns it after the 101.
fn raw_websocket(addr: SocketAddr, path: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(REQUEST_DEADLINE)).unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).unwrap();
    let head = read_head(&mut stream);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    stream
}

fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// Reads server frames until one whose text contains `until`; counts those containing
/// `count`.
fn read_frames_until(stream: &mut TcpStream, until: &str, count: &str) -> usize {
    let mut buf = Vec::new();
    let mut counted = 0;
    loop {
        let mut chunk = vec![0u8; 64 * 1024];
        let n = stream
            .read(&mut chunk)
            .unwrap_or_else(|e| panic!("waiting for a frame with {until}: {e}"));
        assert!(n > 0, "the server closed before a frame with {until}");
        buf.extend_from_slice(&chunk[..n]);
        while let Some((_, payload, used)) = frame(&buf) {
            buf.drain(..used);
            let text = String::from_utf8_lossy(&payload);
            counted += usize::from(text.contains(count));
            if text.contains(until) {
                return counted;
            }
        }
    }
}

/// Class 1: pipelined subscribe/unsubscribe commands, each asking for a snapshot of 100
/// ticks, from a client that reads nothing until all are sent.
#[test]
fn class_1_a_websocket_command_storm() {
    // The snapshot limits, not the command rate (class 22), are under test here.
    let mut target = target(
        20_000,
        ", rate_limit: {ws_commands: {rate: 1000000000/s}, per_address: {rate: 1000000000/s}}",
    );
    under_attack("class 1 (command storm)", &mut target, |addr| {
        let mut storm = raw_websocket(addr, "/ws");
        let mut commands = Vec::new();
        for _ in 0..3_000 {
            commands.extend(client_frame(
                0x81,
                br#"{"action":"subscribe","streams":["ticks:AAPL"]}"#,
            ));
            commands.extend(client_frame(
                0x81,
                br#"{"action":"unsubscribe","streams":["ticks:AAPL"]}"#,
            ));
        }
        commands.extend(client_frame(0x81, br#"{"action":"ping"}"#));
        // Every command is in before the storm client reads a byte.
        storm.write_all(&commands).unwrap();
        let busy = read_frames_until(&mut storm, r#""type":"pong""#, r#""code":"busy""#);
        assert!(busy > 0, "no subscription was refused as busy");
        println!("class 1: {busy} of 3000 subscriptions refused as busy");
    });
}

/// Class 3: connections that send requests for large answers and never read them.
#[test]
fn class_3_clients_that_never_read() {
    let mut target = target(2_000, ", write_timeout: 1s");
    under_attack("class 3 (never-reading clients)", &mut target, |addr| {
        let mut stalled = Vec::new();
        for i in 0..200u32 {
            let socket =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            socket.set_recv_buffer_size(4096).unwrap();
            let from = [127, 0, 1, (i % 200) as u8 + 1];
            socket.bind(&SocketAddr::from((from, 0)).into()).unwrap();
            socket.connect(&addr.into()).unwrap();
            let mut stream: TcpStream = socket.into();
            let requests = "GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n".repeat(40);
            stream.write_all(requests.as_bytes()).unwrap();
            stalled.push(stream);
        }
        // The server gives up on each after write_timeout (it counts them); only then do
        // the clients read, and each gets less than the 40 answers.
        let timeouts = || {
            get(addr, "/metrics")
                .1
                .lines()
                .find_map(|l| l.strip_prefix("marketflow_http_write_timeouts_total "))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        let until = Instant::now() + Duration::from_secs(60);
        while timeouts() < 200 {
            assert!(
                Instant::now() < until,
                "waited 60s for 200 write timeouts ({} so far)",
                timeouts()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let answer = get(addr, "/openapi.json").1.len();
        for mut stream in stalled {
            stream.set_read_timeout(Some(REQUEST_DEADLINE)).unwrap();
            let mut total = 0usize;
            let mut chunk = vec![0u8; 64 * 1024];
            loop {
                match stream.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => total += n,
                }
                assert!(total < 40 * answer, "a stalled connection got every answer");
            }
        }
    });
}

/// Class 4: thousands of made-up HTTP methods; /metrics stays small.
#[test]
fn class_4_made_up_methods() {
    let mut target = target(2_000, "");
    let before = get(target.addr, "/metrics").1.len();
    under_attack("class 4 (made-up methods)", &mut target, |addr| {
        for i in 0..3_000 {
            let (status, _) = request_from(
                [127, 0, 0, 2],
                addr,
                &format!("M{i:05}X /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
            );
            assert!(status >= 400, "a made-up method was served: {status}");
        }
    });
    let after = get(target.addr, "/metrics").1.len();
    println!("class 4: /metrics {before} bytes before, {after} after");
    assert!(
        after < before + 10_000,
        "/metrics grew from {before} to {after} bytes"
    );
}

/// Class 5: hundreds of concurrent symbol lists and range reads over a store of two million
/// ticks; /health keeps answering, and threads stay capped.
#[test]
fn class_5_heavy_reads_on_a_large_store() {
    let mut target = target(2_000_000, "");
    assert_eq!(stored_ticks(&target), 2_000_000);
    let report = under_attack(
        "class 5 (concurrent reads, 2M ticks)",
        &mut target,
        |addr| {
            let started = Instant::now();
            let latencies = Arc::new(Mutex::new(Vec::new()));
            let readers: Vec<_> = (0..520u32)
                .map(|i| {
                    let latencies = latencies.clone();
                    std::thread::spawn(move || {
                        // Spread over client addresses, each under the per-client cap.
                        let from = [127, 0, 2, (i % 4) as u8 + 1];
                        let path = match i % 4 {
                            0 | 1 => "/api/v3/symbols".to_owned(),
                            2 => "/api/v3/realtime/prices/AAPL?limit=1000".to_owned(),
                            _ => "/api/v3/intraday/prices/MSFT?interval=1m&limit=1000".to_owned(),
                        };
                        let at = Instant::now();
                        let (status, body) = get_from(from, addr, &path);
                        assert_eq!(status, 200, "{path}: {body}");
                        latencies.lock().unwrap().push(at.elapsed());
                    })
                })
                .collect();
            for reader in readers {
                reader.join().expect("a reader");
            }
            let mut latencies = latencies.lock().unwrap().clone();
            latencies.sort();
            println!(
                "class 5: 520 concurrent reads answered in {:.2?}: median {:.1?}, max {:.1?}",
                started.elapsed(),
                latencies[latencies.len() / 2],
                latencies[latencies.len() - 1]
            );
        },
    );
    // 2 server workers, 16 blocking threads at most, the engine's finished threads, and a
    // few of the runtime's own: nothing near one per request.
    assert!(
        report.peak_threads < 64,
        "{} threads for 520 requests",
        report.peak_threads
    );
    assert!(report.served > 0);
}

fn stored_ticks(target: &Target) -> i64 {
    let db = target.dir.path().join("store.db");
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row("SELECT count(*) FROM realtime_prices", [], |r| r.get(0))
        .unwrap()
}

/// Readers that ask for symbol lists and large ranges in a loop, `count` at once from a
/// few client addresses, until the server is gone; returns how many answers they got.
fn readers_until_gone(
    addr: SocketAddr,
    count: u32,
) -> (Arc<AtomicU64>, Vec<std::thread::JoinHandle<()>>) {
    let answered = Arc::new(AtomicU64::new(0));
    let threads = (0..count)
        .map(|i| {
            let answered = answered.clone();
            std::thread::spawn(move || {
                let from = [127, 0, 4, (i % 4) as u8 + 1];
                let path = if i % 2 == 0 {
                    "/api/v3/symbols"
                } else {
                    "/api/v3/realtime/prices/AAPL?limit=1000"
                };
                let head =
                    format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
                loop {
                    let socket =
                        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                            .unwrap();
                    socket.bind(&SocketAddr::from((from, 0)).into()).unwrap();
                    if socket
                        .connect_timeout(&addr.into(), REQUEST_DEADLINE)
                        .is_err()
                    {
                        return; // the server has exited
                    }
                    let mut stream: TcpStream = socket.into();
                    let _ = stream.set_read_timeout(Some(REQUEST_DEADLINE));
                    let mut answer = Vec::new();
                    if stream.write_all(head.as_bytes()).is_err()
                        || stream.read_to_end(&mut answer).is_err()
                        || answer.is_empty()
                    {
                        continue;
                    }
                    answered.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    (answered, threads)
}

fn wait_for_log(target: &Target, what: &str) {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let left = until.saturating_duration_since(Instant::now());
        match target.log.recv_timeout(left) {
            Ok(line) if line.contains(what) => return,
            Ok(_) => {}
            Err(_) => panic!("waited 30s for a log line with `{what}`"),
        }
    }
}

/// Class 2: signals while 300 reads of a store of two million ticks are in flight. A
/// second signal exits at once with 130; one signal drains and exits 0 within a bound.
#[test]
fn class_2_signals_under_read_load() {
    for signals in [2, 1] {
        let mut target = target(2_000_000, "");
        let pid = target.child.id().to_string();
        let (answered, readers) = readers_until_gone(target.addr, 300);
        let until = Instant::now() + Duration::from_secs(60);
        while answered.load(Ordering::SeqCst) < 300 {
            assert!(
                Instant::now() < until,
                "waited 60s for 300 answers under load"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let kill = |signal: &str| {
            std::process::Command::new("kill")
                .args([signal, &pid])
                .status()
                .unwrap()
        };
        kill("-INT");
        wait_for_log(&target, "signal again to exit at once");
        let at = Instant::now();
        if signals == 2 {
            kill("-INT");
        }
        let deadline = if signals == 2 {
            Duration::from_secs(3)
        } else {
            Duration::from_secs(15)
        };
        let status = loop {
            if let Some(status) = target.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                at.elapsed() < deadline,
                "{signals} signal(s): still running after {deadline:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        println!(
            "class 2: {signals} signal(s) under 300 concurrent reads ({} answered): exit {:?} {:.0?} after the last signal",
            answered.load(Ordering::SeqCst),
            status.code(),
            at.elapsed()
        );
        assert_eq!(status.code(), Some(if signals == 2 { 130 } else { 0 }));
        for reader in readers {
            reader.join().unwrap();
        }
    }
}

/// Class 13: WebSocket upgrades and reads from a foreign origin and requests without a
/// proper Host, over and over.
#[test]
fn class_13_foreign_origins_and_bad_hosts() {
    let mut target = target(2_000, "");
    under_attack("class 13 (origins and hosts)", &mut target, |addr| {
        for i in 0..1_000 {
            if i % 2 == 0 {
                let mut stream = TcpStream::connect(addr).unwrap();
                stream.set_read_timeout(Some(REQUEST_DEADLINE)).unwrap();
                let upgrade = format!(
                    "GET /ws HTTP/1.1\r\nHost: {addr}\r\nOrigin: https://evil.example\r\nUpgrade: websocket\r\n\
                     Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
                );
                stream.write_all(upgrade.as_bytes()).unwrap();
                let head = read_head(&mut stream);
                assert!(head.starts_with("HTTP/1.1 403"), "{head}");
            } else {
                let head = format!(
                    "GET /health HTTP/1.1\r\nHost: {addr}\r\nHost: other:1\r\nConnection: close\r\n\r\n"
                );
                let (status, _) = request_from([127, 0, 0, 2], addr, &head);
                assert_eq!(status, 400, "{head:?}");
            }
        }
    });
}

/// Class 14: WebSocket clients sending oversized frames, bad UTF-8 and bad opcodes; each
/// gets its close code.
#[test]
fn class_14_websocket_protocol_errors() {
    let mut target = target(2_000, "");
    under_attack(
        "class 14 (WebSocket protocol errors)",
        &mut target,
        |addr| {
            for i in 0..300 {
                let mut ws = raw_websocket(addr, "/ws");
                let (bytes, code) = match i % 4 {
                    0 => (client_frame(0x81, &vec![b'x'; 100 * 1024]), 1009),
                    1 => (client_frame(0x81, &[0xff, 0xfe, 0xfd]), 1007),
                    2 => (client_frame(0x83, b"?"), 1002),
                    _ => {
                        // A header that claims a 1 GiB message, and a few bytes of it.
                        let mut header = vec![0x81, 0x80 | 127];
                        header.extend_from_slice(&(1u64 << 30).to_be_bytes());
                        header.extend_from_slice(&[1, 2, 3, 4, b'x', b'y']);
                        (header, 1009)
                    }
                };
                let _ = ws.write_all(&bytes);
                let mut buf = Vec::new();
                let got = loop {
                    if let Some((opcode, payload, used)) = frame(&buf) {
                        buf.drain(..used);
                        if opcode == 8 && payload.len() >= 2 {
                            break Some(u16::from_be_bytes([payload[0], payload[1]]));
                        }
                        continue;
                    }
                    let mut chunk = [0u8; 4096];
                    match ws.read(&mut chunk) {
                        Ok(0) | Err(_) => break None,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                };
                assert_eq!(got, Some(code), "attack {i}");
            }
        },
    );
}

/// Class 15: more idle connections than the caps, from one address and from many.
#[test]
fn class_15_connection_floods() {
    // Ten hostile addresses can hold 1,000 places at most: the rest stay for others.
    let mut target = target(
        2_000,
        ", max_connections: 2000, max_connections_per_client: 100",
    );
    under_attack("class 15 (connection flood)", &mut target, |addr| {
        let mut held = Vec::new();
        let mut refused = 0;
        for i in 0..3_000u32 {
            let from = [127, 0, 3, (i % 10) as u8 + 1];
            let socket =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            socket.bind(&SocketAddr::from((from, 0)).into()).unwrap();
            if socket.connect(&addr.into()).is_err() {
                refused += 1;
                continue;
            }
            held.push(TcpStream::from(socket));
        }
        // Past the caps the server answers 503 and closes, or only closes while many
        // refusals are being written already (src/server/connections.rs): a read on those
        // sees the answer or the end. A read that times out is a connection still held (or
        // still in the kernel's accept queue).
        let (mut answered_503, mut closed) = (0, 0);
        for stream in held.iter_mut().rev().take(200) {
            stream
                .set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            let mut buf = [0u8; 12];
            match stream.read(&mut buf) {
                Ok(12) if &buf[9..12] == b"503" => answered_503 += 1,
                Ok(0) => closed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => closed += 1,
                _ => {}
            }
        }
        println!(
            "class 15: {} connections made, {refused} refused by the kernel; of the last 200, {answered_503} answered 503 and {closed} closed without an answer",
            held.len()
        );
        assert!(
            answered_503 + closed > 0,
            "no connection past the caps was refused"
        );
    });
}

/// Class 18: requests hyper cannot parse, over and over; each gets the JSON error shape.
#[test]
fn class_18_unparsable_requests() {
    let mut target = target(2_000, "");
    under_attack("class 18 (unparsable requests)", &mut target, |addr| {
        let long = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(70_000));
        for i in 0..600 {
            let head = match i % 3 {
                0 => "GARBAGE\r\n\r\n".to_owned(),
                1 => long.clone(),
                _ => "GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n".to_owned(),
            };
            let (status, body) = request_from([127, 0, 0, 2], addr, &head);
            assert!(status == 400 || status == 414, "{status}");
            let json: serde_json::Value = serde_json::from_str(&body)
                .unwrap_or_else(|e| panic!("{status}: not JSON ({e}): {body}"));
            assert!(json["error"]["code"].is_string(), "{body}");
        }
    });
}

/// The metric `name{labels}`'s value in a `/metrics` text.
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Class 19: 10,000 wrong API keys from one address. After its failed-attempt bucket
/// (20, then 10 a minute) the address is answered 429 without its keys being checked;
/// other addresses are served.
#[test]
fn class_19_ten_thousand_wrong_keys() {
    const GOOD: &str = "good-key-0123456789abcdef";
    let bystander = Bystander {
        from: [127, 0, 0, 2],
        key: Some(GOOD.into()),
        tls: None,
    };
    let mut target = target_in(
        scratch(),
        2_000,
        &format!(", auth: {{keys: [{{name: good, key: {GOOD}, scopes: [read, admin]}}]}}"),
        bystander,
    );
    let started = Instant::now();
    let (mut unauthorized, mut limited) = (0u32, 0u32);
    under_attack("class 19 (wrong keys)", &mut target, |addr| {
        for i in 0..10_000 {
            let head = format!(
                "GET /api/v3/symbols HTTP/1.1\r\nHost: {addr}\r\nX-API-Key: guess-{i:016}\r\nConnection: close\r\n\r\n"
            );
            match request_from([127, 0, 0, 1], addr, &head) {
                (401, _) => unauthorized += 1,
                (429, body) => {
                    assert!(body.contains("failed authentication"), "{body}");
                    limited += 1
                }
                (status, body) => panic!("a wrong key got {status}: {body}"),
            }
        }
    });
    let seconds = started.elapsed().as_secs_f64();
    // 20 at once, then one every 6 s.
    let allowed = 20.0 + seconds / 6.0 + 2.0;
    println!(
        "class 19: {unauthorized} answered 401 and {limited} 429 in {seconds:.1} s (at most {allowed:.0} keys may be checked)"
    );
    assert!(
        f64::from(unauthorized) <= allowed,
        "{unauthorized} keys checked"
    );
    let (_, metrics) = target.bystander.get(target.addr, "/metrics");
    assert!(
        metric(
            &metrics,
            "marketflow_http_rate_limited_total{limit=\"failed_auth\"}"
        ) >= f64::from(limited)
    );
}

/// A server with TLS and a bystander that speaks it.
fn tls_target(server: &str) -> Target {
    let dir = scratch();
    let pair = support::tls::certificate();
    support::tls::install(dir.path(), &pair);
    let bystander = Bystander {
        from: [127, 0, 0, 2],
        key: None,
        tls: Some(support::tls::client_config(&[&pair.0])),
    };
    target_in(
        dir,
        2_000,
        &format!(", tls: {{cert: cert.pem, key: key.pem}}{server}"),
        bystander,
    )
}

/// Class 20: a flood of TLS handshakes (completed and dropped, half-sent and held) and
/// garbage where a ClientHello should be.
#[test]
fn class_20_tls_handshake_floods_and_garbage() {
    let mut target = tls_target("");
    let config = target.bystander.tls.clone().expect("TLS");
    under_attack("class 20 (TLS handshakes)", &mut target, |addr| {
        let mut rng = Lcg(20);
        // Half a ClientHello each, held open meanwhile.
        let mut held = Vec::new();
        for i in 0..200u32 {
            let mut s = connect_from([127, 0, 6, (i % 50) as u8 + 1], addr);
            s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).unwrap();
            held.push(s);
        }
        let mut garbage_closed = 0;
        for i in 0..1_000u32 {
            let mut s = connect_from([127, 0, 7, (i % 50) as u8 + 1], addr);
            s.set_read_timeout(Some(REQUEST_DEADLINE)).unwrap();
            let bytes: Vec<u8> = (0..512).map(|_| rng.next() as u8).collect();
            let _ = s.write_all(&bytes);
            let mut sink = Vec::new();
            match s.read_to_end(&mut sink) {
                Ok(_) => garbage_closed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => garbage_closed += 1,
                Err(e) => panic!("a garbage ClientHello was not closed: {e}"),
            }
        }
        let mut handshakes = 0;
        for i in 0..1_000u32 {
            let tcp = connect_from([127, 0, 8, (i % 50) as u8 + 1], addr);
            support::tls::connect_over(tcp, &config, REQUEST_DEADLINE)
                .unwrap_or_else(|e| panic!("handshake {i}: {e}"));
            handshakes += 1;
        }
        println!("class 20: {garbage_closed} garbage ClientHellos closed, {handshakes} handshakes completed and dropped, 200 half-sent held");
        assert_eq!(garbage_closed, 1_000);
        drop(held);
    });
    let (_, metrics) = target.bystander.get(target.addr, "/metrics");
    let failed = metric(
        &metrics,
        "marketflow_tls_handshake_failures_total{reason=\"error\"}",
    );
    assert!(failed >= 1_000.0, "{failed} handshake failures counted");
}

/// Class 21: slowloris over TLS: handshakes done, then a request head one byte a second.
/// The head's time limit (10 s) closes each.
#[test]
fn class_21_slowloris_over_tls() {
    let mut target = tls_target("");
    let config = target.bystander.tls.clone().expect("TLS");
    under_attack("class 21 (slowloris over TLS)", &mut target, |addr| {
        let mut slow: Vec<_> = (0..100u32)
            .map(|i| {
                let tcp = connect_from([127, 0, 9, (i % 50) as u8 + 1], addr);
                let mut s = support::tls::connect_over(tcp, &config, REQUEST_DEADLINE)
                    .expect("a TLS handshake");
                s.sock
                    .set_read_timeout(Some(Duration::from_millis(20)))
                    .unwrap();
                s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n").unwrap();
                s.flush().unwrap();
                Some(s)
            })
            .collect();
        let until = Instant::now() + Duration::from_secs(40);
        let started = Instant::now();
        while slow.iter().any(Option::is_some) {
            assert!(
                Instant::now() < until,
                "waited 40 s for the server to close {} slow clients",
                slow.iter().flatten().count()
            );
            for s in &mut slow {
                let Some(stream) = s else { continue };
                let mut buf = [0u8; 256];
                let closed = match stream.read(&mut buf) {
                    Ok(_) => true, // the end, or a 408
                    Err(e) => !matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ),
                } || stream
                    .write_all(b"X")
                    .and_then(|()| stream.flush())
                    .is_err();
                if closed {
                    *s = None;
                }
            }
            // The attack's pace: a byte per client about every second.
            std::thread::sleep(Duration::from_millis(1000));
        }
        println!(
            "class 21: 100 slow TLS clients closed after {:.1} s",
            started.elapsed().as_secs_f64()
        );
    });
}

/// Class 22: a WebSocket command storm at the default command rate: the commands past it
/// are answered `rate_limited`, then the connection is closed.
#[test]
fn class_22_websocket_commands_past_the_rate() {
    let mut target = target(2_000, "");
    under_attack("class 22 (command rate)", &mut target, |addr| {
        let mut storm = raw_websocket(addr, "/ws");
        let mut commands = Vec::new();
        for _ in 0..1_000 {
            commands.extend(client_frame(0x81, br#"{"action":"ping"}"#));
        }
        let _ = storm.write_all(&commands);
        let mut buf = Vec::new();
        let (mut pongs, mut limited, mut close) = (0, 0, None);
        while close.is_none() {
            if let Some((opcode, payload, used)) = frame(&buf) {
                buf.drain(..used);
                let text = String::from_utf8_lossy(&payload);
                pongs += usize::from(text.contains("pong"));
                limited += usize::from(text.contains("rate_limited"));
                if opcode == 8 && payload.len() >= 2 {
                    close = Some(u16::from_be_bytes([payload[0], payload[1]]));
                }
                continue;
            }
            let mut chunk = [0u8; 4096];
            match storm.read(&mut chunk) {
                Ok(0) => break,
                Err(e) => panic!("reading the storm's answers: {e}"),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        println!(
            "class 22: {pongs} pongs, {limited} refused as rate_limited, then close {close:?}"
        );
        assert!((50..1_000).contains(&pongs), "{pongs} pongs");
        assert!(limited >= 100, "{limited} refused");
        assert_eq!(close, Some(1008));
    });
}
