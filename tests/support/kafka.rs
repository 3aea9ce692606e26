//! A real Kafka-protocol broker for the tests: `tansu` (installed by scripts/setup.sh)
//! with its in-memory storage, on a free loopback port, stopped when dropped.

use std::io::Read as _;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;

/// A running broker.
pub struct Broker {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub address: String,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The tansu binary: on PATH, or where `cargo install` puts it.
fn tansu() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("tansu"))
            .find(|p| p.is_file())
    });
    let cargo_bin = std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".cargo/bin/tansu"))
        .filter(|p| p.is_file());
    on_path.or(cargo_bin)
}

/// Starts a broker, or `None` (with a skip note; a failure on CI) when tansu is missing.
pub fn start() -> Option<Broker> {
    start_advertising(None)
}

/// A broker that clients reach only through a [`Proxy`], which can cut it off: the broker
/// tells clients the proxy's address, so every connection after the first goes through it.
pub fn start_behind_proxy() -> Option<(Broker, Proxy)> {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port for the proxy");
    let proxy_address = listener.local_addr().expect("its address").to_string();
    let broker = start_advertising(Some(&proxy_address))?;
    let proxy = Proxy::start(listener, broker.address.clone());
    Some((broker, proxy))
}

fn start_advertising(advertised: Option<&str>) -> Option<Broker> {
    let binary = tansu();
    if !super::tool_present(binary.is_some(), "tansu (a Kafka-protocol broker)") {
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let address = format!("127.0.0.1:{port}");
    let url = format!("tcp://{address}");
    let advertised = format!("tcp://{}", advertised.unwrap_or(&address));
    let child = Command::new(binary.expect("checked above"))
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &advertised,
        ])
        .args(["--storage-engine", "memory://tansu/"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting tansu");
    let broker = Broker { child, address };
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(&broker.address).is_err() {
        assert!(
            Instant::now() < deadline,
            "tansu did not listen on {} within 30 s",
            broker.address
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(broker)
}

impl Broker {
    pub fn client(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.address);
        config
    }

    /// Creates `topic` with `partitions` partitions.
    pub fn create_topic(&self, topic: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = self.client().create().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
        let results = runtime
            .block_on(admin.create_topics([&new], &AdminOptions::new()))
            .expect("create_topics");
        for r in results {
            r.unwrap_or_else(|(t, e)| panic!("creating topic {t}: {e}"));
        }
    }

    /// Produces `(key, value)` messages to `topic` and waits for every delivery.
    pub fn produce(&self, topic: &str, messages: &[(String, String)]) {
        let producer: BaseProducer = self
            .client()
            .set("linger.ms", "5")
            .set("enable.idempotence", "true")
            .create()
            .unwrap();
        for (key, value) in messages {
            let mut record = BaseRecord::to(topic).key(key).payload(value);
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((_, back)) => {
                        record = back;
                        producer.poll(Duration::from_millis(10));
                    }
                }
            }
        }
        producer
            .flush(Duration::from_secs(60))
            .expect("every test message delivered within 60 s");
    }
}

/// A TCP relay to a broker that can cut it off, as a stopped broker would be: open
/// connections are closed and new ones closed as soon as they are accepted, until
/// [`Proxy::restore`].
pub struct Proxy {
    /// `127.0.0.1:PORT`: the address the broker advertises.
    pub address: String,
    cut: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn start(listener: TcpListener, target: String) -> Proxy {
        let address = listener.local_addr().expect("its address").to_string();
        let cut = Arc::new(AtomicBool::new(false));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (cut_flag, connections) = (cut.clone(), open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if cut_flag.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(upstream) = TcpStream::connect(&target) else {
                    continue;
                };
                let mut ends = connections.lock().unwrap();
                for (from, to) in [(&client, &upstream), (&upstream, &client)] {
                    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
                        continue;
                    };
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 64 * 1024];
                        while let Ok(n) = from.read(&mut buf) {
                            if n == 0 || std::io::Write::write_all(&mut to, &buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = from.shutdown(Shutdown::Both);
                        let _ = to.shutdown(Shutdown::Both);
                    });
                }
                ends.push(client);
                ends.push(upstream);
            }
        });
        Proxy { address, cut, open }
    }

    /// Cuts the broker off: every open connection is closed, new ones are refused.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    /// Lets clients reach the broker again.
    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}
