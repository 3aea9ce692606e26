//! The route table ([`ROUTES`]): dispatch, the metrics label of each request, the scope a
//! request needs and the check that `/openapi.json` documents every route all read it.

use crate::spec::server::Scope;

/// What a route answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Chart,
    Docs,
    OpenApi,
    Health,
    /// `/health/live`: 200 while the process serves, whatever the pipeline's state.
    Live,
    Metrics,
    Symbols,
    RealtimePrices,
    RealtimeLatest,
    RealtimeAnalytics,
    IntradayPrices,
    IntradayLatest,
    IntradayLast,
    HistoricalPrices,
    HistoricalLatest,
    HistoricalLast,
    Analytics,
    IntradayAnalytics,
    IntradayAnalyticsLast,
    HistoricalAnalytics,
    HistoricalAnalyticsLast,
    Ws,
    WsPrices,
    WsAnalytics,
}

/// Which API a route belongs to: marketflow's (`/api/v3`: time order, RFC 3339 ranges,
/// one row per indicator) or the predecessor's (`/api/v2`: its parameters and shapes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    Native,
    Predecessor,
}

/// A route: its path template (`{symbol}`, `{count}` are path parameters) and the query
/// parameters it accepts.
pub struct Route {
    pub template: &'static str,
    pub endpoint: Endpoint,
    pub api: Api,
    pub params: &'static [&'static str],
}

const BARS: &[&str] = &["interval", "start", "end", "limit", "order", "format"];
const ANALYTICS: &[&str] = &[
    "interval",
    "indicator",
    "start",
    "end",
    "limit",
    "order",
    "format",
];
const DAILY: &[&str] = &["start_date", "end_date", "limit", "order", "format"];

/// The predecessor's filters (New York wall clock).
const SEED_TICKS: &[&str] = &[
    "limit",
    "last_minutes",
    "date",
    "start_time",
    "end_time",
    "start_date",
    "end_date",
    "format",
];
const SEED_BARS: &[&str] = &[
    "interval",
    "limit",
    "last_hours",
    "date",
    "start_time",
    "end_time",
    "start_date",
    "end_date",
    "format",
];
const SEED_ANALYTICS: &[&str] = &[
    "interval",
    "indicators",
    "limit",
    "last_hours",
    "date",
    "start_time",
    "end_time",
    "start_date",
    "end_date",
    "format",
];
const SEED_DAILY: &[&str] = &["limit", "start_date", "end_date", "last_days", "format"];
const SEED_DAILY_ANALYTICS: &[&str] = &[
    "indicators",
    "limit",
    "start_date",
    "end_date",
    "last_days",
    "format",
];

/// Every query parameter of the predecessor's routes.
pub(super) const PREDECESSOR_PARAMETERS: &[&str] = &[
    "interval",
    "indicators",
    "limit",
    "last_minutes",
    "last_hours",
    "last_days",
    "date",
    "start_time",
    "end_time",
    "start_date",
    "end_date",
    "format",
];

/// [`PREDECESSOR_PARAMETERS`] and a WebSocket's `api_key`.
pub(super) const PREDECESSOR_WS_PARAMETERS: &[&str] = &[
    "interval",
    "indicators",
    "limit",
    "last_minutes",
    "last_hours",
    "last_days",
    "date",
    "start_time",
    "end_time",
    "start_date",
    "end_date",
    "format",
    "api_key",
];

const fn route(
    template: &'static str,
    endpoint: Endpoint,
    api: Api,
    params: &'static [&'static str],
) -> Route {
    Route {
        template,
        endpoint,
        api,
        params,
    }
}

use Api::{Native, Predecessor};
use Endpoint as E;

/// Every route of the server.
pub const ROUTES: &[Route] = &[
    route("/", E::Chart, Native, &["symbol", "interval"]),
    route("/docs", E::Docs, Native, &[]),
    route("/redoc", E::Docs, Native, &[]),
    route("/openapi.json", E::OpenApi, Native, &[]),
    route("/health", E::Health, Native, &[]),
    // For orchestrators: liveness (restart when it fails) and readiness (send traffic when
    // it passes); readiness is `/health`, 503 while a source lags or the store is down.
    route("/health/live", E::Live, Native, &[]),
    route("/health/ready", E::Health, Native, &[]),
    route("/metrics", E::Metrics, Native, &[]),
    // marketflow's API.
    route("/api/v3/symbols", E::Symbols, Native, &[]),
    route(
        "/api/v3/realtime/prices/{symbol}",
        E::RealtimePrices,
        Native,
        &["limit", "order", "format"],
    ),
    route(
        "/api/v3/realtime/prices/{symbol}/latest",
        E::RealtimeLatest,
        Native,
        &["format"],
    ),
    route(
        "/api/v3/intraday/prices/{symbol}",
        E::IntradayPrices,
        Native,
        BARS,
    ),
    route(
        "/api/v3/intraday/prices/{symbol}/latest",
        E::IntradayLatest,
        Native,
        &["interval", "format"],
    ),
    route(
        "/api/v3/intraday/prices/{symbol}/last/{count}",
        E::IntradayLast,
        Native,
        &["interval", "order", "format"],
    ),
    route(
        "/api/v3/historical/prices/{symbol}",
        E::HistoricalPrices,
        Native,
        DAILY,
    ),
    route(
        "/api/v3/historical/prices/{symbol}/latest",
        E::HistoricalLatest,
        Native,
        &["format"],
    ),
    route(
        "/api/v3/historical/prices/{symbol}/last/{count}",
        E::HistoricalLast,
        Native,
        &["order", "format"],
    ),
    route(
        "/api/v3/analytics/{symbol}",
        E::Analytics,
        Native,
        ANALYTICS,
    ),
    route(
        "/api/v3/intraday/analytics/{symbol}",
        E::IntradayAnalytics,
        Native,
        ANALYTICS,
    ),
    route(
        "/api/v3/intraday/analytics/{symbol}/last/{count}",
        E::IntradayAnalyticsLast,
        Native,
        &["interval", "indicator", "order", "format"],
    ),
    route(
        "/api/v3/historical/analytics/{symbol}",
        E::HistoricalAnalytics,
        Native,
        &["indicator", "start", "end", "limit", "order", "format"],
    ),
    route(
        "/api/v3/historical/analytics/{symbol}/last/{count}",
        E::HistoricalAnalyticsLast,
        Native,
        &["indicator", "order", "format"],
    ),
    // The predecessor's API.
    route("/api/v2/realtime/symbols", E::Symbols, Predecessor, &[]),
    route(
        "/api/v2/realtime/prices/{symbol}",
        E::RealtimePrices,
        Predecessor,
        SEED_TICKS,
    ),
    route(
        "/api/v2/realtime/prices/{symbol}/latest",
        E::RealtimeLatest,
        Predecessor,
        &["format"],
    ),
    route(
        "/api/v2/realtime/analytics/{symbol}",
        E::RealtimeAnalytics,
        Predecessor,
        &[
            "limit",
            "last_minutes",
            "date",
            "start_time",
            "end_time",
            "indicators",
            "format",
        ],
    ),
    route(
        "/api/v2/intraday/prices/{symbol}",
        E::IntradayPrices,
        Predecessor,
        SEED_BARS,
    ),
    route(
        "/api/v2/intraday/prices/{symbol}/latest",
        E::IntradayLatest,
        Predecessor,
        &["interval", "format"],
    ),
    route(
        "/api/v2/intraday/prices/{symbol}/last/{count}",
        E::IntradayLast,
        Predecessor,
        &["interval", "format"],
    ),
    route(
        "/api/v2/intraday/analytics/{symbol}",
        E::IntradayAnalytics,
        Predecessor,
        SEED_ANALYTICS,
    ),
    route(
        "/api/v2/intraday/analytics/{symbol}/last/{count}",
        E::IntradayAnalyticsLast,
        Predecessor,
        &["interval", "indicators", "format"],
    ),
    route(
        "/api/v2/historical/prices/{symbol}",
        E::HistoricalPrices,
        Predecessor,
        SEED_DAILY,
    ),
    route(
        "/api/v2/historical/prices/{symbol}/latest",
        E::HistoricalLatest,
        Predecessor,
        &["format"],
    ),
    route(
        "/api/v2/historical/prices/{symbol}/last/{count}",
        E::HistoricalLast,
        Predecessor,
        &["format"],
    ),
    route(
        "/api/v2/historical/analytics/{symbol}",
        E::HistoricalAnalytics,
        Predecessor,
        SEED_DAILY_ANALYTICS,
    ),
    route(
        "/api/v2/historical/analytics/{symbol}/last/{count}",
        E::HistoricalAnalyticsLast,
        Predecessor,
        &["indicators", "format"],
    ),
    route("/ws", E::Ws, Native, &[]),
    route("/ws/prices/{symbol}", E::WsPrices, Predecessor, &[]),
    route(
        "/ws/analytics/{symbol}",
        E::WsAnalytics,
        Predecessor,
        &["interval"],
    ),
];

/// The route of a path and its path parameters (`{symbol}`, `{count}` in order).
pub fn find_route(path: &str) -> Option<(&'static Route, Vec<&str>)> {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    'routes: for route in ROUTES {
        let template: Vec<&str> = route.template.split('/').skip(1).collect();
        let template = if route.template == "/" {
            Vec::new()
        } else {
            template
        };
        if template.len() != segments.len() {
            continue;
        }
        let mut captures = Vec::new();
        for (t, s) in template.iter().zip(&segments) {
            if t.starts_with('{') {
                if s.is_empty() {
                    continue 'routes;
                }
                captures.push(*s);
            } else if t != s {
                continue 'routes;
            }
        }
        return Some((route, captures));
    }
    None
}

/// The scope a route needs; `None`: open to all (health probes, static pages).
pub fn scope(endpoint: Endpoint) -> Option<Scope> {
    match endpoint {
        Endpoint::Chart
        | Endpoint::Docs
        | Endpoint::OpenApi
        | Endpoint::Health
        | Endpoint::Live => None,
        Endpoint::Metrics => Some(Scope::Admin),
        Endpoint::Ws | Endpoint::WsPrices | Endpoint::WsAnalytics => Some(Scope::Stream),
        _ => Some(Scope::Read),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::OPENAPI_JSON;

    #[test]
    fn routes_match_templates() {
        let (r, c) = find_route("/api/v2/intraday/prices/AAPL/last/10").unwrap();
        assert_eq!(r.endpoint, Endpoint::IntradayLast);
        assert_eq!(r.api, Api::Predecessor);
        assert_eq!(c, ["AAPL", "10"]);
        let (r, _) = find_route("/api/v3/intraday/prices/AAPL/last/10").unwrap();
        assert_eq!((r.endpoint, r.api), (Endpoint::IntradayLast, Api::Native));
        assert_eq!(find_route("/").unwrap().0.endpoint, Endpoint::Chart);
        assert_eq!(find_route("/health/").unwrap().0.endpoint, Endpoint::Health);
        assert_eq!(
            find_route("/health/ready").unwrap().0.endpoint,
            Endpoint::Health
        );
        assert_eq!(
            find_route("/health/live").unwrap().0.endpoint,
            Endpoint::Live
        );
        assert_eq!(find_route("/ws/prices/EUR%2FUSD").unwrap().1, ["EUR%2FUSD"]);
        assert!(find_route("/api/v2/intraday/prices/").is_none());
        assert!(find_route("/nope").is_none());
    }

    /// Every route is in the OpenAPI document with exactly the query parameters it takes.
    #[test]
    fn openapi_documents_every_route() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI_JSON).unwrap();
        assert_eq!(doc["openapi"].as_str().unwrap().get(..3), Some("3.1"));
        let paths = doc["paths"].as_object().unwrap();
        assert_eq!(paths.len(), ROUTES.len(), "documented paths vs routes");
        for route in ROUTES {
            let op = &paths
                .get(route.template)
                .unwrap_or_else(|| panic!("{} is not documented", route.template))["get"];
            let mut query: Vec<&str> = op["parameters"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .map(|p| match p["$ref"].as_str() {
                            Some(r) => {
                                let name = r.trim_start_matches("#/components/parameters/");
                                &doc["components"]["parameters"][name]
                            }
                            None => p,
                        })
                        .filter(|p| p["in"] == "query")
                        .map(|p| p["name"].as_str().unwrap())
                        .collect()
                })
                .unwrap_or_default();
            let mut expected = route.params.to_vec();
            query.sort_unstable();
            expected.sort_unstable();
            assert_eq!(query, expected, "query parameters of {}", route.template);
            assert!(
                op["responses"]["200"].is_object() || op["responses"]["101"].is_object(),
                "{}",
                route.template
            );
        }
    }
}
