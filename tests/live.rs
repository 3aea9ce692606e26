//! The live feeds (`twelvedata`, `yahoo`) against offline fake servers (tests/support/feeds.rs):
//! a long tape with dropped connections, a refused reconnect and garbage gives exactly the
//! bars of a file of its valid ticks; cumulative day volume becomes per-window volume;
//! a quiet feed's last bar is written within `max_delay + idle_timeout + 1s`; a silent
//! connection is replaced; a refused key stops the run at once without logging the key;
//! refused symbols show in `/health` and the metrics.

mod support;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use support::feeds::{FakeFeed, Price, Protocol, Step, Upgrade};
use support::http::{block_on, get, Serving};
use support::{iso, marketflow, ms, scratch, sorted_lines, wait_with_deadline, write, Lcg};

const KEY: &str = "sekret-key-7731";

fn source_yaml(protocol: Protocol, url: &str, symbols: &[&str], extra: &str) -> String {
    let symbols = symbols.join(", ");
    match protocol {
        Protocol::TwelveData => format!(
            "{{type: twelvedata, symbols: [{symbols}], api_key: \"${{TD_KEY}}\", url: \"{url}\", {extra}}}"
        ),
        Protocol::Yahoo => {
            format!("{{type: yahoo, symbols: [{symbols}], url: \"{url}/?version=2\", {extra}}}")
        }
    }
}

fn pipeline(source: &str, output: &str) -> String {
    format!(
        "pipeline: live\n\
         sources:\n  ticks: {source}\n\
         operators:\n  bars_1m: {{type: bars, from: ticks, interval: 1m}}\n  \
         bars_5m: {{type: bars, from: bars_1m, interval: 5m}}\n\
         sinks:\n  out: {{type: file, from: [bars_1m, bars_5m], path: {output}}}\n\
         dead_letter: {{path: dead.jsonl}}\n"
    )
}

/// Starts `marketflow run live.yaml` in `dir` (the key in the environment).
fn spawn(dir: &Path) -> Child {
    marketflow()
        .current_dir(dir)
        .args(["run", "live.yaml"])
        .env("TD_KEY", KEY)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("marketflow starts")
}

fn interrupt(child: Child) -> std::process::ExitStatus {
    std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    wait_with_deadline(child, Duration::from_secs(30))
}

/// Waits until `path` has `lines` lines; fails naming what it waited for.
fn wait_for_lines(path: &Path, lines: usize, deadline: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let have = std::fs::read_to_string(path).map_or(0, |t| t.lines().count());
        if have >= lines {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < deadline,
            "waited {deadline:?} for {lines} lines in {} (have {have})",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `count` prices over `symbols` from `start`, several per second (whole seconds, as
/// TwelveData's frames carry), each symbol's day volume growing.
fn tape(seed: u64, symbols: &[&str], start: i64, count: usize) -> Vec<Price> {
    let mut rng = Lcg(seed);
    let mut day_volume = vec![1_000_000i64; symbols.len()];
    let mut prices = vec![100.0f64; symbols.len()];
    let mut ts = start;
    (0..count)
        .map(|_| {
            if rng.below(4) == 0 {
                ts += 1000;
            }
            let i = rng.below(symbols.len() as u64) as usize;
            day_volume[i] += 1 + rng.below(900) as i64;
            prices[i] = ((prices[i] + (rng.below(21) as f64 - 10.0) / 100.0).max(1.0) * 100.0)
                .round()
                / 100.0;
            Price {
                symbol: symbols[i].to_owned(),
                ts,
                price: prices[i],
                day_volume: Some(day_volume[i]),
            }
        })
        .collect()
}

/// Frames no feed should accept, by protocol; each one is dead-lettered.
fn garbage(protocol: Protocol, n: u64) -> Step {
    let td = [
        Step::Text("not json at all".into()),
        Step::Text(r#"{"event":"price","symbol":"AAPL","timesta"#.into()),
        Step::Text(r#"{"event":"price","symbol":"AAPL","price":1.5}"#.into()),
        Step::Text("[1,2,3]".into()),
        Step::Binary(vec![0, 159, 146, 150]),
    ];
    let yahoo = [
        Step::Text("not json {".into()),
        Step::Text(r#"{"type":"pricing"}"#.into()),
        Step::Text(r#"{"type":"pricing","message":"@@not base64@@"}"#.into()),
        Step::Text(r#"{"type":"pricing","message":"GA=="}"#.into()),
        Step::Binary(vec![1, 2, 3]),
    ];
    let choices = match protocol {
        Protocol::TwelveData => &td,
        Protocol::Yahoo => &yahoo,
    };
    choices[(n % choices.len() as u64) as usize].clone()
}

/// The valid ticks of a tape as CSV, with the volume the feed derives: the increase of
/// the symbol's day volume since its previous price (0 for its first).
fn ticks_csv(prices: &[Price]) -> String {
    let mut last = std::collections::HashMap::new();
    let mut out = String::from("ts,symbol,price,volume\n");
    for p in prices {
        let dv = p.day_volume.unwrap_or(0);
        let volume = last
            .insert(p.symbol.clone(), dv)
            .map_or(0, |before| dv - before);
        out.push_str(&format!(
            "{},{},{},{volume}\n",
            iso(p.ts),
            p.symbol,
            p.price
        ));
    }
    out
}

/// 200,000 prices over 20 symbols with 5 dropped connections (one reconnect refused, one
/// starting with a replay of the last prices) and 1% garbage give exactly the bars of a file
/// of the valid prices.
fn tape_gives_the_bars_of_its_valid_ticks(protocol: Protocol) {
    let symbols: Vec<String> = (0..20).map(|i| format!("S{i:02}")).collect();
    let symbols: Vec<&str> = symbols.iter().map(String::as_str).collect();
    let prices = tape(11, &symbols, ms("2025-01-10T14:30:00Z"), 200_000);
    let mut steps = Vec::new();
    let mut rng = Lcg(5);
    let drops: Vec<usize> = (1..=5)
        .map(|k| k * 33_000 + rng.below(1000) as usize)
        .collect();
    let mut garbage_frames = 0;
    for (i, price) in prices.iter().enumerate() {
        if i % 100 == 50 {
            steps.push(garbage(protocol, rng.next()));
            garbage_frames += 1;
        }
        steps.push(Step::Price(price.clone()));
        if let Some(k) = drops.iter().position(|&d| d == i) {
            steps.push(Step::Drop);
            if k == 2 {
                steps.push(Step::RefuseNext(503));
            }
            if k == 3 {
                // The new connection starts with the last 40 prices again.
                steps.push(Step::Resend(40));
            }
        }
    }
    let fake = FakeFeed::start(protocol, steps, &[], Upgrade::Accept, None);

    let dir = scratch();
    let source = source_yaml(
        protocol,
        &fake.url(),
        &symbols,
        "max_delay: 2s, idle_timeout: 3s",
    );
    write(dir.path(), "live.yaml", &pipeline(&source, "live.jsonl"));
    write(dir.path(), "ticks.csv", &ticks_csv(&prices));
    write(
        dir.path(),
        "file.yaml",
        &pipeline(
            "{type: file, path: ticks.csv, format: csv, max_delay: 2s}",
            "file.jsonl",
        ),
    );
    support::run_ok(dir.path(), &["run", "file.yaml"]);
    let expected = sorted_lines(&dir.path().join("file.jsonl"));
    assert!(expected.len() > 1000, "{} bars", expected.len());

    let child = spawn(dir.path());
    let log = fake.wait_for("the whole tape sent", Duration::from_secs(180), |l| {
        l.finished
    });
    let waited = wait_for_lines(
        &dir.path().join("live.jsonl"),
        expected.len(),
        Duration::from_secs(60),
    );
    let status = interrupt(child);
    assert!(status.success(), "marketflow ended with {status}");
    assert_eq!(log.sent, prices, "the fake sent every price once, in order");
    assert!(log.connections >= 6, "{} connections", log.connections);
    let refused = log.upgrades.len() - log.connections;
    assert!(refused >= 1, "one reconnect was refused");
    let subscribes = log
        .received
        .iter()
        .filter(|(_, f)| f.contains("subscribe"))
        .map(|(c, _)| *c)
        .collect::<std::collections::BTreeSet<_>>();
    assert_eq!(
        subscribes.len(),
        log.connections,
        "every connection subscribed"
    );
    let got = sorted_lines(&dir.path().join("live.jsonl"));
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "the live bars differ from the file's");
    let dead = std::fs::read_to_string(dir.path().join("dead.jsonl")).unwrap_or_default();
    assert_eq!(
        dead.lines().count(),
        garbage_frames,
        "every garbage frame dead-lettered"
    );
    println!(
        "{protocol:?}: {} prices, {garbage_frames} garbage frames, {} connections ({refused} refused): {} bars equal to the file's; the last bars came {waited:?} after the tape ended",
        prices.len(),
        log.connections,
        got.len()
    );
}

#[test]
fn twelvedata_tape_gives_the_bars_of_its_valid_ticks() {
    tape_gives_the_bars_of_its_valid_ticks(Protocol::TwelveData);
}

#[test]
fn yahoo_tape_gives_the_bars_of_its_valid_ticks() {
    tape_gives_the_bars_of_its_valid_ticks(Protocol::Yahoo);
}

/// The bars (symbol, start, volume, trades) of a JSONL file of 1m bars.
fn bar_volumes(path: &Path) -> Vec<(String, i64, f64, u64)> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut bars: Vec<_> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["interval"] == "1m")
        .map(|v| {
            (
                v["symbol"].as_str().unwrap().to_owned(),
                ms(v["start"].as_str().unwrap()),
                v["volume"].as_f64().unwrap(),
                v["trades"].as_u64().unwrap(),
            )
        })
        .collect();
    bars.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    bars
}

/// A bar's volume is the increase of the day volume over its window, starting over at the
/// next session; a stale (lower) day volume adds nothing; a symbol without volume (FX)
/// still makes bars, of volume 0.
fn day_volume_becomes_window_volume(protocol: Protocol) {
    let day1 = ms("2025-01-10T14:30:00Z");
    let day2 = ms("2025-01-13T14:30:00Z");
    let p = |symbol: &str, ts: i64, dv: Option<i64>| Price {
        symbol: symbol.into(),
        ts,
        price: 100.0 + (ts / 1000 % 7) as f64,
        day_volume: dv,
    };
    let fx = if protocol == Protocol::TwelveData {
        "EUR/USD"
    } else {
        "EURUSD=X"
    };
    let prices = vec![
        p("AAPL", day1, Some(1_000)),
        p("AAPL", day1 + 20_000, Some(1_300)),
        p(fx, day1 + 21_000, None),
        p("AAPL", day1 + 61_000, Some(1_900)),
        p("AAPL", day1 + 62_000, Some(1_800)), // stale: clamped to 0
        p("AAPL", day1 + 119_000, Some(2_500)),
        p(fx, day1 + 119_000, None),
        p("AAPL", day2, Some(40)), // the next session starts over
        p("AAPL", day2 + 1_000, Some(70)),
        p("AAPL", day2 + 60_000, Some(100)),
    ];
    let steps = prices.iter().cloned().map(Step::Price).collect();
    let fake = FakeFeed::start(protocol, steps, &[], Upgrade::Accept, None);
    let dir = scratch();
    let source = source_yaml(
        protocol,
        &fake.url(),
        &["AAPL", fx],
        "max_delay: 0s, idle_timeout: 1s",
    );
    write(dir.path(), "live.yaml", &pipeline(&source, "live.jsonl"));
    let child = spawn(dir.path());
    fake.wait_for("the tape sent", Duration::from_secs(60), |l| l.finished);
    wait_for_lines(&dir.path().join("live.jsonl"), 9, Duration::from_secs(60));
    interrupt(child);
    let bars = bar_volumes(&dir.path().join("live.jsonl"));
    let aapl: Vec<(i64, f64, u64)> = bars
        .iter()
        .filter(|b| b.0 == "AAPL")
        .map(|b| (b.1, b.2, b.3))
        .collect();
    assert_eq!(
        aapl,
        vec![
            (day1, 300.0, 2),            // 1,000 -> 1,300 (the first price only sets the base)
            (day1 + 60_000, 1_200.0, 3), // 1,300 -> 2,500, the stale 1,800 adding nothing
            (day2, 70.0, 2),             // a new session: 0 -> 70
            (day2 + 60_000, 30.0, 1),
        ]
    );
    let fx_bars: Vec<_> = bars.iter().filter(|b| b.0 == fx).collect();
    assert_eq!(fx_bars.len(), 2, "{bars:?}");
    assert!(fx_bars.iter().all(|b| b.2 == 0.0));
}

#[test]
fn twelvedata_day_volume_becomes_window_volume() {
    day_volume_becomes_window_volume(Protocol::TwelveData);
}

#[test]
fn yahoo_day_volume_becomes_window_volume() {
    day_volume_becomes_window_volume(Protocol::Yahoo);
}

/// With no later tick, the bar of the last tick's window is written within
/// `max_delay + idle_timeout + 1s` of that tick.
#[test]
fn a_quiet_feed_closes_its_last_window() {
    let t0 = ms("2025-01-10T14:30:00Z");
    let steps = (0..5)
        .map(|i| {
            Step::Price(Price {
                symbol: "AAPL".into(),
                ts: t0 + i * 10_000,
                price: 100.0 + i as f64,
                day_volume: Some(1_000 + i * 10),
            })
        })
        .collect();
    let fake = FakeFeed::start(Protocol::TwelveData, steps, &[], Upgrade::Accept, None);
    let dir = scratch();
    let source = source_yaml(
        Protocol::TwelveData,
        &fake.url(),
        &["AAPL"],
        "max_delay: 1s, idle_timeout: 1s",
    );
    write(dir.path(), "live.yaml", &pipeline(&source, "live.jsonl"));
    let child = spawn(dir.path());
    let log = fake.wait_for("the ticks sent", Duration::from_secs(60), |l| {
        l.sent.len() == 5
    });
    let last_sent = *log.sent_at.last().unwrap();
    let allowed = Duration::from_secs(3); // max_delay + idle_timeout + 1s
    wait_for_lines(
        &dir.path().join("live.jsonl"),
        1,
        allowed.saturating_sub(last_sent.elapsed()),
    );
    let after = last_sent.elapsed();
    interrupt(child);
    let bars = bar_volumes(&dir.path().join("live.jsonl"));
    assert_eq!(bars[0].1, t0);
    assert_eq!(bars[0].3, 5, "every tick in the bar");
    println!("the 1m bar was written {after:?} after its last tick (allowed {allowed:?})");
}

/// A connection that goes silent (no prices, no heartbeat answers) is replaced, and the
/// tape goes on over the new one: nothing lost, nothing twice.
#[test]
fn a_silent_connection_is_replaced() {
    let t0 = ms("2025-01-10T14:30:00Z");
    let price = |i: i64| {
        Step::Price(Price {
            symbol: "AAPL".into(),
            ts: t0 + i * 1_000,
            price: 100.0,
            day_volume: Some(1_000 + i),
        })
    };
    let mut steps: Vec<Step> = (0..10).map(price).collect();
    steps.push(Step::Silence(Duration::from_secs(30)));
    steps.extend((10..20).map(price));
    let fake = FakeFeed::start(Protocol::TwelveData, steps, &[], Upgrade::Accept, None);
    let dir = scratch();
    let source = source_yaml(
        Protocol::TwelveData,
        &fake.url(),
        &["AAPL"],
        "max_delay: 0s, idle_timeout: 60s, silence_timeout: 1s",
    );
    write(dir.path(), "live.yaml", &pipeline(&source, "live.jsonl"));
    let child = spawn(dir.path());
    let log = fake.wait_for(
        "the rest of the tape on a new connection",
        Duration::from_secs(20),
        |l| l.sent.len() == 20,
    );
    assert!(log.connections >= 2);
    let status = interrupt(child);
    assert!(status.success());
    // The open window is dropped at the interrupt; the dead-letter file has no garbage and
    // the metrics are not reachable here: the count of prices received is checked through
    // the fake's log of subscriptions instead.
    let resubscribed = log
        .received
        .iter()
        .filter(|(c, f)| *c == 2 && f.contains("subscribe"))
        .count();
    assert_eq!(resubscribed, 1, "the new connection subscribed again");
}

/// A refused key stops the run within 5 s with a one-line error naming the source and
/// the cause; the key is in no log line, even at trace level.
fn refused_key_stops_the_run(protocol: Protocol, upgrade: Upgrade) {
    let fake = FakeFeed::start(protocol, Vec::new(), &[], upgrade, None);
    let dir = scratch();
    let source = source_yaml(protocol, &fake.url(), &["AAPL"], "max_delay: 0s");
    write(dir.path(), "live.yaml", &pipeline(&source, "live.jsonl"));
    let started = Instant::now();
    let child = marketflow()
        .current_dir(dir.path())
        .args(["run", "live.yaml"])
        .env("TD_KEY", KEY)
        .env("RUST_LOG", "trace")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("marketflow starts");
    let pid = child.id();
    let _dog = support::watchdog(
        pid,
        Duration::from_secs(5),
        "the run to stop on a refused key",
    );
    let out = child.wait_with_output().expect("output");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].contains("source ticks") && errors[0].contains("authentication failed"),
        "{}",
        errors[0]
    );
    assert!(!stderr.contains(KEY) && !String::from_utf8_lossy(&out.stdout).contains(KEY));
    assert_eq!(
        fake.snapshot().upgrades.len(),
        1,
        "no retry after a refused key"
    );
    println!("{protocol:?} {upgrade:?}: {:?} after {took:?}", errors[0]);
}

#[test]
fn twelvedata_refused_key_stops_the_run() {
    refused_key_stops_the_run(Protocol::TwelveData, Upgrade::Unauthorized);
    refused_key_stops_the_run(Protocol::TwelveData, Upgrade::OkWithError);
}

#[test]
fn yahoo_refused_connection_stops_the_run() {
    refused_key_stops_the_run(Protocol::Yahoo, Upgrade::Unauthorized);
}

/// A symbol the server refuses is reported once (log, metric, `/health`); the others
/// stream, and the key went only in the upgrade's query.
#[test]
fn refused_symbols_are_reported_and_the_rest_streams() {
    let t0 = ms("2025-01-10T14:30:00Z");
    let steps = (0..50)
        .map(|i| {
            Step::Price(Price {
                symbol: "AAPL".into(),
                ts: t0 + i * 1_000,
                price: 100.0,
                day_volume: Some(1_000 + i),
            })
        })
        .collect();
    let fake = FakeFeed::start(
        Protocol::TwelveData,
        steps,
        &["NOPE"],
        Upgrade::Accept,
        None,
    );
    let dir = scratch();
    let source = source_yaml(
        Protocol::TwelveData,
        &fake.url(),
        &["AAPL", "NOPE"],
        "max_delay: 0s, idle_timeout: 60s",
    );
    let yaml = pipeline(&source, "live.jsonl")
        + "  live: {type: websocket, from: [ticks]}\nserver: {listen: 127.0.0.1:8000}\n";
    let yaml = yaml.replace("dead_letter: {path: dead.jsonl}\n", "");
    write(
        dir.path(),
        "live.yaml",
        &(yaml + "dead_letter: {path: dead.jsonl}\n"),
    );
    let server = {
        std::env::set_var("TD_KEY", KEY);
        Serving::start(dir.path(), &["run", "live.yaml", "--listen", "127.0.0.1:0"])
    };
    fake.wait_for("the ticks sent", Duration::from_secs(30), |l| {
        l.sent.len() == 50
    });
    let (health, metrics) = block_on(async {
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            let health = get(server.addr, "/health").await.json();
            let source = &health["sources"][0];
            if source["status"] == "ok" && source["rejected_symbols"] == serde_json::json!(["NOPE"])
            {
                let metrics = get(server.addr, "/metrics").await.text();
                return (health, metrics);
            }
            assert!(
                Instant::now() < until,
                "waited 10s for /health to list NOPE: {health}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    assert!(health["sources"][0]["last_message"].is_string(), "{health}");
    assert!(
        metrics.contains("marketflow_source_rejected_symbols_total{source=\"ticks\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("marketflow_source_messages_total{source=\"ticks\"}"));
    let upgrades = fake.snapshot().upgrades;
    assert!(
        upgrades[0].ends_with(&format!("apikey={KEY}")),
        "{upgrades:?}"
    );
    server.interrupt();
}

/// Without its key in the environment, the TwelveData pipeline does not validate: the
/// error names the variable.
#[test]
fn the_twelvedata_pipeline_needs_its_key() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = marketflow()
        .current_dir(root)
        .args(["validate", "pipelines/twelvedata.yaml"])
        .env_remove("TWELVEDATA_API_KEY")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains("TWELVEDATA_API_KEY` is not set"),
        "{stderr}"
    );
}

/// Prices of `symbol` one a second from `from`, `count` of them, on a random walk.
fn every_second(seed: u64, symbol: &str, from: i64, count: usize) -> Vec<Price> {
    let mut rng = Lcg(seed);
    let mut price = 100.0f64;
    (0..count)
        .map(|i| {
            price =
                ((price + (rng.below(21) as f64 - 10.0) / 100.0).max(1.0) * 100.0).round() / 100.0;
            Price {
                symbol: symbol.to_owned(),
                ts: from + i as i64 * 1000,
                price,
                day_volume: Some(1_000_000 + i as i64),
            }
        })
        .collect()
}

/// A live feed with `recovery:` killed with SIGKILL and resumed against a new server: the
/// hour bar open at the kill is restored with the ticks taken before the checkpoint and
/// completed with those that arrive after the resume (a live feed cannot send again what
/// came after the checkpoint: those are lost, as documented).
#[test]
fn a_resumed_live_feed_completes_the_window_open_at_the_checkpoint() {
    let t0 = ms("2025-01-10T14:00:00Z");
    let before = every_second(3, "AAPL", t0, 1200);
    let mut steps: Vec<Step> = before.iter().cloned().map(Step::Price).collect();
    steps.push(Step::Gate);
    // Paced, so that checkpoints every 100 ms fall among the first 20 minutes' prices.
    let first = FakeFeed::start(
        Protocol::TwelveData,
        steps,
        &[],
        Upgrade::Accept,
        Some(400.0),
    );
    let dir = scratch();
    let yaml = |url: &str| {
        let source = source_yaml(
            Protocol::TwelveData,
            url,
            &["AAPL"],
            "max_delay: 1s, idle_timeout: 1h",
        );
        format!(
            "pipeline: live\n\
             recovery: {{path: recovery.db, checkpoint_interval: 100ms}}\n\
             sources:\n  ticks: {source}\n\
             operators:\n  bars_1h: {{type: bars, from: ticks, interval: 1h}}\n\
             sinks:\n  out: {{type: file, from: bars_1h, path: out.jsonl}}\n"
        )
    };
    let run = |args: &[&str], log: &str| {
        marketflow()
            .current_dir(dir.path())
            .args(args)
            .env("TD_KEY", KEY)
            .env("RUST_LOG", "marketflow=info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join(log)).unwrap())
            .spawn()
            .expect("marketflow starts")
    };
    write(dir.path(), "live.yaml", &yaml(&first.url()));
    let mut child = run(&["run", "live.yaml", "--no-server"], "killed.log");
    first.wait_for("the first 20 minutes sent", Duration::from_secs(60), |l| {
        l.sent.len() == before.len()
    });
    // The checkpoints that cut the partition among those prices: the last is where the
    // resumed run starts. (None completes after the last price: the feed is quiet.)
    let started = Instant::now();
    let text = loop {
        let text = std::fs::read_to_string(dir.path().join("killed.log")).unwrap_or_default();
        let (_, commits) = support::resume::checkpoints_in(&text);
        if commits.last().is_some_and(|n| *n >= 600) {
            break text;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "waited 60s for a checkpoint past 600 ticks; the log:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    let logged = support::resume::checkpoints_in(&text).1;
    assert!(
        !dir.path().join("out.jsonl").exists()
            || std::fs::read_to_string(dir.path().join("out.jsonl"))
                .unwrap()
                .is_empty(),
        "the hour bar was written before the hour ended"
    );

    // The rest of the hour and ten minutes more, from another server.
    let after = every_second(4, "AAPL", t0 + 1_200_000, 3_000);
    let second = FakeFeed::start(
        Protocol::TwelveData,
        after.iter().cloned().map(Step::Price).collect(),
        &[],
        Upgrade::Accept,
        None,
    );
    write(dir.path(), "live.yaml", &yaml(&second.url()));
    let child = run(
        &["run", "live.yaml", "--no-server", "--resume"],
        "resumed.log",
    );
    wait_for_lines(&dir.path().join("out.jsonl"), 1, Duration::from_secs(60));
    interrupt(child);
    let text = std::fs::read_to_string(dir.path().join("resumed.log")).unwrap();
    let (resumed, _) = support::resume::checkpoints_in(&text);
    let resumed = resumed.unwrap_or_else(|| panic!("the run did not resume:\n{text}"));
    assert!(
        resumed >= *logged.last().unwrap(),
        "resumed from {resumed}, before the last checkpoint logged ({logged:?})"
    );
    let kept = &before[..resumed as usize];
    let later: Vec<&Price> = after.iter().filter(|p| p.ts < t0 + 3_600_000).collect();
    let bar: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(dir.path().join("out.jsonl"))
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    println!(
        "killed after checkpoints at {logged:?} ticks; resumed from {resumed}; the hour bar: {bar}"
    );
    assert_eq!(ms(bar["start"].as_str().unwrap()), t0);
    assert_eq!(
        bar["trades"].as_u64().unwrap(),
        (kept.len() + later.len()) as u64,
        "the ticks before the checkpoint and after the resume"
    );
    let prices = kept.iter().chain(later.iter().copied()).map(|p| p.price);
    let high = prices.clone().fold(f64::MIN, f64::max);
    let low = prices.fold(f64::MAX, f64::min);
    assert_eq!(bar["open"].as_f64().unwrap(), before[0].price);
    assert_eq!(bar["high"].as_f64().unwrap(), high);
    assert_eq!(bar["low"].as_f64().unwrap(), low);
    assert_eq!(bar["close"].as_f64().unwrap(), later.last().unwrap().price);
}
