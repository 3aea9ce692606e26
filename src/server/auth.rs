//! API keys and their scopes (`server.auth`).
//!
//! Keys are held as SHA-256 digests only: those of `server.auth.keys` are hashed when the
//! server starts, those of `keys_file` are written hashed. A presented key is hashed and
//! looked up by its digest, so how long a lookup takes says nothing about any key (finding
//! a digest's neighbours tells an attacker nothing about the keys behind them), and the
//! match is confirmed with a constant-time comparison.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hyper::header::{HeaderMap, AUTHORIZATION};

use super::api::percent_decode;
use crate::spec::server::{AuthConfig, Scope};

/// Keys longer than this are refused unread (no digest of a megabyte header).
const MAX_KEY: usize = 512;
/// Lines of a keys file at most.
const MAX_FILE_KEYS: usize = 1_000_000;

/// One key's holder and scopes.
#[derive(Debug)]
pub struct Key {
    pub name: Arc<str>,
    scopes: [bool; 3],
}

impl Key {
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes[scope as usize]
    }
}

/// The keys a server accepts.
#[derive(Debug, Default)]
pub struct Keys {
    by_digest: HashMap<[u8; 32], Key>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error("reading the keys file {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("{path}:{line}: {message}")]
    Line {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{0}: more than {MAX_FILE_KEYS} keys")]
    TooMany(PathBuf),
    #[error("two keys of server.auth are the same (`{0}` and `{1}`)")]
    Duplicate(String, String),
}

/// The SHA-256 digest of a key, as a keys file holds it.
pub fn digest(key: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, key).as_ref());
    out
}

fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Keys {
    /// The keys of `server.auth`: those written in it and those of its keys file.
    pub fn load(config: &AuthConfig) -> Result<Keys, KeysError> {
        let mut keys = Keys::default();
        for k in &config.keys {
            keys.add(digest(k.key.value.expose().as_bytes()), &k.name, &k.scopes)?;
        }
        if let Some(path) = &config.keys_file {
            let path = Path::new(&path.value);
            let text =
                std::fs::read_to_string(path).map_err(|e| KeysError::Read(path.into(), e))?;
            keys.add_file(path, &text)?;
        }
        Ok(keys)
    }

    fn add(&mut self, digest: [u8; 32], name: &str, scopes: &[Scope]) -> Result<(), KeysError> {
        let mut flags = [false; 3];
        for s in scopes {
            flags[*s as usize] = true;
        }
        let key = Key {
            name: name.into(),
            scopes: flags,
        };
        if let Some(other) = self.by_digest.insert(digest, key) {
            return Err(KeysError::Duplicate(other.name.to_string(), name.into()));
        }
        Ok(())
    }

    /// Lines `NAME:SCOPES:SHA256HEX` (`alice:read,stream:9f86d0...`); `#` starts a comment.
    fn add_file(&mut self, path: &Path, text: &str) -> Result<(), KeysError> {
        let mut count = 0;
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            count += 1;
            if count > MAX_FILE_KEYS {
                return Err(KeysError::TooMany(path.into()));
            }
            let bad = |message: String| KeysError::Line {
                path: path.into(),
                line: i + 1,
                message,
            };
            let mut parts = line.splitn(3, ':');
            let (Some(name), Some(scopes), Some(hex)) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(bad(
                    "expected NAME:SCOPES:SHA256HEX (`alice:read,stream:9f86d081...`)".into(),
                ));
            };
            let scopes = scopes
                .split(',')
                .map(|s| {
                    Scope::parse(s.trim()).ok_or_else(|| {
                        bad(format!(
                            "unknown scope `{}`: expected read, stream or admin",
                            s.trim()
                        ))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let digest = parse_hex(hex.trim()).ok_or_else(|| {
                bad("the key's SHA-256 is 64 hex digits (`printf %s \"$KEY\" | sha256sum`)".into())
            })?;
            if name.trim().is_empty() {
                return Err(bad("a key needs a name".into()));
            }
            self.add(digest, name.trim(), &scopes)?;
        }
        Ok(())
    }

    /// The key `presented` is, if it is one of these.
    pub fn find(&self, presented: &str) -> Option<&Key> {
        if presented.is_empty() || presented.len() > MAX_KEY {
            return None;
        }
        let digest = digest(presented.as_bytes());
        self.by_digest
            .get_key_value(&digest)
            .filter(|(stored, _)| same(stored, &digest))
            .map(|(_, key)| key)
    }

    pub fn len(&self) -> usize {
        self.by_digest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }
}

fn parse_hex(text: &str) -> Option<[u8; 32]> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        let s = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

/// Credentials that are not of a form the server takes (`Authorization: Basic`, bytes
/// that are not text).
#[derive(Debug, PartialEq, Eq)]
pub struct Malformed;

/// The key a request carries: `Authorization: Bearer KEY`, `X-API-Key: KEY`, or (where
/// `query_allowed`, for WebSockets) `?api_key=KEY`. `Err` for a malformed header.
pub fn presented(
    headers: &HeaderMap,
    query: Option<&str>,
    query_allowed: bool,
) -> Result<Option<String>, Malformed> {
    if let Some(value) = headers.get(AUTHORIZATION) {
        let text = value.to_str().map_err(|_| Malformed)?;
        let (scheme, key) = text.trim().split_once(' ').ok_or(Malformed)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(Malformed);
        }
        return Ok(Some(key.trim().to_owned()));
    }
    if let Some(value) = headers.get("x-api-key") {
        return value
            .to_str()
            .map(|k| Some(k.trim().to_owned()))
            .map_err(|_| Malformed);
    }
    if query_allowed {
        for part in query.unwrap_or_default().split('&') {
            if let Some(value) = part.strip_prefix("api_key=") {
                return percent_decode(value).map(Some).ok_or(Malformed);
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    #[test]
    fn keys_file_lines_and_lookup() {
        let hex = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"; // "test"
        let mut keys = Keys::default();
        keys.add_file(
            Path::new("keys"),
            &format!("# users\nalice:read,stream:{hex}\n"),
        )
        .unwrap();
        let k = keys.find("test").unwrap();
        assert_eq!(&*k.name, "alice");
        assert!(k.allows(Scope::Read) && k.allows(Scope::Stream) && !k.allows(Scope::Admin));
        assert!(keys.find("tesT").is_none());
        assert!(keys.find("").is_none());
        let err = keys
            .add_file(Path::new("keys"), "bob:write:00")
            .unwrap_err()
            .to_string();
        assert!(err.contains("keys:1: unknown scope `write`"), "{err}");
        let err = keys
            .add_file(Path::new("keys"), &format!("\ncarol:read:{hex}"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("same"), "{err}");
    }

    #[test]
    fn keys_from_headers_and_query() {
        let mut h = HeaderMap::new();
        assert_eq!(
            presented(&h, Some("api_key=a%2Bb"), true),
            Ok(Some("a+b".into()))
        );
        assert_eq!(presented(&h, Some("api_key=x"), false), Ok(None));
        h.insert("x-api-key", HeaderValue::from_static("k1"));
        assert_eq!(presented(&h, None, false), Ok(Some("k1".into())));
        h.insert(AUTHORIZATION, HeaderValue::from_static("bearer k2"));
        assert_eq!(presented(&h, None, false), Ok(Some("k2".into())));
        h.insert(AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(presented(&h, None, false), Err(Malformed));
    }
}
