//! The chart page in a real browser: headless Chromium (Debian's `chromium`, installed by
//! scripts/setup.sh) loads `/` from a running demo, driven over the DevTools protocol. The
//! page must report in the DOM that it drew at least 50 candles and received live updates
//! (records after the snapshot); a screenshot is kept in target/test-artifacts/.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use support::http::{block_on, get, within, Serving, WAIT};
use support::{scratch, watchdog};
use tokio_tungstenite::tungstenite::Message;

fn find_chromium() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("MARKETFLOW_CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|p| p.is_file())
}

/// Headless Chromium with a DevTools endpoint; killed when dropped.
struct Browser {
    child: Child,
    devtools: String,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Browser {
    fn launch(binary: &Path, profile: &Path) -> Browser {
        let mut child = Command::new(binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--window-size=1280,800",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        let stderr = child.stderr.take().expect("stderr piped");
        let mut lines = BufReader::new(stderr).lines();
        let chromium_started = watchdog(child.id(), WAIT, "Chromium to open DevTools");
        let devtools = loop {
            let line = lines
                .next()
                .expect("chromium exited before opening DevTools")
                .expect("reading chromium's stderr");
            if let Some(url) = line.strip_prefix("DevTools listening on ") {
                break url.trim().to_owned();
            }
        };
        drop(chromium_started);
        // Keep draining its log so that it never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Browser { child, devtools }
    }
}

/// A DevTools protocol session on one page.
struct Cdp {
    ws: support::http::Ws,
    next_id: u64,
    session: Option<String>,
    /// Events received while waiting for replies.
    events: Vec<Value>,
}

impl Cdp {
    async fn connect(url: &str) -> Cdp {
        let host = url
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .expect("host:port");
        let stream = tokio::net::TcpStream::connect(host)
            .await
            .expect("devtools port");
        let (ws, _) = tokio_tungstenite::client_async(url, stream)
            .await
            .expect("devtools handshake");
        Cdp {
            ws,
            next_id: 0,
            session: None,
            events: Vec::new(),
        }
    }

    /// Sends a command and returns its result (events in between are skipped).
    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = &self.session {
            message["sessionId"] = json!(session);
        }
        self.ws
            .send(Message::text(message.to_string()))
            .await
            .expect("devtools send");
        loop {
            let reply = self.receive().await;
            if reply["id"] == id {
                assert!(reply["error"].is_null(), "{method}: {}", reply["error"]);
                return reply["result"].clone();
            }
            if reply["method"].is_string() {
                self.events.push(reply);
            }
        }
    }

    async fn receive(&mut self) -> Value {
        loop {
            let frame = within("a DevTools message", self.ws.next())
                .await
                .expect("devtools open")
                .expect("devtools frame");
            if let Message::Text(text) = frame {
                return serde_json::from_str(text.as_str()).expect("devtools JSON");
            }
        }
    }

    /// Waits for an event of this session.
    async fn event(&mut self, method: &str) -> Value {
        let mine = |e: &Value, session: &Option<String>| {
            e["method"] == method && e["sessionId"].as_str() == session.as_deref()
        };
        if let Some(at) = self.events.iter().position(|e| mine(e, &self.session)) {
            return self.events.remove(at);
        }
        loop {
            let event = self.receive().await;
            if mine(&event, &self.session) {
                return event;
            }
        }
    }

    /// Opens `url` in a new page, attaches to it and waits until it has loaded.
    async fn open(&mut self, url: &str) {
        self.session = None;
        let target = self
            .call("Target.createTarget", json!({"url": "about:blank"}))
            .await;
        let attached = self
            .call(
                "Target.attachToTarget",
                json!({"targetId": target["targetId"], "flatten": true}),
            )
            .await;
        self.session = attached["sessionId"].as_str().map(str::to_owned);
        self.call("Page.enable", json!({})).await;
        // Counts what the page's Content-Security-Policy blocks, from before its first script.
        self.call(
            "Page.addScriptToEvaluateOnNewDocument",
            json!({"source": "window.__csp = []; document.addEventListener('securitypolicyviolation', (e) => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));"}),
        )
        .await;
        self.events.clear();
        self.call("Page.navigate", json!({"url": url})).await;
        self.event("Page.loadEventFired").await;
    }

    /// Evaluates an expression in the page, awaiting it if it is a promise.
    async fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "awaitPromise": true, "returnByValue": true}),
            )
            .await;
        assert!(
            result["exceptionDetails"].is_null(),
            "{expression}: {}",
            result["exceptionDetails"]
        );
        result["result"]["value"].clone()
    }
}

/// Resolves with the page's counters once `condition` holds, checking on each animation
/// frame; rejects after `seconds` with what it saw.
fn wait_in_page(condition: &str, seconds: u32) -> String {
    format!(
        "new Promise((resolve, reject) => {{
            const until = Date.now() + {seconds} * 1000;
            const check = () => {{
                const d = document.body.dataset;
                if ({condition}) resolve(JSON.stringify(d));
                else if (Date.now() > until) reject(new Error('gave up: ' + JSON.stringify(d) + ' ' + document.getElementById('status')?.textContent));
                else requestAnimationFrame(check);
            }};
            check();
        }})"
    )
}

fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_chart_draws_candles_and_updates_live() {
    let chromium = find_chromium();
    if !support::tool_present(chromium.is_some(), "chromium") {
        return;
    }
    let chromium = chromium.unwrap_or_default();
    let dir = scratch();
    // The README's main command, on a free port: a day of synthetic history, then live.
    let demo = Serving::start(dir.path(), &["run", "--listen", "127.0.0.1:0"]);
    let browser = Browser::launch(&chromium, &dir.path().join("profile"));
    let shot = artifacts().join("chart.png");
    block_on(async {
        tokio::time::timeout(Duration::from_secs(180), async {
            let mut cdp = Cdp::connect(&browser.devtools).await;
            cdp.open(&format!("http://{}/?symbol=AAPL", demo.addr))
                .await;
            let seen = cdp
                .eval(&wait_in_page(
                    "d.ready === 'true' && +d.candles >= 50 && +d.liveUpdates > 0",
                    150,
                ))
                .await;
            let seen: Value = serde_json::from_str(seen.as_str().unwrap()).unwrap();
            eprintln!("chart page reports {seen}");
            assert!(seen["candles"].as_str().unwrap().parse::<u64>().unwrap() >= 50);
            assert!(
                seen["liveUpdates"]
                    .as_str()
                    .unwrap()
                    .parse::<u64>()
                    .unwrap()
                    > 0
            );
            // Under its Content-Security-Policy (inline code by hash, connections to this
            // server only) nothing the page needs was blocked.
            let policy = cdp
                .eval("fetch('/', {headers: {Accept: 'text/html'}}).then(r => r.headers.get('content-security-policy'))")
                .await;
            assert!(
                policy.as_str().is_some_and(|p| p.contains("script-src 'sha256-")),
                "the chart page has no Content-Security-Policy: {policy}"
            );
            let blocked = cdp.eval("JSON.stringify(window.__csp)").await;
            assert_eq!(blocked.as_str(), Some("[]"), "the policy blocked parts of the chart");
            // A few more frames so the screenshot shows the live candle.
            cdp.eval("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
                .await;
            let png = cdp
                .call("Page.captureScreenshot", json!({"format": "png"}))
                .await;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(png["data"].as_str().expect("screenshot data"))
                .expect("base64");
            assert!(bytes.starts_with(b"\x89PNG"), "not a PNG");
            std::fs::write(&shot, &bytes).unwrap();
            eprintln!("screenshot: {} ({} bytes)", shot.display(), bytes.len());

            // The API docs page renders every operation of /openapi.json.
            cdp.open(&format!("http://{}/docs", demo.addr)).await;
            let seen = cdp.eval(&wait_in_page("+d.operations > 0", 30)).await;
            let seen: Value = serde_json::from_str(seen.as_str().unwrap()).unwrap();
            let blocked = cdp.eval("JSON.stringify(window.__csp)").await;
            assert_eq!(blocked.as_str(), Some("[]"), "the policy blocked parts of the docs page");
            let documented = get(demo.addr, "/openapi.json").await.json()["paths"]
                .as_object()
                .unwrap()
                .len();
            assert_eq!(
                seen["operations"]
                    .as_str()
                    .unwrap()
                    .parse::<usize>()
                    .unwrap(),
                documented
            );
        })
        .await
        .expect("the browser test took over 180 s");
    });
    drop(browser);
    assert!(demo.interrupt().success(), "the demo exits 0 on Ctrl-C");
}
