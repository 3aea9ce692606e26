//! The server on a network: API keys and scopes, TLS (https and wss, certificate rotation),
//! rate limits, CORS and the pages' security headers, with real clients: curl, Python's
//! `websockets`, and a rustls client.

mod support;

use std::io::BufRead as _;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::tls;
use support::*;
use tokio_tungstenite::tungstenite;

const READER: &str = "reader-key-0123456789abcdef";
const STREAMER: &str = "streamer-key-0123456789abcdef";
const OPS: &str = "ops-key-0123456789abcdef";
/// In the keys file, hashed.
const FILED: &str = "filed-key-0123456789abcdef";
/// Used only to wait for the store.
const PROBE: &str = "probe-key-0123456789abcdef";
const DEADLINE: Duration = Duration::from_secs(30);

struct Server {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sha256_hex(text: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// A live synthetic market (two symbols, wall-clock pace) into SQLite and the hub, served
/// with `server` added to its server block; keys from the environment and a keys file.
fn start(server: &str, args: &[&str]) -> Server {
    let dir = scratch();
    write(
        dir.path(),
        "keys.txt",
        &format!(
            "# name:scopes:sha256\nfiled:read,stream:{}\nprobe:read:{}\n",
            sha256_hex(FILED),
            sha256_hex(PROBE)
        ),
    );
    write(
        dir.path(),
        "p.yaml",
        &format!(
            "pipeline: secured\n\
             sources:\n  ticks: {{type: synthetic, symbols: [AAPL, MSFT], rate: 20, pace: realtime, start: now-2m}}\n\
             operators:\n  bars_1m: {{type: bars, from: ticks, interval: 1m}}\n\
             sinks:\n  store: {{type: sqlite, from: [ticks, bars_1m], path: store.db}}\n  \
             live: {{type: websocket, from: [ticks, bars_1m]}}\n\
             server:\n  listen: 127.0.0.1:0\n  store: store\n  auth:\n    keys_file: keys.txt\n    keys:\n      \
             - {{name: reader, key: \"${{READER_KEY}}\", scopes: [read]}}\n      \
             - {{name: streamer, key: \"${{STREAMER_KEY}}\", scopes: [read, stream]}}\n      \
             - {{name: ops, key: \"${{OPS_KEY}}\", scopes: [admin]}}\n{server}"
        ),
    );
    let (child, line) = spawn_serving(
        marketflow()
            .current_dir(dir.path())
            .args(["run", "p.yaml"])
            .args(args)
            .env("READER_KEY", READER)
            .env("STREAMER_KEY", STREAMER)
            .env("OPS_KEY", OPS),
        "the server's address",
    );
    let addr = line
        .trim()
        .strip_prefix("serving on https://")
        .or_else(|| line.trim().strip_prefix("serving on http://"))
        .and_then(|rest| rest.trim_end_matches('/').parse().ok())
        .unwrap_or_else(|| panic!("expected `serving on https://ADDR/`, got {line:?}"));
    Server { child, addr, dir }
}

/// Starts `cmd` (stdout piped) and reads the first line it prints: the server's address.
fn spawn_serving(cmd: &mut Command, what: &'static str) -> (Child, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .expect("marketflow starts");
    let guard = watchdog(child.id(), Duration::from_secs(60), what);
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout piped"))
        .read_line(&mut line)
        .expect("reading the server's address");
    drop(guard);
    (child, line)
}

fn tls_block(dir_hint: &str) -> String {
    format!("  tls: {{cert: {dir_hint}/cert.pem, key: {dir_hint}/key.pem}}\n")
}

/// A server with TLS whose certificate lives in its own directory (`certs`).
fn start_tls(certs: &Path, extra: &str) -> Server {
    start(&(tls_block(&certs.display().to_string()) + extra), &[])
}

/// curl over https trusting `ca`: (status, headers, body).
fn curl(ca: &Path, url: &str, headers: &[&str], method: &str) -> (u16, String, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-i", "--max-time", "20", "--cacert"])
        .arg(ca)
        .args(["-X", method]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    let out = cmd.arg(url).output().expect("curl runs");
    assert!(
        out.status.success(),
        "curl {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    tls::split_answer(&String::from_utf8_lossy(&out.stdout))
}

fn error_code(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"]["code"].as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("(not the JSON error shape: {body})"))
}

fn curl_present() -> bool {
    tool_present(
        Command::new("curl").arg("--version").output().is_ok(),
        "curl",
    )
}

#[test]
fn keys_scopes_cors_and_headers_with_curl_over_https() {
    if !curl_present() {
        return;
    }
    let certs = scratch();
    let pair = tls::certificate();
    tls::install(certs.path(), &pair);
    let server = start_tls(
        certs.path(),
        "  allowed_origins: [\"https://dash.example.com\"]\n",
    );
    let ca = certs.path().join("cert.pem");
    let base = format!("https://127.0.0.1:{}", server.addr.port());
    let url = |path: &str| format!("{base}{path}");
    let bearer = |k: &str| format!("Authorization: Bearer {k}");
    let x_key = |k: &str| format!("X-API-Key: {k}");
    // What each caller gets.
    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("/api/v3/symbols", String::new(), 401, "unauthorized"),
        (
            "/api/v3/symbols",
            bearer("wrong-key-0123456789"),
            401,
            "unauthorized",
        ),
        (
            "/api/v3/symbols",
            "Authorization: Basic abc".into(),
            401,
            "unauthorized",
        ),
        ("/api/v3/symbols", bearer(READER), 200, ""),
        ("/api/v2/realtime/symbols", x_key(READER), 200, ""),
        ("/api/v3/symbols", x_key(FILED), 200, ""),
        ("/api/v3/symbols", bearer(OPS), 403, "forbidden"),
        ("/metrics", bearer(READER), 403, "forbidden"),
        ("/metrics", bearer(OPS), 200, ""),
        ("/health/live", String::new(), 200, ""),
        ("/health/ready", String::new(), 200, ""),
    ];
    for (path, header, status, code) in &cases {
        let headers: Vec<&str> = [header.as_str()]
            .into_iter()
            .filter(|h| !h.is_empty())
            .collect();
        let (got, head, body) = curl(&ca, &url(path), &headers, "GET");
        let head = head.to_lowercase();
        println!(
            "GET {path} [{}] -> {got}",
            header.split(':').next().unwrap_or("")
        );
        // /health/ready may be 503 while the pipeline catches up; it is never 401.
        if *path == "/health/ready" {
            assert!(got == 200 || got == 503, "{path}: {got} {body}");
            continue;
        }
        assert_eq!(got, *status, "GET {path} with {header:?}: {body}");
        if !code.is_empty() {
            assert_eq!(error_code(&body), *code, "{path}");
        }
        if got == 401 {
            assert!(head.contains("www-authenticate: bearer"), "{head}");
        }
        assert!(head.contains("strict-transport-security"), "{head}");
        assert!(head.contains("x-content-type-options: nosniff"), "{head}");
    }
    // The key never reaches the log or the metrics.
    let (_, _, metrics) = curl(&ca, &url("/metrics"), &[&bearer(OPS)], "GET");
    assert!(!metrics.contains(READER) && !metrics.contains(OPS));
    assert!(
        metrics.contains("marketflow_http_auth_failures_total{reason=\"scope\"}"),
        "no auth failure counter"
    );
    // CORS: a preflight from an allowed origin, and one from another.
    let (status, head, _) = curl(
        &ca,
        &url("/api/v3/symbols"),
        &[
            "Origin: https://dash.example.com",
            "Access-Control-Request-Method: GET",
            "Access-Control-Request-Headers: authorization",
        ],
        "OPTIONS",
    );
    let head = head.to_lowercase();
    assert_eq!(status, 204, "{head}");
    assert!(head.contains("access-control-allow-origin: https://dash.example.com"));
    assert!(head.contains("access-control-allow-headers: authorization, x-api-key"));
    let (status, _, body) = curl(
        &ca,
        &url("/api/v3/symbols"),
        &["Origin: https://evil.example"],
        "OPTIONS",
    );
    assert_eq!(status, 403, "{body}");
    let (status, head, _) = curl(
        &ca,
        &url("/api/v3/symbols"),
        &["Origin: https://dash.example.com", &bearer(READER)],
        "GET",
    );
    assert_eq!(status, 200);
    assert!(head
        .to_lowercase()
        .contains("access-control-allow-origin: https://dash.example.com"));
    // The pages: a policy that allows their own inline code only.
    for page in ["/", "/docs"] {
        let (status, head, _) = curl(&ca, &url(page), &["Accept: text/html"], "GET");
        assert_eq!(status, 200, "{page} is open");
        let csp = head
            .lines()
            .find_map(|l| {
                l.to_lowercase()
                    .starts_with("content-security-policy: ")
                    .then(|| l["content-security-policy: ".len()..].to_owned())
            })
            .unwrap_or_else(|| panic!("{page} has no Content-Security-Policy: {head}"));
        assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'sha256-"));
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert!(
            head.to_lowercase().contains("x-frame-options: deny"),
            "{head}"
        );
        println!("{page}: content-security-policy: {csp}");
    }
    // Plain http to the https port is not served.
    let mut plain = TcpStream::connect(server.addr).unwrap();
    plain.set_read_timeout(Some(DEADLINE)).unwrap();
    let (status, _, _) = tls::request(
        &mut plain,
        &format!(
            "GET /health/live HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            server.addr
        ),
    );
    assert_ne!(status, 200, "plain http was answered on the TLS port");
    let _ = server.dir.path();
}

const WS_CLIENT: &str = r#"
import asyncio, json, ssl, sys
import websockets

base, ca, streamer, reader = sys.argv[1:5]
ctx = ssl.create_default_context(cafile=ca)

async def first_record(ws):
    await ws.send(json.dumps({"action": "subscribe", "streams": ["ticks:AAPL"]}))
    while True:
        m = json.loads(await asyncio.wait_for(ws.recv(), 30))
        if m.get("symbol") == "AAPL" and "price" in m:
            return m

async def main():
    # 1. The key in the query string.
    async with websockets.connect(f"{base}/ws?api_key={streamer}", ssl=ctx) as ws:
        m = await first_record(ws)
        print("query-key record", m["symbol"], flush=True)
    # 2. An Authorization header.
    async with websockets.connect(f"{base}/ws", ssl=ctx,
                                  additional_headers={"Authorization": f"Bearer {streamer}"}) as ws:
        m = await first_record(ws)
        print("header-key record", m["symbol"], flush=True)
    # 3. The first message.
    async with websockets.connect(f"{base}/ws", ssl=ctx) as ws:
        await ws.send(json.dumps({"action": "auth", "key": streamer}))
        ok = json.loads(await asyncio.wait_for(ws.recv(), 30))
        print("first-message", ok["type"], ok["status"], ok["name"], flush=True)
        m = await first_record(ws)
        print("first-message record", m["symbol"], flush=True)
    # 4. A wrong key in the first message: an error, then a policy close.
    async with websockets.connect(f"{base}/ws", ssl=ctx) as ws:
        await ws.send(json.dumps({"action": "auth", "key": "not-a-key-0123456789"}))
        err = json.loads(await asyncio.wait_for(ws.recv(), 30))
        print("wrong-key", err["error"]["code"], flush=True)
        try:
            await asyncio.wait_for(ws.recv(), 30)
        except websockets.ConnectionClosed as e:
            print("wrong-key closed", e.rcvd.code, flush=True)
    # 5. A key without the stream scope: 403 at the upgrade.
    try:
        async with websockets.connect(f"{base}/ws?api_key={reader}", ssl=ctx):
            print("read-only key connected", flush=True)
    except websockets.InvalidStatus as e:
        print("read-only key", e.response.status_code, flush=True)
    # 6. The seed endpoint with the key in its query string.
    async with websockets.connect(f"{base}/ws/prices/MSFT?api_key={streamer}", ssl=ctx) as ws:
        greeting = json.loads(await asyncio.wait_for(ws.recv(), 30))
        print("seed endpoint", greeting["type"], greeting["status"], flush=True)

asyncio.run(main())
"#;

fn python_websockets_present() -> bool {
    let present = Command::new("python3")
        .args(["-c", "import websockets"])
        .status()
        .is_ok_and(|s| s.success());
    tool_present(present, "python3 with the websockets package")
}

#[test]
fn websocket_clients_authenticate_over_wss_with_python() {
    if !python_websockets_present() {
        return;
    }
    let certs = scratch();
    tls::install(certs.path(), &tls::certificate());
    let server = start_tls(certs.path(), "");
    let script = write(server.dir.path(), "client.py", WS_CLIENT);
    let child = Command::new("python3")
        .arg(&script)
        .arg(format!("wss://127.0.0.1:{}", server.addr.port()))
        .arg(certs.path().join("cert.pem"))
        .args([STREAMER, READER])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let guard = watchdog(child.id(), Duration::from_secs(120), "the Python client");
    let out = child.wait_with_output().expect("the Python client ends");
    drop(guard);
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "the Python client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "query-key record AAPL",
        "header-key record AAPL",
        "first-message auth success streamer",
        "first-message record AAPL",
        "wrong-key unauthorized",
        "wrong-key closed 1008",
        "read-only key 403",
        "seed endpoint subscription success",
    ] {
        assert!(
            stdout.contains(expected),
            "missing `{expected}` in:\n{stdout}"
        );
    }
}

/// Reads WebSocket messages until one contains `needle`.
fn read_until(ws: &mut tungstenite::WebSocket<tls::TlsStream>, needle: &str, what: &str) -> String {
    let until = Instant::now() + DEADLINE;
    loop {
        assert!(Instant::now() < until, "waited {DEADLINE:?} for {what}");
        match ws.read() {
            Ok(tungstenite::Message::Text(t)) if t.contains(needle) => return t.to_string(),
            Ok(_) => {}
            Err(e) => panic!("reading {what}: {e}"),
        }
    }
}

#[test]
fn a_new_certificate_is_served_while_open_connections_carry_on() {
    let certs = scratch();
    let first = tls::certificate();
    let second = tls::certificate();
    tls::install(certs.path(), &first);
    let server = start_tls(certs.path(), "");
    let both = tls::client_config(&[&first.0, &second.0]);
    let pid = server.child.id();
    // A WebSocket open across the rotation.
    let stream = tls::connect(server.addr, &both, DEADLINE).expect("a TLS connection");
    assert_eq!(tls::peer_certificate(&stream), tls::der(&first.0));
    let url = format!(
        "wss://127.0.0.1:{}/ws?api_key={STREAMER}",
        server.addr.port()
    );
    let (mut ws, _) = tungstenite::client(url.as_str(), stream).expect("a WebSocket over TLS");
    ws.send(tungstenite::Message::text(
        r#"{"action":"subscribe","streams":["ticks:AAPL"]}"#,
    ))
    .unwrap();
    read_until(&mut ws, "\"AAPL\"", "a tick before the rotation");
    tls::install(certs.path(), &second);
    // SIGHUP reloads at once (a change of the files is also seen within seconds).
    let hup = Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let until = Instant::now() + DEADLINE;
    loop {
        let fresh = tls::connect(server.addr, &both, DEADLINE).expect("a TLS connection");
        if tls::peer_certificate(&fresh) == tls::der(&second.0) {
            break;
        }
        assert!(
            Instant::now() < until,
            "waited {DEADLINE:?} for new connections to get the new certificate"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("new connections get the new certificate");
    // The old connection still streams and answers.
    read_until(&mut ws, "\"AAPL\"", "a tick after the rotation");
    ws.send(tungstenite::Message::text(r#"{"action":"ping"}"#))
        .unwrap();
    read_until(&mut ws, "\"pong\"", "a pong after the rotation");
    assert_eq!(tls::peer_certificate(ws.get_ref()), tls::der(&first.0));
    println!("the connection opened before the rotation still streams");
    // Only the new certificate is trusted now: a client trusting it alone connects.
    let only_new = tls::client_config(&[&second.0]);
    tls::connect(server.addr, &only_new, DEADLINE).expect("a client of the new certificate");
    // A broken pair (a key that is not the certificate's) leaves the new one in place.
    let third = tls::certificate();
    std::fs::write(certs.path().join("cert.pem"), &third.0).unwrap();
    Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap();
    let metrics_seen = Instant::now() + DEADLINE;
    loop {
        let mut s = tls::connect(server.addr, &only_new, DEADLINE).expect("still served");
        let (_, _, body) = tls::request(
            &mut s,
            &format!(
                "GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {OPS}\r\nConnection: close\r\n\r\n"
            ),
        );
        if body.contains("marketflow_tls_reloads_total{outcome=\"error\"} 1") {
            break;
        }
        assert!(
            Instant::now() < metrics_seen,
            "waited {DEADLINE:?} for the failed reload to be counted"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        tls::peer_certificate(&tls::connect(server.addr, &only_new, DEADLINE).unwrap()),
        tls::der(&second.0)
    );
    // A new pair written in place, without a signal: seen by the watcher.
    let fourth = tls::certificate();
    tls::install(certs.path(), &fourth);
    let newest = tls::client_config(&[&second.0, &fourth.0]);
    let until = Instant::now() + DEADLINE;
    while tls::peer_certificate(&tls::connect(server.addr, &newest, DEADLINE).unwrap())
        != tls::der(&fourth.0)
    {
        assert!(
            Instant::now() < until,
            "waited {DEADLINE:?} for a changed file to be served"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("a certificate changed on disk is served without a signal");
}

/// A plain request from the address `from`: (status, head, body).
fn get_from(from: [u8; 4], addr: SocketAddr, path: &str, key: &str) -> (u16, String, String) {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::from((from, 0)).into()).unwrap();
    socket.connect_timeout(&addr.into(), DEADLINE).unwrap();
    let mut stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    tls::request(
        &mut stream,
        &format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nX-API-Key: {key}\r\nConnection: close\r\n\r\n"
        ),
    )
}

#[test]
fn rate_limits_answer_429_with_retry_after() {
    let server = start(
        "  rate_limit:\n    per_key: {rate: 1/min, burst: 3}\n    per_address: {rate: 1/min, burst: 7}\n    failed_auth: {rate: 1/min, burst: 2}\n",
        &[],
    );
    let addr = server.addr;
    let path = "/api/v3/symbols";
    // The store is there once the pipeline's sink has made it (asked from an address and
    // with a key of its own, not to spend the buckets under test).
    let until = Instant::now() + DEADLINE;
    while get_from([127, 0, 0, 9], addr, path, PROBE).0 != 200 {
        assert!(Instant::now() < until, "waited {DEADLINE:?} for the store");
        std::thread::sleep(Duration::from_millis(100));
    }
    let statuses: Vec<u16> = (0..4)
        .map(|_| get_from([127, 0, 0, 1], addr, path, READER).0)
        .collect();
    assert_eq!(statuses, [200, 200, 200, 429], "per key");
    let (_, head, body) = get_from([127, 0, 0, 1], addr, path, READER);
    assert_eq!(error_code(&body), "rate_limited");
    let retry: u64 = head
        .lines()
        .find_map(|l| {
            l.to_lowercase()
                .strip_prefix("retry-after: ")
                .map(str::to_owned)
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Retry-After: {head}"));
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    // Another key from the same address has its own bucket, until the address's runs out.
    let answers: Vec<(u16, String, String)> = (0..3)
        .map(|_| get_from([127, 0, 0, 1], addr, path, STREAMER))
        .collect();
    let other: Vec<u16> = answers.iter().map(|a| a.0).collect();
    assert_eq!(other, [200, 200, 429], "per address (7 requests)");
    assert!(answers[2].2.contains("address"), "{}", answers[2].2);
    // The address's bucket counts every request, preflights and unknown routes too.
    for head in [
        "OPTIONS /api/v3/symbols HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "GET /no/such/route HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    ] {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        assert_eq!(tls::request(&mut s, head).0, 429, "{head}");
    }
    assert_eq!(get_from([127, 0, 0, 2], addr, path, STREAMER).0, 200);
    // Wrong keys: two tries, then the address is locked out, even with a good key.
    let wrong: Vec<u16> = (0..3)
        .map(|_| get_from([127, 0, 0, 3], addr, path, "wrong-key-0123456789").0)
        .collect();
    assert_eq!(wrong, [401, 401, 429], "failed authentication");
    assert_eq!(get_from([127, 0, 0, 3], addr, path, FILED).0, 429);
    assert_eq!(get_from([127, 0, 0, 4], addr, path, FILED).0, 200);
    // Probes are never limited.
    assert_eq!(get_from([127, 0, 0, 1], addr, "/health/live", "").0, 200);
    println!(
        "per key {statuses:?}, per address {other:?}, failed auth {wrong:?}, Retry-After {retry}"
    );
}

#[test]
fn a_server_beyond_loopback_needs_keys_or_insecure() {
    let dir = scratch();
    write(
        dir.path(),
        "p.yaml",
        "pipeline: open\n\
         sources:\n  ticks: {type: synthetic, symbols: [AAPL], count: 10}\n\
         sinks:\n  out: {type: file, from: [ticks], path: out.jsonl}\n\
         server: {listen: 0.0.0.0:0}\n",
    );
    let out = run_in(dir.path(), &["run", "p.yaml"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "served 0.0.0.0 without keys");
    assert!(
        stderr.contains("refusing to serve 0.0.0.0:0 without `server.auth`")
            && stderr.contains("--insecure"),
        "{stderr}"
    );
    println!("{}", stderr.trim());
    let (mut child, line) = spawn_serving(
        marketflow()
            .current_dir(dir.path())
            .args(["run", "p.yaml", "--insecure"]),
        "the --insecure server",
    );
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        line.starts_with("serving on http://0.0.0.0:"),
        "--insecure: {line:?}"
    );
    // `serve` likewise.
    let out = run_in(
        dir.path(),
        &["serve", "--store", "store.db", "--listen", "0.0.0.0:0"],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--insecure"));
}

#[test]
fn a_bad_auth_block_is_a_positioned_error() {
    let dir = scratch();
    write(
        dir.path(),
        "p.yaml",
        "pipeline: bad\n\
         sources:\n  ticks: {type: synthetic, symbols: [AAPL], count: 10}\n\
         sinks:\n  out: {type: file, from: [ticks], path: out.jsonl}\n\
         server:\n  auth:\n    keys:\n      - {name: a, key: \"${SHORT_KEY}\", scopes: [raed]}\n",
    );
    let out = marketflow()
        .current_dir(dir.path())
        .args(["validate", "p.yaml"])
        .env("SHORT_KEY", "x")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("p.yaml:9:"), "{stderr}");
    assert!(stderr.contains("read"), "no suggestion: {stderr}");
    assert!(!stderr.contains("${SHORT_KEY}") || !stderr.contains(": x\n"));
    println!("{stderr}");
}

#[test]
fn serve_takes_a_keys_file_and_a_certificate() {
    if !curl_present() {
        return;
    }
    let dir = scratch();
    tls::install(dir.path(), &tls::certificate());
    write(
        dir.path(),
        "keys.txt",
        &format!("filed:read:{}\n", sha256_hex(FILED)),
    );
    // A store made by a pipeline, then served apart from it.
    write(
        dir.path(),
        "p.yaml",
        "pipeline: fill\nsources:\n  t: {type: synthetic, symbols: [AAPL], count: 100}\nsinks:\n  store: {type: sqlite, from: [t], path: store.db}\n",
    );
    run_ok(dir.path(), &["run", "p.yaml"]);
    let (mut child, line) = spawn_serving(
        marketflow()
            .current_dir(dir.path())
            .args(["serve", "--store", "store.db", "--listen", "127.0.0.1:0"])
            .args([
                "--keys-file",
                "keys.txt",
                "--tls-cert",
                "cert.pem",
                "--tls-key",
                "key.pem",
            ]),
        "`serve`'s address",
    );
    let port = line
        .trim()
        .strip_prefix("serving on https://127.0.0.1:")
        .and_then(|p| p.trim_end_matches('/').parse::<u16>().ok())
        .unwrap_or_else(|| panic!("expected `serving on https://...`, got {line:?}"));
    let url = format!("https://127.0.0.1:{port}/api/v3/symbols");
    let ca = dir.path().join("cert.pem");
    let (without, _, _) = curl(&ca, &url, &[], "GET");
    let (with, _, body) = curl(&ca, &url, &[&format!("X-API-Key: {FILED}")], "GET");
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!((without, with), (401, 200), "{body}");
    assert!(body.contains("AAPL"), "{body}");
}
