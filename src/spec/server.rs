//! The `server:` block of a pipeline.

use std::net::SocketAddr;

use serde::Deserialize;

use super::{Named, SinkRef};
use crate::config::de::{suggest, Spanned};
use crate::config::diagnostic::Diagnostic;
use crate::config::values::{count_within, duration_within, Duration, Parsed};
use crate::hub::HubConfig;

/// The HTTP and WebSocket server a pipeline runs beside it.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// `IP:PORT` or `localhost:PORT` to listen on (default `127.0.0.1:8000`; port 0 picks a
    /// free one; `0.0.0.0:PORT` listens on every interface).
    #[serde(default = "default_listen")]
    pub listen: Parsed<ListenAddr>,
    /// The `sqlite` or `postgres` sink whose database the REST API reads.
    pub store: Option<Spanned<String>>,
    /// Records of each stream a WebSocket subscriber gets first (default 100).
    #[serde(default = "default_snapshot")]
    pub snapshot: usize,
    /// Records a WebSocket client may have queued before it lags (default 8192).
    #[serde(
        default = "default_client_queue",
        deserialize_with = "count_within::<_, 1, 10_000_000>"
    )]
    pub client_queue: usize,
    /// Records a lagging client may lose before it is disconnected (default 100000).
    #[serde(default = "default_max_dropped")]
    pub max_dropped: u64,
    /// Time between pings to idle WebSocket clients; three without an answer close the
    /// connection (default 20s).
    #[serde(
        default = "default_ping",
        deserialize_with = "duration_within::<_, 1_000, 86_400_000>"
    )]
    pub ping_interval: Duration,
    /// Watermark lag of a running source past which `/health` answers 503 (default 5m); for
    /// a live feed, the time since its last frame.
    #[serde(
        default = "default_max_lag",
        deserialize_with = "duration_within::<_, 1_000, 604_800_000>"
    )]
    pub max_lag: Duration,
    /// Origins (`https://dash.example.com`) that may, besides the server's own and
    /// localhost, read the API from a browser and open WebSockets; `*` allows any (default:
    /// none).
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// A connection whose peer takes none of a response (or WebSocket frames) for this long
    /// is closed (default 30s).
    #[serde(
        default = "default_write_timeout",
        deserialize_with = "duration_within::<_, 1_000, 86_400_000>"
    )]
    pub write_timeout: Duration,
    /// Connections (HTTP and WebSocket) served at once; more are answered 503 and closed
    /// (default 4096).
    #[serde(
        default = "default_max_connections",
        deserialize_with = "count_within::<_, 1, 1_000_000>"
    )]
    pub max_connections: usize,
    /// Connections one client address may hold at once (default 256).
    #[serde(
        default = "default_max_connections_per_client",
        deserialize_with = "count_within::<_, 1, 1_000_000>"
    )]
    pub max_connections_per_client: usize,
}

/// An address to listen on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenAddr(pub SocketAddr);

impl std::str::FromStr for ListenAddr {
    type Err = String;
    fn from_str(text: &str) -> Result<ListenAddr, String> {
        let local = text
            .strip_prefix("localhost:")
            .map(|port| format!("127.0.0.1:{port}"));
        local
            .as_deref()
            .unwrap_or(text)
            .parse()
            .map(ListenAddr)
            .map_err(|_| {
                format!("`{text}` is not an address to listen on: use IP:PORT such as 127.0.0.1:8000 (0.0.0.0:8000 for every interface)")
            })
    }
}

fn default_listen() -> Parsed<ListenAddr> {
    Parsed {
        value: ListenAddr(SocketAddr::from(([127, 0, 0, 1], 8000))),
        pos: Default::default(),
    }
}
fn default_snapshot() -> usize {
    HubConfig::default().snapshot
}
fn default_client_queue() -> usize {
    HubConfig::default().client_queue
}
fn default_max_dropped() -> u64 {
    HubConfig::default().max_dropped
}
fn default_ping() -> Duration {
    Duration(20_000)
}
fn default_write_timeout() -> Duration {
    Duration(30_000)
}
fn default_max_connections() -> usize {
    4096
}
fn default_max_connections_per_client() -> usize {
    256
}
fn default_max_lag() -> Duration {
    Duration(300_000)
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            listen: default_listen(),
            store: None,
            snapshot: default_snapshot(),
            client_queue: default_client_queue(),
            max_dropped: default_max_dropped(),
            ping_interval: default_ping(),
            max_lag: default_max_lag(),
            write_timeout: default_write_timeout(),
            allowed_origins: Vec::new(),
            max_connections: default_max_connections(),
            max_connections_per_client: default_max_connections_per_client(),
        }
    }
}

impl ServerConfig {
    pub fn hub_config(&self) -> HubConfig {
        HubConfig {
            snapshot: self.snapshot,
            client_queue: self.client_queue.max(1),
            max_dropped: self.max_dropped,
        }
    }

    /// Checks that `store` names a database sink.
    pub fn check(&self, sinks: &[Named<SinkRef>]) -> Vec<Diagnostic> {
        let mut errors = Vec::new();
        if let Some(store) = &self.store {
            let stores: Vec<&str> = sinks
                .iter()
                .filter(|s| s.spec.store().is_some())
                .map(|s| s.name.as_str())
                .collect();
            match sinks.iter().find(|s| s.name == store.value) {
                Some(s) if s.spec.store().is_some() => {}
                Some(s) => errors.push(
                    Diagnostic::new(
                        store.pos,
                        "server.store",
                        format!(
                            "sink `{}` is a `{}` sink; the server reads a `sqlite` or `postgres` sink",
                            s.name,
                            s.spec.type_name()
                        ),
                    )
                    .help_opt(suggest(&store.value, &stores)),
                ),
                None => errors.push(
                    Diagnostic::new(
                        store.pos,
                        "server.store",
                        format!("unknown sink `{}`", store.value),
                    )
                    .help_opt(suggest(&store.value, &stores).or_else(|| {
                        Some("add a `sqlite` or `postgres` sink for the server to read".into())
                    })),
                ),
            }
        }
        if self.snapshot > 100_000 {
            errors.push(Diagnostic::new(
                self.listen.pos,
                "server.snapshot",
                "snapshot is at most 100000 records",
            ));
        }
        errors
    }
}
