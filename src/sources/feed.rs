//! What the live WebSocket feeds (`twelvedata`, `yahoo`) share: the connection loop
//! (subscribe on every connection, keep-alive, a watchdog on silence, reconnects with
//! capped exponential backoff and jitter, a stop on refused credentials), per-trade volume
//! from cumulative day volume, and a watermark that follows the wall clock while the feed
//! is quiet. A feed type only says how to speak its protocol ([`Protocol`]).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chrono::TimeZone as _;
use futures_util::{SinkExt as _, StreamExt as _};
use marketflow_operators::{Symbol, Tick};
use schemars::JsonSchema;
use serde::de::{self, Deserializer};
use serde::Deserialize;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::config::de::Spanned;
use crate::config::diagnostic::Diagnostic;
use crate::config::values::Parsed;
use crate::connector::{report_watermark, Backoff, SourceContext, SourceEvent, Stamper, TaskError};
use crate::dead_letter::Rejected;
use crate::metrics::metrics;
use crate::status::FeedPhase;

/// First wait before reconnecting; doubled after each failed attempt.
const BACKOFF_FIRST: Duration = Duration::from_millis(250);
/// The longest wait between attempts.
const BACKOFF_CAP: Duration = Duration::from_secs(30);
/// A connection that stayed up this long resets the backoff.
const HEALTHY: Duration = Duration::from_secs(10);
/// How long connecting (TCP, TLS, upgrade) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a quiet feed's watermark is moved on.
const IDLE_CHECK: Duration = Duration::from_millis(100);
/// The largest frame or message accepted from a server.
const MAX_FRAME: usize = 1 << 20;

/// Symbols to stream: a list, or one string split on commas (`${STREAM_SYMBOLS}`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SymbolList(Vec<String>);

impl SymbolList {
    /// The symbols, trimmed, without empty entries or repeats, in the order written.
    pub fn symbols(&self) -> Vec<String> {
        let mut seen = HashSet::new();
        self.0
            .iter()
            .flat_map(|s| s.split(','))
            .map(str::trim)
            .filter(|s| !s.is_empty() && seen.insert(s.to_owned()))
            .map(str::to_owned)
            .collect()
    }

    /// Symbols marketflow cannot carry (too long, with a space, a comma or a quote).
    pub fn invalid(&self) -> Vec<String> {
        self.symbols()
            .into_iter()
            .filter(|s| Symbol::new(s).is_err())
            .collect()
    }
}

impl From<Vec<String>> for SymbolList {
    fn from(symbols: Vec<String>) -> SymbolList {
        SymbolList(symbols)
    }
}

impl JsonSchema for SymbolList {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Symbols".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]})
    }
}

impl<'de> Deserialize<'de> for SymbolList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> de::Visitor<'de> for Visit {
            type Value = SymbolList;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of symbols, or symbols separated by commas")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SymbolList, E> {
                Ok(SymbolList(vec![v.to_owned()]))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<SymbolList, E> {
                Ok(SymbolList(vec![v.to_string()]))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<SymbolList, E> {
                Ok(SymbolList(vec![v.to_string()]))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<SymbolList, A::Error> {
                let mut list = Vec::new();
                while let Some(item) = seq.next_element::<String>()? {
                    list.push(item);
                }
                Ok(SymbolList(list))
            }
        }
        deserializer.deserialize_any(Visit)
    }
}

pub fn default_max_delay() -> crate::config::values::Duration {
    crate::config::values::Duration(2_000)
}

pub fn default_idle_timeout() -> crate::config::values::Duration {
    crate::config::values::Duration(5_000)
}

pub fn default_timezone() -> Parsed<chrono_tz::Tz> {
    Parsed {
        value: chrono_tz::America::New_York,
        pos: Default::default(),
    }
}

/// Checks every feed makes: some symbols, each one marketflow can carry, a WebSocket URL.
pub fn check(path: &str, symbols: &Spanned<SymbolList>, url: &str) -> Vec<Diagnostic> {
    let mut problems = check_symbols(path, symbols);
    if !(url.starts_with("ws://") || url.starts_with("wss://")) {
        problems.push(Diagnostic::new(
            symbols.pos,
            format!("{path}.url"),
            "the URL must start with `wss://` (or `ws://`)",
        ));
    }
    problems
}

/// Some symbols, each one marketflow can carry.
pub fn check_symbols(path: &str, symbols: &Spanned<SymbolList>) -> Vec<Diagnostic> {
    let mut problems = Vec::new();
    if symbols.symbols().is_empty() {
        problems.push(
            Diagnostic::new(
                symbols.pos,
                format!("{path}.symbols"),
                "list at least one symbol",
            )
            .help("e.g. `symbols: [AAPL, MSFT]` or `symbols: ${STREAM_SYMBOLS}`"),
        );
    }
    for bad in symbols.invalid() {
        problems.push(Diagnostic::new(
            symbols.pos,
            format!("{path}.symbols"),
            format!("`{bad}` is not a symbol (at most 32 bytes, no spaces, quotes or commas)"),
        ));
    }
    problems
}

/// A number, or a string holding one (feeds are not consistent).
pub fn number(value: &serde_json::Value) -> Option<f64> {
    match value {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|n: &f64| n.is_finite())
}

/// An epoch time in ms from a feed's seconds or ms. Protocols say which (TwelveData
/// seconds, Yahoo ms), but no value below 10^11 is a date in ms after 1973 and none above it
/// a date in seconds before year 5138, so a feed that changes its unit is still read right.
pub fn epoch_ms(seconds_or_ms: f64) -> f64 {
    if seconds_or_ms.abs() < 1e11 {
        seconds_or_ms * 1000.0
    } else {
        seconds_or_ms
    }
}

/// A checked quote: a positive price, an event time inside years 1970 to 9999.
pub fn quote(
    symbol: &str,
    ts_ms: f64,
    price: f64,
    day_volume: Option<f64>,
) -> Result<Quote, String> {
    if !(ts_ms > 0.0 && ts_ms < 253_402_300_800_000.0) {
        return Err(format!("the event time {ts_ms} ms is out of range"));
    }
    let ts_ms = ts_ms.round();
    if !(price.is_finite() && price > 0.0) {
        return Err(format!("the price {price} is not a positive number"));
    }
    if day_volume.is_some_and(|v| !(v.is_finite() && v >= 0.0)) {
        return Err("the day volume is negative".into());
    }
    Ok(Quote {
        symbol: symbol.to_owned(),
        ts: ts_ms as i64,
        price,
        day_volume,
    })
}

/// Percent-encodes a query parameter's value.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One price from a feed, before it becomes a tick.
#[derive(Debug, Clone, PartialEq)]
pub struct Quote {
    pub symbol: String,
    /// Event time from the message, ms since the epoch.
    pub ts: i64,
    pub price: f64,
    /// The day's cumulative volume so far, when the feed gives it.
    pub day_volume: Option<f64>,
}

/// What a frame from the server was.
#[derive(Debug)]
pub enum Decoded {
    /// Prices (pushed to the output vector).
    Quotes,
    /// The server refused to stream these symbols.
    Rejected(Vec<String>),
    /// A heartbeat, a status, an event type to ignore.
    Other,
    /// Not a frame of the protocol: dead-lettered.
    Garbage(String),
    /// The server refused the credentials: the feed stops.
    Fatal(String),
}

/// How a feed speaks its protocol.
pub trait Protocol: Send + Sync + 'static {
    /// Where to connect; may carry a secret, so it is never logged.
    fn url(&self) -> String;
    /// The address as the logs show it.
    fn display_url(&self) -> String;
    /// Frames that subscribe `symbols` on a new connection.
    fn subscribe(&self, symbols: &[String]) -> Vec<String>;
    /// Frames sent every [`Protocol::keepalive_every`] (a heartbeat, a re-subscription).
    fn keepalive(&self, symbols: &[String]) -> Vec<String>;
    fn keepalive_every(&self) -> Duration;
    /// Decodes one text or binary frame; prices go to `out`.
    fn decode(&mut self, frame: &[u8], binary: bool, out: &mut Vec<Quote>) -> Decoded;
    /// Whether a refused upgrade (`status`, `body`) means bad credentials: the reason if so.
    fn auth_failure(&self, status: u16, body: &[u8]) -> Option<String>;
}

/// The settings every live feed has.
#[derive(Debug, Clone)]
pub struct FeedSettings {
    pub symbols: Vec<String>,
    pub max_delay_ms: i64,
    /// Quiet this long while connected, the watermark follows the wall clock.
    pub idle_timeout: Duration,
    /// A connection with no frame for this long is dead.
    pub silence_timeout: Duration,
    /// Where trading days of the cumulative day volume begin and end.
    pub timezone: chrono_tz::Tz,
}

/// The task of a feed: `protocol` spoken with `settings`.
pub fn task<P: Protocol>(
    protocol: P,
    settings: FeedSettings,
    ctx: SourceContext,
) -> crate::connector::Task {
    crate::connector::Task::Async(Box::pin(run(protocol, settings, ctx)))
}

/// Runs a feed until the run stops or the credentials are refused.
async fn run<P: Protocol>(
    protocol: P,
    settings: FeedSettings,
    ctx: SourceContext,
) -> Result<(), TaskError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Feed::new(protocol, settings, ctx).run().await
}

/// How a connection ended.
enum Ended {
    Shutdown,
    Lost(String),
    Refused(String),
}

struct Feed<P> {
    protocol: P,
    settings: FeedSettings,
    ctx: SourceContext,
    stamper: Stamper,
    volumes: DayVolumes,
    backoff: Backoff,
    /// Ticks sent so far: the partition's position.
    sent: u64,
    /// Symbols whose prices may still be the server's replay of what came before a
    /// (re)subscription: until a new one arrives.
    replay_due: HashSet<String>,
    /// Each symbol's latest event time and the prices seen at it.
    latest: HashMap<String, Latest>,
    replayed: prometheus::IntCounter,
    rejected: HashSet<String>,
    /// When the last price arrived (or the connection opened).
    last_price: Instant,
    last_status_update: Option<Instant>,
    quotes: Vec<Quote>,
    messages: prometheus::IntCounter,
    decode_errors: prometheus::IntCounter,
    records: prometheus::IntCounter,
}

impl<P: Protocol> Feed<P> {
    fn new(protocol: P, settings: FeedSettings, ctx: SourceContext) -> Feed<P> {
        let m = metrics();
        let name = [ctx.name.as_str()];
        // After a checkpoint it goes on from the cut: its numbers and watermark continue.
        let restart = ctx.restart.unwrap_or_default();
        Feed {
            stamper: match restart.stamper {
                Some(state) => Stamper::restored(settings.max_delay_ms, state),
                None => Stamper::for_partition(settings.max_delay_ms, ctx.partition),
            },
            volumes: DayVolumes::new(settings.timezone, &ctx.name),
            backoff: Backoff::new(BACKOFF_FIRST, BACKOFF_CAP, 0.5),
            sent: restart.position.unwrap_or(0),
            replay_due: HashSet::new(),
            latest: HashMap::new(),
            replayed: m.source_replayed.with_label_values(&name),
            rejected: HashSet::new(),
            last_price: Instant::now(),
            last_status_update: None,
            quotes: Vec::new(),
            messages: m.source_messages.with_label_values(&name),
            decode_errors: m.source_decode_errors.with_label_values(&name),
            records: m.source_records.with_label_values(&name),
            protocol,
            settings,
            ctx,
        }
    }

    async fn run(mut self) -> Result<(), TaskError> {
        let name = self.ctx.name.clone();
        loop {
            if self.ctx.shutdown.is_triggered() {
                return Ok(());
            }
            self.ctx.status.feed_phase(&name, FeedPhase::Connecting);
            let opened = Instant::now();
            let ended = match self.connect().await {
                Ok(ws) => self.session(ws).await?,
                Err(ended) => ended,
            };
            match ended {
                Ended::Shutdown => return Ok(()),
                Ended::Refused(reason) => {
                    self.ctx.status.feed_phase(&name, FeedPhase::Stopped);
                    tracing::error!(source = %name, url = %self.protocol.display_url(), %reason, "the server refused the credentials; not retrying");
                    return Err(anyhow::anyhow!("authentication failed: {reason}").into());
                }
                Ended::Lost(reason) => {
                    if opened.elapsed() >= HEALTHY {
                        self.backoff.reset();
                    }
                    let wait = self.backoff.wait();
                    tracing::warn!(source = %name, url = %self.protocol.display_url(), %reason, retry_in = ?wait, "connection lost; reconnecting");
                    metrics()
                        .source_reconnects
                        .with_label_values(&[&name])
                        .inc();
                    self.ctx.status.feed_phase(&name, FeedPhase::Connecting);
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = self.ctx.shutdown.triggered() => return Ok(()),
                    }
                }
            }
        }
    }

    /// Opens a connection; a refused upgrade says whether the credentials were at fault.
    async fn connect(&self) -> Result<Socket, Ended> {
        let mut config = tungstenite::protocol::WebSocketConfig::default();
        config.max_message_size = Some(MAX_FRAME);
        config.max_frame_size = Some(MAX_FRAME);
        let url = self.protocol.url();
        let attempt =
            tokio_tungstenite::connect_async_with_config(url.as_str(), Some(config), true);
        let result = tokio::select! {
            r = tokio::time::timeout(CONNECT_TIMEOUT, attempt) => r,
            _ = self.ctx.shutdown.triggered() => return Err(Ended::Shutdown),
        };
        match result {
            Err(_) => Err(Ended::Lost(format!(
                "no connection within {CONNECT_TIMEOUT:?}"
            ))),
            Ok(Ok((ws, _))) => Ok(ws),
            Ok(Err(tungstenite::Error::Http(response))) => {
                let status = response.status().as_u16();
                let body = response.body().as_deref().unwrap_or_default();
                match self.protocol.auth_failure(status, body) {
                    Some(reason) => Err(Ended::Refused(reason)),
                    None => Err(Ended::Lost(format!(
                        "the upgrade was answered with HTTP {status}"
                    ))),
                }
            }
            // Never the URL: it may carry the key.
            Ok(Err(e)) => Err(Ended::Lost(describe(&e))),
        }
    }

    /// Subscribes, then reads until the connection ends.
    async fn session(&mut self, ws: Socket) -> Result<Ended, TaskError> {
        let (mut write, mut read) = ws.split();
        for frame in self.protocol.subscribe(&self.settings.symbols) {
            if let Err(e) = write.send(Message::text(frame)).await {
                return Ok(Ended::Lost(format!("subscribing: {}", describe(&e))));
            }
        }
        let name = self.ctx.name.clone();
        tracing::info!(source = %name, url = %self.protocol.display_url(), symbols = self.settings.symbols.len(), "connected");
        self.ctx.status.feed_phase(&name, FeedPhase::Connected);
        self.replay_due = self.settings.symbols.iter().cloned().collect();
        self.last_price = Instant::now();
        let every = self.protocol.keepalive_every();
        let mut keepalive = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        let mut idle = tokio::time::interval(IDLE_CHECK);
        let silence = self.settings.silence_timeout;
        let mut last_frame = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = self.ctx.shutdown.triggered() => {
                    let _ = write.send(Message::Close(None)).await;
                    return Ok(Ended::Shutdown);
                }
                frame = tokio::time::timeout_at(last_frame + silence, read.next()) => {
                    let message = match frame {
                        Err(_) => return Ok(Ended::Lost(format!("no frame for {silence:?}"))),
                        Ok(None) => return Ok(Ended::Lost("the server closed the connection".into())),
                        Ok(Some(Err(e))) => return Ok(Ended::Lost(describe(&e))),
                        Ok(Some(Ok(message))) => message,
                    };
                    let (data, binary) = match &message {
                        Message::Text(text) => (text.as_bytes(), false),
                        Message::Binary(data) => (&data[..], true),
                        Message::Close(frame) => {
                            let why = frame.as_ref().map_or_else(|| "no status".to_owned(), |f| format!("{} {}", f.code, f.reason));
                            return Ok(Ended::Lost(format!("the server closed the connection ({why})")));
                        }
                        // Pings are answered by the library; neither proves the feed alive.
                        _ => continue,
                    };
                    last_frame = tokio::time::Instant::now();
                    if let Some(ended) = self.frame(data, binary).await? {
                        return Ok(ended);
                    }
                }
                _ = keepalive.tick() => {
                    for frame in self.protocol.keepalive(&self.settings.symbols) {
                        if let Err(e) = write.send(Message::text(frame)).await {
                            return Ok(Ended::Lost(format!("sending a keep-alive: {}", describe(&e))));
                        }
                    }
                    // A protocol ping too: a proxy may drop a connection that carries little.
                    let _ = write.send(Message::Ping(Default::default())).await;
                }
                _ = idle.tick() => self.idle().await?,
            }
        }
    }

    /// Handles one frame; `Some` when it ends the connection.
    async fn frame(&mut self, data: &[u8], binary: bool) -> Result<Option<Ended>, TaskError> {
        self.messages.inc();
        if self
            .last_status_update
            .is_none_or(|t| t.elapsed() >= Duration::from_millis(100))
        {
            self.last_status_update = Some(Instant::now());
            self.ctx.status.feed_message(&self.ctx.name, now_ms());
        }
        let mut quotes = std::mem::take(&mut self.quotes);
        quotes.clear();
        let decoded = self.protocol.decode(data, binary, &mut quotes);
        let result = match decoded {
            Decoded::Quotes => self.prices(&quotes).await.map(|()| None),
            Decoded::Rejected(symbols) => {
                self.report_rejected(symbols);
                Ok(None)
            }
            Decoded::Other => Ok(None),
            Decoded::Garbage(reason) => {
                self.decode_errors.inc();
                self.ctx.dead_letters.reject(
                    &self.ctx.name,
                    "malformed",
                    &reason,
                    Rejected::Frame { text: data },
                );
                Ok(None)
            }
            Decoded::Fatal(reason) => Ok(Some(Ended::Refused(reason))),
        };
        self.quotes = quotes;
        result
    }

    /// Turns prices into ticks and hands them to the worker.
    async fn prices(&mut self, quotes: &[Quote]) -> Result<(), TaskError> {
        let mut ticks = Vec::with_capacity(quotes.len());
        for quote in quotes {
            let Ok(symbol) = Symbol::new(&quote.symbol) else {
                self.decode_errors.inc();
                self.ctx.dead_letters.reject(
                    &self.ctx.name,
                    "malformed",
                    "the symbol is empty, too long or has a space, comma or quote",
                    Rejected::Frame {
                        text: quote.symbol.as_bytes(),
                    },
                );
                continue;
            };
            if self.latest.len() >= MAX_SYMBOLS && !self.latest.contains_key(&quote.symbol) {
                self.decode_errors.inc();
                self.ctx.dead_letters.reject(
                    &self.ctx.name,
                    "malformed",
                    "a price of one symbol too many: a feed keeps at most 100,000",
                    Rejected::Frame {
                        text: quote.symbol.as_bytes(),
                    },
                );
                continue;
            }
            if self.is_replay(quote) {
                self.replayed.inc();
                continue;
            }
            let volume = quote
                .day_volume
                .map_or(0.0, |day| self.volumes.volume(&quote.symbol, quote.ts, day));
            let mut tick = Tick {
                symbol,
                ts: quote.ts,
                price: quote.price,
                volume,
                seq: 0,
                wm: 0,
            };
            self.stamper.stamp_tick(&mut tick);
            ticks.push(tick);
        }
        self.last_price = Instant::now();
        if ticks.is_empty() {
            return Ok(());
        }
        self.sent += ticks.len() as u64;
        self.records.inc_by(ticks.len() as u64);
        self.ctx
            .out
            .send(SourceEvent::Ticks {
                records: ticks,
                position: self.sent,
            })
            .await?;
        report_watermark(&self.ctx.name, self.stamper.watermark());
        Ok(())
    }

    /// Whether a price is the server's replay of one already taken: right after a
    /// (re)subscription, servers may send the last price again (a snapshot) or the last few.
    /// Until a new price of the symbol arrives, one older than its latest, or equal to a
    /// price already seen at that latest time, is a replay.
    fn is_replay(&mut self, quote: &Quote) -> bool {
        // Looked up before inserting: no key allocated per tick on the hot path.
        if !self.latest.contains_key(&quote.symbol) {
            self.latest.insert(quote.symbol.clone(), Latest::default());
        }
        let Some(latest) = self.latest.get_mut(&quote.symbol) else {
            return false;
        };
        if self.replay_due.contains(&quote.symbol) {
            let replay = quote.ts < latest.ts
                || (quote.ts == latest.ts && latest.seen.iter().any(|q| same(q, quote)));
            if replay {
                return true;
            }
            self.replay_due.remove(&quote.symbol);
        }
        if quote.ts > latest.ts {
            latest.ts = quote.ts;
            latest.seen.clear();
        }
        if quote.ts == latest.ts && latest.seen.len() < MAX_SEEN_PER_TIME {
            latest.seen.push((quote.price, quote.day_volume));
        }
        false
    }

    /// Moves the watermark with the wall clock once no price came for `idle_timeout`, so
    /// the last windows close without a later tick (and a quiet symbol holds none back).
    async fn idle(&mut self) -> Result<(), TaskError> {
        let idle = self.settings.idle_timeout;
        // Before the first price nothing is open, and a replayed tape's first ticks would
        // find their windows closed.
        if self.sent == 0 || self.last_price.elapsed() < idle {
            return Ok(());
        }
        if self.stamper.advance(now_ms() - self.settings.max_delay_ms) {
            let watermark = self.stamper.watermark();
            self.ctx.out.send(SourceEvent::Watermark(watermark)).await?;
            report_watermark(&self.ctx.name, watermark);
        }
        Ok(())
    }

    fn report_rejected(&mut self, symbols: Vec<String>) {
        for symbol in symbols {
            if self.rejected.len() >= 10_000 || !self.rejected.insert(symbol.clone()) {
                continue;
            }
            tracing::warn!(source = %self.ctx.name, symbol = %symbol, "the server refused to stream this symbol; the others go on");
            metrics()
                .source_rejected_symbols
                .with_label_values(&[&self.ctx.name])
                .inc();
            self.ctx.status.feed_rejected(&self.ctx.name, &symbol);
        }
    }
}

/// Distinct symbols a feed tracks (per-symbol state is bounded by it, whatever a server sends).
const MAX_SYMBOLS: usize = 100_000;

/// Prices kept per symbol at its latest event time, to recognise a replay.
const MAX_SEEN_PER_TIME: usize = 256;

/// A symbol's latest event time and the (price, day volume) pairs seen at it.
#[derive(Default)]
struct Latest {
    ts: i64,
    seen: Vec<(f64, Option<f64>)>,
}

fn same(seen: &(f64, Option<f64>), quote: &Quote) -> bool {
    seen.0 == quote.price && seen.1 == quote.day_volume
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A connection error in words, without the URL (it may carry the key).
fn describe(e: &tungstenite::Error) -> String {
    match e {
        // The OS's words (refused, no route, name not found), which never hold the URL.
        tungstenite::Error::Io(io) => format!("I/O error: {io}"),
        tungstenite::Error::Url(_) => "the URL is not a WebSocket URL".into(),
        other => other.to_string(),
    }
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Per-trade volume from a cumulative day volume: the increase since the symbol's previous
/// price, starting over when a new trading day begins (in `timezone`). A decrease within a
/// day (a stale or reordered message) gives 0 and is counted; the day's highest value stays
/// the base, so nothing is counted twice. The first price of a symbol the run sees gives 0:
/// what traded before it is not known to belong to its window.
pub struct DayVolumes {
    timezone: chrono_tz::Tz,
    last: HashMap<String, (chrono::NaiveDate, f64)>,
    session_resets: prometheus::IntCounter,
    decreases: prometheus::IntCounter,
}

impl DayVolumes {
    pub fn new(timezone: chrono_tz::Tz, source: &str) -> DayVolumes {
        let resets = &metrics().source_volume_resets;
        DayVolumes {
            timezone,
            last: HashMap::new(),
            session_resets: resets.with_label_values(&[source, "session"]),
            decreases: resets.with_label_values(&[source, "decrease"]),
        }
    }

    pub fn volume(&mut self, symbol: &str, ts: i64, day_volume: f64) -> f64 {
        let day_volume = if day_volume.is_finite() {
            day_volume.max(0.0)
        } else {
            0.0
        };
        let day = self
            .timezone
            .timestamp_millis_opt(ts)
            .single()
            .map(|t| t.date_naive());
        let Some(day) = day else { return 0.0 };
        match self.last.get_mut(symbol) {
            None => {
                self.last.insert(symbol.to_owned(), (day, day_volume));
                0.0
            }
            Some(last) if day > last.0 => {
                self.session_resets.inc();
                *last = (day, day_volume);
                day_volume
            }
            // A late message of an earlier day: its trades were counted then.
            Some(last) if day < last.0 => 0.0,
            Some(last) if day_volume < last.1 => {
                self.decreases.inc();
                0.0
            }
            Some(last) => {
                let increase = day_volume - last.1;
                last.1 = day_volume;
                increase
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;

    #[test]
    fn day_volume_becomes_per_trade_volume() {
        let mut v = DayVolumes::new(chrono_tz::America::New_York, "test");
        let t0 = 1_736_519_400_000; // 2025-01-10 14:30Z, 09:30 in New York
        assert_eq!(v.volume("A", t0, 1_000.0), 0.0);
        assert_eq!(v.volume("A", t0 + 1_000, 1_250.0), 250.0);
        assert_eq!(v.volume("A", t0 + 1_000, 1_250.0), 0.0);
        assert_eq!(
            v.volume("A", t0 + 2_000, 1_200.0),
            0.0,
            "a decrease is clamped"
        );
        assert_eq!(
            v.volume("A", t0 + 3_000, 1_300.0),
            50.0,
            "from the day's highest"
        );
        assert_eq!(v.volume("A", t0 + DAY, 40.0), 40.0, "a new day starts over");
        assert_eq!(
            v.volume("A", t0, 5_000.0),
            0.0,
            "a late message of the day before"
        );
        assert_eq!(v.volume("B", t0, 7.0), 0.0);
    }

    #[test]
    fn symbols_come_from_a_list_or_a_string() {
        let list = SymbolList(vec![" AAPL, MSFT,,AAPL ,EUR/USD".into()]);
        assert_eq!(list.symbols(), ["AAPL", "MSFT", "EUR/USD"]);
        let list = SymbolList(vec!["A".into(), "B,C".into()]);
        assert_eq!(list.symbols(), ["A", "B", "C"]);
        assert_eq!(SymbolList(vec!["A B".into()]).invalid(), ["A B"]);
    }
}
