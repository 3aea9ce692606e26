//! Latency of a live feed through marketflow: a fake TwelveData server sends 10,000 ticks
//! a second; each tick's time from the fake's send to its arrival at a `/ws` client is
//! measured. The baseline, in the same run: the same tape from a second fake straight to a
//! plain WebSocket client. `cargo bench --bench live_latency`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use support::feeds::{FakeFeed, Price, Protocol, Step, Upgrade};
use support::http::{ws_connect, Serving};
use tokio_tungstenite::tungstenite::Message;

const RATE: f64 = 10_000.0;
const TICKS: usize = 50_000;
const SYMBOLS: usize = 20;

fn symbols() -> Vec<String> {
    (0..SYMBOLS).map(|i| format!("S{i:02}")).collect()
}

/// A tape stamped with the times it is planned to be sent at, behind a gate.
fn tape() -> Vec<Step> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let symbols = symbols();
    let mut steps = vec![Step::Gate];
    steps.extend((0..TICKS).map(|i| {
        let ts = (now + (i as f64 / RATE * 1000.0) as i64) / 1000 * 1000;
        Step::Price(Price {
            symbol: symbols[i % SYMBOLS].clone(),
            ts,
            price: 100.0 + (i % 100) as f64 / 100.0,
            day_volume: Some(1_000 + i as i64),
        })
    }));
    steps
}

/// Matches the k-th arrival of each symbol with the fake's k-th send of it.
fn latencies(fake: &FakeFeed, arrivals: &[(String, Instant)]) -> Vec<Duration> {
    let log = fake.snapshot();
    let mut sent: HashMap<&str, Vec<Instant>> = HashMap::new();
    for (price, at) in log.sent.iter().zip(&log.sent_at) {
        sent.entry(price.symbol.as_str()).or_default().push(*at);
    }
    let mut next: HashMap<&str, usize> = HashMap::new();
    let mut out = Vec::with_capacity(arrivals.len());
    for (symbol, at) in arrivals {
        let k = next.entry(symbol.as_str()).or_default();
        if let Some(sent_at) = sent.get(symbol.as_str()).and_then(|v| v.get(*k)) {
            out.push(at.saturating_duration_since(*sent_at));
        }
        *k += 1;
    }
    out.sort();
    out
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn report(what: &str, sorted: &[Duration]) -> (Duration, Duration) {
    let (p50, p99) = (percentile(sorted, 0.50), percentile(sorted, 0.99));
    println!(
        "{what:<44} {:>6} ticks  p50 {:>9.3?}  p99 {:>9.3?}  max {:>9.3?}",
        sorted.len(),
        p50,
        p99,
        sorted.last().copied().unwrap_or_default()
    );
    (p50, p99)
}

/// Reads `TICKS` ticks from `ws`, each with its arrival time; `tick` names the symbol of a
/// message that is a tick.
async fn arrivals<S>(
    ws: &mut S,
    who: &str,
    mut tick: impl FnMut(&serde_json::Value) -> Option<String>,
) -> Vec<(String, Instant)>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let mut arrivals = Vec::with_capacity(TICKS);
    let deadline = Instant::now() + Duration::from_secs(120);
    while arrivals.len() < TICKS {
        let wait = deadline.saturating_duration_since(Instant::now());
        let Ok(Some(Ok(message))) = tokio::time::timeout(wait, ws.next()).await else {
            panic!("waited for {TICKS} ticks at {who}; got {}", arrivals.len());
        };
        let at = Instant::now();
        let Message::Text(text) = message else {
            continue;
        };
        let value: serde_json::Value = serde_json::from_str(text.as_str()).unwrap();
        if let Some(symbol) = tick(&value) {
            arrivals.push((symbol, at));
        }
    }
    arrivals
}

/// Through marketflow: fake -> twelvedata source -> dataflow -> websocket sink -> /ws.
async fn through_marketflow() -> Vec<Duration> {
    let fake = FakeFeed::start(
        Protocol::TwelveData,
        tape(),
        &[],
        Upgrade::Accept,
        Some(RATE),
    );
    let dir = support::scratch();
    let list = symbols().join(", ");
    support::write(
        dir.path(),
        "live.yaml",
        &format!(
            "pipeline: latency\n\
             sources:\n  ticks: {{type: twelvedata, symbols: [{list}], api_key: bench, url: \"{}\", max_delay: 2s}}\n\
             sinks:\n  live: {{type: websocket, from: [ticks]}}\n\
             server: {{listen: 127.0.0.1:8000, client_queue: 100000}}\n",
            fake.url()
        ),
    );
    let server = Serving::start(dir.path(), &["run", "live.yaml", "--listen", "127.0.0.1:0"]);
    let mut ws = ws_connect(server.addr, "/ws").await;
    let streams: Vec<String> = symbols().iter().map(|s| format!("ticks:{s}")).collect();
    let subscribe = serde_json::json!({"action": "subscribe", "streams": streams, "snapshot": 0});
    ws.send(Message::text(subscribe.to_string())).await.unwrap();
    fake.wait_for("marketflow to subscribe", Duration::from_secs(30), |l| {
        l.connections > 0 && !l.received.is_empty()
    });
    // The subscription is confirmed before the tape starts.
    let mut confirmed = false;
    let arrivals = arrivals(&mut ws, "the /ws client", |value| {
        if value["type"] == "subscribed" && !confirmed {
            confirmed = true;
            fake.open_gate();
        }
        value.get("price")?;
        value["symbol"].as_str().map(str::to_owned)
    })
    .await;
    drop(server);
    latencies(&fake, &arrivals)
}

/// The baseline: the same tape straight to a WebSocket client that subscribes itself.
async fn direct() -> Vec<Duration> {
    let fake = FakeFeed::start(
        Protocol::TwelveData,
        tape(),
        &[],
        Upgrade::Accept,
        Some(RATE),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(fake.url(), None, true)
        .await
        .unwrap();
    let subscribe =
        serde_json::json!({"action": "subscribe", "params": {"symbols": symbols().join(",")}});
    ws.send(Message::text(subscribe.to_string())).await.unwrap();
    fake.open_gate();
    let arrivals = arrivals(&mut ws, "the direct client", |value| {
        (value["event"] == "price")
            .then(|| value["symbol"].as_str().map(str::to_owned))
            .flatten()
    })
    .await;
    latencies(&fake, &arrivals)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!("live feed latency: {TICKS} ticks over {SYMBOLS} symbols at {RATE} ticks/s, fake send -> client arrival");
    let baseline = runtime.block_on(direct());
    let (_, base_p99) = report("baseline: fake -> WebSocket client", &baseline);
    let measured = runtime.block_on(through_marketflow());
    let (_, p99) = report("marketflow: fake -> twelvedata -> /ws client", &measured);
    println!(
        "p99 through marketflow: {p99:.3?} (target < 20ms), {:.1}x the baseline's p99 (+{:.3?})",
        p99.as_secs_f64() / base_p99.as_secs_f64().max(1e-9),
        p99.saturating_sub(base_p99)
    );
}
