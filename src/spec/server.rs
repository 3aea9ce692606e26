//! The `server:` block of a pipeline.

use std::net::SocketAddr;

use serde::Deserialize;

use super::{Named, SinkRef};
use crate::config::de::{suggest, Spanned};
use crate::config::diagnostic::Diagnostic;
use crate::config::values::{
    count_within, duration_within, optional_count_within, Duration, Parsed, Secret,
};
use crate::config::yaml::Pos;
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
    /// API keys and their scopes; without it every caller is served (and the server
    /// refuses to listen beyond loopback unless started with `--insecure`).
    pub auth: Option<AuthConfig>,
    /// Serve https and wss with this certificate (PEM files, re-read when they change).
    pub tls: Option<TlsConfig>,
    /// Token buckets per API key, per client address, for failed authentication and for
    /// WebSocket commands.
    #[serde(default)]
    pub rate_limit: RateLimitConfig,
}

/// `server.auth`.
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Keys written in the pipeline, each from the environment (`key: ${API_KEY}`).
    #[serde(default)]
    pub keys: Vec<ApiKeyConfig>,
    /// A file of hashed keys, one `NAME:SCOPES:SHA256HEX` a line (`alice:read,stream:9f86...`),
    /// for many users; re-read on start.
    pub keys_file: Option<Spanned<String>>,
}

impl AuthConfig {
    fn check(&self) -> Vec<Diagnostic> {
        let mut errors = Vec::new();
        let mut names = std::collections::HashSet::new();
        if self.keys.is_empty() && self.keys_file.is_none() {
            errors.push(
                Diagnostic::new(Pos::default(), "server.auth", "no key can use this server")
                    .help("add `keys: [{name: NAME, key: ${ENV_VAR}, scopes: [read]}]` or `keys_file: PATH`"),
            );
        }
        for (i, k) in self.keys.iter().enumerate() {
            let path = format!("server.auth.keys[{i}]");
            if k.key.value.expose().len() < 16 {
                errors.push(
                    Diagnostic::new(
                        k.key.pos,
                        format!("{path}.key"),
                        format!("the key of `{}` is empty or shorter than 16 characters", k.name),
                    )
                    .help("set it from the environment: `key: ${MARKETFLOW_API_KEY}` (e.g. `openssl rand -hex 32`)"),
                );
            }
            if k.scopes.is_empty() {
                errors.push(
                    Diagnostic::new(
                        k.key.pos,
                        format!("{path}.scopes"),
                        "a key needs at least one scope",
                    )
                    .help("scopes: [read, stream, admin]"),
                );
            }
            if !names.insert(k.name.as_str()) {
                errors.push(Diagnostic::new(
                    k.key.pos,
                    format!("{path}.name"),
                    format!("two keys are named `{}`", k.name),
                ));
            }
        }
        errors
    }
}

/// One API key of `server.auth.keys`.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// Who holds it (metrics and logs name the key by it, never by the key).
    pub name: String,
    /// The key itself, from the environment: `${MARKETFLOW_KEY_ALICE}`.
    pub key: Spanned<Secret>,
    /// What it may do: `read` (REST), `stream` (WebSockets), `admin` (`/metrics`).
    pub scopes: Vec<Scope>,
}

/// What an API key may do.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// The REST API.
    Read,
    /// WebSocket streams.
    Stream,
    /// `/metrics` and administrative routes.
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::Read, Scope::Stream, Scope::Admin];

    pub fn name(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Stream => "stream",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.name() == text)
    }
}

/// `server.tls`: a certificate chain and its private key, PEM.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain, leaf first.
    pub cert: Spanned<String>,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: Spanned<String>,
}

/// `server.rate_limit`: token buckets (`rate` refills, `burst` is the bucket's size).
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Requests of one API key (default 1000/s, burst 2000).
    #[serde(default = "default_per_key")]
    pub per_key: Bucket,
    /// Requests of one client address (default 1000/s, burst 2000); `/health*` is exempt.
    #[serde(default = "default_per_address")]
    pub per_address: Bucket,
    /// Wrong or unknown keys from one client address (default 10/min, burst 20); past it
    /// the address is answered 429 without its key being checked.
    #[serde(default = "default_failed_auth")]
    pub failed_auth: Bucket,
    /// Commands one WebSocket connection may send (default 20/s, burst 50).
    #[serde(default = "default_ws_commands")]
    pub ws_commands: Bucket,
}

impl Default for RateLimitConfig {
    fn default() -> RateLimitConfig {
        RateLimitConfig {
            per_key: default_per_key(),
            per_address: default_per_address(),
            failed_auth: default_failed_auth(),
            ws_commands: default_ws_commands(),
        }
    }
}

/// A token bucket.
#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Bucket {
    /// How fast it refills: `100/s`, `10/min`, `500/h`.
    pub rate: Parsed<Rate>,
    /// How many it holds (default: twice the rate's count).
    #[serde(
        default,
        deserialize_with = "optional_count_within::<_, 1, 1_000_000_000>"
    )]
    pub burst: Option<usize>,
}

impl Bucket {
    const fn new(count: u32, per_ms: u64, burst: usize) -> Bucket {
        Bucket {
            rate: Parsed {
                value: Rate { count, per_ms },
                pos: Pos { line: 0, col: 0 },
            },
            burst: Some(burst),
        }
    }

    pub fn burst(&self) -> u32 {
        self.burst
            .map_or(self.rate.count.saturating_mul(2), |b| b as u32)
            .max(1)
    }
}

fn default_per_key() -> Bucket {
    Bucket::new(1000, 1000, 2000)
}
fn default_per_address() -> Bucket {
    Bucket::new(1000, 1000, 2000)
}
fn default_failed_auth() -> Bucket {
    Bucket::new(10, 60_000, 20)
}
fn default_ws_commands() -> Bucket {
    Bucket::new(20, 1000, 50)
}

/// A rate: `COUNT/UNIT` with the unit `s`, `min` or `h`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub per_ms: u64,
}

impl Rate {
    /// The time one token takes to come back.
    pub fn period(&self) -> std::time::Duration {
        std::time::Duration::from_nanos((self.per_ms * 1_000_000 / u64::from(self.count)).max(1))
    }
}

impl std::str::FromStr for Rate {
    type Err = String;
    fn from_str(text: &str) -> Result<Rate, String> {
        let err = || {
            format!("`{text}` is not a rate: use COUNT/UNIT with the unit s, min or h (`100/s`, `10/min`)")
        };
        let (count, unit) = text.trim().split_once('/').ok_or_else(err)?;
        let count: u32 = count.trim().parse().map_err(|_| err())?;
        let per_ms = match unit.trim() {
            "s" | "sec" | "second" => 1000,
            "min" | "minute" => 60_000,
            "h" | "hour" => 3_600_000,
            _ => return Err(err()),
        };
        if !(1..=1_000_000_000).contains(&count) {
            return Err(format!("`{text}`: the count is 1 to 1000000000"));
        }
        Ok(Rate { count, per_ms })
    }
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
            auth: None,
            tls: None,
            rate_limit: RateLimitConfig::default(),
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
        if let Some(auth) = &self.auth {
            errors.extend(auth.check());
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
