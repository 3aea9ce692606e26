//! `type: alphavantage` — daily bars from Alpha Vantage's `TIME_SERIES_DAILY`: one request
//! per symbol (`outputsize=full`, or `compact` when the range lies within its last 100
//! sessions), rows keyed by session date; every error, rate limits included, arrives as
//! HTTP 200 JSON and is told apart by its key and wording. Protocol notes: `docs/sources.md`.

use marketflow_operators::time::DAY;
use marketflow_operators::Interval;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use super::feed::{percent_encode, SymbolList};
use super::history::{self, Answer, HistorySettings, Paging, Provider, RawBar, Request, Window};
use crate::config::de::Spanned;
use crate::config::diagnostic::Diagnostic;
use crate::config::session::SessionSpec;
use crate::config::values::{count_within, Parsed, Secret, TimePoint};
use crate::connector::{BackfillRange, Source, SourceContext, StreamType, Task};

/// Daily bars from Alpha Vantage.
#[derive(Deserialize, JsonSchema, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct AlphaVantageConfig {
    /// Symbols to fetch: a list, or one string split on commas.
    pub symbols: Spanned<SymbolList>,
    /// First session wanted (default: all the history there is).
    #[serde(default = "beginning")]
    pub start: Parsed<TimePoint>,
    /// End of the range, exclusive (default `now`; today's session is left out until the
    /// exchange's midnight).
    #[serde(default = "history::now")]
    pub end: Parsed<TimePoint>,
    /// The API key, e.g. `${ALPHAVANTAGE_API_KEY}`; never logged.
    pub api_key: Secret,
    /// The REST address (default `https://www.alphavantage.co`).
    #[serde(default = "default_url")]
    pub url: String,
    /// Requests a minute, shared by every Alpha Vantage source with this key (default 5;
    /// the free plan also stops at 25 a day, which ends the run with that message).
    #[serde(
        default = "default_credits",
        deserialize_with = "count_within::<_, 1, 100000>"
    )]
    pub credits_per_minute: usize,
    /// The exchange's time zone until an answer names it (default `America/New_York`).
    #[serde(default = "super::feed::default_timezone")]
    pub timezone: Parsed<chrono_tz::Tz>,
    /// Exchange trading hours, as `bars`' `session`: each daily bar then spans its session
    /// (the windows of daily bars built with that session, so that the two merge); without
    /// it a daily bar is its UTC date, as `bars` without a session builds them.
    #[serde(default)]
    #[schemars(with = "Option<serde_json::Value>")]
    pub session: Option<Spanned<SessionSpec>>,
    /// Set by `marketflow backfill --restart`.
    #[serde(skip)]
    #[schemars(skip)]
    pub restart: bool,
}

fn beginning() -> Parsed<TimePoint> {
    Parsed {
        value: TimePoint::At(0),
        pos: Default::default(),
    }
}

fn default_url() -> String {
    "https://www.alphavantage.co".into()
}

fn default_credits() -> usize {
    5
}

/// `outputsize=compact` holds the last 100 sessions: about 140 calendar days.
const COMPACT_DAYS: i64 = 120;

impl Source for AlphaVantageConfig {
    const TYPE: &'static str = "alphavantage";
    const ABOUT: &'static str = "historical daily bars from Alpha Vantage (an API key)";

    fn output(&self) -> StreamType {
        StreamType::Bars {
            interval: Interval::D1,
            session: history::daily_session(Interval::D1, &self.session),
        }
    }

    fn check(&self, path: &str) -> Vec<Diagnostic> {
        history::check(
            path,
            &self.symbols,
            &self.url,
            Some((&self.api_key, "ALPHAVANTAGE_API_KEY")),
        )
    }

    fn is_finite(&self) -> bool {
        true
    }

    fn partitions(&self) -> usize {
        self.symbols.symbols().len()
    }

    /// Pages from the cut's time again.
    fn restart_from(&self) -> crate::connector::RestartFrom {
        crate::connector::RestartFrom::Position
    }

    fn resume_key(&self, partition: usize) -> Option<String> {
        history::resume_key(Self::TYPE, &self.symbols, Interval::D1, partition)
    }

    fn for_backfill(&self, range: &BackfillRange) -> Option<Self> {
        let mut narrowed = self.clone();
        let keys = (&mut narrowed.start, &mut narrowed.end);
        history::narrow(range, &mut narrowed.symbols, keys, &mut narrowed.restart);
        Some(narrowed)
    }

    fn build(&self, ctx: SourceContext) -> Task {
        let provider = AlphaVantageRest {
            url: self.url.trim_end_matches('/').to_owned(),
            key: self.api_key.clone(),
            timezone: self.timezone.value,
        };
        let settings = HistorySettings {
            symbols: self.symbols.symbols(),
            interval: Interval::D1,
            start: self.start.value,
            end: self.end.value,
            credits_per_minute: self.credits_per_minute as u32,
            limiter_key: format!(
                "alphavantage {} {}",
                self.url,
                history::key_id(&self.api_key)
            ),
            restart: self.restart,
            session: self.session.as_ref().map(|s| s.value.session.clone()),
        };
        history::task(provider, settings, ctx)
    }
}

/// Alpha Vantage's `TIME_SERIES_DAILY`, for one symbol.
struct AlphaVantageRest {
    url: String,
    key: Secret,
    timezone: chrono_tz::Tz,
}

impl Provider for AlphaVantageRest {
    fn paging(&self) -> Paging {
        // One request returns the whole history: one window.
        let all = 1_000_000 * DAY;
        Paging {
            span: all,
            max_span: all,
            rows: None,
        }
    }

    fn request(&self, symbol: &str, window: Window) -> Request {
        let recent = window.start >= super::feed::now_ms() - COMPACT_DAYS * DAY;
        let query = format!(
            "/query?function=TIME_SERIES_DAILY&symbol={}&outputsize={}&datatype=json",
            percent_encode(symbol),
            if recent { "compact" } else { "full" }
        );
        Request {
            url: format!(
                "{}{query}&apikey={}",
                self.url,
                percent_encode(self.key.expose())
            ),
            shown: format!("{}{query}", self.url),
        }
    }

    fn parse(&mut self, status: u16, retry_after: Option<u64>, body: &[u8]) -> Answer {
        let wait = retry_after.map(std::time::Duration::from_secs);
        if status == 429 {
            return Answer::RateLimited {
                wait,
                message: history::snippet(body),
            };
        }
        if status >= 500 {
            return Answer::Transient(format!("HTTP {status}: {}", history::snippet(body)));
        }
        let json: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => return Answer::Transient(format!("HTTP {status}, unreadable JSON: {e}")),
        };
        if let Some(message) = json.get("Error Message").and_then(Value::as_str) {
            return Answer::Refused(message.to_owned());
        }
        for key in ["Note", "Information"] {
            if let Some(message) = json.get(key).and_then(Value::as_str) {
                let lower = message.to_ascii_lowercase();
                let per_minute = lower.contains("per minute") || lower.contains("frequency");
                return if !per_minute && (lower.contains("per day") || lower.contains("daily")) {
                    Answer::Refused(format!("the daily request limit is spent: {message}"))
                } else if lower.contains("premium") {
                    Answer::Refused(message.to_owned())
                } else {
                    Answer::RateLimited {
                        wait,
                        message: message.to_owned(),
                    }
                };
            }
        }
        if !(200..300).contains(&status) {
            return Answer::Refused(format!("HTTP {status}: {}", history::snippet(body)));
        }
        if let Some(tz) = json
            .pointer("/Meta Data/5. Time Zone")
            .and_then(Value::as_str)
            .and_then(|t| t.parse::<chrono_tz::Tz>().ok())
        {
            self.timezone = tz;
        }
        let Some(days) = json.get("Time Series (Daily)").and_then(Value::as_object) else {
            return Answer::Transient("the answer has no `Time Series (Daily)`".into());
        };
        let mut bars = Vec::with_capacity(days.len());
        let mut bad = Vec::new();
        for (date, row) in days {
            let field = |k: &str| history::number(row.get(k));
            let label = marketflow_operators::calendar::parse_date(date.trim()).map(|d| d * DAY);
            match (
                label,
                field("1. open"),
                field("2. high"),
                field("3. low"),
                field("4. close"),
            ) {
                (Some(start), Some(open), Some(high), Some(low), Some(close)) => {
                    bars.push(RawBar {
                        start,
                        open,
                        high,
                        low,
                        close,
                        volume: field("5. volume").unwrap_or(0.0),
                    })
                }
                _ => bad.push((
                    "a day without a readable date or price".to_owned(),
                    format!("{date}: {row}"),
                )),
            }
        }
        if bars.is_empty() && bad.is_empty() {
            return Answer::Empty;
        }
        Answer::Bars {
            bars,
            full: false,
            bad,
        }
    }

    fn final_at(&self, start: i64) -> i64 {
        history::day_over(start, self.timezone)
    }
}
