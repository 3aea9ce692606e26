//! WebSocket streams over real TCP: the subscribe protocol, snapshot then live records in
//! order with no gap, the seed's endpoints, errors, a stalled client dropped while the
//! others get everything, pings, shutdown, and a pipeline feeding clients end to end.

mod support;

use std::io::Write;
use std::net::SocketAddr;

use futures_util::StreamExt;
use marketflow::config::values::Duration;
use marketflow::hub::Hub;
use marketflow::server::{self, ServerConfig, ServerHandle, ServerState};
use marketflow_operators::fixed::Fixed;
use marketflow_operators::indicators::IndicatorKind;
use marketflow_operators::{Bar, IndicatorRow, Interval, Record, Symbol, Tick};
use serde_json::json;
use support::http::{
    block_on, client_frame, frame, get, within, ws_connect, ws_next, ws_send, Serving, Ws,
};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

const T0: i64 = 1_704_205_800_000;

fn tick(symbol: &str, i: i64) -> Record {
    Record::Tick(Tick {
        symbol: Symbol::new(symbol).unwrap(),
        ts: T0 + i,
        price: 100.0,
        volume: i as f64, // the sequence number, read back by the tests
        seq: i as u64,
        wm: T0,
    })
}

fn bar(symbol: &str, interval: Interval, i: i64) -> Record {
    let start = T0 + i * interval.millis();
    Record::Bar(Bar {
        symbol: Symbol::new(symbol).unwrap(),
        interval,
        start,
        end: start + interval.millis(),
        open: 1.0,
        high: 2.0,
        low: 0.5,
        close: 1.5,
        volume: Fixed::from_f64(10.0),
        notional: Fixed::from_f64(15.0),
        trades: 3,
        revision: 0,
        seq: 0,
        wm: start,
        source: Default::default(),
    })
}

fn rsi(symbol: &str, interval: Interval, i: i64) -> Record {
    Record::Indicator(IndicatorRow {
        symbol: Symbol::new(symbol).unwrap(),
        interval,
        ts: T0 + i * interval.millis(),
        id: "rsi_14".into(),
        kind: IndicatorKind::Rsi,
        outputs: [i as f64, f64::NAN, f64::NAN, f64::NAN, f64::NAN],
        revision: 0,
    })
}

fn config(edit: impl FnOnce(&mut ServerConfig)) -> ServerConfig {
    let mut c = ServerConfig::default();
    edit(&mut c);
    c
}

/// A server on a free port with its own hub (no store), in the current runtime.
fn start(config: &ServerConfig) -> (ServerHandle, Hub) {
    let hub = Hub::new(config.hub_config());
    let listener = server::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let handle = server::start(listener, ServerState::new(config, None, hub.clone())).unwrap();
    (handle, hub)
}

/// Reads `n` ticks (skipping nothing; marketflow's records or the predecessor's
/// `market.prices.raw` messages), returning their `volume` sequence numbers.
async fn read_ticks(ws: &mut Ws, n: usize) -> Vec<i64> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let m = ws_next(ws).await.expect("open");
        assert!(m["type"] == "tick" || m["source"] == "marketflow", "{m}");
        out.push(m["volume"].as_i64().unwrap());
    }
    out
}

#[test]
fn subscribe_gets_a_snapshot_then_live_records_in_order() {
    block_on(async {
        let (server, hub) = start(&config(|c| c.snapshot = 5));
        hub.publish((0..10).map(|i| tick("AAPL", i)).collect());
        hub.publish(vec![tick("MSFT", 0), bar("AAPL", Interval::M5, 0)]);
        let mut ws = ws_connect(server.addr, "/ws").await;
        ws_send(
            &mut ws,
            json!({"action": "subscribe", "streams": ["ticks:aapl", "bars:1m:AAPL"]}),
        )
        .await;
        assert_eq!(
            ws_next(&mut ws).await.unwrap(),
            json!({"type": "subscribed", "streams": ["ticks:AAPL", "bars:1m:AAPL"]})
        );
        assert_eq!(
            ws_next(&mut ws).await.unwrap(),
            json!({"type": "snapshot", "stream": "ticks:AAPL", "records": 5})
        );
        assert_eq!(read_ticks(&mut ws, 5).await, [5, 6, 7, 8, 9]);
        assert_eq!(
            ws_next(&mut ws).await.unwrap(),
            json!({"type": "snapshot", "stream": "bars:1m:AAPL", "records": 0})
        );
        // Live: only the subscribed streams, in publication order.
        for batch in 0..20 {
            let mut records: Vec<Record> = (0..100)
                .map(|i| tick("AAPL", 10 + batch * 100 + i))
                .collect();
            records.insert(50, tick("MSFT", batch));
            records.push(bar("AAPL", Interval::M5, batch + 1));
            hub.publish(records);
        }
        hub.publish(vec![bar("AAPL", Interval::M1, 7)]);
        let expected: Vec<i64> = (10..2010).collect();
        assert_eq!(read_ticks(&mut ws, 2000).await, expected);
        let m = ws_next(&mut ws).await.unwrap();
        assert_eq!(
            (
                m["type"].as_str(),
                m["interval"].as_str(),
                m["start"].as_str()
            ),
            (Some("bar"), Some("1m"), Some("2024-01-02T14:37:00Z"))
        );
        server.stop().await;
    });
}

#[test]
fn no_gap_and_no_repeat_between_snapshot_and_live() {
    block_on(async {
        // A queue that holds everything: this test is about order, not speed.
        let (server, hub) = start(&config(|c| {
            c.snapshot = 50;
            c.client_queue = 1_000_000;
        }));
        const TOTAL: i64 = 200_000;
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
        let publisher = {
            let hub = hub.clone();
            std::thread::spawn(move || {
                for i in (0..TOTAL).step_by(10) {
                    if i == TOTAL / 4 {
                        // A quarter is out: the client subscribes while the rest follows.
                        ready_tx.send(()).unwrap();
                    }
                    hub.publish((i..i + 10).map(|k| tick("AAPL", k)).collect());
                }
            })
        };
        let mut ws = ws_connect(server.addr, "/ws").await;
        ready_rx.recv().unwrap();
        ws_send(
            &mut ws,
            json!({"action": "subscribe", "streams": ["ticks:AAPL"]}),
        )
        .await;
        assert_eq!(ws_next(&mut ws).await.unwrap()["type"], "subscribed");
        let marker = ws_next(&mut ws).await.unwrap();
        assert_eq!(marker["records"], 50, "{marker}");
        let first = read_ticks(&mut ws, 1).await[0];
        assert!(first >= TOTAL / 4 - 50, "snapshot starts at {first}");
        let rest = read_ticks(&mut ws, (TOTAL - first - 1) as usize).await;
        let expected: Vec<i64> = (first + 1..TOTAL).collect();
        assert!(rest == expected, "records from {first} are not contiguous");
        publisher.join().unwrap();
        server.stop().await;
    });
}

#[test]
fn the_seed_endpoints_greet_filter_and_unsubscribe() {
    block_on(async {
        let (server, hub) = start(&ServerConfig::default());
        hub.publish(vec![tick("AAPL", 0)]);
        let mut prices = ws_connect(server.addr, "/ws/prices/aapl").await;
        let hello = ws_next(&mut prices).await.unwrap();
        assert_eq!(
            (
                &hello["type"],
                &hello["status"],
                &hello["topic"],
                &hello["symbol"]
            ),
            (
                &json!("subscription"),
                &json!("success"),
                &json!("market.prices.raw"),
                &json!("AAPL")
            )
        );
        assert!(hello["timestamp"].as_str().unwrap().ends_with('Z'));
        // The latest records, without a marker; then the predecessor's message shape.
        let first = ws_next(&mut prices).await.unwrap();
        assert_eq!(
            first,
            json!({"symbol": "AAPL", "price": 100, "timestamp": "2024-01-02T14:30:00+00:00",
                   "volume": 0, "source": "marketflow"})
        );

        let mut analytics = ws_connect(server.addr, "/ws/analytics/AAPL?interval=5min").await;
        assert_eq!(
            ws_next(&mut analytics).await.unwrap()["topic"],
            "market.analytics"
        );

        hub.publish(vec![
            tick("MSFT", 1),
            rsi("AAPL", Interval::M1, 1),
            tick("AAPL", 2),
            rsi("AAPL", Interval::M5, 2),
            rsi("MSFT", Interval::M5, 3),
        ]);
        assert_eq!(read_ticks(&mut prices, 1).await, [2]);
        let row = ws_next(&mut analytics).await.unwrap();
        assert_eq!(
            (
                row["event_type"].as_str(),
                row["interval_minutes"].as_f64(),
                row["symbol"].as_str()
            ),
            (Some("analytics.technical"), Some(5.0), Some("AAPL"))
        );
        assert_eq!(row["indicators"], json!({"rsi_14": 2}));

        // Extra keys are ignored on the predecessor's endpoints, as they were.
        ws_send(
            &mut prices,
            json!({"action": "unsubscribe", "symbol": "AAPL"}),
        )
        .await;
        let bye = ws_next(&mut prices).await.unwrap();
        assert_eq!(
            (&bye["status"], &bye["streams"]),
            (&json!("unsubscribed"), &json!(["ticks:AAPL"]))
        );
        hub.publish(vec![tick("AAPL", 3)]);
        // Messages keep their order: the pong comes before any later tick would.
        ws_send(&mut prices, json!({"action": "ping"})).await;
        assert_eq!(ws_next(&mut prices).await.unwrap(), json!({"type": "pong"}));
        server.stop().await;
    });
}

#[test]
fn bad_messages_get_errors_and_the_connection_stays() {
    block_on(async {
        let (server, _hub) = start(&ServerConfig::default());
        let mut ws = ws_connect(server.addr, "/ws").await;
        for (message, code) in [
            ("not json", "bad_message"),
            (
                r#"{"action":"subscribe","streams":["quotes:AAPL"]}"#,
                "bad_stream",
            ),
            (
                r#"{"action":"subscribe","streams":["bars:7x:AAPL"]}"#,
                "bad_stream",
            ),
            (
                r#"{"action":"subscribe","streams":["ticks:A B"]}"#,
                "bad_stream",
            ),
            (r#"{"action":"subscribe","streams":[]}"#, "bad_message"),
            (
                r#"{"action":"subscribe","streams":["ticks:A"],"typo":1}"#,
                "bad_message",
            ),
            (r#"{"action":"dance"}"#, "unknown_action"),
        ] {
            futures_util::SinkExt::send(&mut ws, Message::text(message))
                .await
                .unwrap();
            let reply = ws_next(&mut ws).await.unwrap();
            assert_eq!(
                (reply["type"].as_str(), reply["error"]["code"].as_str()),
                (Some("error"), Some(code)),
                "{message}: {reply}"
            );
        }
        futures_util::SinkExt::send(&mut ws, Message::Binary(vec![1, 2, 3].into()))
            .await
            .unwrap();
        assert_eq!(
            ws_next(&mut ws).await.unwrap()["error"]["code"],
            "bad_message"
        );
        let too_many: Vec<String> = (0..300).map(|i| format!("ticks:S{i}")).collect();
        ws_send(&mut ws, json!({"action": "subscribe", "streams": too_many})).await;
        assert_eq!(
            ws_next(&mut ws).await.unwrap()["error"]["code"],
            "too_many_streams"
        );
        ws_send(&mut ws, json!({"action": "ping"})).await;
        assert_eq!(ws_next(&mut ws).await.unwrap(), json!({"type": "pong"}));
        server.stop().await;
    });
}

#[test]
fn a_stalled_client_is_dropped_while_the_others_get_everything() {
    block_on(async {
        let (server, hub) = start(&config(|c| {
            c.client_queue = 2_000;
            c.max_dropped = 10_000;
        }));
        let subscribe = json!({"action": "subscribe", "streams": ["ticks:AAPL"]});
        let mut healthy = ws_connect(server.addr, "/ws").await;
        let mut stalled = ws_connect(server.addr, "/ws").await;
        for ws in [&mut healthy, &mut stalled] {
            ws_send(ws, subscribe.clone()).await;
            assert_eq!(ws_next(ws).await.unwrap()["type"], "subscribed");
            assert_eq!(ws_next(ws).await.unwrap()["type"], "snapshot");
        }
        assert_eq!(hub.clients(), 2);
        // The stream goes at the pace of the healthy client (at most two batches ahead of
        // what it has read); the stalled client reads nothing.
        const TOTAL: i64 = 200_000;
        const BATCH: i64 = 500;
        let (progress_tx, mut progress) = tokio::sync::watch::channel(0i64);
        let reader = tokio::spawn(async move {
            let mut got = Vec::with_capacity(TOTAL as usize);
            while got.len() < TOTAL as usize {
                got.extend(read_ticks(&mut healthy, BATCH as usize).await);
                let _ = progress_tx.send(got.len() as i64);
            }
            (got, healthy)
        });
        for i in (0..TOTAL).step_by(BATCH as usize) {
            progress
                .wait_for(|read| *read >= i - 2 * BATCH)
                .await
                .unwrap();
            hub.publish((i..i + BATCH).map(|k| tick("AAPL", k)).collect());
        }
        let (got, mut healthy) = reader.await.unwrap();
        assert!(
            got == (0..TOTAL).collect::<Vec<_>>(),
            "the healthy client lost or reordered records"
        );
        assert_eq!(hub.clients(), 1, "the stalled client was disconnected");
        // What the stalled client finds when it finally reads: part of the stream, maybe a
        // lag notice, then the server's close (policy violation).
        let mut records = 0;
        let mut close = None;
        while let Some(message) = within("the stalled client's close", stalled.next()).await {
            match message {
                Ok(Message::Text(t)) => {
                    if t.as_str().contains("\"type\":\"tick\"") {
                        records += 1;
                    }
                }
                Ok(Message::Close(frame)) => {
                    close = frame.map(|f| u16::from(f.code));
                    break;
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        assert!(
            records < TOTAL,
            "the stalled client got everything ({records})"
        );
        assert!(matches!(close, Some(1008) | None), "close code {close:?}");
        // The healthy client is still served.
        hub.publish(vec![tick("AAPL", TOTAL)]);
        assert_eq!(read_ticks(&mut healthy, 1).await, [TOTAL]);
        server.stop().await;
    });
}

#[test]
fn pings_keep_answering_clients_and_close_silent_ones() {
    block_on(async {
        let (server, hub) = start(&config(|c| c.ping_interval = Duration(100)));
        // A tungstenite client answers pings as it reads: still connected after five.
        let mut ws = ws_connect(server.addr, "/ws/prices/AAPL").await;
        let mut pings = 0;
        while pings < 5 {
            match within("a ping", ws.next()).await.unwrap().unwrap() {
                Message::Ping(_) => pings += 1,
                Message::Close(_) => panic!("closed after {pings} pings"),
                _ => {}
            }
        }
        hub.publish(vec![tick("AAPL", 42)]);
        assert_eq!(read_ticks(&mut ws, 1).await, [42]);

        // A client that never answers is closed after three unanswered intervals.
        let mut raw = raw_websocket(server.addr, "/ws").await;
        let mut opcodes = Vec::new();
        let mut buf = Vec::new();
        let close_code = 'read: loop {
            let mut chunk = [0u8; 1024];
            let n = within("pings and a close frame", raw.read(&mut chunk))
                .await
                .unwrap();
            assert!(n > 0, "connection ended without a close frame: {opcodes:?}");
            buf.extend_from_slice(&chunk[..n]);
            while let Some((opcode, payload, used)) = frame(&buf) {
                buf.drain(..used);
                opcodes.push(opcode);
                if opcode == 0x8 {
                    break 'read payload.get(..2).map(|c| u16::from_be_bytes([c[0], c[1]]));
                }
            }
        };
        assert!(
            opcodes.iter().filter(|&&o| o == 0x9).count() >= 3,
            "{opcodes:?}"
        );
        assert_eq!(close_code, Some(1008));
        server.stop().await;
    });
}

/// A client that keeps reading is not timed out during a large delivery, and its pongs
/// are heard under a stream that never pauses.
#[test]
fn a_busy_client_that_answers_pings_is_not_timed_out() {
    block_on(async {
        let (server, hub) = start(&config(|c| {
            c.ping_interval = Duration(20);
            c.client_queue = 10_000_000;
            c.max_dropped = u64::MAX;
        }));
        // About 20 MB in one delivery, then a stream that never pauses.
        const TOTAL: i64 = 200_000;
        let batch: Vec<_> = (0..TOTAL).map(|k| tick("AAPL", k)).collect();
        let mut ws = ws_connect(server.addr, "/ws/prices/AAPL").await;
        assert_eq!(ws_next(&mut ws).await.unwrap()["type"], "subscription");
        // Published from another thread: this one is the client, which must keep reading
        // (and answering pings) however long the hub takes to encode the batch.
        let publisher = hub.clone();
        let publishing = std::thread::spawn(move || publisher.publish(batch));
        let (mut pings, mut records) = (0, 0);
        while records < TOTAL || pings < 10 {
            if records == TOTAL {
                // A stream that keeps coming while the client waits for more pings.
                hub.publish(vec![tick("AAPL", TOTAL)]);
            }
            match within("records and pings", ws.next())
                .await
                .expect("open")
                .expect("frame")
            {
                Message::Ping(_) => pings += 1,
                Message::Text(t) if t.as_str().contains("\"price\"") => records += 1,
                Message::Close(frame) => {
                    panic!("closed after {pings} pings, {records} records: {frame:?}")
                }
                _ => {}
            }
        }
        publishing.join().expect("published");
        server.stop().await;
    });
}

/// A WebSocket handshake by hand: the socket then neither reads automatically nor pongs.
async fn raw_websocket(addr: SocketAddr, path: &str) -> tokio::net::TcpStream {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
    stream
}

#[test]
fn shutdown_closes_clients_with_going_away() {
    block_on(async {
        let (server, _hub) = start(&ServerConfig::default());
        let mut ws = ws_connect(server.addr, "/ws").await;
        ws_send(&mut ws, json!({"action": "ping"})).await;
        assert_eq!(ws_next(&mut ws).await.unwrap(), json!({"type": "pong"}));
        let addr = server.addr;
        server.stop().await;
        let mut code = None;
        while let Some(Ok(message)) = within("the close after shutdown", ws.next()).await {
            if let Message::Close(frame) = message {
                code = frame.map(|f| u16::from(f.code));
                break;
            }
        }
        assert_eq!(code, Some(1001));
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "still accepting"
        );
    });
}

/// Reads server frames until a Close; returns its status code (None: the TCP connection
/// ended without one).
async fn close_code(stream: &mut tokio::net::TcpStream) -> Option<u16> {
    let mut buf = Vec::new();
    loop {
        while let Some((opcode, payload, used)) = frame(&buf) {
            buf.drain(..used);
            if opcode == 8 {
                return (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
            }
        }
        let mut chunk = [0u8; 4096];
        match within("a Close frame", stream.read(&mut chunk)).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Protocol errors and a client's own close are answered with a Close frame carrying the
/// right code, never a bare TCP close (1006 at the client): too big 1009, bad UTF-8 1007,
/// a reserved opcode 1002, a normal close 1000.
#[test]
fn websocket_errors_and_closes_get_their_close_codes() {
    block_on(async {
        let (server, _hub) = start(&ServerConfig::default());
        let big = vec![b'x'; 100 * 1024];
        let cases: [(&str, Vec<u8>, u16); 4] = [
            ("an oversized message", client_frame(0x81, &big), 1009),
            (
                "text that is not UTF-8",
                client_frame(0x81, &[0xff, 0xfe, 0xfd]),
                1007,
            ),
            ("a reserved opcode", client_frame(0x83, b"?"), 1002),
            (
                "a normal close",
                client_frame(0x88, &1000u16.to_be_bytes()),
                1000,
            ),
        ];
        for (what, bytes, expected) in cases {
            let mut stream = raw_websocket(server.addr, "/ws").await;
            stream.write_all(&bytes).await.unwrap();
            assert_eq!(close_code(&mut stream).await, Some(expected), "{what}");
        }
        // The server is still serving.
        let mut ws = ws_connect(server.addr, "/ws").await;
        ws_send(&mut ws, json!({"action": "ping"})).await;
        assert_eq!(ws_next(&mut ws).await.unwrap(), json!({"type": "pong"}));
        server.stop().await;
    });
}

/// A TCP connection from a chosen loopback address (each stands for another client).
async fn connect_from(from: [u8; 4], to: SocketAddr) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    socket.connect(to).await.unwrap()
}

/// What a refused connection reads: the whole answer, up to the server's close.
async fn answer_of(stream: &mut tokio::net::TcpStream) -> String {
    let mut out = Vec::new();
    within(
        "the server's answer and close",
        stream.read_to_end(&mut out),
    )
    .await
    .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// Past `max_connections_per_client` a client's next connection is answered 503 (JSON) and
/// closed, past `max_connections` anyone's is; other clients go on being served, and a
/// closed connection (HTTP or WebSocket) frees its place.
#[test]
fn connections_are_capped_in_all_and_per_client() {
    block_on(async {
        let (server, _hub) = start(&config(|c| {
            c.max_connections = 8;
            c.max_connections_per_client = 4;
        }));
        let addr = server.addr;
        let mut hostile = Vec::new();
        for _ in 0..4 {
            hostile.push(connect_from([127, 0, 0, 2], addr).await);
        }
        let mut refused = connect_from([127, 0, 0, 2], addr).await;
        let answer = answer_of(&mut refused).await;
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(
            answer.contains(r#""code":"too_many_connections""#),
            "{answer}"
        );
        // Another client is served beside it.
        assert_eq!(get(addr, "/openapi.json").await.status, 200);
        // WebSockets hold places too: from other addresses (each under its own cap), they
        // fill the server until the total cap refuses one. (The connection of the request
        // above may still hold its place for a moment: 3 or 4 get in.)
        let mut sockets = Vec::new();
        let refused = loop {
            assert!(sockets.len() < 5, "the total cap refused no WebSocket");
            let from = [127, 0, 0, 10 + sockets.len() as u8];
            let (stream, head) = websocket_from(from, addr).await;
            if !head.starts_with("HTTP/1.1 101") {
                break head;
            }
            sockets.push(stream);
        };
        assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
        assert!(sockets.len() >= 3, "{} WebSockets", sockets.len());
        // Closing frees places.
        drop(sockets);
        drop(hostile);
        let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let mut probe = connect_from([127, 0, 0, 1], addr).await;
            probe
                .write_all(b"GET /openapi.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
            if answer_of(&mut probe).await.starts_with("HTTP/1.1 200") {
                break;
            }
            assert!(
                std::time::Instant::now() < until,
                "waited 10s for places to be freed"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        server.stop().await;
    });
}

/// A client that sends requests and never reads the answers is closed after
/// `write_timeout`, while another client is served beside it.
#[test]
fn a_client_that_never_reads_is_closed_after_the_write_timeout() {
    block_on(async {
        let (server, _hub) = start(&config(|c| c.write_timeout = Duration(1_000)));
        let addr = server.addr;
        let timeouts = || {
            marketflow::metrics::metrics()
                .render()
                .lines()
                .find_map(|l| l.strip_prefix("marketflow_http_write_timeouts_total "))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        let before = timeouts();
        // A small receive buffer, and 40 pipelined requests of the 49 KB OpenAPI document:
        // far more than the socket buffers hold.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut stalled = socket.connect(addr).await.unwrap();
        let requests = "GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n".repeat(40);
        stalled.write_all(requests.as_bytes()).await.unwrap();
        let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while timeouts() == before {
            assert_eq!(
                get(addr, "/openapi.json").await.status,
                200,
                "others are served"
            );
            assert!(
                std::time::Instant::now() < until,
                "waited 20s for the stalled connection to time out"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        // What the client reads now ends before the 40 answers: the server closed.
        let mut got = Vec::new();
        let _ = within(
            "the end of the closed connection",
            stalled.read_to_end(&mut got),
        )
        .await;
        assert!(got.len() < 40 * 48_000, "read {} bytes", got.len());
        server.stop().await;
    });
}

/// Resident memory of this process (the server runs in it), in bytes.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// A client pipelining thousands of subscribe/unsubscribe commands without reading gets
/// `busy` once 8 MiB are queued for it, instead of piling up snapshots: the server's memory
/// stays within 100 MB of where it was, and another client is answered meanwhile.
#[test]
fn a_command_storm_is_bounded() {
    block_on(async {
        // The snapshot limits, not the command rate (tests/hostile.rs class 22), are under test.
        let (server, hub) = start(&config(|c| {
            c.snapshot = 100;
            c.rate_limit.ws_commands.rate.value = "1000000000/s".parse().unwrap();
        }));
        hub.publish((0..100).map(|i| tick("A", i)).collect());
        let before = rss();
        let mut storm = raw_websocket(server.addr, "/ws").await;
        let mut commands = Vec::new();
        for _ in 0..3_000 {
            commands.extend(client_frame(
                0x81,
                br#"{"action":"subscribe","streams":["ticks:A"]}"#,
            ));
            commands.extend(client_frame(
                0x81,
                br#"{"action":"unsubscribe","streams":["ticks:A"]}"#,
            ));
        }
        commands.extend(client_frame(0x81, br#"{"action":"ping"}"#));
        let (mut reader, mut writer) = storm.split();
        let write = async { writer.write_all(&commands).await.unwrap() };
        // Only once every command is in does the storm client read.
        let mut other = ws_connect(server.addr, "/ws").await;
        ws_send(&mut other, json!({"action": "ping"})).await;
        assert_eq!(ws_next(&mut other).await.unwrap(), json!({"type": "pong"}));
        within("the commands written", write).await;
        let mut peak = rss();
        let mut buf = Vec::new();
        let (mut busy, mut pong) = (0, false);
        while !pong {
            let mut chunk = vec![0u8; 64 * 1024];
            let n = within("the storm's answers", reader.read(&mut chunk))
                .await
                .unwrap();
            assert!(n > 0, "the server closed the storm connection");
            buf.extend_from_slice(&chunk[..n]);
            while let Some((_, payload, used)) = frame(&buf) {
                buf.drain(..used);
                let text = String::from_utf8_lossy(&payload);
                busy += usize::from(text.contains(r#""code":"busy""#));
                pong |= text.contains(r#""type":"pong""#);
            }
            peak = peak.max(rss());
        }
        assert!(busy > 0, "no subscription was refused");
        let grown = peak.saturating_sub(before);
        assert!(grown < 100 << 20, "the server grew by {} MB", grown >> 20);
        println!(
            "{busy} of 3000 subscriptions refused as busy; memory grew by {} MB",
            grown >> 20
        );
        server.stop().await;
    });
}

/// A WebSocket upgrade by hand from a chosen loopback address: the stream and the answer's
/// head (101, or the refusal with its body).
async fn websocket_from(from: [u8; 4], addr: SocketAddr) -> (tokio::net::TcpStream, String) {
    let mut stream = connect_from(from, addr).await;
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        match within("the upgrade answer", stream.read(&mut byte)).await {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    (stream, String::from_utf8_lossy(&head).into_owned())
}

/// A pipeline reading ticks from a FIFO, with a websocket sink and a SQLite store behind
/// its server: a client subscribed before the ticks arrive gets the bars the pipeline
/// builds, and the REST API answers the same bars.
#[test]
fn pipeline_records_reach_websocket_clients() {
    let dir = scratch();
    let fifo = fifo(dir.path(), "ticks.fifo");
    write(
        dir.path(),
        "live.yaml",
        "pipeline: live\n\
         sources:\n  ticks: {type: file, path: ticks.fifo, format: csv, max_delay: 1s}\n\
         operators:\n  bars_1m: {type: bars, from: ticks, interval: 1m}\n\
         sinks:\n  store: {type: sqlite, from: [ticks, bars_1m], path: live.db}\n  \
         live: {type: websocket, from: [ticks, bars_1m]}\n\
         server: {listen: 127.0.0.1:8000, store: store}\n",
    );
    let server = Serving::start(dir.path(), &["run", "live.yaml", "--listen", "127.0.0.1:0"]);
    let mut writer = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    block_on(async {
        let mut ws = ws_connect(server.addr, "/ws").await;
        ws_send(
            &mut ws,
            json!({"action": "subscribe", "streams": ["bars:1m:AAPL", "ticks:MSFT"]}),
        )
        .await;
        assert_eq!(ws_next(&mut ws).await.unwrap()["type"], "subscribed");
        assert_eq!(ws_next(&mut ws).await.unwrap()["records"], 0);
        assert_eq!(ws_next(&mut ws).await.unwrap()["records"], 0);
        // Three minutes of ticks, then the end of input closes every window.
        let mut csv = format!("ts,symbol,price,volume\n{},MSFT,50,1\n", iso(T0));
        for s in 0..180 {
            csv.push_str(&format!("{},AAPL,{},10\n", iso(T0 + s * 1000), 100 + s));
        }
        writer.write_all(csv.as_bytes()).unwrap();
        drop(writer);
        let mut bars = Vec::new();
        let mut msft = 0;
        while bars.len() < 3 {
            let m = ws_next(&mut ws).await.expect("records");
            match m["type"].as_str() {
                Some("bar") => bars.push(m),
                Some("tick") => msft += 1,
                other => panic!("unexpected {other:?}: {m}"),
            }
        }
        assert_eq!(msft, 1);
        let summary: Vec<(String, f64, f64, f64)> = bars
            .iter()
            .map(|b| {
                (
                    b["start"].as_str().unwrap().to_owned(),
                    b["open"].as_f64().unwrap(),
                    b["close"].as_f64().unwrap(),
                    b["volume"].as_f64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("2024-01-02T14:30:00Z".to_owned(), 100.0, 159.0, 600.0),
                ("2024-01-02T14:31:00Z".to_owned(), 160.0, 219.0, 600.0),
                ("2024-01-02T14:32:00Z".to_owned(), 220.0, 279.0, 600.0),
            ]
        );
        // Once the pipeline has ended (its sinks committed), the server still answers and
        // the store behind it has the same bars.
        let mut polls = 0;
        while get(server.addr, "/health").await.json()["pipeline"]["status"] != "finished" {
            polls += 1;
            assert!(polls < 3000, "the pipeline did not finish");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let rest = get(server.addr, "/api/v3/intraday/prices/AAPL?interval=1m")
            .await
            .json();
        let closes: Vec<f64> = rest["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["close"].as_f64().unwrap())
            .collect();
        assert_eq!(closes, [159.0, 219.0, 279.0]);
    });
    assert!(server.interrupt().success());
}

/// Sends raw request bytes on a fresh connection; returns the whole answer.
async fn raw_request(addr: SocketAddr, request: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    // The head only: a 101 keeps the connection open.
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        match within("an answer", stream.read(&mut byte)).await {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// Cross-origin reads and WebSockets only from the server's own origin, localhost and
/// `allowed_origins` (never `Access-Control-Allow-Origin: *`); a request without exactly one
/// Host header is refused.
#[test]
fn origins_and_hosts_are_checked() {
    block_on(async {
        let (server, _hub) = start(&config(|c| {
            c.allowed_origins = vec!["https://dash.example.com".into()];
        }));
        let addr = server.addr;
        let get = |origin: &str| {
            format!("GET /openapi.json HTTP/1.1\r\nHost: {addr}\r\nOrigin: {origin}\r\nConnection: close\r\n\r\n")
        };
        let evil = raw_request(addr, &get("https://evil.example")).await;
        assert!(evil.starts_with("HTTP/1.1 200"), "{evil}");
        assert!(
            !evil
                .to_ascii_lowercase()
                .contains("access-control-allow-origin"),
            "{evil}"
        );
        let local = raw_request(addr, &get("http://localhost:3000")).await;
        assert!(
            local
                .to_ascii_lowercase()
                .contains("access-control-allow-origin: http://localhost:3000"),
            "{local}"
        );
        let dash = raw_request(addr, &get("https://dash.example.com")).await;
        assert!(dash.contains("https://dash.example.com"), "{dash}");

        let upgrade = |origin: &str| {
            format!(
                "GET /ws HTTP/1.1\r\nHost: {addr}\r\nOrigin: {origin}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
        };
        let refused = raw_request(addr, &upgrade("https://evil.example")).await;
        assert!(refused.starts_with("HTTP/1.1 403"), "{refused}");
        let own = raw_request(addr, &upgrade(&format!("http://{addr}"))).await;
        assert!(own.starts_with("HTTP/1.1 101"), "{own}");
        let dash = raw_request(addr, &upgrade("https://dash.example.com")).await;
        assert!(dash.starts_with("HTTP/1.1 101"), "{dash}");

        for request in [
            "GET /openapi.json HTTP/1.1\r\nConnection: close\r\n\r\n".to_owned(),
            format!("GET /openapi.json HTTP/1.1\r\nHost: {addr}\r\nHost: other:1\r\nConnection: close\r\n\r\n"),
        ] {
            let answer = raw_request(addr, &request).await;
            assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        }
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /health HTTP/1.1\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut all = String::new();
        within("the 400", stream.read_to_string(&mut all))
            .await
            .unwrap();
        assert!(all.contains(r#""code":"bad_host""#), "{all}");
        server.stop().await;
    });
}

/// Requests hyper cannot parse get the JSON error shape too: a garbage request line (400),
/// a target over the URI limit (414), a bad Content-Length (400).
#[test]
fn unparsable_requests_get_json_errors() {
    block_on(async {
        let (server, _hub) = start(&ServerConfig::default());
        let long = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(70_000));
        for (request, status, code) in [
            ("GARBAGE\r\n\r\n".to_owned(), "400", "bad_request"),
            (long, "414", "uri_too_long"),
            (
                "GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n".to_owned(),
                "400",
                "bad_request",
            ),
        ] {
            let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
            stream.write_all(request.as_bytes()).await.unwrap();
            let mut answer = String::new();
            let _ = within("the error answer", stream.read_to_string(&mut answer)).await;
            assert!(
                answer.starts_with(&format!("HTTP/1.1 {status}")),
                "{answer}"
            );
            let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
            let json: serde_json::Value = serde_json::from_str(body)
                .unwrap_or_else(|e| panic!("{status}: not JSON ({e}): {answer}"));
            assert_eq!(json["error"]["code"], code, "{answer}");
        }
        server.stop().await;
    });
}
