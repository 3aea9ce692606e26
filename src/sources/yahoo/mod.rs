//! `type: yahoo` — live prices from Yahoo Finance's streamer
//! (`wss://streamer.finance.yahoo.com/?version=2`): no key; the whole symbol list is
//! subscribed on every connection and again every 15 s; frames are JSON-wrapped base64
//! protobuf (`PricingData`, [`pricing`]), or bare base64 from the legacy endpoint.

mod pricing;

use std::time::Duration as StdDuration;

use base64::Engine as _;
use prost::Message as _;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use self::pricing::{PricingData, QUOTE_TYPE_HEARTBEAT};
use super::feed::{self, Decoded, FeedSettings, Protocol, Quote, SymbolList};
use crate::config::de::Spanned;
use crate::config::diagnostic::Diagnostic;
use crate::config::values::{Duration, Parsed};
use crate::connector::{Source, SourceContext, StreamType, Task};

/// Live prices from Yahoo Finance's streamer.
#[derive(Deserialize, JsonSchema, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct YahooConfig {
    /// Symbols to stream, as Yahoo writes them (`AAPL`, `BTC-USD`, `EURUSD=X`, `^GSPC`): a
    /// list, or one string split on commas (`${STREAM_SYMBOLS}`).
    pub symbols: Spanned<SymbolList>,
    /// The streamer's address (default `wss://streamer.finance.yahoo.com/?version=2`).
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
    /// A connection with no frame for this long is dead and replaced (default 30s, two
    /// re-subscriptions without an answer; Yahoo sends nothing for instruments that are not
    /// trading, so a quiet market costs a reconnect every 30 s).
    #[serde(
        default = "default_silence",
        deserialize_with = "crate::config::values::duration_within::<_, 1_000, 3_600_000>"
    )]
    #[schemars(with = "Duration")]
    pub silence_timeout: Duration,
    /// Time zone of the trading day that `day_volume` counts (default `America/New_York`;
    /// `UTC` for crypto).
    #[serde(default = "feed::default_timezone")]
    pub timezone: Parsed<chrono_tz::Tz>,
}

fn default_url() -> String {
    "wss://streamer.finance.yahoo.com/?version=2".into()
}

fn default_silence() -> Duration {
    Duration(30_000)
}

impl Source for YahooConfig {
    const TYPE: &'static str = "yahoo";
    const ABOUT: &'static str = "live prices from Yahoo Finance's streamer (no key)";

    fn output(&self) -> StreamType {
        StreamType::Ticks
    }

    fn check(&self, path: &str) -> Vec<Diagnostic> {
        feed::check(path, &self.symbols, &self.url)
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
        let protocol = Yahoo {
            url: self.url.clone(),
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

/// Yahoo's streamer protocol.
struct Yahoo {
    url: String,
}

impl Protocol for Yahoo {
    fn url(&self) -> String {
        self.url.clone()
    }

    fn display_url(&self) -> String {
        self.url.clone()
    }

    fn subscribe(&self, symbols: &[String]) -> Vec<String> {
        vec![serde_json::json!({ "subscribe": symbols }).to_string()]
    }

    /// The streamer forgets idle subscriptions: the whole list again every 15 s.
    fn keepalive(&self, symbols: &[String]) -> Vec<String> {
        self.subscribe(symbols)
    }

    fn keepalive_every(&self) -> StdDuration {
        StdDuration::from_secs(15)
    }

    fn decode(&mut self, frame: &[u8], binary: bool, out: &mut Vec<Quote>) -> Decoded {
        if binary {
            return Decoded::Garbage("a binary frame (the streamer sends text)".into());
        }
        let text = String::from_utf8_lossy(frame);
        let text = text.trim();
        let encoded = if text.starts_with('{') {
            let value: Value = match serde_json::from_str(text) {
                Ok(value) => value,
                Err(e) => return Decoded::Garbage(format!("not JSON: {e}")),
            };
            match value.get("type").and_then(Value::as_str) {
                None | Some("pricing") => {}
                Some(other) => {
                    return Decoded::Garbage(format!("a frame of type `{other}`, not `pricing`"))
                }
            }
            match value.get("message").and_then(Value::as_str) {
                Some(message) => message.to_owned(),
                None => return Decoded::Garbage("a JSON frame without `message`".into()),
            }
        } else {
            text.to_owned() // the legacy endpoint: bare base64
        };
        let bytes = match base64::engine::general_purpose::STANDARD.decode(encoded.trim()) {
            Ok(bytes) => bytes,
            Err(e) => return Decoded::Garbage(format!("`message` is not base64: {e}")),
        };
        let data = match PricingData::decode(bytes.as_slice()) {
            Ok(data) => data,
            Err(e) => return Decoded::Garbage(format!("not a PricingData message: {e}")),
        };
        if data.quote_type == Some(QUOTE_TYPE_HEARTBEAT) {
            return Decoded::Other;
        }
        match quote(&data) {
            Ok(quote) => {
                out.push(quote);
                Decoded::Quotes
            }
            Err(reason) => Decoded::Garbage(reason),
        }
    }

    /// Yahoo has no keys: a 401 or 403 on the upgrade means this client is refused.
    fn auth_failure(&self, status: u16, body: &[u8]) -> Option<String> {
        matches!(status, 401 | 403).then(|| {
            let body: String = String::from_utf8_lossy(body).chars().take(200).collect();
            format!(
                "HTTP {status}: the streamer refused the connection {}",
                body.trim()
            )
            .trim_end()
            .to_owned()
        })
    }
}

/// A decoded price: `time` is ms (zigzag-encoded); the float32 price is read as the
/// shortest decimal that gives the same float (94745.078125 is 94745.08), then rounded to
/// `price_hint` decimals when Yahoo gives them; an absent `day_volume` is unknown, not 0.
fn quote(data: &PricingData) -> Result<Quote, String> {
    let symbol = data
        .id
        .as_deref()
        .filter(|s| !s.is_empty())
        .ok_or("no `id` (symbol)")?;
    let time = data.time.ok_or("no `time`")?;
    let price = data.price.ok_or("no `price`")?;
    let mut price: f64 = price.to_string().parse().unwrap_or(f64::NAN);
    if let Some(hint) = data.price_hint.filter(|h| (0..=10).contains(h)) {
        let scale = 10f64.powi(hint as i32);
        price = (price * scale).round() / scale;
    }
    let day_volume = data.day_volume.map(|v| v as f64);
    feed::quote(symbol, feed::epoch_ms(time as f64), price, day_volume)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(text: &str) -> (Decoded, Vec<Quote>) {
        let mut out = Vec::new();
        let d = Yahoo { url: default_url() }.decode(text.as_bytes(), false, &mut out);
        (d, out)
    }

    /// Real frames from yfinance's and yliveticker's tests (docs/sources.md).
    #[test]
    fn real_frames_decode() {
        let (d, q) = decode(
            r#"{"type":"pricing","message":"CgdCVEMtVVNEFYoMuUcYwLCVgIplIgNVU0QqA0NDQzApOAFFPWrEP0iAgOrxvANVx/25R12csrRHZYD8skR9/7i0R7ABgIDq8bwD2AEE4AGAgOrxvAPoAYCA6vG8A/IBA0JUQ4ECAAAAwPrjckGJAgAA2P5ZT3tC"}"#,
        );
        assert!(matches!(d, Decoded::Quotes), "{d:?}");
        assert_eq!(q[0].symbol, "BTC-USD");
        assert_eq!(q[0].ts, 1_736_509_140_000);
        assert_eq!(q[0].price, 94745.08);
        assert_eq!(q[0].day_volume, Some(59_712_028_672.0));
        let (_, q) =
            decode("CgRNU0ZUFYVrMUMY0KLMjcNcKgNOTVMwCDgBRZ+B3L9IuPn8CVU0IjRDXYVrMUNlQApHwNgBBA==");
        assert_eq!(q[0].symbol, "MSFT");
        assert_eq!((q[0].ts, q[0].price), (1_589_554_809_000, 177.42));
        assert_eq!(q[0].day_volume, Some(10_460_764.0));
    }

    #[test]
    fn garbage_is_named() {
        for frame in [
            "not json {",
            "{\"type\":\"pricing\"}",
            "{\"message\":\"***\"}",
            "{\"message\":\"GA==\"}",
            "{\"type\":\"news\",\"message\":\"\"}",
            "{broken",
        ] {
            assert!(matches!(decode(frame).0, Decoded::Garbage(_)), "{frame}");
        }
    }
}
