//! WebSocket endpoints (tokio-tungstenite over the hyper upgrade).
//!
//! `/ws` speaks a small protocol: `{"action":"subscribe","streams":["bars:1m:AAPL"]}`,
//! `unsubscribe`, `ping`. `/ws/prices/{symbol}` and `/ws/analytics/{symbol}` are the seed's
//! endpoints: subscribed at connect, with the seed's greeting.
//!
//! tungstenite reads every client frame and writes every control message; the records
//! themselves are frames the hub encoded once for all clients, written to the socket as
//! they are (after tungstenite's own buffer is flushed, so frames never interleave).

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, UPGRADE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use marketflow_operators::{Interval, Record, Symbol};
use serde::Deserialize;
use std::io::IoSlice;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::api::ApiError;
use super::{Access, Body, ServerState};
use crate::hub::{Chunk, Client, Format, StreamKey, StreamKind};
use crate::metrics::metrics;
use crate::spec::server::Scope;
use std::net::IpAddr;

/// Subscriptions one client may hold.
const MAX_SUBSCRIPTIONS: usize = 256;
/// Largest message a client may send.
const MAX_MESSAGE: usize = 64 * 1024;
/// Initial read buffer of a connection.
const READ_BUFFER: usize = 4 * 1024;
/// Time a client connected without a key has to send `{"action":"auth","key":...}`.
const AUTH_WAIT: Duration = Duration::from_secs(10);
/// Commands refused in a row over the command rate before the connection is closed.
const MAX_REFUSED: u32 = 100;

/// Which endpoint the client connected to.
pub enum Mode {
    /// `/ws`: subscriptions by message.
    Streams,
    /// `/ws/prices/{symbol}`: the symbol's ticks.
    Prices(Symbol),
    /// `/ws/analytics/{symbol}?interval=`: its indicator rows (every interval if none).
    Analytics(Symbol, Option<Interval>),
}

impl Mode {
    /// The stream subscribed at connect, with the seed's topic name.
    fn initial(&self) -> Option<(StreamKey, &'static str)> {
        match self {
            Mode::Streams => None,
            Mode::Prices(symbol) => Some((
                StreamKey {
                    kind: StreamKind::Ticks,
                    symbol: symbol.clone(),
                    interval: None,
                },
                "market.prices.raw",
            )),
            Mode::Analytics(symbol, interval) => Some((
                StreamKey {
                    kind: StreamKind::Indicators,
                    symbol: symbol.clone(),
                    interval: *interval,
                },
                "market.analytics",
            )),
        }
    }
}

/// Answers the upgrade request and runs the connection in a task of its own.
pub fn upgrade(
    state: Arc<ServerState>,
    mut req: Request<Incoming>,
    mode: Mode,
    access: Access,
) -> Result<Response<Body>, ApiError> {
    let headers = req.headers();
    let has = |name, token: &str| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .is_some_and(|v| {
                v.split(',')
                    .any(|part| part.trim().eq_ignore_ascii_case(token))
            })
    };
    let key = headers
        .get(SEC_WEBSOCKET_KEY)
        .map(|k| derive_accept_key(k.as_bytes()));
    let (Some(accept), true, true) = (key, has(UPGRADE, "websocket"), has(CONNECTION, "upgrade"))
    else {
        return Err(ApiError {
            status: StatusCode::UPGRADE_REQUIRED,
            code: "websocket_required",
            message: "this route speaks WebSocket: connect with a WebSocket client".into(),
        });
    };
    if headers
        .get("sec-websocket-version")
        .is_some_and(|v| v != "13")
    {
        return Err(ApiError::bad(
            "websocket_version",
            "only WebSocket version 13 is supported",
        ));
    }
    // The connection's place under the server's cap, held while the WebSocket lives.
    let slot = req
        .extensions_mut()
        .remove::<Arc<super::connections::Slot>>();
    let address = slot
        .as_ref()
        .map_or(IpAddr::from([0, 0, 0, 0]), |s| s.client());
    tokio::spawn(async move {
        let _slot = slot;
        match hyper::upgrade::on(&mut req).await {
            Ok(upgraded) => {
                // tungstenite zero-fills its whole read buffer on every read attempt: client
                // messages are small, so a small buffer (it grows when needed) keeps each
                // poll of a busy connection cheap.
                let config = WebSocketConfig::default()
                    .read_buffer_size(READ_BUFFER)
                    .max_message_size(Some(MAX_MESSAGE))
                    .max_frame_size(Some(MAX_MESSAGE));
                let ws = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(config),
                )
                .await;
                serve(state, ws, mode, access, address).await;
            }
            Err(e) => tracing::debug!(error = %e, "websocket upgrade failed"),
        }
    });
    let mut r = Response::new(Body::default());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(SEC_WEBSOCKET_ACCEPT, v);
    }
    Ok(r)
}

type Socket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// Writes every chunk with as few system calls as the socket allows. A socket that takes
/// nothing for `stall` is stalled (a slow reader that makes progress is not).
async fn write_chunks<W: AsyncWrite + Unpin>(
    socket: &mut W,
    chunks: &[Chunk],
    stall: Duration,
) -> std::io::Result<()> {
    let mut chunk = 0;
    let mut offset = 0;
    while chunk < chunks.len() {
        let slices: Vec<IoSlice<'_>> = std::iter::once(&chunks[chunk].frames[offset..])
            .chain(chunks[chunk + 1..].iter().map(|c| &c.frames[..]))
            .take(64)
            .map(IoSlice::new)
            .collect();
        let mut written = tokio::time::timeout(stall, socket.write_vectored(&slices))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while chunk < chunks.len() && written >= chunks[chunk].frames.len() - offset {
            written -= chunks[chunk].frames.len() - offset;
            chunk += 1;
            offset = 0;
        }
        offset += written;
    }
    socket.flush().await
}

/// Why reading from a client failed, as a disconnect reason (and so its close code).
fn read_error(e: &tokio_tungstenite::tungstenite::Error) -> &'static str {
    use tokio_tungstenite::tungstenite::Error;
    match e {
        Error::Capacity(_) => "too_big",
        Error::Utf8(_) => "bad_utf8",
        Error::Protocol(_) => "protocol_error",
        Error::ConnectionClosed | Error::AlreadyClosed => "closed",
        _ => "write_failed", // the connection itself failed: nothing can be sent
    }
}

/// A message from a client. `/ws` refuses keys it does not know; the predecessor's
/// endpoints ignore them, as it did (`{"action":"unsubscribe","symbol":"AAPL"}`).
#[derive(Deserialize)]
struct Command {
    action: String,
    #[serde(default)]
    streams: Vec<String>,
    /// Records of each stream to send first (default: the server's `snapshot`).
    snapshot: Option<usize>,
}

fn text(value: serde_json::Value) -> Message {
    Message::text(value.to_string())
}

fn error(code: &str, message: impl Into<String>) -> Message {
    text(serde_json::json!({"type": "error", "error": {"code": code, "message": message.into()}}))
}

struct Connection {
    state: Arc<ServerState>,
    client: Arc<Client>,
    subscriptions: Vec<StreamKey>,
    mode: Mode,
    commands: governor::DefaultDirectRateLimiter,
    /// Commands refused in a row by the command rate.
    refused: u32,
}

/// The first message of a client that connected without a key: `{"action":"auth",
/// "key":...}`, within [`AUTH_WAIT`]. `Err` is the reason to close.
async fn authenticate(
    state: &ServerState,
    ws: &mut Socket,
    address: IpAddr,
) -> Result<(), &'static str> {
    #[derive(Deserialize)]
    struct Auth {
        action: String,
        key: String,
    }
    let first = tokio::time::timeout(AUTH_WAIT, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(body))) => return Some(body),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                _ => return None,
            }
        }
    });
    let refusal = tokio::select! {
        first = first => match first {
            Ok(Some(body)) => match serde_json::from_str::<Auth>(body.as_str()) {
                Ok(auth) if auth.action == "auth" => {
                    match super::authorize(state, &auth.key, address, Scope::Stream) {
                        Ok(name) => {
                            let ok = text(serde_json::json!({"type": "auth", "status": "success", "name": &*name}));
                            return ws.send(ok).await.map_err(|_| "write_failed");
                        }
                        Err(refusal) => refusal.api_error(),
                    }
                }
                _ => super::security::Refusal::Unauthorized {
                    reason: "missing",
                    message: "the first message must be {\"action\":\"auth\",\"key\":\"...\"} (or connect with ?api_key= or an Authorization header)",
                }
                .api_error(),
            },
            Ok(None) => return Err("closed"),
            Err(_) => super::security::Refusal::Unauthorized {
                reason: "missing",
                message: "no {\"action\":\"auth\"} message in time",
            }
            .api_error(),
        },
        _ = state.stop.triggered() => return Err("shutdown"),
    };
    let _ = ws.send(error(refusal.code, refusal.message)).await;
    Err("unauthorized")
}

async fn serve(
    state: Arc<ServerState>,
    mut ws: Socket,
    mode: Mode,
    access: Access,
    address: IpAddr,
) {
    let client = state.hub.connect();
    let mut conn = Connection {
        state: state.clone(),
        client: client.clone(),
        subscriptions: Vec::new(),
        mode,
        commands: state.limits.ws_commands(),
        refused: 0,
    };
    let authenticated = match access {
        Access::Pending => authenticate(&state, &mut ws, address).await,
        Access::Open | Access::Key(_) => Ok(()),
    };
    let reason = match authenticated {
        Ok(()) => match conn.greet(&mut ws).await {
            Ok(()) => conn.run(&mut ws).await,
            Err(_) => "write_failed",
        },
        Err(reason) => reason,
    };
    state.hub.disconnect(&client);
    metrics().ws_disconnects.with_label_values(&[reason]).inc();
    let (code, why) = match reason {
        "too_slow" => (
            CloseCode::Policy,
            "too slow: records were dropped past the limit",
        ),
        "shutdown" => (CloseCode::Away, "server shutting down"),
        "timeout" => (CloseCode::Policy, "no answer to pings"),
        "unauthorized" => (CloseCode::Policy, "authentication failed"),
        "rate_limited" => (CloseCode::Policy, "too many commands"),
        "too_big" => (CloseCode::Size, "message too big"),
        "bad_utf8" => (CloseCode::Invalid, "text message is not UTF-8"),
        "protocol_error" => (CloseCode::Protocol, "WebSocket protocol error"),
        _ => (CloseCode::Normal, ""),
    };
    if reason == "closed" {
        // The client closed: tungstenite queued the answering Close frame; send it.
        let _ = tokio::time::timeout(Duration::from_secs(1), ws.flush()).await;
    } else if reason != "write_failed" {
        let close = Message::Close(Some(CloseFrame {
            code,
            reason: why.into(),
        }));
        // Then the client's Close, reading past what it sent meanwhile: closing a socket
        // with unread input resets it, and the client would lose our Close frame.
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            ws.send(close).await?;
            while let Some(Ok(_)) = ws.next().await {}
            Ok::<_, tokio_tungstenite::tungstenite::Error>(())
        })
        .await;
    }
}

impl Connection {
    /// The seed endpoints greet and subscribe at once.
    async fn greet(
        &mut self,
        ws: &mut Socket,
    ) -> Result<(), tokio_tungstenite::tungstenite::Error> {
        let Some((key, topic)) = self.mode.initial() else {
            return Ok(());
        };
        ws.send(text(serde_json::json!({
            "type": "subscription",
            "status": "success",
            "topic": topic,
            "symbol": key.symbol.as_str(),
            "stream": key.to_string(),
            "timestamp": marketflow_operators::time::format_timestamp(super::now_ms()),
        })))
        .await?;
        let snapshot = self.state.hub.config().snapshot;
        prime(&self.state, &key).await;
        self.state
            .hub
            .subscribe_as(&self.client, &key, snapshot, Format::Predecessor);
        self.subscriptions.push(key);
        Ok(())
    }

    /// Serves the client until it leaves, lags too far, stops answering or the server stops.
    async fn run(&mut self, ws: &mut Socket) -> &'static str {
        let interval = self.state.ping_interval;
        let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        // After a long write, one ping, not a burst of the missed ones.
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Pings sent since the client was last heard from.
        let mut unanswered = 0u32;
        loop {
            // Client frames before deliveries: under a stream that never pauses, pongs and
            // commands must still be read.
            tokio::select! {
                biased;
                _ = self.state.stop.triggered() => return "shutdown",
                message = ws.next() => {
                    unanswered = 0;
                    match message {
                        Some(Ok(Message::Text(body))) => {
                            let reply = match self.commands.check() {
                                Ok(()) => {
                                    self.refused = 0;
                                    self.command(body.as_str()).await
                                }
                                Err(_) => {
                                    self.refused += 1;
                                    if self.refused > MAX_REFUSED {
                                        return "rate_limited";
                                    }
                                    metrics().http_rate_limited.with_label_values(&["ws_commands"]).inc();
                                    error("rate_limited", "too many commands; slow down")
                                }
                            };
                            if ws.send(reply).await.is_err() {
                                return "write_failed";
                            }
                        }
                        Some(Ok(Message::Binary(_))) => {
                            if ws.send(error("bad_message", "send JSON text messages")).await.is_err() {
                                return "write_failed";
                            }
                        }
                        Some(Ok(Message::Close(_))) | None => return "closed",
                        Some(Ok(_)) => {} // ping (answered by tungstenite), pong
                        Some(Err(e)) => return read_error(&e),
                    }
                }
                _ = self.client.ready() => {
                    let pending = self.client.take();
                    if pending.kicked {
                        return "too_slow";
                    }
                    if let Err(reason) = self.deliver(ws, &pending.chunks, pending.dropped).await {
                        return reason;
                    }
                }
                _ = ping.tick() => {
                    if unanswered == 3 {
                        return "timeout";
                    }
                    unanswered += 1;
                    if ws.send(Message::Ping(Default::default())).await.is_err() {
                        return "write_failed";
                    }
                }
            }
        }
    }

    /// Writes queued frames, then tells the client how many records it lost, if any. A
    /// stalled write ends when the hub kicks the client or when the socket has taken nothing
    /// for three ping intervals.
    async fn deliver(
        &self,
        ws: &mut Socket,
        chunks: &[Chunk],
        dropped: u64,
    ) -> Result<(), &'static str> {
        let stall = self.state.ping_interval * 3;
        let write = async {
            ws.flush().await.map_err(|_| "write_failed")?;
            write_chunks(ws.get_mut(), chunks, stall)
                .await
                .map_err(|e| match e.kind() {
                    std::io::ErrorKind::TimedOut => "timeout",
                    _ => "write_failed",
                })?;
            if dropped > 0 {
                let lagged = text(serde_json::json!({"type": "lagged", "dropped": dropped}));
                ws.send(lagged).await.map_err(|_| "write_failed")?;
            }
            Ok(())
        };
        tokio::select! {
            result = write => result,
            _ = self.client.kicked() => Err("too_slow"),
        }
    }

    /// Handles one client message and returns the reply.
    async fn command(&mut self, body: &str) -> Message {
        let default = self.mode.initial().map(|(key, _)| key);
        let parsed = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(body)
            .and_then(|fields| {
                if fields.get("action").and_then(|a| a.as_str()) == Some("auth") {
                    // Already let in (by a key at connect, or a server without keys).
                    return serde_json::from_value::<Command>(
                        serde_json::json!({"action": "auth"}),
                    );
                }
                let unknown = fields
                    .keys()
                    .find(|k| !matches!(k.as_str(), "action" | "streams" | "snapshot"));
                match unknown {
                    Some(key) if default.is_none() => Err(serde::de::Error::custom(format!(
                        "unknown field `{key}`, expected `action`, `streams` or `snapshot`"
                    ))),
                    _ => serde_json::from_value::<Command>(serde_json::Value::Object(fields)),
                }
            });
        let command: Command = match parsed {
            Ok(c) => c,
            Err(e) => {
                return error(
                    "bad_message",
                    format!("expected {{\"action\":\"subscribe\",\"streams\":[...]}}: {e}"),
                )
            }
        };
        match command.action.as_str() {
            "ping" => text(serde_json::json!({"type": "pong"})),
            "auth" => text(serde_json::json!({"type": "auth", "status": "success"})),
            "subscribe" | "unsubscribe" => {
                let mut keys = Vec::new();
                for name in &command.streams {
                    match StreamKey::parse(name) {
                        Ok(key) => keys.push(key),
                        Err(e) => return error("bad_stream", e.to_string()),
                    }
                }
                if keys.is_empty() {
                    match &default {
                        Some(key) => keys.push(key.clone()),
                        None => {
                            return error(
                                "bad_message",
                                "`streams` lists no stream, e.g. [\"bars:1m:AAPL\"]",
                            )
                        }
                    }
                }
                if command.action == "subscribe" {
                    self.subscribe(keys, command.snapshot, default.is_some())
                        .await
                } else {
                    self.unsubscribe(keys, default.is_some())
                }
            }
            other => error(
                "unknown_action",
                format!("unknown action `{other}`: use `subscribe`, `unsubscribe` or `ping`"),
            ),
        }
    }

    async fn subscribe(
        &mut self,
        keys: Vec<StreamKey>,
        snapshot: Option<usize>,
        seed: bool,
    ) -> Message {
        let fresh = keys
            .iter()
            .filter(|k| !self.subscriptions.contains(k))
            .count();
        if self.subscriptions.len() + fresh > MAX_SUBSCRIPTIONS {
            return error(
                "too_many_streams",
                format!("a client may hold {MAX_SUBSCRIPTIONS} subscriptions"),
            );
        }
        if self.client.queued_bytes() >= crate::hub::MAX_QUEUED_BYTES {
            return error(
                "busy",
                "too much is queued for this connection: read what was sent, then subscribe again",
            );
        }
        let hub = &self.state.hub;
        let snapshot = snapshot
            .unwrap_or(hub.config().snapshot)
            .min(hub.config().snapshot);
        let names: Vec<String> = keys.iter().map(ToString::to_string).collect();
        for key in keys {
            if !self.subscriptions.contains(&key) {
                prime(&self.state, &key).await;
                let format = if seed {
                    Format::Predecessor
                } else {
                    Format::Native
                };
                hub.subscribe_as(&self.client, &key, snapshot, format);
                self.subscriptions.push(key);
            }
        }
        if seed {
            text(serde_json::json!({"type": "subscription", "status": "success", "streams": names}))
        } else {
            text(serde_json::json!({"type": "subscribed", "streams": names}))
        }
    }

    fn unsubscribe(&mut self, keys: Vec<StreamKey>, seed: bool) -> Message {
        let names: Vec<String> = keys.iter().map(ToString::to_string).collect();
        for key in &keys {
            self.state.hub.unsubscribe(&self.client, key);
            self.subscriptions.retain(|k| k != key);
        }
        if seed {
            text(
                serde_json::json!({"type": "subscription", "status": "unsubscribed", "streams": names}),
            )
        } else {
            text(serde_json::json!({"type": "unsubscribed", "streams": names}))
        }
    }
}

/// Intervals whose stored bars and indicators a subscription to every interval of a symbol
/// (`bars:*:AAPL`) is primed with, besides those the hub has seen.
const PRIMED_INTERVALS: [&str; 7] = ["1m", "5m", "15m", "30m", "1h", "4h", "1d"];

/// When the hub is fed apart from the store (`serve --live`), merges each exact stream's
/// newest stored records into it on its first subscription, so the snapshot covers what
/// the store has and the feed does not. A store that cannot be read leaves the stream
/// unprimed (the next subscription tries again).
async fn prime(state: &ServerState, key: &StreamKey) {
    if !state.prime_from_store {
        return;
    }
    let hub = &state.hub;
    let mut exact = hub.streams_covered(key);
    match key.interval {
        Some(_) => exact.push(key.clone()),
        None if key.kind != StreamKind::Ticks => {
            exact.extend(PRIMED_INTERVALS.iter().filter_map(|i| {
                Some(StreamKey {
                    interval: Some(Interval::parse(i).ok()?),
                    ..key.clone()
                })
            }));
        }
        None => exact.push(key.clone()),
    }
    exact.sort();
    exact.dedup();
    // One subscription primes at a time: two reading the store at once would merge the
    // later read's records into a stream the first's subscriber already follows, marked
    // seen, so that it would never get them.
    let _one_at_a_time = state.priming.lock().await;
    let Ok(store) = state.store.get().await else {
        return;
    };
    let limit = hub.config().snapshot;
    for stream in exact.into_iter().filter(|k| hub.needs_priming(k)) {
        let read = tokio::time::timeout(Duration::from_secs(5), stored(store, &stream, limit));
        match read.await {
            Ok(Ok(records)) => hub.prime(&stream, records),
            Ok(Err(e)) => {
                tracing::warn!(stream = %stream, error = %e, "reading the snapshot from the store")
            }
            Err(_) => tracing::warn!(stream = %stream, "the store took over 5s for a snapshot"),
        }
    }
}

/// The newest `limit` stored records of one exact stream, oldest first.
async fn stored(
    store: &crate::store::Store,
    key: &StreamKey,
    limit: usize,
) -> Result<Vec<Record>, crate::store::StoreError> {
    use crate::store::{BarQuery, IndicatorQuery};
    let symbol = key.symbol.clone();
    Ok(match (key.kind, key.interval) {
        (StreamKind::Ticks, _) => store
            .latest_ticks(&symbol, limit)
            .await?
            .into_iter()
            .map(Record::Tick)
            .collect(),
        (StreamKind::Bars, Some(interval)) => store
            .bars(&BarQuery {
                symbol,
                interval,
                start: None,
                end: None,
                limit,
            })
            .await?
            .into_iter()
            .map(Record::Bar)
            .collect(),
        (StreamKind::Indicators, Some(interval)) => store
            .indicators(&IndicatorQuery {
                symbol,
                interval,
                indicator: None,
                start: None,
                end: None,
                limit,
            })
            .await?
            .into_iter()
            .map(Record::Indicator)
            .collect(),
        (_, None) => Vec::new(),
    })
}
