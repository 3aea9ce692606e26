//! `marketflow bench-server`: load figures for the server, all on loopback in one run.
//!
//! 1. WebSocket fan-out: a publisher (the pipeline's side of the hub) sends `--rate`
//!    records/s to `--clients` subscribers for `--seconds`; each client timestamps every
//!    frame it reads against the record's publication time. One more client subscribes and
//!    never reads: it must be dropped while the others get every record. The baseline is
//!    the same paced stream with no client: the cost of a publish call with and without
//!    1,000 subscribers shows whether clients slow the pipeline.
//! 2. REST: `--connections` keep-alive clients ask for 100 one-minute bars from a SQLite
//!    store for `--rest-seconds`; the baseline is the same store query called directly.
//! 3. Security: both again with API keys and TLS on (https and wss, a certificate made for
//!    the run), side by side with the figures without. Rate limits are raised out of the
//!    way in both runs (their buckets are still checked on every request).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use marketflow_operators::fixed::Fixed;
use marketflow_operators::{Bar, Interval, Record, Symbol, Tick};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::de::Spanned;
use crate::config::values::Secret;
use crate::hub::Hub;
use crate::metrics::metrics;
use crate::server::{self, ServerConfig, ServerState};
use crate::spec::server::{ApiKeyConfig, AuthConfig, RateLimitConfig, Scope, TlsConfig};
use crate::store::{sqlite, BarQuery, Batch, Location, Store};

/// Options of `marketflow bench-server`.
#[derive(clap::Args, Debug, Clone)]
pub struct ServerBenchArgs {
    /// WebSocket clients subscribed to the stream.
    #[arg(long, default_value_t = 1000)]
    pub clients: usize,
    /// Records per second published.
    #[arg(long, default_value_t = 10_000)]
    pub rate: u64,
    /// Seconds of streaming (after every client has subscribed).
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Concurrent keep-alive HTTP connections for the REST figure.
    #[arg(long, default_value_t = 16)]
    pub connections: usize,
    /// Seconds of REST load.
    #[arg(long, default_value_t = 5)]
    pub rest_seconds: u64,
}

/// Publication batches per second (the sink hands the hub batches, not single records).
const BATCHES_PER_SECOND: u64 = 100;

pub fn run(args: &ServerBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.rate >= BATCHES_PER_SECOND,
        "--rate is at least {BATCHES_PER_SECOND}"
    );
    let server_rt = runtime("bench-server", 1)?;
    let client_rt = runtime("bench-clients", 1)?;
    println!(
        "== WebSocket fan-out: {} clients, {} records/s, {} s ==",
        args.clients, args.rate, args.seconds
    );
    let baseline = fan_out(&server_rt, &client_rt, args, 0, None)?;
    let loaded = fan_out(&server_rt, &client_rt, args, args.clients, None)?;
    println!(
        "publisher without clients: {:.0} records/s achieved, publish call p50 {} / p99 {}",
        baseline.achieved_rate,
        micros(baseline.publish_p50),
        micros(baseline.publish_p99)
    );
    println!(
        "publisher with {} clients: {:.0} records/s achieved ({:.3}x the baseline), publish call p50 {} / p99 {}",
        args.clients,
        loaded.achieved_rate,
        loaded.achieved_rate / baseline.achieved_rate,
        micros(loaded.publish_p50),
        micros(loaded.publish_p99)
    );
    println!(
        "delivered {} records to {} clients ({:.2}M records/s); every client got all {}: {}",
        loaded.delivered,
        args.clients,
        loaded.delivered as f64 / args.seconds as f64 / 1e6,
        loaded.published,
        loaded.complete_clients == args.clients
    );
    println!(
        "delivery latency (publish call to client read): p50 {} / p99 {} / max {} (target p99 < 50 ms: {})",
        millis(loaded.latency_p50),
        millis(loaded.latency_p99),
        millis(loaded.latency_max),
        if loaded.latency_p99 < Duration::from_millis(50) { "met" } else { "MISSED" }
    );
    println!(
        "stalled client (reads nothing): {}; {} records dropped in all, {}",
        loaded
            .stalled_dropped_after
            .map_or("NOT dropped".to_owned(), |d| format!(
                "dropped by the server {:.2} s into the stream",
                d.as_secs_f64()
            )),
        loaded.dropped,
        if loaded.complete_clients == args.clients {
            "none of them for the other clients"
        } else {
            "SOME for other clients"
        }
    );
    let plain_rest = rest(&server_rt, &client_rt, args, None)?;
    let dir = ScratchDir::new("secure")?;
    let secure = Secure::new(&dir.0)?;
    println!(
        "== Security: API keys and TLS on, the same loads ({} clients, {} connections) ==",
        args.clients, args.connections
    );
    let secure_fan_out = fan_out(&server_rt, &client_rt, args, args.clients, Some(&secure))?;
    let secure_rest = rest(&server_rt, &client_rt, args, Some(&secure))?;
    println!("| figure | off | keys + TLS | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| REST requests/s | {:.0} | {:.0} | {:.2}x |",
        plain_rest.rate,
        secure_rest.rate,
        secure_rest.rate / plain_rest.rate
    );
    println!(
        "| REST latency p99 | {} | {} | {:.2}x |",
        millis(plain_rest.p99),
        millis(secure_rest.p99),
        secure_rest.p99.as_secs_f64() / plain_rest.p99.as_secs_f64()
    );
    println!(
        "| WebSocket delivery p99 | {} | {} | {:.2}x |",
        millis(loaded.latency_p99),
        millis(secure_fan_out.latency_p99),
        secure_fan_out.latency_p99.as_secs_f64() / loaded.latency_p99.as_secs_f64()
    );
    println!(
        "| WebSocket records delivered/s | {:.2}M | {:.2}M | {:.2}x |",
        loaded.delivered as f64 / args.seconds as f64 / 1e6,
        secure_fan_out.delivered as f64 / args.seconds as f64 / 1e6,
        secure_fan_out.delivered as f64 / loaded.delivered.max(1) as f64
    );
    Ok(())
}

/// The key and certificate of the secured runs.
struct Secure {
    config: ServerConfig,
    client: Arc<rustls::ClientConfig>,
    key: String,
}

const BENCH_KEY: &str = "bench-key-0123456789abcdef";

impl Secure {
    fn new(dir: &std::path::Path) -> anyhow::Result<Secure> {
        let key_pair = rcgen::KeyPair::generate()?;
        let cert =
            rcgen::CertificateParams::new(vec!["127.0.0.1".into()])?.self_signed(&key_pair)?;
        let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert_path, cert.pem())?;
        std::fs::write(&key_path, key_pair.serialize_pem())?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.der().clone())?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let spanned =
            |p: &std::path::Path| Spanned::new(p.display().to_string(), Default::default());
        let config = ServerConfig {
            auth: Some(AuthConfig {
                keys: vec![ApiKeyConfig {
                    name: "bench".into(),
                    key: Spanned::new(Secret(BENCH_KEY.into()), Default::default()),
                    scopes: vec![Scope::Read, Scope::Stream],
                }],
                keys_file: None,
            }),
            tls: Some(TlsConfig {
                cert: spanned(&cert_path),
                key: spanned(&key_path),
            }),
            ..ServerConfig::default()
        };
        Ok(Secure {
            config,
            client: Arc::new(client),
            key: BENCH_KEY.into(),
        })
    }

    /// A TLS connection over `tcp`.
    async fn wrap(&self, tcp: TcpStream) -> anyhow::Result<Box<dyn Io>> {
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1")?;
        let tls = tokio_rustls::TlsConnector::from(self.client.clone())
            .connect(name, tcp)
            .await?;
        Ok(Box::new(tls))
    }
}

/// A client connection, plain or TLS.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// Rate limits out of the way of the bench's own load (still checked per request).
fn unlimited() -> RateLimitConfig {
    let mut limits = RateLimitConfig::default();
    for bucket in [&mut limits.per_key, &mut limits.per_address] {
        bucket.rate.value = crate::spec::server::Rate {
            count: 1_000_000_000,
            per_ms: 1000,
        };
        bucket.burst = Some(1_000_000_000);
    }
    limits
}

/// The server state of a run, secured or not.
fn state(
    config: &ServerConfig,
    store: Option<Location>,
    hub: Hub,
    secure: Option<&Secure>,
) -> anyhow::Result<ServerState> {
    let mut config = secure.map_or_else(
        || config.clone(),
        |s| ServerConfig {
            snapshot: config.snapshot,
            max_dropped: config.max_dropped,
            ..s.config.clone()
        },
    );
    config.rate_limit = unlimited();
    // Every bench client comes from 127.0.0.1.
    config.max_connections_per_client = config.max_connections;
    let addr = SocketAddr::from(([127, 0, 0, 1], 0));
    Ok(ServerState::secured(&config, store, hub, addr, false)?)
}

fn runtime(name: &str, threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name(name)
        .enable_all()
        .build()
        .context("starting a tokio runtime")
}

fn micros(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn millis(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// Latencies in log-linear buckets of microseconds: exact below 16 µs, then 16 buckets
/// per power of two (within 6.25%), up to 2^28 µs; small enough for one per client.
#[derive(Clone)]
struct Histogram(Vec<u64>);

const BUCKETS: usize = 16 + 24 * 16;

impl Histogram {
    fn new() -> Histogram {
        Histogram(vec![0; BUCKETS])
    }

    fn index(us: u64) -> usize {
        if us < 16 {
            return us as usize;
        }
        let exp = 63 - us.leading_zeros() as usize; // >= 4
        let mantissa = ((us >> (exp - 4)) & 15) as usize;
        (16 + (exp - 4) * 16 + mantissa).min(BUCKETS - 1)
    }

    /// The upper bound of bucket `i`, in microseconds.
    fn upper(i: usize) -> u64 {
        if i < 16 {
            return i as u64 + 1;
        }
        let exp = (i - 16) / 16 + 4;
        let mantissa = ((i - 16) % 16) as u64;
        (16 + mantissa + 1) << (exp - 4)
    }

    fn record(&mut self, d: Duration) {
        self.0[Self::index(d.as_micros() as u64)] += 1;
    }

    fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            *a += b;
        }
    }

    fn count(&self) -> u64 {
        self.0.iter().sum()
    }

    fn quantile(&self, q: f64) -> Duration {
        let wanted = ((self.count() as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in self.0.iter().enumerate() {
            seen += n;
            if seen >= wanted {
                return Duration::from_micros(Self::upper(i));
            }
        }
        Duration::ZERO
    }

    fn max(&self) -> Duration {
        self.0
            .iter()
            .rposition(|&n| n > 0)
            .map_or(Duration::ZERO, |i| Duration::from_micros(Self::upper(i)))
    }
}

struct FanOut {
    achieved_rate: f64,
    publish_p50: Duration,
    publish_p99: Duration,
    published: u64,
    delivered: u64,
    complete_clients: usize,
    latency_p50: Duration,
    latency_p99: Duration,
    latency_max: Duration,
    stalled_dropped_after: Option<Duration>,
    dropped: u64,
}

/// One record of the stream; its `volume` is its sequence number.
fn record(seq: u64) -> Record {
    Record::Tick(Tick {
        symbol: Symbol::new("BENCH").expect("valid symbol"),
        ts: 1_704_205_800_000 + seq as i64,
        price: 100.25,
        volume: seq as f64,
        seq,
        wm: 1_704_205_800_000,
    })
}

fn fan_out(
    server_rt: &tokio::runtime::Runtime,
    client_rt: &tokio::runtime::Runtime,
    args: &ServerBenchArgs,
    clients: usize,
    secure: Option<&Secure>,
) -> anyhow::Result<FanOut> {
    // A client may lose 2 s of the stream before it is dropped.
    let config = ServerConfig {
        snapshot: 0,
        max_dropped: 2 * args.rate,
        ..ServerConfig::default()
    };
    let hub = Hub::new(config.hub_config());
    let listener = server::bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    let handle = {
        let _guard = server_rt.enter();
        server::start(listener, state(&config, None, hub.clone(), secure)?)?
    };
    let addr = handle.addr;
    let per_batch = args.rate / BATCHES_PER_SECOND;
    let batches = args.seconds * BATCHES_PER_SECOND;
    let total = per_batch * batches;
    // Publication instant of each batch, read by the clients.
    let published_at: Arc<Vec<AtomicU64>> =
        Arc::new((0..batches).map(|_| AtomicU64::new(0)).collect());
    let epoch = Instant::now();

    // Subscribe every client (and the stalled one) before the stream starts.
    let done = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    let stalled = if clients > 0 {
        let mut connected = Vec::new();
        for wave in (0..clients).collect::<Vec<_>>().chunks(100) {
            let sockets: Vec<_> = client_rt.block_on(async {
                let mut out = Vec::new();
                for _ in wave {
                    out.push(subscribe(addr, secure).await);
                }
                out
            });
            for s in sockets {
                connected.push(s.context("connecting a bench client")?);
            }
        }
        for socket in connected {
            let published_at = published_at.clone();
            let done = done.clone();
            readers.push(client_rt.spawn(read_stream(
                socket,
                published_at,
                epoch,
                per_batch,
                total,
                done,
            )));
        }
        Some(client_rt.block_on(subscribe_with(addr, Some(4096), secure))?)
    } else {
        None
    };
    if hub.clients() != clients + usize::from(stalled.is_some()) {
        bail!("{} of {} clients subscribed", hub.clients(), clients + 1);
    }
    let dropped_before = metrics().ws_dropped.get();

    let mut publish = Histogram::new();
    let mut stalled_dropped_after = None;
    let started = Instant::now();
    for b in 0..batches {
        let due = started + Duration::from_micros(b * 1_000_000 / BATCHES_PER_SECOND);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let records: Vec<Record> = (b * per_batch..(b + 1) * per_batch).map(record).collect();
        let t = Instant::now();
        published_at[b as usize]
            .store(t.duration_since(epoch).as_nanos() as u64, Ordering::Release);
        hub.publish(records);
        publish.record(t.elapsed());
        if stalled.is_some() && stalled_dropped_after.is_none() && hub.clients() == clients {
            stalled_dropped_after = Some(started.elapsed());
        }
    }
    let elapsed = started.elapsed();
    let mut latency = Histogram::new();
    let mut delivered = 0;
    let mut complete = 0;
    // Readers finish the records in flight; one that lost records would wait for ever,
    // so after a grace period the server stops and its socket ends.
    let grace = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut late = Vec::new();
    let mut results = Vec::new();
    client_rt.block_on(async {
        for mut reader in readers {
            match tokio::time::timeout_at(grace, &mut reader).await {
                Ok(result) => results.push(result),
                Err(_) => late.push(reader),
            }
        }
    });
    done.store(true, Ordering::Relaxed);
    drop(stalled);
    server_rt.block_on(handle.stop());
    client_rt.block_on(async {
        for reader in late {
            results.push(reader.await);
        }
    });
    for (count, hist) in results.into_iter().flatten() {
        delivered += count;
        complete += usize::from(count == total);
        latency.merge(&hist);
    }
    Ok(FanOut {
        achieved_rate: total as f64 / elapsed.as_secs_f64(),
        publish_p50: publish.quantile(0.5),
        publish_p99: publish.quantile(0.99),
        published: total,
        delivered,
        complete_clients: complete,
        latency_p50: latency.quantile(0.5),
        latency_p99: latency.quantile(0.99),
        latency_max: latency.max(),
        stalled_dropped_after,
        dropped: metrics().ws_dropped.get() - dropped_before,
    })
}

/// Connects, subscribes to the bench stream and reads the acknowledgement and snapshot
/// marker; returns the socket positioned at the first record.
async fn subscribe(addr: SocketAddr, secure: Option<&Secure>) -> anyhow::Result<Box<dyn Io>> {
    subscribe_with(addr, None, secure).await
}

/// As [`subscribe`], with a receive buffer of `recv_buffer` bytes (a stalled client on a
/// small device).
async fn subscribe_with(
    addr: SocketAddr,
    recv_buffer: Option<u32>,
    secure: Option<&Secure>,
) -> anyhow::Result<Box<dyn Io>> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size)?;
    }
    let tcp = socket.connect(addr).await?;
    tcp.set_nodelay(true)?;
    let (mut stream, query): (Box<dyn Io>, String) = match secure {
        Some(s) => (s.wrap(tcp).await?, format!("?api_key={}", s.key)),
        None => (Box::new(tcp), String::new()),
    };
    let request = format!(
        "GET /ws{query} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(stream.read_u8().await?);
    }
    if !head.starts_with(b"HTTP/1.1 101") {
        bail!("upgrade refused: {}", String::from_utf8_lossy(&head));
    }
    // A masked client text frame (a zero mask keeps the payload as it is).
    let body = br#"{"action":"subscribe","streams":["ticks:BENCH"]}"#;
    let mut frame = vec![0x81, 0x80 | body.len() as u8, 0, 0, 0, 0];
    frame.extend_from_slice(body);
    stream.write_all(&frame).await?;
    // `subscribed`, then the snapshot marker.
    for _ in 0..2 {
        let _ = stream.read_u8().await?;
        let len = stream.read_u8().await? as usize;
        let len = if len == 126 {
            stream.read_u16().await? as usize
        } else {
            len
        };
        let mut payload = vec![0; len];
        stream.read_exact(&mut payload).await?;
    }
    Ok(stream)
}

/// Reads `total` records, timing each against its batch's publication; returns the count
/// and the latency histogram.
async fn read_stream(
    mut stream: Box<dyn Io>,
    published_at: Arc<Vec<AtomicU64>>,
    epoch: Instant,
    per_batch: u64,
    total: u64,
    done: Arc<AtomicBool>,
) -> (u64, Histogram) {
    let mut hist = Histogram::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut filled = 0;
    let mut count = 0u64;
    while count < total && !done.load(Ordering::Relaxed) {
        let n = match stream.read(&mut buf[filled..]).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let now = epoch.elapsed().as_nanos() as u64;
        filled += n;
        // Records arrive in order, so the count numbers them; the last record of each read
        // is parsed to check that nothing was skipped.
        let mut at = 0;
        let mut last = None;
        while let Some((opcode, start, end)) = next_frame(&buf[at..filled]) {
            let payload = &buf[at + start..at + end];
            if opcode == 0x1 && payload.starts_with(TICK) {
                let sent = published_at[(count / per_batch) as usize].load(Ordering::Acquire);
                hist.record(Duration::from_nanos(now.saturating_sub(sent)));
                count += 1;
                last = Some((at + start, at + end));
            }
            at += end;
        }
        if let Some((start, end)) = last {
            if sequence(&buf[start..end]) != Some(count - 1) {
                break; // a gap (records dropped for this client): it is incomplete
            }
        }
        buf.copy_within(at..filled, 0);
        filled -= at;
    }
    (count, hist)
}

/// How a tick record's JSON begins.
const TICK: &[u8] = b"{\"type\":\"tick\"";

/// (opcode, payload start, frame end) of the first whole unmasked frame.
fn next_frame(buf: &[u8]) -> Option<(u8, usize, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let (len, header) = match buf[1] & 0x7f {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
        126 | 127 => return None,
        n => (n as usize, 2),
    };
    (buf.len() >= header + len).then_some((buf[0] & 0x0f, header, header + len))
}

/// The `"volume":N` of a tick record.
fn sequence(payload: &[u8]) -> Option<u64> {
    const KEY: &[u8] = b"\"volume\":";
    let at = payload.windows(KEY.len()).rposition(|w| w == KEY)? + KEY.len();
    let digits = payload[at..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    std::str::from_utf8(&payload[at..at + digits])
        .ok()?
        .parse()
        .ok()
}

/// What the REST load measured.
struct RestFigures {
    rate: f64,
    p99: Duration,
}

fn rest(
    server_rt: &tokio::runtime::Runtime,
    client_rt: &tokio::runtime::Runtime,
    args: &ServerBenchArgs,
    secure: Option<&Secure>,
) -> anyhow::Result<RestFigures> {
    println!(
        "== REST{}: GET /api/v2/intraday/prices/BENCH?interval=1m&limit=100 from SQLite, {} connections, {} s ==",
        if secure.is_some() { " (keys + TLS)" } else { "" },
        args.connections,
        args.rest_seconds
    );
    let dir = ScratchDir::new("rest")?;
    let location = bench_store(&dir.0)?;

    // Baseline: the store query alone, on the same number of concurrent tasks.
    let store = Arc::new(server_rt.block_on(Store::open(&location))?);
    let query = BarQuery {
        symbol: Symbol::new("BENCH").expect("valid symbol"),
        interval: Interval::M1,
        start: None,
        end: None,
        limit: 100,
    };
    let seconds = Duration::from_secs(args.rest_seconds);
    let direct = server_rt.block_on(async {
        let deadline = Instant::now() + seconds;
        let mut tasks = Vec::new();
        for _ in 0..args.connections {
            let store = store.clone();
            let query = query.clone();
            tasks.push(tokio::spawn(async move {
                let mut n = 0u64;
                while Instant::now() < deadline {
                    if store.bars(&query).await.map(|b| b.len()).unwrap_or(0) == 100 {
                        n += 1;
                    }
                }
                n
            }));
        }
        let mut n = 0;
        for t in tasks {
            n += t.await.unwrap_or(0);
        }
        n
    });
    let direct_rate = direct as f64 / seconds.as_secs_f64();

    let listener = server::bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    let handle = {
        let _guard = server_rt.enter();
        server::start(
            listener,
            state(
                &ServerConfig::default(),
                Some(location),
                Hub::default(),
                secure,
            )?,
        )?
    };
    let addr = handle.addr;
    let latencies = Arc::new(Mutex::new(Histogram::new()));
    let (ok, failed) = client_rt.block_on(async {
        let deadline = Instant::now() + seconds;
        let mut tasks = Vec::new();
        for _ in 0..args.connections {
            let latencies = latencies.clone();
            let connection = async {
                let tcp = TcpStream::connect(addr).await?;
                tcp.set_nodelay(true)?;
                Ok::<_, anyhow::Error>(match secure {
                    Some(s) => (s.wrap(tcp).await?, Some(s.key.clone())),
                    None => (Box::new(tcp) as Box<dyn Io>, None),
                })
            };
            let (stream, key) = connection.await?;
            tasks.push(tokio::spawn(async move {
                let mut hist = Histogram::new();
                let result = keep_alive_client(stream, key, deadline, &mut hist).await;
                if let Ok(mut all) = latencies.lock() {
                    all.merge(&hist);
                }
                result
            }));
        }
        let (mut ok, mut failed) = (0u64, 0u64);
        for t in tasks {
            match t.await {
                Ok(Ok((o, f))) => {
                    ok += o;
                    failed += f;
                }
                _ => failed += 1,
            }
        }
        Ok::<_, anyhow::Error>((ok, failed))
    })?;
    server_rt.block_on(handle.stop());
    let rate = ok as f64 / seconds.as_secs_f64();
    let hist = latencies
        .lock()
        .map(|h| h.clone())
        .unwrap_or_else(|_| Histogram::new());
    println!(
        "store query alone (baseline): {direct_rate:.0} queries/s on {} tasks",
        args.connections
    );
    println!(
        "over HTTP: {rate:.0} requests/s ({:.2}x the bare query), {failed} failed, latency p50 {} / p99 {} (target >= 5000/s: {})",
        rate / direct_rate,
        millis(hist.quantile(0.5)),
        millis(hist.quantile(0.99)),
        if rate >= 5000.0 { "met" } else { "MISSED" }
    );
    Ok(RestFigures {
        rate,
        p99: hist.quantile(0.99),
    })
}

/// A SQLite store of 20,000 one-minute bars for each of four symbols.
fn bench_store(dir: &std::path::Path) -> anyhow::Result<Location> {
    let path = dir.join("bench.db");
    let mut conn = sqlite::open(&path)?;
    sqlite::migrate(&mut conn)?;
    let mut batch = Batch::default();
    for symbol in ["BENCH", "OTHER1", "OTHER2", "OTHER3"] {
        for i in 0..20_000i64 {
            let start = 1_704_205_800_000 + i * 60_000;
            batch.push(Record::Bar(Bar {
                symbol: Symbol::new(symbol).expect("valid symbol"),
                interval: Interval::M1,
                start,
                end: start + 60_000,
                open: 100.0,
                high: 101.5,
                low: 99.25,
                close: 100.5 + (i % 17) as f64 / 8.0,
                volume: Fixed::from_f64(1234.0),
                notional: Fixed::from_f64(1234.0 * 100.4),
                trades: 42,
                revision: 0,
                seq: 0,
                wm: start,
                source: Default::default(),
            }));
        }
    }
    sqlite::write(&mut conn, &batch)?;
    drop(conn);
    Ok(Location::Sqlite(path))
}

/// Requests over one keep-alive connection until `deadline`: (answers of 100 bars, others).
async fn keep_alive_client(
    stream: Box<dyn Io>,
    key: Option<String>,
    deadline: Instant,
    hist: &mut Histogram,
) -> anyhow::Result<(u64, u64)> {
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let (mut ok, mut failed) = (0, 0);
    let mut checked = false;
    while Instant::now() < deadline {
        let mut request =
            hyper::Request::get("/api/v2/intraday/prices/BENCH?interval=1m&limit=100")
                .header("host", "bench");
        if let Some(key) = &key {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        let request = request.body(Empty::<Bytes>::new())?;
        let t = Instant::now();
        let response = sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        hist.record(t.elapsed());
        if !checked {
            // Once per connection: the answer really holds 100 bars.
            let v: serde_json::Value = serde_json::from_slice(&body)?;
            anyhow::ensure!(v["count"] == 100, "unexpected answer: {v}");
            checked = true;
        }
        if status == hyper::StatusCode::OK {
            ok += 1;
        } else {
            failed += 1;
        }
    }
    Ok((ok, failed))
}

/// A scratch directory removed when dropped, also when the bench fails.
struct ScratchDir(std::path::PathBuf);

impl ScratchDir {
    fn new(name: &str) -> anyhow::Result<ScratchDir> {
        let dir = std::env::temp_dir().join(format!(
            "marketflow-bench-server-{}-{name}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir)?;
        Ok(ScratchDir(dir))
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_monotonic_and_tight() {
        let mut previous = 0;
        for us in [
            0u64,
            1,
            15,
            16,
            17,
            31,
            32,
            100,
            1_000,
            49_999,
            1_000_000,
            100_000_000,
        ] {
            let i = Histogram::index(us);
            assert!(i >= previous, "{us}");
            previous = i;
            let upper = Histogram::upper(i);
            assert!(
                upper > us && (upper - us) as f64 <= 0.0625 * us as f64 + 1.0,
                "{us} -> {upper}"
            );
        }
        let mut h = Histogram::new();
        for us in 1..=100u64 {
            h.record(Duration::from_micros(us * 1000));
        }
        let p99 = h.quantile(0.99).as_micros() as f64;
        assert!((99_000.0..=106_000.0).contains(&p99), "{p99}");
    }
}
