//! The live hub: WebSocket sinks publish records into it; WebSocket clients subscribe to
//! streams (`ticks:AAPL`, `bars:1m:AAPL`, `indicators:1m:AAPL`) and get a snapshot of the
//! last records, then every new record in order.
//!
//! Fan-out is the hot path (thousands of clients × thousands of records a second), so a
//! record is encoded once: a published batch becomes, per stream, one buffer of ready
//! WebSocket frames, and each subscriber's queue takes a reference to it. Publishing never
//! waits for a client: a full queue drops the chunk and counts it; past `max_dropped` the
//! client is kicked (its connection task closes it).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{BufMut, Bytes, BytesMut};
use marketflow_operators::{Interval, Record, Symbol};
use tokio::sync::Notify;

use crate::codec::write_record_json;
use crate::metrics::metrics;

/// The kind of records a stream carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StreamKind {
    Ticks,
    Bars,
    Indicators,
}

/// How a subscriber reads records: marketflow's record JSON, or the predecessor's message
/// shapes (its `/ws/prices` and `/ws/analytics` endpoints).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    Native,
    Predecessor,
}

impl Format {
    fn index(self) -> usize {
        self as usize
    }
}

/// A stream clients subscribe to: a record kind, a symbol and, for bars and indicators,
/// an interval (`None`: every interval of that symbol).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamKey {
    pub kind: StreamKind,
    pub symbol: Symbol,
    pub interval: Option<Interval>,
}

/// A stream name that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid stream `{0}`: expected `ticks:SYMBOL`, `bars:INTERVAL:SYMBOL` or `indicators:INTERVAL:SYMBOL` (e.g. `bars:1m:AAPL`)")]
pub struct StreamError(pub String);

impl StreamKey {
    /// Reads `ticks:AAPL`, `bars:1m:AAPL`, `indicators:5m:EUR/USD`, `bars:*:AAPL`. Symbols
    /// are case-insensitive (stored upper-case).
    pub fn parse(text: &str) -> Result<StreamKey, StreamError> {
        let err = || StreamError(text.chars().take(80).collect());
        let (kind, rest) = text.split_once(':').ok_or_else(err)?;
        let (kind, interval, symbol) = match kind {
            "ticks" => (StreamKind::Ticks, None, rest),
            "bars" | "indicators" => {
                let (interval, symbol) = rest.split_once(':').ok_or_else(err)?;
                let interval = match interval {
                    "*" => None,
                    i => Some(Interval::parse(i).map_err(|_| err())?),
                };
                let kind = if kind == "bars" {
                    StreamKind::Bars
                } else {
                    StreamKind::Indicators
                };
                (kind, interval, symbol)
            }
            _ => return Err(err()),
        };
        let symbol = Symbol::new(&symbol.to_ascii_uppercase()).map_err(|_| err())?;
        Ok(StreamKey {
            kind,
            symbol,
            interval,
        })
    }

    /// The stream a record belongs to.
    pub fn of(record: &Record) -> StreamKey {
        let (kind, symbol, interval) = match record {
            Record::Tick(t) => (StreamKind::Ticks, &t.symbol, None),
            Record::Bar(b) => (StreamKind::Bars, &b.symbol, Some(b.interval)),
            Record::Indicator(i) => (StreamKind::Indicators, &i.symbol, Some(i.interval)),
        };
        StreamKey {
            kind,
            symbol: symbol.clone(),
            interval,
        }
    }

    /// Whether a subscription to `self` receives records of the exact stream `exact`.
    fn covers(&self, exact: &StreamKey) -> bool {
        self.kind == exact.kind
            && self.symbol == exact.symbol
            && (self.interval.is_none() || self.interval == exact.interval)
    }
}

impl fmt::Display for StreamKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.kind, self.interval) {
            (StreamKind::Ticks, _) => write!(f, "ticks:{}", self.symbol),
            (StreamKind::Bars, Some(i)) => write!(f, "bars:{i}:{}", self.symbol),
            (StreamKind::Bars, None) => write!(f, "bars:*:{}", self.symbol),
            (StreamKind::Indicators, Some(i)) => write!(f, "indicators:{i}:{}", self.symbol),
            (StreamKind::Indicators, None) => write!(f, "indicators:*:{}", self.symbol),
        }
    }
}

/// Limits of the hub (`server:` keys of a pipeline).
#[derive(Clone, Debug)]
pub struct HubConfig {
    /// Records kept per stream for the snapshot a new subscriber gets.
    pub snapshot: usize,
    /// Records a client may have queued; more are dropped and reported as lag.
    pub client_queue: usize,
    /// Records a client may lose before it is disconnected.
    pub max_dropped: u64,
}

impl Default for HubConfig {
    fn default() -> HubConfig {
        HubConfig {
            snapshot: 100,
            client_queue: 8192,
            max_dropped: 100_000,
        }
    }
}

/// Appends one unmasked server-to-client text frame holding `payload`.
pub fn put_text_frame(out: &mut BytesMut, payload: &[u8]) {
    out.put_u8(0x81); // FIN + text
    let len = payload.len();
    if len < 126 {
        out.put_u8(len as u8);
    } else if len <= u16::MAX as usize {
        out.put_u8(126);
        out.put_u16(len as u16);
    } else {
        out.put_u8(127);
        out.put_u64(len as u64);
    }
    out.put_slice(payload);
}

/// Ready-to-send frames for `count` records.
#[derive(Clone, Debug)]
pub struct Chunk {
    pub frames: Bytes,
    pub records: usize,
}

/// A record kept for snapshots; its frame in each format is encoded the first time
/// someone needs it.
struct Recent {
    record: Record,
    frames: [Option<Bytes>; 2],
}

impl Recent {
    fn new(record: Record) -> Recent {
        Recent {
            record,
            frames: [None, None],
        }
    }

    fn frame(&mut self, format: Format, scratch: &mut Vec<u8>) -> &Bytes {
        let record = &self.record;
        self.frames[format.index()].get_or_insert_with(|| {
            scratch.clear();
            match format {
                Format::Native if revision_of(record) > 0 => {
                    // A bar or indicator row given again after late records.
                    scratch.extend_from_slice(b"{\"type\":\"revised\",\"record\":");
                    write_record_json(scratch, record);
                    scratch.push(b'}');
                }
                Format::Native => write_record_json(scratch, record),
                Format::Predecessor => crate::seed::write_message(scratch, record),
            }
            let mut out = BytesMut::with_capacity(scratch.len() + 4);
            put_text_frame(&mut out, scratch);
            out.freeze()
        })
    }
}

fn revision_of(record: &Record) -> u32 {
    match record {
        Record::Tick(_) => 0,
        Record::Bar(b) => b.revision,
        Record::Indicator(i) => i.revision,
    }
}

#[derive(Default)]
struct Stream {
    recent: VecDeque<Recent>,
    /// The newest record seen, for feeds that may repeat records ([`Hub::publish_new`]).
    newest: Newest,
    /// Stored records were merged in ([`Hub::prime`]).
    primed: bool,
}

/// The newest time seen on a stream and which records were seen at that time: a record
/// older than it, or one of those, has been seen.
#[derive(Default)]
struct Newest {
    time: Option<i64>,
    at: Vec<Identity>,
}

/// What tells two records of one stream at one time apart: a tick's price and size, an
/// indicator's id, and the revision.
type Identity = (u64, u32);

fn identity(record: &Record) -> (i64, Identity) {
    use std::hash::{Hash, Hasher};
    let mut hasher = rustc_hash::FxHasher::default();
    let (time, revision) = match record {
        Record::Tick(t) => {
            t.price.to_bits().hash(&mut hasher);
            t.volume.to_bits().hash(&mut hasher);
            (t.ts, 0)
        }
        Record::Bar(b) => (b.start, b.revision),
        Record::Indicator(i) => {
            i.id.hash(&mut hasher);
            (i.ts, i.revision)
        }
    };
    (time, (hasher.finish(), revision))
}

impl Newest {
    fn has_seen(&self, time: i64, id: &Identity) -> bool {
        match self.time {
            Some(newest) if time < newest => true,
            Some(newest) if time == newest => self.at.contains(id),
            _ => false,
        }
    }

    fn see(&mut self, time: i64, id: Identity) {
        match self.time {
            Some(newest) if time < newest => {}
            Some(newest) if time == newest => {
                if !self.at.contains(&id) {
                    self.at.push(id);
                }
            }
            _ => {
                self.time = Some(time);
                self.at.clear();
                self.at.push(id);
            }
        }
    }
}

/// An interval filter (`None`: every interval), a format and the clients holding them.
type Holders = (Option<Interval>, Format, Vec<Arc<Client>>);

#[derive(Default)]
struct State {
    streams: HashMap<StreamKey, Stream>,
    /// Subscriptions by kind and symbol.
    subscriptions: HashMap<(StreamKind, Symbol), Vec<Holders>>,
    clients: HashMap<u64, Arc<Client>>,
}

/// The live hub; clones share it.
#[derive(Clone, Default)]
pub struct Hub {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    state: Mutex<State>,
    config: HubConfig,
    next_id: AtomicU64,
    published: AtomicU64,
}

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hub")
            .field("published", &self.published())
            .finish_non_exhaustive()
    }
}

impl Hub {
    pub fn new(config: HubConfig) -> Hub {
        Hub {
            inner: Arc::new(Inner {
                config,
                ..Inner::default()
            }),
        }
    }

    pub fn config(&self) -> &HubConfig {
        &self.inner.config
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind: keep serving.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records published so far.
    pub fn published(&self) -> u64 {
        self.inner.published.load(Ordering::Relaxed)
    }

    /// Connected clients.
    pub fn clients(&self) -> usize {
        self.state().clients.len()
    }

    /// Publishes records in order: remembered for snapshots, queued for subscribers.
    pub fn publish(&self, records: Vec<Record>) {
        let mut state = self.state();
        self.publish_locked(&mut state, records);
    }

    /// Publishes the records its stream has not seen, for a feed that delivers at least
    /// once beside a store that may be ahead of it (`serve --live`): per stream (records
    /// of one stream come in time order), a record older than the newest seen, or seen at
    /// that time, is dropped. Returns how many were dropped.
    pub fn publish_new(&self, mut records: Vec<Record>) -> usize {
        let before = records.len();
        let mut state = self.state();
        records.retain(|record| {
            if revision_of(record) > 0 {
                return true; // a revision of an older record: its time says nothing
            }
            let stream = state.streams.entry(StreamKey::of(record)).or_default();
            let (time, id) = identity(record);
            if stream.newest.has_seen(time, &id) {
                return false;
            }
            stream.newest.see(time, id);
            true
        });
        let dropped = before - records.len();
        self.publish_locked(&mut state, records);
        dropped
    }

    /// The exact streams the hub holds that a subscription to `key` covers.
    pub fn streams_covered(&self, key: &StreamKey) -> Vec<StreamKey> {
        self.state()
            .streams
            .keys()
            .filter(|k| key.covers(k))
            .cloned()
            .collect()
    }

    /// Whether the exact stream `key` still needs the stored records of [`Hub::prime`].
    pub fn needs_priming(&self, key: &StreamKey) -> bool {
        !self.state().streams.get(key).is_some_and(|s| s.primed)
    }

    /// Merges records read from the store into the exact stream `key`: the snapshot a
    /// subscriber gets is then the newest of both, and what [`Hub::publish_new`] is given
    /// later that the store already had is dropped.
    pub fn prime(&self, key: &StreamKey, stored: Vec<Record>) {
        let keep = self.inner.config.snapshot;
        let mut state = self.state();
        let stream = state.streams.entry(key.clone()).or_default();
        stream.primed = true;
        let mut seen: std::collections::HashSet<(i64, Identity)> =
            stream.recent.iter().map(|r| identity(&r.record)).collect();
        for record in stored {
            if StreamKey::of(&record) != *key || !seen.insert(identity(&record)) {
                continue;
            }
            let (time, id) = identity(&record);
            stream.newest.see(time, id);
            stream.recent.push_back(Recent::new(record));
        }
        let mut recent: Vec<Recent> = stream.recent.drain(..).collect();
        recent.sort_by_key(|r| record_time(&r.record));
        let skip = recent.len().saturating_sub(keep);
        stream.recent.extend(recent.into_iter().skip(skip));
    }

    fn publish_locked(&self, state: &mut State, records: Vec<Record>) {
        if records.is_empty() {
            return;
        }
        let count = records.len() as u64;
        let keep = self.inner.config.snapshot;
        let mut scratch = Vec::with_capacity(256);
        let State {
            streams,
            subscriptions,
            ..
        } = state;
        // Frames per exact stream and format for this batch, in first-seen order.
        let mut batches: Vec<(StreamKey, Format, BytesMut, usize)> = Vec::new();
        let mut last: [Option<usize>; 2] = [None, None];
        for record in records {
            let key = StreamKey::of(&record);
            let mut wanted = [false, false];
            if let Some(subs) = subscriptions.get(&(key.kind, key.symbol.clone())) {
                for (interval, format, _) in subs {
                    if interval.is_none() || *interval == key.interval {
                        wanted[format.index()] = true;
                    }
                }
            }
            let mut recent = Recent::new(record);
            for format in [Format::Native, Format::Predecessor] {
                if !wanted[format.index()] {
                    continue;
                }
                let frame = recent.frame(format, &mut scratch).clone();
                let found = last[format.index()]
                    .filter(|&i| batches[i].0 == key && batches[i].1 == format)
                    .or_else(|| batches.iter().position(|b| b.0 == key && b.1 == format));
                let slot = found.unwrap_or_else(|| {
                    batches.push((key.clone(), format, BytesMut::with_capacity(4096), 0));
                    batches.len() - 1
                });
                batches[slot].2.put_slice(&frame);
                batches[slot].3 += 1;
                last[format.index()] = Some(slot);
            }
            if keep > 0 {
                let stream = streams.entry(key).or_default();
                if stream.recent.len() == keep {
                    stream.recent.pop_front();
                }
                stream.recent.push_back(recent);
            }
        }
        let mut kicked = Vec::new();
        for (key, format, frames, records) in batches {
            let chunk = Chunk {
                frames: frames.freeze(),
                records,
            };
            let Some(subs) = subscriptions.get(&(key.kind, key.symbol.clone())) else {
                continue;
            };
            let matching: Vec<&Vec<Arc<Client>>> = subs
                .iter()
                .filter(|(interval, f, _)| {
                    *f == format && (interval.is_none() || *interval == key.interval)
                })
                .map(|(_, _, clients)| clients)
                .collect();
            // A client holding both `bars:*:X` and `bars:1m:X` gets each record once.
            let mut seen = std::collections::HashSet::new();
            for client in matching.iter().flat_map(|clients| clients.iter()) {
                if matching.len() > 1 && !seen.insert(client.id) {
                    continue;
                }
                if client.push(chunk.clone(), &self.inner.config) {
                    kicked.push(client.id);
                }
            }
        }
        for id in kicked {
            remove_client(state, id);
        }
        self.inner.published.fetch_add(count, Ordering::Relaxed);
    }

    /// A new client with no subscriptions.
    pub fn connect(&self) -> Arc<Client> {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let client = Arc::new(Client {
            id,
            queue: Mutex::new(Queue::default()),
            ready: Notify::new(),
            kicked: Notify::new(),
        });
        self.state().clients.insert(id, client.clone());
        metrics().ws_clients.inc();
        client
    }

    /// Subscribes `client` to `key`: its queue gets a snapshot marker, the last `snapshot`
    /// records of the stream, then every new record. Taken under the hub lock, so nothing
    /// is missed or repeated between the snapshot and the live records.
    pub fn subscribe(&self, client: &Arc<Client>, key: &StreamKey, snapshot: usize) -> usize {
        self.subscribe_as(client, key, snapshot, Format::Native)
    }

    /// [`Hub::subscribe`] in a given format. The predecessor's format has no snapshot
    /// marker: its clients get the records alone.
    pub fn subscribe_as(
        &self,
        client: &Arc<Client>,
        key: &StreamKey,
        snapshot: usize,
        format: Format,
    ) -> usize {
        let mut scratch = Vec::with_capacity(256);
        let mut state = self.state();
        let State {
            streams,
            subscriptions,
            clients,
        } = &mut *state;
        if !clients.contains_key(&client.id) {
            return 0; // kicked meanwhile
        }
        let subs = subscriptions
            .entry((key.kind, key.symbol.clone()))
            .or_default();
        let holders = match subs
            .iter()
            .position(|(i, f, _)| *i == key.interval && *f == format)
        {
            Some(at) => &mut subs[at].2,
            None => {
                subs.push((key.interval, format, Vec::new()));
                &mut subs.last_mut().expect("just pushed").2
            }
        };
        if holders.iter().any(|c| c.id == client.id) {
            return 0;
        }
        holders.push(client.clone());
        // The records of every exact stream the subscription covers, oldest first.
        let mut recent: Vec<&mut Recent> = streams
            .iter_mut()
            .filter(|(k, _)| key.covers(k))
            .flat_map(|(_, s)| s.recent.iter_mut())
            .collect();
        recent.sort_by_key(|r| record_time(&r.record));
        let skip = recent.len().saturating_sub(snapshot);
        let mut frames = BytesMut::new();
        if format == Format::Native {
            let marker = format!(
                r#"{{"type":"snapshot","stream":"{key}","records":{}}}"#,
                recent.len() - skip
            );
            put_text_frame(&mut frames, marker.as_bytes());
        }
        let mut records = 0;
        for r in recent.into_iter().skip(skip) {
            frames.put_slice(r.frame(format, &mut scratch));
            records += 1;
        }
        if !frames.is_empty() {
            client.push_unbounded(Chunk {
                frames: frames.freeze(),
                records,
            });
        }
        records
    }

    /// Ends a subscription of `client`.
    pub fn unsubscribe(&self, client: &Client, key: &StreamKey) -> bool {
        let mut state = self.state();
        let by_symbol = (key.kind, key.symbol.clone());
        let Some(subs) = state.subscriptions.get_mut(&by_symbol) else {
            return false;
        };
        let mut removed = false;
        for (interval, _, holders) in subs.iter_mut() {
            if *interval == key.interval {
                let before = holders.len();
                holders.retain(|c| c.id != client.id);
                removed = holders.len() < before;
            }
        }
        subs.retain(|(_, _, holders)| !holders.is_empty());
        if subs.is_empty() {
            state.subscriptions.remove(&by_symbol);
        }
        removed
    }

    /// Removes a client and every subscription it holds.
    pub fn disconnect(&self, client: &Client) {
        remove_client(&mut self.state(), client.id);
    }

    /// Kicks every client (server shutdown): their connection tasks close them.
    pub fn close_all(&self) {
        let mut state = self.state();
        let ids: Vec<u64> = state.clients.keys().copied().collect();
        for id in ids {
            if let Some(client) = state.clients.get(&id) {
                client.kick();
            }
            remove_client(&mut state, id);
        }
    }
}

fn record_time(record: &Record) -> (i64, u64) {
    match record {
        Record::Tick(t) => (t.ts, t.seq),
        Record::Bar(b) => (b.start, 0),
        Record::Indicator(i) => (i.ts, 0),
    }
}

fn remove_client(state: &mut State, id: u64) {
    if state.clients.remove(&id).is_none() {
        return;
    }
    state.subscriptions.retain(|_, subs| {
        for (_, _, holders) in subs.iter_mut() {
            holders.retain(|c| c.id != id);
        }
        subs.retain(|(_, _, holders)| !holders.is_empty());
        !subs.is_empty()
    });
    metrics().ws_clients.dec();
}

/// Queued bytes past which a client's new subscriptions are refused until it has read: a
/// client that pipelines subscriptions without reading cannot pile up snapshots.
pub const MAX_QUEUED_BYTES: usize = 8 << 20;

#[derive(Default)]
struct Queue {
    chunks: VecDeque<Chunk>,
    records: usize,
    /// Bytes of the queued frames.
    bytes: usize,
    /// Dropped since the client was last told.
    unreported: u64,
    dropped: u64,
    kicked: bool,
}

/// What a connection task takes from its queue at once.
#[derive(Default)]
pub struct Pending {
    pub chunks: Vec<Chunk>,
    /// Records dropped after these chunks (to report as lag).
    pub dropped: u64,
    /// The hub disconnected this client.
    pub kicked: bool,
}

/// One WebSocket client of the hub.
pub struct Client {
    pub id: u64,
    queue: Mutex<Queue>,
    ready: Notify,
    kicked: Notify,
}

impl Client {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues a chunk unless the queue is full; true if the client must now be kicked.
    fn push(&self, chunk: Chunk, config: &HubConfig) -> bool {
        let mut q = self.queue();
        if q.kicked {
            return true;
        }
        if q.records + chunk.records > config.client_queue {
            q.unreported += chunk.records as u64;
            q.dropped += chunk.records as u64;
            metrics().ws_dropped.inc_by(chunk.records as u64);
            if q.dropped > config.max_dropped {
                q.kicked = true;
                metrics()
                    .ws_disconnects
                    .with_label_values(&["too_slow"])
                    .inc();
            }
        } else {
            q.records += chunk.records;
            q.bytes += chunk.frames.len();
            q.chunks.push_back(chunk);
        }
        let kicked = q.kicked;
        drop(q);
        self.ready.notify_one();
        if kicked {
            self.kicked.notify_waiters();
        }
        kicked
    }

    /// Queues a snapshot whatever the queue holds: it was asked for (and a connection asks
    /// for no more once [`Client::queued_bytes`] reaches [`MAX_QUEUED_BYTES`]).
    fn push_unbounded(&self, chunk: Chunk) {
        let mut q = self.queue();
        q.records += chunk.records;
        q.bytes += chunk.frames.len();
        q.chunks.push_back(chunk);
        drop(q);
        self.ready.notify_one();
    }

    fn kick(&self) {
        self.queue().kicked = true;
        self.ready.notify_one();
        self.kicked.notify_waiters();
    }

    /// Everything queued, and whether records were dropped or the client was kicked.
    pub fn take(&self) -> Pending {
        let mut q = self.queue();
        q.records = 0;
        q.bytes = 0;
        Pending {
            chunks: q.chunks.drain(..).collect(),
            dropped: std::mem::take(&mut q.unreported),
            kicked: q.kicked,
        }
    }

    /// Bytes queued for the client and not yet taken by its connection.
    pub fn queued_bytes(&self) -> usize {
        self.queue().bytes
    }

    /// Resolves when something was queued (or the client was kicked) since the last `take`.
    pub async fn ready(&self) {
        self.ready.notified().await;
    }

    /// Resolves once the hub disconnects this client.
    pub async fn kicked(&self) {
        loop {
            let kicked = self.kicked.notified();
            if self.is_kicked() {
                return;
            }
            kicked.await;
        }
    }

    /// Whether the hub disconnected this client.
    pub fn is_kicked(&self) -> bool {
        self.queue().kicked
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use marketflow_operators::Tick;

    fn tick(symbol: &str, ts: i64) -> Record {
        Record::Tick(Tick {
            symbol: Symbol::new(symbol).unwrap(),
            ts,
            price: 1.5,
            volume: 2.0,
            seq: ts as u64,
            wm: ts,
        })
    }

    /// The JSON payloads of a buffer of unmasked frames.
    fn payloads(frames: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < frames.len() {
            assert_eq!(frames[at], 0x81);
            let (len, header) = match frames[at + 1] {
                126 => (
                    u16::from_be_bytes([frames[at + 2], frames[at + 3]]) as usize,
                    4,
                ),
                127 => (
                    u64::from_be_bytes(frames[at + 2..at + 10].try_into().unwrap()) as usize,
                    10,
                ),
                n => (n as usize, 2),
            };
            out.push(String::from_utf8(frames[at + header..at + header + len].to_vec()).unwrap());
            at += header + len;
        }
        out
    }

    fn received(client: &Client) -> Vec<String> {
        client
            .take()
            .chunks
            .iter()
            .flat_map(|c| payloads(&c.frames))
            .collect()
    }

    #[test]
    fn parses_stream_names() {
        for (text, shown) in [
            ("ticks:aapl", "ticks:AAPL"),
            ("bars:1m:AAPL", "bars:1m:AAPL"),
            ("bars:5min:EUR/USD", "bars:5m:EUR/USD"),
            ("indicators:*:MSFT", "indicators:*:MSFT"),
        ] {
            assert_eq!(StreamKey::parse(text).unwrap().to_string(), shown);
        }
        for bad in [
            "",
            "ticks",
            "bars:AAPL",
            "quotes:AAPL",
            "bars:7x:AAPL",
            "ticks:A B",
        ] {
            assert!(StreamKey::parse(bad).is_err(), "{bad}");
        }
    }

    /// Stored records merged into a stream and a feed that repeats some of them: a
    /// subscriber gets every record once, oldest first, whichever of the two had it.
    #[test]
    fn a_primed_stream_and_a_repeating_feed_give_each_record_once() {
        let hub = Hub::new(HubConfig {
            snapshot: 10,
            ..HubConfig::default()
        });
        let key = StreamKey::parse("ticks:AAPL").unwrap();
        // The feed has 3..=5 when the store (0..=6) is read; the feed then repeats 4..=6.
        assert_eq!(
            hub.publish_new((3..6).map(|i| tick("AAPL", i)).collect()),
            0
        );
        assert!(hub.needs_priming(&key));
        hub.prime(&key, (0..7).map(|i| tick("AAPL", i)).collect());
        assert!(!hub.needs_priming(&key));
        let client = hub.connect();
        assert_eq!(hub.subscribe(&client, &key, 10), 7);
        assert_eq!(
            hub.publish_new((4..9).map(|i| tick("AAPL", i)).collect()),
            3
        );
        let got = received(&client);
        let times: Vec<i64> = got[1..]
            .iter()
            .map(|g| {
                let record: serde_json::Value = serde_json::from_str(g).unwrap();
                marketflow_operators::time::parse_timestamp(record["ts"].as_str().unwrap()).unwrap()
            })
            .collect();
        assert_eq!(times, (0..9).collect::<Vec<i64>>(), "{got:?}");
        // Two records at one time are told apart (here by price); a repeat of either is not.
        let mut other = tick("AAPL", 8);
        if let Record::Tick(t) = &mut other {
            t.price = 2.5;
        }
        assert_eq!(
            hub.publish_new(vec![other.clone(), tick("AAPL", 8), other]),
            2
        );
    }

    #[test]
    fn snapshot_then_live_in_order_without_gaps() {
        let hub = Hub::new(HubConfig {
            snapshot: 3,
            ..HubConfig::default()
        });
        hub.publish((0..5).map(|i| tick("AAPL", i)).collect());
        let client = hub.connect();
        let key = StreamKey::parse("ticks:AAPL").unwrap();
        assert_eq!(hub.subscribe(&client, &key, 2), 2);
        hub.publish(vec![tick("MSFT", 5), tick("AAPL", 6)]);
        let got = received(&client);
        assert_eq!(got.len(), 4, "{got:?}");
        assert!(got[0].contains(r#""type":"snapshot""#) && got[0].contains(r#""records":2"#));
        let times: Vec<bool> = ["00.003Z", "00.004Z", "00.006Z"]
            .iter()
            .zip(&got[1..])
            .map(|(t, g)| g.contains(t) && g.contains("AAPL"))
            .collect();
        assert_eq!(times, [true, true, true], "{got:?}");
    }

    #[test]
    fn overlapping_subscriptions_deliver_once() {
        let hub = Hub::new(HubConfig::default());
        let client = hub.connect();
        let bar = |minute: i64| {
            Record::Bar(marketflow_operators::Bar {
                symbol: Symbol::new("A").unwrap(),
                interval: Interval::M1,
                start: minute * 60_000,
                end: (minute + 1) * 60_000,
                open: 1.0,
                high: 1.0,
                low: 1.0,
                close: 1.0,
                volume: Default::default(),
                notional: Default::default(),
                trades: 1,
                revision: 0,
                seq: 0,
                wm: 0,
                source: Default::default(),
            })
        };
        for stream in ["bars:*:A", "bars:1m:A"] {
            hub.subscribe(&client, &StreamKey::parse(stream).unwrap(), 0);
        }
        client.take();
        hub.publish(vec![bar(0), bar(1)]);
        assert_eq!(received(&client).len(), 2);

        // A revision comes as a `revised` message, and passes the repeat filter of a feed.
        let Record::Bar(mut revised) = bar(0) else {
            unreachable!()
        };
        revised.revision = 1;
        assert_eq!(hub.publish_new(vec![bar(5), Record::Bar(revised)]), 0);
        let got = received(&client);
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(
            got[1].starts_with(r#"{"type":"revised","record":{"type":"bar""#)
                && got[1].contains(r#""revision":1}}"#),
            "{got:?}"
        );
    }

    #[test]
    fn a_full_queue_drops_and_reports_then_kicks() {
        let hub = Hub::new(HubConfig {
            snapshot: 0,
            client_queue: 4,
            max_dropped: 5,
        });
        let client = hub.connect();
        hub.subscribe(&client, &StreamKey::parse("ticks:A").unwrap(), 0);
        client.take();
        hub.publish((0..3).map(|i| tick("A", i)).collect());
        hub.publish((3..6).map(|i| tick("A", i)).collect()); // 3 + 3 > 4: dropped
        let pending = client.take();
        assert_eq!(pending.chunks.len(), 1);
        assert_eq!((pending.dropped, pending.kicked), (3, false));
        hub.publish((6..11).map(|i| tick("A", i)).collect()); // 5 > 4: dropped, 8 > 5
        assert!(client.is_kicked());
        assert_eq!(hub.clients(), 0);
    }
}
