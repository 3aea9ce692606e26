//! `type: twelvedata` — live prices from TwelveData's WebSocket
//! (`wss://ws.twelvedata.com/v1/quotes/price`): subscriptions in chunks, a heartbeat every
//! 10 s, symbols the server refuses reported once, a stop when it refuses the key.
//! Protocol notes: `docs/sources.md`.

use std::time::Duration as StdDuration;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use super::feed::{self, Decoded, FeedSettings, Protocol, Quote, SymbolList};
use crate::config::de::Spanned;
use crate::config::diagnostic::Diagnostic;
use crate::config::values::{Duration, Parsed, Secret};
use crate::connector::{Source, SourceContext, StreamType, Task};

/// Live prices from TwelveData's WebSocket.
#[derive(Deserialize, JsonSchema, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct TwelveDataConfig {
    /// Symbols to stream: a list, or one string split on commas (`${STREAM_SYMBOLS}`);
    /// `SYMBOL:EXCHANGE` picks a venue.
    pub symbols: Spanned<SymbolList>,
    /// The API key, e.g. `${TWELVEDATA_API_KEY}`; sent as the `apikey` parameter, never logged.
    pub api_key: Secret,
    /// The WebSocket address (default `wss://ws.twelvedata.com/v1/quotes/price`; tests and
    /// proxies set their own).
    #[serde(default = "default_url")]
    pub url: String,
    /// Bounded out-of-orderness: the watermark trails the latest event time by this much
    /// (default 2s).
    #[serde(
        default = "feed::default_max_delay",
        deserialize_with = "crate::config::values::duration_within::<_, 0, 86_400_000>"
    )]
    #[schemars(with = "Duration")]
    pub max_delay: Duration,
    /// With no price for this long while connected, the watermark follows the wall clock
    /// (less `max_delay`), so the last windows close (default 5s).
    #[serde(
        default = "feed::default_idle_timeout",
        deserialize_with = "crate::config::values::duration_within::<_, 100, 86_400_000>"
    )]
    #[schemars(with = "Duration")]
    pub idle_timeout: Duration,
    /// A connection with no frame for this long (heartbeat answers included) is dead and
    /// replaced (default 20s: two heartbeats without an answer).
    #[serde(
        default = "default_silence",
        deserialize_with = "crate::config::values::duration_within::<_, 1_000, 3_600_000>"
    )]
    #[schemars(with = "Duration")]
    pub silence_timeout: Duration,
    /// Time zone of the trading day that `day_volume` counts (default `America/New_York`).
    #[serde(default = "feed::default_timezone")]
    pub timezone: Parsed<chrono_tz::Tz>,
}

fn default_url() -> String {
    "wss://ws.twelvedata.com/v1/quotes/price".into()
}

fn default_silence() -> Duration {
    Duration(20_000)
}

/// Symbols per `subscribe` message: far below the 1 MB message limit, and 10,000 symbols
/// (the largest plan) take 40 of the 100 events a connection may send.
const SYMBOLS_PER_SUBSCRIBE: usize = 250;

impl Source for TwelveDataConfig {
    const TYPE: &'static str = "twelvedata";
    const ABOUT: &'static str = "live prices from TwelveData's WebSocket (an API key)";

    fn output(&self) -> StreamType {
        StreamType::Ticks
    }

    fn check(&self, path: &str) -> Vec<Diagnostic> {
        let mut problems = feed::check(path, &self.symbols, &self.url);
        if self.api_key.expose().trim().is_empty() {
            problems.push(
                Diagnostic::new(
                    self.symbols.pos,
                    format!("{path}.api_key"),
                    "the API key is empty",
                )
                .help("set it from the environment: `api_key: ${TWELVEDATA_API_KEY}`"),
            );
        }
        problems
    }

    fn is_finite(&self) -> bool {
        false
    }

    /// A live feed cannot read again: it goes on from now.
    fn restart_from(&self) -> crate::connector::RestartFrom {
        crate::connector::RestartFrom::Now
    }

    fn max_delay(&self) -> i64 {
        self.max_delay.0
    }

    fn idle_timeout(&self) -> Option<StdDuration> {
        Some(self.idle_timeout.as_std())
    }

    fn build(&self, ctx: SourceContext) -> Task {
        let protocol = TwelveData {
            url: self.url.clone(),
            key: self.api_key.clone(),
        };
        let settings = FeedSettings {
            symbols: self.symbols.symbols(),
            max_delay_ms: self.max_delay.0,
            idle_timeout: self.idle_timeout.as_std(),
            silence_timeout: self.silence_timeout.as_std(),
            timezone: self.timezone.value,
        };
        feed::task(protocol, settings, ctx)
    }
}

/// TwelveData's WebSocket protocol.
struct TwelveData {
    url: String,
    key: Secret,
}

impl Protocol for TwelveData {
    fn url(&self) -> String {
        let sep = if self.url.contains('?') { '&' } else { '?' };
        format!(
            "{}{sep}apikey={}",
            self.url,
            feed::percent_encode(self.key.expose())
        )
    }

    fn display_url(&self) -> String {
        self.url.clone()
    }

    fn subscribe(&self, symbols: &[String]) -> Vec<String> {
        symbols
            .chunks(SYMBOLS_PER_SUBSCRIBE)
            .map(|chunk| {
                serde_json::json!({"action": "subscribe", "params": {"symbols": chunk.join(",")}})
                    .to_string()
            })
            .collect()
    }

    fn keepalive(&self, _: &[String]) -> Vec<String> {
        vec![r#"{"action":"heartbeat"}"#.to_owned()]
    }

    fn keepalive_every(&self) -> StdDuration {
        StdDuration::from_secs(10)
    }

    fn decode(&mut self, frame: &[u8], binary: bool, out: &mut Vec<Quote>) -> Decoded {
        if binary {
            return Decoded::Garbage("a binary frame (TwelveData sends JSON text)".into());
        }
        let value: Value = match serde_json::from_slice(frame) {
            Ok(value @ Value::Object(_)) => value,
            Ok(_) => return Decoded::Garbage("not a JSON object".into()),
            Err(e) => return Decoded::Garbage(format!("not JSON: {e}")),
        };
        match value.get("event").and_then(Value::as_str) {
            Some("price") => match price(&value) {
                Ok(quote) => {
                    out.push(quote);
                    Decoded::Quotes
                }
                Err(reason) => Decoded::Garbage(reason),
            },
            Some("subscribe-status") => Decoded::Rejected(failed_symbols(&value)),
            Some(_) => Decoded::Other,
            None => match error_code(&value) {
                Some(code @ (401 | 403)) => Decoded::Fatal(error_text(&value, code)),
                Some(code) => {
                    tracing::warn!(code, message = %error_text(&value, code), "TwelveData sent an error");
                    Decoded::Other
                }
                None => Decoded::Garbage("a JSON object without `event`".into()),
            },
        }
    }

    /// A refused upgrade: 401 or 403, or 200 with an error body naming either.
    fn auth_failure(&self, status: u16, body: &[u8]) -> Option<String> {
        let value: Option<Value> = serde_json::from_slice(body).ok();
        let code = value.as_ref().and_then(error_code);
        match (status, code) {
            (401 | 403, _) | (_, Some(401 | 403)) => {
                let code = code.unwrap_or(i64::from(status));
                Some(match &value {
                    Some(v) => error_text(v, code),
                    None => format!("HTTP {status}: the API key was refused"),
                })
            }
            _ => None,
        }
    }
}

/// A `price` event: integer Unix seconds, a number (or numeric string) price, an optional
/// cumulative `day_volume`.
fn price(value: &Value) -> Result<Quote, String> {
    let symbol = value
        .get("symbol")
        .and_then(Value::as_str)
        .ok_or("a price without `symbol`")?;
    let seconds = value
        .get("timestamp")
        .and_then(feed::number)
        .ok_or("a price without a numeric `timestamp`")?;
    let price = value
        .get("price")
        .and_then(feed::number)
        .ok_or("a price without a numeric `price`")?;
    let day_volume = match value.get("day_volume") {
        None | Some(Value::Null) => None,
        Some(v) => Some(feed::number(v).ok_or("`day_volume` is not a number")?),
    };
    feed::quote(symbol, feed::epoch_ms(seconds), price, day_volume)
}

/// The symbols in a `subscribe-status`'s `fails` (objects or strings; `null` is none).
fn failed_symbols(value: &Value) -> Vec<String> {
    value
        .get("fails")
        .and_then(Value::as_array)
        .map(|fails| {
            fails
                .iter()
                .filter_map(|f| match f {
                    Value::String(s) => Some(s.clone()),
                    other => other
                        .get("symbol")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn error_code(value: &Value) -> Option<i64> {
    let is_error = value.get("status").and_then(Value::as_str) == Some("error");
    let code = value.get("code").and_then(feed::number).map(|c| c as i64);
    match (is_error, code) {
        (true, code) => Some(code.unwrap_or(0)),
        (false, Some(code)) if code >= 400 => Some(code),
        _ => None,
    }
}

fn error_text(value: &Value, code: i64) -> String {
    let message = value
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("no message");
    let message: String = message.chars().take(200).collect();
    format!("code {code}: {message}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(text: &str) -> (Decoded, Vec<Quote>) {
        let mut td = TwelveData {
            url: default_url(),
            key: Secret("k".into()),
        };
        let mut out = Vec::new();
        (td.decode(text.as_bytes(), false, &mut out), out)
    }

    #[test]
    fn prices_events_statuses_and_errors() {
        let (d, q) = decode(
            r#"{"event":"price","symbol":"AAPL","timestamp":1684508044,"price":175.6997,"day_volume":15991537}"#,
        );
        assert!(matches!(d, Decoded::Quotes));
        assert_eq!(q[0].ts, 1_684_508_044_000);
        assert_eq!(q[0].price, 175.6997);
        assert_eq!(q[0].day_volume, Some(15_991_537.0));
        let (_, q) = decode(
            r#"{"event":"price","symbol":"EUR/USD","timestamp":1667563304,"price":"1.0712"}"#,
        );
        assert_eq!(q[0].ts, 1_667_563_304_000);
        let (_, q) = decode(
            r#"{"event":"price","symbol":"EUR/USD","timestamp":1667563304500,"price":"1.0712"}"#,
        );
        assert_eq!(q[0].ts, 1_667_563_304_500, "milliseconds are read as such");
        assert_eq!((q[0].price, q[0].day_volume), (1.0712, None));
        let (d, _) = decode(
            r#"{"event":"subscribe-status","status":"ok","success":null,"fails":[{"symbol":"NOPE"},"BAD"]}"#,
        );
        assert!(matches!(d, Decoded::Rejected(s) if s == ["NOPE", "BAD"]));
        assert!(matches!(
            decode(r#"{"event":"heartbeat","status":"ok"}"#).0,
            Decoded::Other
        ));
        assert!(matches!(
            decode(r#"{"code":401,"message":"bad key","status":"error"}"#).0,
            Decoded::Fatal(_)
        ));
        assert!(matches!(
            decode(r#"{"event":"price","symbol":"A","price":1}"#).0,
            Decoded::Garbage(_)
        ));
        assert!(matches!(decode("{\"event\":\"pri").0, Decoded::Garbage(_)));
        assert!(matches!(decode("[1]").0, Decoded::Garbage(_)));
    }

    #[test]
    fn the_key_goes_in_the_url_and_nowhere_else() {
        let td = TwelveData {
            url: "ws://127.0.0.1:9/v1/quotes/price".into(),
            key: Secret("s3cr&t".into()),
        };
        assert_eq!(td.url(), "ws://127.0.0.1:9/v1/quotes/price?apikey=s3cr%26t");
        assert!(!td.display_url().contains("s3cr"));
        assert!(td.auth_failure(401, b"").is_some());
        assert!(td
            .auth_failure(200, br#"{"code":401,"message":"x","status":"error"}"#)
            .is_some());
        assert!(td.auth_failure(503, b"busy").is_none());
        let subscribe = td.subscribe(&(0..600).map(|i| format!("S{i}")).collect::<Vec<_>>());
        assert_eq!(subscribe.len(), 3);
    }
}
