//! Which browser origins may read the API cross-origin and open WebSockets: the server's
//! own (the `Origin` names the `Host` it asked), localhost, and `server.allowed_origins`.

use hyper::header::{HeaderMap, HeaderValue, HOST};

pub fn allowed(origin: &HeaderValue, headers: &HeaderMap, configured: &[String]) -> bool {
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let origin = origin.trim().trim_end_matches('/');
    if configured
        .iter()
        .any(|o| o == "*" || o.trim_end_matches('/').eq_ignore_ascii_case(origin))
    {
        return true;
    }
    let Some(authority) = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
    else {
        return false; // `null`, file:, extensions
    };
    let same = headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|host| host.eq_ignore_ascii_case(authority));
    same || is_local(authority)
}

/// `localhost`, `127.0.0.1` or `[::1]`, with any port.
fn is_local(authority: &str) -> bool {
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    host.eq_ignore_ascii_case("localhost") || host == "127.0.0.1" || host == "::1"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(origin: &str, host: &str, configured: &[&str]) -> bool {
        let mut headers = HeaderMap::new();
        headers.insert(HOST, HeaderValue::from_str(host).unwrap());
        let configured: Vec<String> = configured.iter().map(|s| s.to_string()).collect();
        allowed(
            &HeaderValue::from_str(origin).unwrap(),
            &headers,
            &configured,
        )
    }

    #[test]
    fn own_local_and_configured_origins_only() {
        assert!(check("http://10.0.0.5:8000", "10.0.0.5:8000", &[]));
        assert!(check("http://localhost:3000", "10.0.0.5:8000", &[]));
        assert!(check("http://[::1]:3000", "10.0.0.5:8000", &[]));
        assert!(!check("https://evil.example", "10.0.0.5:8000", &[]));
        assert!(!check(
            "http://localhost.evil.example",
            "10.0.0.5:8000",
            &[]
        ));
        assert!(!check("null", "10.0.0.5:8000", &[]));
        assert!(check(
            "https://dash.example.com",
            "x",
            &["https://dash.example.com/"]
        ));
        assert!(check("https://any.example", "x", &["*"]));
    }
}
