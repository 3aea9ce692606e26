//! The HTTP and WebSocket server (hyper 1 on tokio): the REST API over the store, live
//! streams from the hub, Prometheus metrics, the OpenAPI document and the chart page.
//!
//! Routes are one table ([`ROUTES`]): dispatch, the metrics label of each request and the
//! check that `/openapi.json` documents every route all read it.

pub mod api;
pub mod auth;
mod compat;
mod connections;
mod limits;
pub mod live;
mod origins;
mod routes;
mod security;
pub mod tls;
mod ws;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ACCEPT, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use marketflow_operators::Interval;
use tokio::net::TcpListener;
use tokio::sync::OnceCell;
use tokio::task::JoinSet;

use self::api::{ApiError, Params, Reply};
pub use self::routes::{find_route, Api, Endpoint, Route, ROUTES};
use self::routes::{scope, PREDECESSOR_PARAMETERS, PREDECESSOR_WS_PARAMETERS};
use self::security::Refusal;
use crate::hub::Hub;
use crate::metrics::metrics;
use crate::shutdown::Shutdown;
use crate::spec::server::Scope;
pub use crate::spec::server::ServerConfig;
use crate::store::{Location, Store};

/// A source as `/health` reports it.
#[derive(Clone, Debug)]
pub struct SourceInfo {
    pub name: String,
    pub kind: &'static str,
    /// Whether it ends by itself (a file, a bounded synthetic run).
    pub finite: bool,
}

/// The store, opened on first use: a pipeline's sink may not have created it yet.
pub struct StoreHandle {
    location: Option<Location>,
    store: OnceCell<Store>,
}

impl StoreHandle {
    pub fn new(location: Option<Location>) -> StoreHandle {
        StoreHandle {
            location,
            store: OnceCell::new(),
        }
    }

    pub async fn get(&self) -> Result<&Store, ApiError> {
        let Some(location) = &self.location else {
            return Err(ApiError::unavailable(
                "this server has no store: set `server.store` to a sqlite or postgres sink",
            ));
        };
        self.store
            .get_or_try_init(|| Store::open(location))
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "store not available yet");
                ApiError::unavailable("the store is not available yet (see the server log)")
            })
    }
}

/// Everything the request handlers share.
pub struct ServerState {
    pub store: StoreHandle,
    pub hub: Hub,
    pub pipeline: Option<String>,
    /// Set once the pipeline has ended and its sinks have flushed.
    pub pipeline_finished: Arc<std::sync::atomic::AtomicBool>,
    pub sources: Vec<SourceInfo>,
    /// The pipeline's state, as its engine reports it.
    pub run_status: crate::status::RunStatus,
    pub ping_interval: Duration,
    pub max_lag_ms: i64,
    pub stop: Shutdown,
    /// Origins besides the server's own and localhost that may read cross-origin and open
    /// WebSockets (`*`: any).
    pub allowed_origins: Vec<String>,
    /// How long a write may make no progress before the connection is closed.
    pub write_timeout: Duration,
    /// Open connections, against `max_connections` and `max_connections_per_client`.
    pub connections: Arc<connections::Connections>,
    /// The hub is fed apart from the store (`serve --live`): streams are primed from the
    /// store on their first subscription.
    pub prime_from_store: bool,
    /// Held while a stream is primed (see `ws::prime`).
    pub priming: Arc<tokio::sync::Mutex<()>>,
    /// The API keys callers must present (`server.auth`); `None`: everyone is served.
    pub keys: Option<auth::Keys>,
    pub limits: limits::Limits,
    /// https and wss (`server.tls`).
    pub tls: Option<Arc<tls::Tls>>,
}

/// Why a server's security settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error("server.auth: {0}")]
    Keys(#[from] auth::KeysError),
    #[error("server.tls: {0}")]
    Tls(#[from] tls::TlsError),
    #[error("refusing to serve {0} without `server.auth`: anyone who can reach it could read everything; add API keys, listen on 127.0.0.1, or pass --insecure to do it anyway")]
    Exposed(SocketAddr),
}

impl ServerState {
    pub fn new(config: &ServerConfig, store: Option<Location>, hub: Hub) -> ServerState {
        ServerState {
            store: StoreHandle::new(store),
            hub,
            pipeline: None,
            pipeline_finished: Arc::default(),
            sources: Vec::new(),
            run_status: crate::status::RunStatus::default(),
            ping_interval: config
                .ping_interval
                .as_std()
                .max(Duration::from_millis(100)),
            max_lag_ms: config.max_lag.0,
            stop: Shutdown::new(),
            write_timeout: config
                .write_timeout
                .as_std()
                .max(Duration::from_millis(100)),
            allowed_origins: config.allowed_origins.clone(),
            connections: Arc::new(connections::Connections::new(
                config.max_connections,
                config.max_connections_per_client,
            )),
            prime_from_store: false,
            priming: Arc::default(),
            keys: None,
            limits: limits::Limits::new(&config.rate_limit),
            tls: None,
        }
    }

    /// [`ServerState::new`] with the keys and certificate of `config` loaded; refuses an
    /// address beyond loopback without keys unless `insecure`.
    pub fn secured(
        config: &ServerConfig,
        store: Option<Location>,
        hub: Hub,
        addr: SocketAddr,
        insecure: bool,
    ) -> Result<ServerState, SecurityError> {
        let mut state = ServerState::new(config, store, hub);
        state.keys = config.auth.as_ref().map(auth::Keys::load).transpose()?;
        state.tls = config
            .tls
            .as_ref()
            .map(tls::Tls::new)
            .transpose()?
            .map(Arc::new);
        if state.keys.is_none() && !addr.ip().is_loopback() && !insecure {
            return Err(SecurityError::Exposed(addr));
        }
        if let Some(keys) = &state.keys {
            tracing::info!(keys = keys.len(), "API keys required");
        }
        Ok(state)
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }
}

/// A running server.
pub struct ServerHandle {
    pub addr: SocketAddr,
    stop: Shutdown,
    task: tokio::task::JoinHandle<()>,
}

impl ServerHandle {
    /// Stops accepting, closes WebSocket clients and waits (a few seconds at most) for
    /// requests in flight.
    pub async fn stop(self) {
        self.stop.trigger();
        let _ = self.task.await;
    }
}

/// Binds `addr` (so that a taken port fails before anything else starts).
pub fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Serves on `listener` from the current tokio runtime until [`ServerHandle::stop`].
pub fn start(listener: std::net::TcpListener, state: ServerState) -> std::io::Result<ServerHandle> {
    let listener = TcpListener::from_std(listener)?;
    let addr = listener.local_addr()?;
    let stop = state.stop.clone();
    let state = Arc::new(state);
    crate::metrics::declare_server();
    if let Some(tls) = &state.tls {
        tokio::spawn(tls.clone().watch(stop.clone()));
    }
    tokio::spawn(forget_idle_buckets(state.clone()));
    let task = tokio::spawn(accept_loop(listener, state.clone()));
    let scheme = state.scheme();
    tracing::info!("serving on {scheme}://{addr}/ (API docs at {scheme}://{addr}/docs)");
    Ok(ServerHandle { addr, stop, task })
}

/// Time a client has to send a request head, and to finish a TLS handshake.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Rate-limit buckets of addresses not seen for a while are dropped now and then.
async fn forget_idle_buckets(state: Arc<ServerState>) {
    let mut every = tokio::time::interval(Duration::from_secs(30));
    loop {
        tokio::select! {
            _ = every.tick() => state.limits.forget_idle(),
            _ = state.stop.triggered() => return,
        }
    }
}

/// Kernel send buffer of each connection.
const SEND_BUFFER: usize = 256 * 1024;

async fn accept_loop(listener: TcpListener, state: Arc<ServerState>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let Some(slot) = state.connections.open(peer.ip()) else {
                        connections::refuse(&state.connections, stream);
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    // A bounded kernel buffer per client: a stalled WebSocket client fills
                    // it within seconds and is then handled by the hub's queue limits,
                    // instead of pinning megabytes of kernel memory each.
                    let _ = socket2::SockRef::from(&stream).set_send_buffer_size(SEND_BUFFER);
                    connections.spawn(secure_connection(stream, state.clone(), slot));
                }
                Err(e) => {
                    // Out of descriptors and the like: wait for connections to close.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = state.stop.triggered() => break,
        }
    }
    drop(listener);
    state.hub.close_all();
    let drained = tokio::time::timeout(Duration::from_secs(5), async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        connections.abort_all();
    }
}

/// Serves a connection, after a TLS handshake when the server has a certificate.
async fn secure_connection(
    stream: tokio::net::TcpStream,
    state: Arc<ServerState>,
    slot: Arc<connections::Slot>,
) {
    let Some(tls) = state.tls.clone() else {
        return serve_connection(stream, state, slot).await;
    };
    // The handshake has the head's time limit: a client that starts one and goes quiet
    // (slowloris over TLS) or floods half-handshakes holds its slot no longer than that.
    let handshake = tokio::select! {
        done = tokio::time::timeout(HEADER_READ_TIMEOUT, tls.acceptor.accept(stream)) => done,
        _ = state.stop.triggered() => return,
    };
    match handshake {
        Ok(Ok(stream)) => serve_connection(stream, state, slot).await,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "TLS handshake failed");
            metrics()
                .tls_handshake_failures
                .with_label_values(&["error"])
                .inc();
        }
        Err(_) => metrics()
            .tls_handshake_failures
            .with_label_values(&["timeout"])
            .inc(),
    }
}

async fn serve_connection<S>(stream: S, state: Arc<ServerState>, slot: Arc<connections::Slot>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let stop = state.stop.clone();
    let write_timeout = state.write_timeout;
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        let state = state.clone();
        // A WebSocket that this connection turns into keeps the slot.
        req.extensions_mut().insert(slot.clone());
        async move { Ok::<_, Infallible>(handle(state, req).await) }
    });
    // A client that never finishes its request head (slowloris) is closed.
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(
            TokioIo::new(connections::ClientIo::new(stream, write_timeout)),
            service,
        )
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = stop.triggered() => conn.as_mut().graceful_shutdown(),
    }
    let _ = conn.await;
}

pub type Body = Full<Bytes>;

fn response(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn json(status: StatusCode, body: Vec<u8>) -> Response<Body> {
    response(status, "application/json", body)
}

fn error_response(e: &ApiError) -> Response<Body> {
    json(e.status, e.body())
}

async fn handle(state: Arc<ServerState>, req: Request<Incoming>) -> Response<Body> {
    let started = Instant::now();
    let path = req.uri().path().to_owned();
    let matched = find_route(&path);
    let label = matched.as_ref().map_or("unmatched", |(r, _)| r.template);
    let method = req.method().clone();
    let origin = req.headers().get(hyper::header::ORIGIN).cloned();
    let origin_allowed = origin
        .as_ref()
        .map(|o| origins::allowed(o, req.headers(), &state.allowed_origins));
    let hosts = req.headers().get_all(hyper::header::HOST).iter().count();
    // Every request but the orchestrators' probes counts against its address's bucket.
    let probe = matched
        .as_ref()
        .is_some_and(|(r, _)| matches!(r.endpoint, Endpoint::Health | Endpoint::Live));
    let address_limited = if probe {
        Ok(())
    } else {
        state.limits.address(client_address(&req))
    };
    let mut response = if let Err(limited) = address_limited {
        Refusal::Limited {
            limited,
            limit: "per_address",
            message: "this address sends too many requests",
        }
        .response()
    } else if hosts != 1 {
        error_response(&ApiError::bad(
            "bad_host",
            "a request needs exactly one Host header",
        ))
    } else if method == Method::OPTIONS {
        security::preflight(origin_allowed)
    } else if origin_allowed == Some(false) && path.starts_with("/ws") {
        error_response(&ApiError {
            status: StatusCode::FORBIDDEN,
            code: "origin_not_allowed",
            message: "WebSocket connections from this origin are not allowed (see `server.allowed_origins`)".into(),
        })
    } else if method != Method::GET && method != Method::HEAD {
        let mut r = error_response(&ApiError {
            status: StatusCode::METHOD_NOT_ALLOWED,
            code: "method_not_allowed",
            message: format!("{method} is not allowed; this server answers GET"),
        });
        r.headers_mut()
            .insert("allow", HeaderValue::from_static("GET, HEAD, OPTIONS"));
        r
    } else {
        match matched {
            Some((route, captures)) => match admit(&state, route, &req) {
                Ok(access) => match dispatch(&state, route, &captures, req, access).await {
                    Ok(r) => r,
                    Err(e) => error_response(&e),
                },
                Err(refusal) => refusal.response(),
            },
            None => error_response(&ApiError::not_found(
                "not_found",
                "no such route; GET /docs lists the API",
            )),
        }
    };
    if let (Some(origin), Some(true)) = (origin, origin_allowed) {
        // Cross-origin reads only for the origins allowed, never `*`.
        let headers = response.headers_mut();
        headers.insert(hyper::header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(hyper::header::VARY, HeaderValue::from_static("Origin"));
        headers.insert(
            hyper::header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("Retry-After"),
        );
    }
    security::headers(response.headers_mut(), state.tls.is_some());
    if method == Method::HEAD {
        // The headers of the GET, without its body: Content-Length is the GET's.
        let length = http_body_util::BodyExt::collect(std::mem::take(response.body_mut()))
            .await
            .map_or(0, |body| body.to_bytes().len());
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_LENGTH, HeaderValue::from(length));
    }
    let m = metrics();
    m.http_requests
        .with_label_values(&[label, method_label(&method), response.status().as_str()])
        .inc();
    m.http_seconds
        .with_label_values(&[label])
        .observe(started.elapsed().as_secs_f64());
    response
}

/// How a request was let in.
#[derive(Clone, Debug)]
pub enum Access {
    /// The route needs no key, or the server none.
    Open,
    /// With the key of this name.
    Key(Arc<str>),
    /// A WebSocket upgrade without a key: its first message must be
    /// `{"action":"auth","key":...}`.
    Pending,
}

/// The client address of a request (the connection's).
fn client_address(req: &Request<Incoming>) -> std::net::IpAddr {
    req.extensions()
        .get::<Arc<connections::Slot>>()
        .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |s| s.client())
}

/// API keys: the access a request has, or the answer that refuses it (its address's bucket
/// is checked before, in `handle`).
fn admit(state: &ServerState, route: &Route, req: &Request<Incoming>) -> Result<Access, Refusal> {
    let address = client_address(req);
    let (Some(_), Some(scope)) = (&state.keys, scope(route.endpoint)) else {
        return Ok(Access::Open);
    };
    let websocket = scope == Scope::Stream;
    let presented = auth::presented(req.headers(), req.uri().query(), websocket).map_err(|_| {
        Refusal::Unauthorized {
            reason: "invalid",
            message: "malformed credentials: use `Authorization: Bearer KEY` or `X-API-Key: KEY`",
        }
    })?;
    match presented {
        Some(presented) => authorize(state, &presented, address, scope).map(Access::Key),
        None if websocket => Ok(Access::Pending),
        None => Err(Refusal::Unauthorized {
            reason: "missing",
            message: "an API key is required: `Authorization: Bearer KEY` or `X-API-Key: KEY`",
        }),
    }
}

/// The name of the key `presented` if it may use `scope`: after the failed-attempt limit
/// of `address`, and within the key's own rate.
pub(crate) fn authorize(
    state: &ServerState,
    presented: &str,
    address: std::net::IpAddr,
    scope: Scope,
) -> Result<Arc<str>, Refusal> {
    let locked = |limited| Refusal::Limited {
        limited,
        limit: "failed_auth",
        message: "too many failed authentication attempts from this address",
    };
    let Some(keys) = &state.keys else {
        return Ok(Arc::from(""));
    };
    state.limits.locked_out(address).map_err(locked)?;
    let Some(key) = keys.find(presented) else {
        state.limits.failed(address).map_err(locked)?;
        return Err(Refusal::Unauthorized {
            reason: "invalid",
            message: "invalid API key",
        });
    };
    if !key.allows(scope) {
        return Err(Refusal::Forbidden(scope));
    }
    state
        .limits
        .key(&key.name)
        .map_err(|limited| Refusal::Limited {
            limited,
            limit: "per_key",
            message: "this API key sends too many requests",
        })?;
    Ok(key.name.clone())
}

/// The method as a metric label: the standard methods by name, any other as `other`, so a
/// client inventing methods cannot grow the label set.
fn method_label(method: &Method) -> &'static str {
    const KNOWN: [Method; 9] = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::OPTIONS,
        Method::CONNECT,
        Method::TRACE,
    ];
    const NAMES: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
    ];
    KNOWN
        .iter()
        .position(|m| m == method)
        .map_or("other", |i| NAMES[i])
}

const CHART_HTML: &str = include_str!("assets/index.html");
const DOCS_HTML: &str = include_str!("assets/docs.html");
/// The OpenAPI 3.1 description of every route.
pub const OPENAPI_JSON: &str = include_str!("assets/openapi.json");

async fn dispatch(
    state: &Arc<ServerState>,
    route: &'static Route,
    captures: &[&str],
    req: Request<Incoming>,
    access: Access,
) -> Result<Response<Body>, ApiError> {
    let params = match route.api {
        // A WebSocket's key may come in its query string.
        Api::Native if scope(route.endpoint) == Some(Scope::Stream) => {
            Params::parse_ignoring(req.uri().query(), route.params, &["api_key"])?
        }
        Api::Native => Params::parse(req.uri().query(), route.params)?,
        // A parameter of another of its routes was ignored by the predecessor; a name it
        // never had is still a mistake worth a 400.
        Api::Predecessor => {
            let ignored = if scope(route.endpoint) == Some(Scope::Stream) {
                PREDECESSOR_WS_PARAMETERS
            } else {
                PREDECESSOR_PARAMETERS
            };
            Params::parse_ignoring(req.uri().query(), route.params, ignored)?
        }
    };
    // The `{symbol}` of the route (an empty one is refused like any invalid symbol).
    let symbol = || api::symbol(captures.first().copied().unwrap_or_default());
    // The row count a route fixes: one for `/latest`, `{count}` for `/last/{count}`.
    let fixed = if route.template.ends_with("/latest") {
        Some(1)
    } else {
        // The predecessor's bounds: 1000 bars, 500 analytics rows.
        let max = match (route.api, route.endpoint) {
            (Api::Native, _) => api::MAX_LIMIT,
            (_, Endpoint::IntradayAnalyticsLast | Endpoint::HistoricalAnalyticsLast) => 500,
            _ => 1000,
        };
        captures
            .get(1)
            .map(|c| api::count("count", c, max))
            .transpose()?
    };
    let ok = |reply: Reply| Ok(response(StatusCode::OK, reply.content_type, reply.body));
    match route.endpoint {
        Endpoint::Chart => {
            if prefers_json(&req) {
                return ok(Reply::json(service_info(state)));
            }
            let mut r = response(StatusCode::OK, "text/html; charset=utf-8", CHART_HTML);
            r.headers_mut()
                .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            security::page_policy(r.headers_mut(), &security::CHART_POLICY);
            Ok(r)
        }
        Endpoint::Docs => {
            let mut r = response(StatusCode::OK, "text/html; charset=utf-8", DOCS_HTML);
            security::page_policy(r.headers_mut(), &security::DOCS_POLICY);
            Ok(r)
        }
        Endpoint::OpenApi => ok(Reply::json(OPENAPI_JSON.as_bytes().to_vec())),
        Endpoint::Health => {
            let (status, body) = health(state).await;
            Ok(json(status, body))
        }
        Endpoint::Live => Ok(json(StatusCode::OK, br#"{"status":"alive"}"#.to_vec())),
        Endpoint::Metrics => {
            update_lag(state, now_ms());
            Ok(response(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                metrics().render(),
            ))
        }
        Endpoint::Symbols if route.api == Api::Predecessor => {
            ok(compat::symbols(state.store.get().await?).await?)
        }
        Endpoint::Symbols => ok(api::symbols(state.store.get().await?).await?),
        _ if route.api == Api::Predecessor
            && !matches!(route.endpoint, Endpoint::WsPrices | Endpoint::WsAnalytics) =>
        {
            let symbol = symbol()?;
            let store = state.store.get().await?;
            ok(predecessor(store, route.endpoint, symbol, &params, fixed).await?)
        }
        Endpoint::RealtimeAnalytics => Err(ApiError::not_found("not_found", "no such route")),
        Endpoint::RealtimePrices | Endpoint::RealtimeLatest => {
            let symbol = symbol()?;
            let store = state.store.get().await?;
            ok(api::realtime_prices(store, symbol, &params, fixed).await?)
        }
        Endpoint::IntradayPrices | Endpoint::IntradayLatest | Endpoint::IntradayLast => {
            let symbol = symbol()?;
            let store = state.store.get().await?;
            ok(api::intraday_prices(store, symbol, &params, fixed).await?)
        }
        Endpoint::HistoricalPrices | Endpoint::HistoricalLatest | Endpoint::HistoricalLast => {
            let symbol = symbol()?;
            let store = state.store.get().await?;
            ok(api::historical_prices(store, symbol, &params, fixed).await?)
        }
        Endpoint::Analytics
        | Endpoint::IntradayAnalytics
        | Endpoint::IntradayAnalyticsLast
        | Endpoint::HistoricalAnalytics
        | Endpoint::HistoricalAnalyticsLast => {
            let daily = matches!(
                route.endpoint,
                Endpoint::HistoricalAnalytics | Endpoint::HistoricalAnalyticsLast
            );
            let default = if daily { Interval::D1 } else { Interval::M1 };
            let symbol = symbol()?;
            let store = state.store.get().await?;
            ok(api::analytics(store, symbol, &params, default, fixed).await?)
        }
        Endpoint::Ws => ws::upgrade(state.clone(), req, ws::Mode::Streams, access),
        Endpoint::WsPrices => {
            let symbol = symbol()?;
            ws::upgrade(state.clone(), req, ws::Mode::Prices(symbol), access)
        }
        Endpoint::WsAnalytics => {
            let symbol = symbol()?;
            let interval = params
                .get("interval")
                .map(api::parse_interval)
                .transpose()?;
            ws::upgrade(
                state.clone(),
                req,
                ws::Mode::Analytics(symbol, interval),
                access,
            )
        }
    }
}

/// A route of the predecessor's API.
async fn predecessor(
    store: &Store,
    endpoint: Endpoint,
    symbol: marketflow_operators::Symbol,
    params: &Params,
    fixed: Option<usize>,
) -> Result<Reply, ApiError> {
    use compat::{Take, Tier};
    let take = match (endpoint, fixed) {
        (Endpoint::RealtimeLatest | Endpoint::IntradayLatest | Endpoint::HistoricalLatest, _) => {
            Take::Latest
        }
        (_, Some(n)) => Take::Last(n),
        (_, None) => Take::List,
    };
    let now = now_ms();
    match endpoint {
        Endpoint::RealtimePrices | Endpoint::RealtimeLatest => {
            compat::realtime_prices(store, symbol, params, take, now).await
        }
        Endpoint::RealtimeAnalytics => compat::realtime_analytics(store, symbol, params, now).await,
        Endpoint::IntradayPrices | Endpoint::IntradayLatest | Endpoint::IntradayLast => {
            compat::prices(store, symbol, params, Tier::Intraday, take, now).await
        }
        Endpoint::HistoricalPrices | Endpoint::HistoricalLatest | Endpoint::HistoricalLast => {
            compat::prices(store, symbol, params, Tier::Historical, take, now).await
        }
        Endpoint::IntradayAnalytics | Endpoint::IntradayAnalyticsLast => {
            compat::bar_analytics(store, symbol, params, Tier::Intraday, take, now).await
        }
        Endpoint::HistoricalAnalytics | Endpoint::HistoricalAnalyticsLast => {
            compat::bar_analytics(store, symbol, params, Tier::Historical, take, now).await
        }
        _ => Err(ApiError::not_found("not_found", "no such route")),
    }
}

/// Whether the client wants the service document rather than the chart page: `GET /`
/// from an API client (browsers ask for `text/html`; `requests`, `curl` do not).
fn prefers_json(req: &Request<Incoming>) -> bool {
    !req.headers()
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"))
}

/// `GET /` for API clients: the predecessor's service document, naming every route.
fn service_info(state: &ServerState) -> Vec<u8> {
    let endpoints: serde_json::Map<String, serde_json::Value> = ROUTES
        .iter()
        .map(|r| {
            (
                r.template.to_owned(),
                serde_json::Value::from(match r.api {
                    Api::Native => "marketflow",
                    Api::Predecessor => "predecessor",
                }),
            )
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "status": "online",
        "service": "marketflow",
        "version": env!("CARGO_PKG_VERSION"),
        "pipeline": state.pipeline,
        "endpoints": endpoints,
        "docs": "/docs",
        "openapi": "/openapi.json",
    }))
    .unwrap_or_default()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A source's state as the engine reports it: (running, watermark, lag in ms).
fn source_state(state: &ServerState, source: &SourceInfo, now: i64) -> (bool, i64, Option<i64>) {
    let status = state.run_status.source(&source.name);
    let watermark = status.watermark;
    let lag = (watermark > 0).then(|| (now - watermark).max(0));
    (status.running > 0, watermark, lag)
}

/// A running live feed: `connecting`, `ok`, `lagging` (no frame for longer than
/// `max_lag`) or `stopped` (the server refused the credentials).
fn feed_state(feed: &crate::status::FeedStatus, now: i64, max_lag_ms: i64) -> &'static str {
    use crate::status::FeedPhase;
    match feed.phase {
        FeedPhase::Stopped => "stopped",
        FeedPhase::Connecting => "connecting",
        FeedPhase::Connected if feed.last_message > 0 && now - feed.last_message > max_lag_ms => {
            "lagging"
        }
        FeedPhase::Connected => "ok",
    }
}

/// Publishes the watermark lag of each running source.
fn update_lag(state: &ServerState, now: i64) {
    for source in &state.sources {
        let (running, _, lag) = source_state(state, source, now);
        let gauge = metrics().source_lag.with_label_values(&[&source.name]);
        match lag.filter(|_| running) {
            Some(lag) => gauge.set(lag as f64 / 1000.0),
            None => gauge.set(0.0),
        }
    }
}

/// `/health`: the store, every source and the WebSocket clients; 503 when degraded.
async fn health(state: &ServerState) -> (StatusCode, Vec<u8>) {
    let now = now_ms();
    update_lag(state, now);
    let mut degraded = false;
    let mut database = "connected";
    let store = match state.store.get().await {
        Ok(store) => match tokio::time::timeout(Duration::from_secs(2), store.ping()).await {
            Ok(Ok(())) => serde_json::json!({"status": "ok", "kind": store.kind()}),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "health: store ping failed");
                degraded = true;
                database = "disconnected";
                serde_json::json!({"status": "unreachable", "kind": store.kind()})
            }
            Err(_) => {
                degraded = true;
                database = "disconnected";
                serde_json::json!({"status": "timeout", "kind": store.kind()})
            }
        },
        Err(e) => {
            degraded = true;
            database = "disconnected";
            serde_json::json!({"status": "unavailable", "message": e.message})
        }
    };
    let sources: Vec<serde_json::Value> = state
        .sources
        .iter()
        .map(|s| {
            let (running, watermark, lag) = source_state(state, s, now);
            let feed = state.run_status.source(&s.name).feed;
            let status = match (&feed, running, lag) {
                (_, false, _) if s.finite => "finished",
                (_, false, _) => "stopped",
                (Some(feed), true, _) => feed_state(feed, now, state.max_lag_ms),
                (None, true, None) => "starting",
                (None, true, Some(lag)) if lag > state.max_lag_ms => "lagging",
                (None, true, Some(_)) => "ok",
            };
            if matches!(status, "stopped" | "lagging") {
                degraded = true;
            }
            let mut source = serde_json::json!({
                "name": s.name,
                "type": s.kind,
                "status": status,
                "watermark": (watermark > 0).then(|| marketflow_operators::time::format_timestamp(watermark)),
                "lag_seconds": lag.map(|l| l as f64 / 1000.0),
            });
            if let (Some(feed), Some(fields)) = (feed, source.as_object_mut()) {
                fields.insert(
                    "last_message".into(),
                    serde_json::json!((feed.last_message > 0)
                        .then(|| marketflow_operators::time::format_timestamp(feed.last_message))),
                );
                fields.insert("rejected_symbols".into(), serde_json::json!(feed.rejected));
            }
            source
        })
        .collect();
    let body = serde_json::json!({
        "status": if degraded { "degraded" } else { "ok" },
        "time": marketflow_operators::time::format_timestamp(now),
        "pipeline": state.pipeline.as_ref().map(|name| serde_json::json!({
            "name": name,
            "status": if state.pipeline_finished.load(std::sync::atomic::Ordering::SeqCst) { "finished" } else { "running" },
        })),
        "store": store,
        "sources": sources,
        "websocket": {"clients": state.hub.clients()},
        // The predecessor's keys, now measured rather than constant.
        "services": {"database": database, "websockets": "active"},
    });
    let status = if degraded {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (status, serde_json::to_vec(&body).unwrap_or_default())
}
