//! Offline fakes of the live feeds: a TwelveData WebSocket server and a Yahoo Finance
//! streamer, both replaying a scripted tape (prices, garbage, silences, dropped
//! connections, refused upgrades) to whoever connects and subscribes, and recording what
//! they sent and what clients sent them. Written from `../shared/docs/twelvedata.md` and
//! `yahoo.md`, independently of the client: the Yahoo fake encodes protobuf by hand.

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures_util::{FutureExt as _, SinkExt, StreamExt};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

/// Which protocol a fake speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    TwelveData,
    Yahoo,
}

/// One price on the tape.
#[derive(Debug, Clone, PartialEq)]
pub struct Price {
    pub symbol: String,
    /// Event time in ms (whole seconds for TwelveData, whose frames carry seconds).
    pub ts: i64,
    pub price: f64,
    pub day_volume: Option<i64>,
}

/// One step of a tape.
#[derive(Debug, Clone)]
pub enum Step {
    Price(Price),
    /// A text frame sent as it is (garbage, truncated JSON, a legacy frame).
    Text(String),
    Binary(Vec<u8>),
    /// Nothing at all for this long: no prices, no heartbeat answers.
    Silence(Duration),
    /// The TCP connection closes without a WebSocket close frame.
    Drop,
    /// A close frame with this code, then the end of the connection.
    Close(u16),
    /// The next upgrade is answered with this HTTP status (and no WebSocket).
    RefuseNext(u16),
    /// Waits until [`FakeFeed::open_gate`] is called (a benchmark's client is ready).
    Gate,
    /// Sends the last `n` prices again (a server's snapshot after a reconnect); they are
    /// not logged as sent a second time.
    Resend(usize),
}

/// How a fake answers upgrades.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upgrade {
    Accept,
    /// Every upgrade refused with HTTP 401 and a JSON error body.
    Unauthorized,
    /// Every upgrade answered with HTTP 200 and a JSON 401 error body (no WebSocket).
    OkWithError,
}

/// What the fake saw and did.
#[derive(Debug, Default, Clone)]
pub struct Log {
    /// Prices sent, in order.
    pub sent: Vec<Price>,
    /// When each price was sent (for latency measurements).
    pub sent_at: Vec<Instant>,
    /// Frames clients sent, with the connection's number.
    pub received: Vec<(usize, String)>,
    /// Request paths with queries of every upgrade attempt.
    pub upgrades: Vec<String>,
    /// Connections upgraded to WebSocket.
    pub connections: usize,
    /// The tape has been played to its end.
    pub finished: bool,
}

/// A fake feed server on 127.0.0.1.
pub struct FakeFeed {
    pub addr: SocketAddr,
    pub log: Arc<Mutex<Log>>,
    gate: Arc<std::sync::atomic::AtomicBool>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for FakeFeed {
    /// Stops at once, also when dropped inside another runtime (a benchmark's).
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

struct Shared {
    protocol: Protocol,
    tape: Mutex<VecDeque<Step>>,
    rejected: HashSet<String>,
    upgrade: Upgrade,
    refuse_next: Mutex<Option<u16>>,
    log: Arc<Mutex<Log>>,
    /// Prices per second when paced (`None`: as fast as the client reads).
    rate: Option<f64>,
    gate: Arc<std::sync::atomic::AtomicBool>,
}

impl FakeFeed {
    /// Starts a fake that plays `tape` to subscribers; `rejected` symbols are refused in
    /// TwelveData's subscribe-status.
    pub fn start(
        protocol: Protocol,
        tape: Vec<Step>,
        rejected: &[&str],
        upgrade: Upgrade,
        rate: Option<f64>,
    ) -> FakeFeed {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime for the fake feed");
        let log = Arc::new(Mutex::new(Log::default()));
        let gate = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let shared = Arc::new(Shared {
            protocol,
            tape: Mutex::new(tape.into()),
            rejected: rejected.iter().map(|s| s.to_string()).collect(),
            upgrade,
            refuse_next: Mutex::new(None),
            log: log.clone(),
            rate,
            gate: gate.clone(),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding the fake feed");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let listener = {
            let _entered = runtime.enter();
            TcpListener::from_std(listener).unwrap()
        };
        runtime.spawn(async move {
            let mut number = 0;
            while let Ok((stream, _)) = listener.accept().await {
                number += 1;
                tokio::spawn(serve(shared.clone(), stream, number));
            }
        });
        FakeFeed {
            addr,
            log,
            gate,
            runtime: Some(runtime),
        }
    }

    /// Lets the tape go on past its [`Step::Gate`].
    pub fn open_gate(&self) {
        self.gate.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// The URL a client connects to.
    pub fn url(&self) -> String {
        format!("ws://{}/v1/quotes/price", self.addr)
    }

    pub fn snapshot(&self) -> Log {
        self.log.lock().unwrap().clone()
    }

    /// Waits until `done` holds for the log; fails naming `what` after `deadline`.
    pub fn wait_for(&self, what: &str, deadline: Duration, done: impl Fn(&Log) -> bool) -> Log {
        let until = Instant::now() + deadline;
        loop {
            let log = self.snapshot();
            if done(&log) {
                return log;
            }
            assert!(
                Instant::now() < until,
                "waited {deadline:?} for the fake feed: {what}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

async fn serve(shared: Arc<Shared>, mut stream: tokio::net::TcpStream, number: usize) {
    let _ = stream.set_nodelay(true);
    let refuse = shared.refuse_next.lock().unwrap().take();
    let body = r#"{"code":401,"message":"apikey parameter is incorrect or not specified","status":"error"}"#;
    let refusal = match (refuse, shared.upgrade) {
        (Some(status), _) => Some((status, "try again later")),
        (None, Upgrade::Accept) => None,
        (None, Upgrade::Unauthorized) => Some((401, body)),
        (None, Upgrade::OkWithError) => Some((200, body)),
    };
    if let Some((status, body)) = refusal {
        refuse_upgrade(&shared, &mut stream, status, body).await;
        return;
    }
    let log = shared.log.clone();
    // The signature is the library's; the error variant is never built here.
    #[allow(clippy::result_large_err)]
    let callback =
        move |request: &Request, response: Response| -> Result<Response, ErrorResponse> {
            log.lock().unwrap().upgrades.push(request.uri().to_string());
            Ok(response)
        };
    let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
        return;
    };
    shared.log.lock().unwrap().connections += 1;
    let mut ws = ws;
    let mut subscribed = HashSet::<String>::new();
    // Play the tape once the client has subscribed.
    let until = Instant::now() + Duration::from_secs(5);
    while subscribed.is_empty() && Instant::now() < until {
        match tokio::time::timeout(Duration::from_millis(50), ws.next()).await {
            Ok(Some(Ok(message))) => {
                if !answer(&shared, &mut ws, number, message, &mut subscribed).await {
                    return;
                }
            }
            Ok(_) => return,
            Err(_) => {}
        }
    }
    let mut started = Instant::now();
    let mut played = 0u64;
    loop {
        // What the client sent meanwhile: subscriptions, heartbeats.
        while let Some(next) = ws.next().now_or_never() {
            match next {
                Some(Ok(message)) => {
                    if !answer(&shared, &mut ws, number, message, &mut subscribed).await {
                        return;
                    }
                }
                _ => return,
            }
        }
        let step = shared.tape.lock().unwrap().pop_front();
        let Some(step) = step else {
            shared.log.lock().unwrap().finished = true;
            // The tape is over: keep answering heartbeats until the client leaves.
            match ws.next().await {
                Some(Ok(message)) => {
                    if answer(&shared, &mut ws, number, message, &mut subscribed).await {
                        continue;
                    }
                    return;
                }
                _ => return,
            }
        };
        match step {
            Step::Price(price) => {
                if !subscribed.contains(&price.symbol) {
                    continue;
                }
                if let Some(rate) = shared.rate {
                    let due = started + Duration::from_secs_f64(played as f64 / rate);
                    tokio::time::sleep_until(due.into()).await;
                }
                played += 1;
                let frame = encode(shared.protocol, &price);
                if ws.send(frame).await.is_err() {
                    // Not sent: the next connection plays it.
                    shared.tape.lock().unwrap().push_front(Step::Price(price));
                    return;
                }
                let mut log = shared.log.lock().unwrap();
                log.sent.push(price);
                log.sent_at.push(Instant::now());
            }
            Step::Text(text) => {
                if ws.send(Message::text(text)).await.is_err() {
                    return;
                }
            }
            Step::Binary(data) => {
                if ws.send(Message::binary(data)).await.is_err() {
                    return;
                }
            }
            Step::Silence(d) => tokio::time::sleep(d).await,
            Step::Drop => {
                // FIN without a close frame; read until the client closes too, so that
                // unread data does not turn the close into a reset.
                let _ = ws.flush().await;
                let _ = ws.get_mut().shutdown().await;
                let _ = tokio::time::timeout(Duration::from_secs(2), async {
                    while let Some(Ok(_)) = ws.next().await {}
                })
                .await;
                return;
            }
            Step::Close(code) => {
                let frame = CloseFrame {
                    code: CloseCode::from(code),
                    reason: "bye".into(),
                };
                let _ = ws.send(Message::Close(Some(frame))).await;
                return;
            }
            Step::RefuseNext(status) => {
                *shared.refuse_next.lock().unwrap() = Some(status);
            }
            Step::Resend(n) => {
                let again: Vec<Price> = {
                    let log = shared.log.lock().unwrap();
                    log.sent[log.sent.len().saturating_sub(n)..].to_vec()
                };
                for price in again {
                    if ws.send(encode(shared.protocol, &price)).await.is_err() {
                        return;
                    }
                }
            }
            Step::Gate => {
                while !shared.gate.load(std::sync::atomic::Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                (started, played) = (Instant::now(), 0);
            }
        }
    }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// Reads the upgrade request and answers it with a plain HTTP response: no WebSocket.
async fn refuse_upgrade(
    shared: &Shared,
    stream: &mut tokio::net::TcpStream,
    status: u16,
    body: &str,
) {
    use tokio::io::AsyncReadExt as _;
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 65_536 {
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => request.extend_from_slice(&buf[..n]),
            _ => return,
        }
    }
    let text = String::from_utf8_lossy(&request);
    let target = text.split_whitespace().nth(1).unwrap_or("").to_owned();
    shared.log.lock().unwrap().upgrades.push(target);
    let reason = match status {
        200 => "OK",
        401 => "Unauthorized",
        _ => "Service Unavailable",
    };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Handles a client frame: records it, answers subscriptions (TwelveData's
/// subscribe-status) and heartbeats. False when the connection is gone.
async fn answer(
    shared: &Shared,
    ws: &mut Ws,
    number: usize,
    message: Message,
    subscribed: &mut HashSet<String>,
) -> bool {
    let Message::Text(text) = message else {
        return true;
    };
    let text = text.to_string();
    shared
        .log
        .lock()
        .unwrap()
        .received
        .push((number, text.clone()));
    let Ok(value) = serde_json::from_str::<serde_json::Value>(&text) else {
        return true;
    };
    let symbols = subscription(shared.protocol, &value);
    if !symbols.is_empty() {
        let (ok, fails): (Vec<_>, Vec<_>) = symbols
            .iter()
            .cloned()
            .partition(|s| !shared.rejected.contains(s));
        subscribed.extend(ok.iter().cloned());
        if shared.protocol == Protocol::TwelveData
            && ws
                .send(Message::text(subscribe_status(&ok, &fails)))
                .await
                .is_err()
        {
            return false;
        }
    }
    if value.get("action").and_then(|a| a.as_str()) == Some("heartbeat") {
        return ws
            .send(Message::text(r#"{"event":"heartbeat","status":"ok"}"#))
            .await
            .is_ok();
    }
    true
}

/// The symbols a client frame subscribes.
fn subscription(protocol: Protocol, value: &serde_json::Value) -> Vec<String> {
    match protocol {
        Protocol::TwelveData => {
            if value.get("action").and_then(|a| a.as_str()) != Some("subscribe") {
                return Vec::new();
            }
            match &value["params"]["symbols"] {
                serde_json::Value::String(list) => list
                    .split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect(),
                serde_json::Value::Array(items) => items
                    .iter()
                    .filter_map(|i| i.as_str().or_else(|| i["symbol"].as_str()))
                    .map(str::to_owned)
                    .collect(),
                _ => Vec::new(),
            }
        }
        Protocol::Yahoo => value["subscribe"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|i| i.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

fn subscribe_status(ok: &[String], fails: &[String]) -> String {
    let objects = |list: &[String]| -> serde_json::Value {
        list.iter()
            .map(|s| serde_json::json!({"symbol": s, "exchange": "NASDAQ", "mic_code": "XNGS", "type": "Common Stock"}))
            .collect()
    };
    serde_json::json!({
        "event": "subscribe-status",
        "status": if ok.is_empty() { "error" } else { "ok" },
        "success": if ok.is_empty() { serde_json::Value::Null } else { objects(ok) },
        "fails": if fails.is_empty() { serde_json::Value::Null } else { objects(fails) },
    })
    .to_string()
}

/// A price as the protocol frames it.
pub fn encode(protocol: Protocol, price: &Price) -> Message {
    match protocol {
        Protocol::TwelveData => {
            let mut frame = serde_json::json!({
                "event": "price",
                "symbol": price.symbol,
                "currency": "USD",
                "exchange": "NASDAQ",
                "mic_code": "XNGS",
                "type": "Common Stock",
                "timestamp": price.ts / 1000,
                "price": price.price,
            });
            if let Some(v) = price.day_volume {
                frame["day_volume"] = v.into();
            }
            Message::text(frame.to_string())
        }
        Protocol::Yahoo => {
            let message = base64::engine::general_purpose::STANDARD.encode(pricing_data(price));
            Message::text(format!(r#"{{"type":"pricing","message":"{message}"}}"#))
        }
    }
}

/// `PricingData` bytes, written tag by tag (yahoo.md §1.3): id, price (float32), time
/// (zigzag ms), exchange, quote_type, market_hours, day_volume (zigzag), price_hint.
pub fn pricing_data(price: &Price) -> Vec<u8> {
    let mut out = Vec::new();
    out.push(0x0a);
    varint(&mut out, price.symbol.len() as u64);
    out.extend_from_slice(price.symbol.as_bytes());
    out.push(0x15);
    out.extend_from_slice(&(price.price as f32).to_le_bytes());
    out.push(0x18);
    varint(&mut out, zigzag(price.ts));
    out.push(0x2a);
    varint(&mut out, 3);
    out.extend_from_slice(b"NMS");
    out.extend_from_slice(&[0x30, 8, 0x38, 1]);
    if let Some(v) = price.day_volume {
        out.push(0x48);
        varint(&mut out, zigzag(v));
    }
    out.extend_from_slice(&[0xd8, 0x01]);
    varint(&mut out, zigzag(2));
    out
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}
