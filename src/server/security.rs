//! The answers and headers of the server's security: 401, 403 and 429 in the JSON error
//! shape, CORS preflights, and the headers every response (and the HTML pages) carry.

use std::sync::LazyLock;

use base64::Engine as _;
use hyper::header::{HeaderMap, HeaderValue};
use hyper::{Response, StatusCode};

use super::api::ApiError;
use super::limits::Limited;
use super::{error_response, Body};
use crate::metrics::metrics;
use crate::spec::server::Scope;

/// Why a request (or a WebSocket's first message) is refused.
pub enum Refusal {
    /// 401: no key (`missing`), or one that is not valid (`invalid`).
    Unauthorized {
        reason: &'static str,
        message: &'static str,
    },
    /// 403: a valid key without the route's scope.
    Forbidden(Scope),
    /// 429 with `Retry-After`, from the bucket `limit`.
    Limited {
        limited: Limited,
        limit: &'static str,
        message: &'static str,
    },
}

impl Refusal {
    /// The error, counted in the metrics.
    pub fn api_error(&self) -> ApiError {
        let m = metrics();
        match self {
            Refusal::Unauthorized { reason, message } => {
                m.http_auth_failures.with_label_values(&[reason]).inc();
                ApiError {
                    status: StatusCode::UNAUTHORIZED,
                    code: "unauthorized",
                    message: (*message).into(),
                }
            }
            Refusal::Forbidden(scope) => {
                m.http_auth_failures.with_label_values(&["scope"]).inc();
                ApiError {
                    status: StatusCode::FORBIDDEN,
                    code: "forbidden",
                    message: format!(
                        "this API key lacks the `{}` scope this route needs",
                        scope.name()
                    ),
                }
            }
            Refusal::Limited {
                limited,
                limit,
                message,
            } => {
                m.http_rate_limited.with_label_values(&[limit]).inc();
                ApiError {
                    status: StatusCode::TOO_MANY_REQUESTS,
                    code: "rate_limited",
                    message: format!("{message}; retry in {} s", limited.retry_after()),
                }
            }
        }
    }

    /// The HTTP answer.
    pub fn response(&self) -> Response<Body> {
        let mut r = error_response(&self.api_error());
        match self {
            Refusal::Unauthorized { .. } => {
                r.headers_mut().insert(
                    hyper::header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"marketflow\""),
                );
            }
            Refusal::Limited { limited, .. } => {
                r.headers_mut().insert(
                    hyper::header::RETRY_AFTER,
                    HeaderValue::from(limited.retry_after()),
                );
            }
            Refusal::Forbidden(_) => {}
        }
        r
    }
}

/// The answer to a CORS preflight (`OPTIONS`): the methods and headers a browser of an
/// allowed origin may use; the origin itself is added by the caller.
pub fn preflight(origin_allowed: Option<bool>) -> Response<Body> {
    if origin_allowed == Some(false) {
        return error_response(&ApiError {
            status: StatusCode::FORBIDDEN,
            code: "origin_not_allowed",
            message: "cross-origin requests from this origin are not allowed (see `server.allowed_origins`)".into(),
        });
    }
    let mut r = Response::new(Body::default());
    *r.status_mut() = StatusCode::NO_CONTENT;
    let h = r.headers_mut();
    h.insert("allow", HeaderValue::from_static("GET, HEAD, OPTIONS"));
    if origin_allowed == Some(true) {
        h.insert(
            hyper::header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, HEAD"),
        );
        h.insert(
            hyper::header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("authorization, x-api-key"),
        );
        h.insert(
            hyper::header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
    }
    r
}

/// Headers of every response.
pub fn headers(h: &mut HeaderMap, tls: bool) {
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    if tls {
        h.insert(
            hyper::header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
}

/// The Content-Security-Policy of an HTML page: its own inline script and style (by their
/// SHA-256, so nothing injected runs), requests and WebSockets to this server only, no
/// framing, no plugins, no forms.
fn content_security_policy(html: &str) -> String {
    let hashes = |tag: &str| {
        inline_blocks(html, tag)
            .map(|body| {
                let digest = ring::digest::digest(&ring::digest::SHA256, body.as_bytes());
                format!(
                    " 'sha256-{}'",
                    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
                )
            })
            .collect::<String>()
    };
    format!(
        "default-src 'none'; script-src{}; style-src{}; connect-src 'self'; img-src 'self' data:; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        hashes("script"),
        hashes("style")
    )
}

/// The text of each `<tag>...</tag>` block of `html`.
fn inline_blocks<'a>(html: &'a str, tag: &str) -> impl Iterator<Item = &'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut rest = html;
    std::iter::from_fn(move || {
        let start = rest.find(&open)? + open.len();
        let len = rest[start..].find(&close)?;
        let body = &rest[start..start + len];
        rest = &rest[start + len..];
        Some(body)
    })
}

/// The policies of the chart page and the docs page.
pub static CHART_POLICY: LazyLock<HeaderValue> = LazyLock::new(|| policy_value(super::CHART_HTML));
pub static DOCS_POLICY: LazyLock<HeaderValue> = LazyLock::new(|| policy_value(super::DOCS_HTML));

fn policy_value(html: &str) -> HeaderValue {
    HeaderValue::from_str(&content_security_policy(html))
        .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'"))
}

/// The headers of an HTML page with its policy.
pub fn page_policy(h: &mut HeaderMap, policy: &HeaderValue) {
    h.insert(hyper::header::CONTENT_SECURITY_POLICY, policy.clone());
    h.insert(
        hyper::header::X_FRAME_OPTIONS,
        HeaderValue::from_static("DENY"),
    );
    h.insert(
        hyper::header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_hashes_each_inline_block() {
        let html = "<style>a{}</style><script>1</script><p></p><script>2</script>";
        let csp = content_security_policy(html);
        assert_eq!(csp.matches("'sha256-").count(), 3, "{csp}");
        assert!(csp.starts_with("default-src 'none'; script-src 'sha256-"));
        assert!(!csp.contains("unsafe"));
        for page in [super::super::CHART_HTML, super::super::DOCS_HTML] {
            assert_eq!(inline_blocks(page, "script").count(), 1);
            assert_eq!(inline_blocks(page, "style").count(), 1);
            // Inline `style=` attributes and event handlers would need 'unsafe-inline'.
            assert!(!page.contains(" style=\"") && !page.contains(" onclick="));
        }
    }
}
