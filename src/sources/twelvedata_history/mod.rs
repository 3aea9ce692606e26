//! `type: twelvedata_history` — bars from TwelveData's `/time_series`: exchange-local
//! times read in the exchange's time zone (the answer's `meta.exchange_timezone`), pages of
//! at most `page_size` rows (a full page is split and asked again), `end_date` exclusive,
//! "No data is available" read as an empty range. Protocol notes: `docs/sources.md`.

use chrono::TimeZone as _;
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

/// Bars from TwelveData's REST `/time_series`.
#[derive(Deserialize, JsonSchema, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct TwelveDataHistoryConfig {
    /// Symbols to fetch: a list, or one string split on commas (`${BACKFILL_SYMBOLS}`).
    pub symbols: Spanned<SymbolList>,
    /// Bar interval: 1m, 5m, 15m, 30m, 45m, 1h, 2h, 4h or 1d.
    pub interval: Parsed<Interval>,
    /// First bar wanted: a date (`2025-01-02`), an RFC 3339 time, or a duration back from
    /// now (`-365d`).
    pub start: Parsed<TimePoint>,
    /// End of the range, exclusive (default `now`; bars still forming are left out).
    #[serde(default = "history::now")]
    pub end: Parsed<TimePoint>,
    /// The API key, e.g. `${TWELVEDATA_API_KEY}`; sent as the `apikey` parameter, never logged.
    pub api_key: Secret,
    /// The REST address (default `https://api.twelvedata.com`).
    #[serde(default = "default_url")]
    pub url: String,
    /// API credits a minute, shared by every TwelveData history source with this key
    /// (default 8, the free plan's; one request costs one credit).
    #[serde(
        default = "default_credits",
        deserialize_with = "count_within::<_, 1, 100000>"
    )]
    pub credits_per_minute: usize,
    /// Rows a page holds at most (default 5000, TwelveData's limit): a page that comes back
    /// this full is split in two and asked again.
    #[serde(
        default = "default_page_size",
        deserialize_with = "count_within::<_, 2, 5000>"
    )]
    pub page_size: usize,
    /// The exchange's time zone until an answer names it (default `America/New_York`).
    #[serde(default = "super::feed::default_timezone")]
    pub timezone: Parsed<chrono_tz::Tz>,
    /// Exchange trading hours, as `bars`' `session`: each daily bar then spans its session
    /// (the windows of daily bars built with that session, so that the two merge); without
    /// it a daily bar is its UTC date, as `bars` without a session builds them.
    #[serde(default)]
    #[schemars(with = "Option<serde_json::Value>")]
    pub session: Option<Spanned<SessionSpec>>,
    /// Set by `marketflow backfill --restart`: saved positions are ignored.
    #[serde(skip)]
    #[schemars(skip)]
    pub restart: bool,
}

fn default_url() -> String {
    "https://api.twelvedata.com".into()
}

fn default_credits() -> usize {
    8
}

fn default_page_size() -> usize {
    5000
}

/// TwelveData's names of the intervals it serves.
const INTERVALS: &[(&str, &str)] = &[
    ("1m", "1min"),
    ("5m", "5min"),
    ("15m", "15min"),
    ("30m", "30min"),
    ("45m", "45min"),
    ("1h", "1h"),
    ("2h", "2h"),
    ("4h", "4h"),
    ("1d", "1day"),
];

fn provider_interval(interval: Interval) -> Option<&'static str> {
    let ours = interval.to_string();
    INTERVALS
        .iter()
        .find(|(m, _)| *m == ours)
        .map(|(_, td)| *td)
}

impl Source for TwelveDataHistoryConfig {
    const TYPE: &'static str = "twelvedata_history";
    const ABOUT: &'static str = "historical bars from TwelveData's REST /time_series (an API key)";

    fn output(&self) -> StreamType {
        StreamType::Bars {
            interval: self.interval.value,
            session: history::daily_session(self.interval.value, &self.session),
        }
    }

    fn check(&self, path: &str) -> Vec<Diagnostic> {
        let mut problems = history::check(
            path,
            &self.symbols,
            &self.url,
            Some((&self.api_key, "TWELVEDATA_API_KEY")),
        );
        if provider_interval(self.interval.value).is_none() {
            problems.push(
                Diagnostic::new(
                    self.interval.pos,
                    format!("{path}.interval"),
                    format!("TwelveData has no {} bars", self.interval.value),
                )
                .help(format!(
                    "use one of {}",
                    INTERVALS
                        .iter()
                        .map(|(m, _)| *m)
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            );
        }
        problems
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
        history::resume_key(Self::TYPE, &self.symbols, self.interval.value, partition)
    }

    fn for_backfill(&self, range: &BackfillRange) -> Option<Self> {
        let mut narrowed = self.clone();
        let keys = (&mut narrowed.start, &mut narrowed.end);
        history::narrow(range, &mut narrowed.symbols, keys, &mut narrowed.restart);
        Some(narrowed)
    }

    fn build(&self, ctx: SourceContext) -> Task {
        let interval = self.interval.value;
        let provider = TwelveDataRest {
            url: self.url.trim_end_matches('/').to_owned(),
            key: self.api_key.clone(),
            interval,
            name: provider_interval(interval).unwrap_or("1day"),
            page_size: self.page_size,
            timezone: self.timezone.value,
        };
        let settings = HistorySettings {
            symbols: self.symbols.symbols(),
            interval,
            start: self.start.value,
            end: self.end.value,
            credits_per_minute: self.credits_per_minute as u32,
            limiter_key: format!("twelvedata {} {}", self.url, history::key_id(&self.api_key)),
            restart: self.restart,
            session: self.session.as_ref().map(|s| s.value.session.clone()),
        };
        history::task(provider, settings, ctx)
    }
}

/// TwelveData's `/time_series`, for one symbol.
struct TwelveDataRest {
    url: String,
    key: Secret,
    interval: Interval,
    /// The interval as TwelveData names it.
    name: &'static str,
    page_size: usize,
    /// The exchange's time zone: configured, then as the answers name it.
    timezone: chrono_tz::Tz,
}

impl TwelveDataRest {
    fn daily(&self) -> bool {
        self.interval.is_daily()
    }

    /// A window bound as TwelveData reads it: exchange-local wall time (a date for daily bars).
    fn bound(&self, ms: i64) -> String {
        if self.daily() {
            return history::format_date(ms);
        }
        let local = self
            .timezone
            .timestamp_millis_opt(ms)
            .single()
            .map(|t| t.naive_local());
        local.map_or_else(
            || history::format_date(ms),
            |t| t.format("%Y-%m-%d %H:%M:%S").to_string(),
        )
    }

    /// A row's `datetime` (exchange-local, no offset) as UTC ms; a daily row's date label.
    fn instant(&self, text: &str) -> Option<i64> {
        let text = text.trim();
        if self.daily() {
            let date = text.get(..10)?;
            return marketflow_operators::calendar::parse_date(date).map(|d| d * DAY);
        }
        let naive = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S")
            .or_else(|_| chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S"))
            .or_else(|_| {
                chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
                    .map(|d| d.and_hms_opt(0, 0, 0).unwrap_or_default())
            })
            .ok()?;
        // In the autumn's repeated hour the earlier instant is taken: bars arrive in order
        // and the later one follows as the next distinct time.
        self.timezone
            .from_local_datetime(&naive)
            .earliest()
            .map(|t| t.timestamp_millis())
    }
}

impl Provider for TwelveDataRest {
    fn paging(&self) -> Paging {
        // The first window assumes a market open a third of the day (US equities: 6.5 h),
        // or five trading days in seven; later windows follow the density seen.
        let page = self.page_size as i64 * self.interval.millis();
        let span = if self.daily() {
            page * 11 / 10
        } else {
            page * 3
        };
        Paging {
            span,
            max_span: page * 5,
            rows: Some(self.page_size),
        }
    }

    fn request(&self, symbol: &str, window: Window) -> Request {
        let query = format!(
            "/time_series?symbol={}&interval={}&start_date={}&end_date={}&outputsize={}&order=asc&format=JSON",
            percent_encode(symbol),
            self.name,
            percent_encode(&self.bound(window.start)),
            percent_encode(&self.bound(window.end)),
            self.page_size
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
        let json: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => {
                return match status {
                    429 => Answer::RateLimited {
                        wait,
                        message: history::snippet(body),
                    },
                    200..=299 | 500..=599 => {
                        Answer::Transient(format!("HTTP {status}, unreadable JSON: {e}"))
                    }
                    _ => Answer::Refused(format!("HTTP {status}: {}", history::snippet(body))),
                };
            }
        };
        let error = json.get("status").and_then(Value::as_str) == Some("error")
            || !(200..300).contains(&status);
        if error {
            let code = json
                .get("code")
                .and_then(Value::as_u64)
                .map_or(status, |c| c as u16);
            let message = json
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("no message")
                .to_owned();
            return match code {
                429 => Answer::RateLimited { wait, message },
                400 if message.contains("No data is available") => Answer::Empty,
                500..=599 => Answer::Transient(format!("error {code}: {message}")),
                _ => Answer::Refused(format!("error {code}: {message}")),
            };
        }
        if let Some(tz) = json
            .pointer("/meta/exchange_timezone")
            .and_then(Value::as_str)
            .and_then(|t| t.parse::<chrono_tz::Tz>().ok())
        {
            self.timezone = tz;
        }
        let Some(values) = json.get("values").and_then(Value::as_array) else {
            return Answer::Transient("the answer has no `values`".into());
        };
        let full = values.len() >= self.page_size;
        let mut bars = Vec::with_capacity(values.len());
        let mut bad = Vec::new();
        for row in values {
            let field = |k: &str| history::number(row.get(k));
            let start = row
                .get("datetime")
                .and_then(Value::as_str)
                .and_then(|t| self.instant(t));
            match (
                start,
                field("open"),
                field("high"),
                field("low"),
                field("close"),
            ) {
                (Some(start), Some(open), Some(high), Some(low), Some(close)) => {
                    bars.push(RawBar {
                        start,
                        open,
                        high,
                        low,
                        close,
                        volume: field("volume").unwrap_or(0.0),
                    });
                }
                _ => bad.push((
                    "a row without a readable datetime or price".to_owned(),
                    row.to_string(),
                )),
            }
        }
        Answer::Bars { bars, full, bad }
    }

    fn final_at(&self, start: i64) -> i64 {
        if self.daily() {
            history::day_over(start, self.timezone)
        } else {
            start + self.interval.millis()
        }
    }
}
