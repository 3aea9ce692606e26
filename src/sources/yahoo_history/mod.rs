//! `type: yahoo_history` — bars from Yahoo Finance's chart API
//! (`/v8/finance/chart/{symbol}`): `period1`/`period2` in epoch seconds (`period2`
//! exclusive), windows within Yahoo's per-interval limits (1m: 7 days a request within the
//! last 30; 2m to 90m: the last 60 days; 1h: the last 730), null rows skipped, daily bars
//! keyed by their exchange-local date whatever time they are stamped at. Protocol notes:
//! `docs/sources.md`.

use chrono::TimeZone as _;
use marketflow_operators::time::{DAY, MINUTE};
use marketflow_operators::Interval;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use super::feed::{percent_encode, SymbolList};
use super::history::{self, Answer, HistorySettings, Paging, Provider, RawBar, Request, Window};
use crate::config::de::Spanned;
use crate::config::diagnostic::Diagnostic;
use crate::config::session::SessionSpec;
use crate::config::values::{count_within, Parsed, TimePoint};
use crate::connector::{BackfillRange, Source, SourceContext, StreamType, Task};

/// Bars from Yahoo Finance's chart API (no key).
#[derive(Deserialize, JsonSchema, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct YahooHistoryConfig {
    /// Symbols to fetch: a list, or one string split on commas.
    pub symbols: Spanned<SymbolList>,
    /// Bar interval: 1m, 2m, 5m, 15m, 30m, 1h, 90m or 1d.
    pub interval: Parsed<Interval>,
    /// First bar wanted: a date, an RFC 3339 time, or a duration back from now (`-30d`).
    /// Intraday history reaches back only so far (1m: 30 days; 2m to 90m: 60 days; 1h: 730
    /// days): the part before is skipped with a warning.
    pub start: Parsed<TimePoint>,
    /// End of the range, exclusive (default `now`; bars still forming are left out).
    #[serde(default = "history::now")]
    pub end: Parsed<TimePoint>,
    /// The chart API's address (default `https://query2.finance.yahoo.com`).
    #[serde(default = "default_url")]
    pub url: String,
    /// Requests a minute (default 60; Yahoo publishes no limit and answers 429 when
    /// pressed).
    #[serde(
        default = "default_credits",
        deserialize_with = "count_within::<_, 1, 100000>"
    )]
    pub credits_per_minute: usize,
    /// Days of 1m bars one request may ask for (default 7; Yahoo has also been seen to
    /// allow 8).
    #[serde(
        default = "default_minute_days",
        deserialize_with = "count_within::<_, 1, 30>"
    )]
    pub days_per_1m_request: usize,
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

fn default_url() -> String {
    "https://query2.finance.yahoo.com".into()
}

fn default_credits() -> usize {
    60
}

fn default_minute_days() -> usize {
    7
}

/// Yahoo's names of the intervals it serves, with how far back each reaches.
const INTERVALS: &[(&str, &str, Option<i64>)] = &[
    ("1m", "1m", Some(30)),
    ("2m", "2m", Some(60)),
    ("5m", "5m", Some(60)),
    ("15m", "15m", Some(60)),
    ("30m", "30m", Some(60)),
    ("1h", "60m", Some(730)),
    ("90m", "90m", Some(60)),
    ("1d", "1d", None),
];

fn lookup(interval: Interval) -> Option<(&'static str, Option<i64>)> {
    let ours = interval.to_string();
    // 90m prints as 90m, 1h as 1h.
    INTERVALS
        .iter()
        .find(|(m, _, _)| *m == ours)
        .map(|(_, y, back)| (*y, *back))
}

impl Source for YahooHistoryConfig {
    const TYPE: &'static str = "yahoo_history";
    const ABOUT: &'static str = "historical bars from Yahoo Finance's chart API (no key)";

    fn output(&self) -> StreamType {
        StreamType::Bars {
            interval: self.interval.value,
            session: history::daily_session(self.interval.value, &self.session),
        }
    }

    fn check(&self, path: &str) -> Vec<Diagnostic> {
        let mut problems = history::check(path, &self.symbols, &self.url, None);
        if lookup(self.interval.value).is_none() {
            problems.push(
                Diagnostic::new(
                    self.interval.pos,
                    format!("{path}.interval"),
                    format!("Yahoo has no {} bars", self.interval.value),
                )
                .help(format!(
                    "use one of {}",
                    INTERVALS
                        .iter()
                        .map(|(m, _, _)| *m)
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
        let (name, reach) = lookup(interval).unwrap_or(("1d", None));
        let provider = YahooChart {
            url: self.url.trim_end_matches('/').to_owned(),
            interval,
            name,
            reach_days: reach,
            minute_days: self.days_per_1m_request as i64,
            timezone: self.timezone.value,
        };
        let settings = HistorySettings {
            symbols: self.symbols.symbols(),
            interval,
            start: self.start.value,
            end: self.end.value,
            credits_per_minute: self.credits_per_minute as u32,
            limiter_key: format!("yahoo {}", self.url),
            restart: self.restart,
            session: self.session.as_ref().map(|s| s.value.session.clone()),
        };
        history::task(provider, settings, ctx)
    }
}

/// Yahoo's chart API, for one symbol.
struct YahooChart {
    url: String,
    interval: Interval,
    name: &'static str,
    reach_days: Option<i64>,
    minute_days: i64,
    timezone: chrono_tz::Tz,
}

impl YahooChart {
    fn daily(&self) -> bool {
        self.interval.is_daily()
    }

    /// The UTC instant a window bound stands for: a daily label is its date's local midnight.
    fn instant(&self, ms: i64) -> i64 {
        if !self.daily() {
            return ms;
        }
        let (y, m, d) = marketflow_operators::time::civil_from_days(ms.div_euclid(DAY));
        chrono::NaiveDate::from_ymd_opt(y as i32, m, d)
            .and_then(|date| date.and_hms_opt(0, 0, 0))
            .and_then(|t| self.timezone.from_local_datetime(&t).earliest())
            .map_or(ms, |t| t.timestamp_millis())
    }

    /// A row's start: intraday, its instant; daily, the label of its exchange-local date.
    /// Daily stamps at 22:00 or 23:00 local (a DST glitch) belong to the next day.
    fn start(&self, seconds: i64) -> Option<i64> {
        let ms = seconds.checked_mul(1000)?;
        if !self.daily() {
            return Some(ms);
        }
        let local = self
            .timezone
            .timestamp_millis_opt(ms)
            .single()?
            .naive_local();
        let mut date = local.date();
        if chrono::Timelike::hour(&local) >= 20 {
            date = date.succ_opt()?;
        }
        Some(date.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis())
    }
}

impl Provider for YahooChart {
    fn paging(&self) -> Paging {
        let span = match (self.name, self.reach_days) {
            ("1m", _) => self.minute_days * DAY,
            (_, Some(days)) => days * DAY,
            // Daily and longer: at most 100 years a request.
            (_, None) => 99 * 365 * DAY,
        };
        Paging {
            span,
            max_span: span,
            rows: None,
        }
    }

    fn earliest(&self, now: i64) -> Option<i64> {
        // A request reaching before the limit fails as a whole: stay an hour inside it.
        self.reach_days.map(|days| now - days * DAY + 60 * MINUTE)
    }

    fn request(&self, symbol: &str, window: Window) -> Request {
        let query = format!(
            "/v8/finance/chart/{}?period1={}&period2={}&interval={}&includePrePost=false&events=div%2Csplits",
            percent_encode(symbol),
            self.instant(window.start).div_euclid(1000),
            self.instant(window.end).div_euclid(1000),
            self.name
        );
        Request {
            url: format!("{}{query}", self.url),
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
        let json: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) if status >= 500 || (200..300).contains(&status) => {
                return Answer::Transient(format!(
                    "HTTP {status}, not JSON ({e}): {}",
                    history::snippet(body)
                ))
            }
            Err(_) => return Answer::Refused(format!("HTTP {status}: {}", history::snippet(body))),
        };
        if let Some(error) = json.pointer("/chart/error").filter(|e| !e.is_null()) {
            let text = error
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or("no description");
            let code = error.get("code").and_then(Value::as_str).unwrap_or("error");
            return if status >= 500 {
                Answer::Transient(format!("{code}: {text}"))
            } else {
                Answer::Refused(format!("{code}: {text}"))
            };
        }
        if status >= 500 {
            return Answer::Transient(format!("HTTP {status}: {}", history::snippet(body)));
        }
        if !(200..300).contains(&status) {
            return Answer::Refused(format!("HTTP {status}: {}", history::snippet(body)));
        }
        let Some(result) = json.pointer("/chart/result/0") else {
            return Answer::Transient("the answer has no chart result".into());
        };
        if let Some(tz) = result
            .pointer("/meta/exchangeTimezoneName")
            .and_then(Value::as_str)
            .and_then(|t| t.parse::<chrono_tz::Tz>().ok())
        {
            self.timezone = tz;
        }
        let Some(stamps) = result.get("timestamp").and_then(Value::as_array) else {
            return Answer::Empty; // no `timestamp` (and `quote: [{}]`): no rows
        };
        let quote = result.pointer("/indicators/quote/0");
        let column = |k: &str| quote.and_then(|q| q.get(k)).and_then(Value::as_array);
        let columns = [
            column("open"),
            column("high"),
            column("low"),
            column("close"),
        ];
        let volume = column("volume");
        let lengths_agree = columns
            .iter()
            .chain(std::iter::once(&volume))
            .all(|c| c.is_none_or(|c| c.len() == stamps.len()));
        if !lengths_agree || columns.iter().any(Option::is_none) {
            return Answer::Transient(format!(
                "the quote arrays do not match the {} timestamps",
                stamps.len()
            ));
        }
        let at = |c: Option<&Vec<Value>>, i: usize| c.and_then(|c| history::number(c.get(i)));
        let mut bars = Vec::with_capacity(stamps.len());
        let mut bad = Vec::new();
        for (i, stamp) in stamps.iter().enumerate() {
            let prices = [
                at(columns[0], i),
                at(columns[1], i),
                at(columns[2], i),
                at(columns[3], i),
            ];
            let start = stamp.as_i64().and_then(|s| self.start(s));
            match (start, prices) {
                (Some(start), [Some(open), Some(high), Some(low), Some(close)]) => {
                    bars.push(RawBar {
                        start,
                        open,
                        high,
                        low,
                        close,
                        volume: at(volume, i).unwrap_or(0.0),
                    })
                }
                // A row of nulls: no trade in that bar.
                (Some(_), [None, None, None, None]) => {}
                _ => bad.push((
                    "a row with a missing time or price".to_owned(),
                    format!("timestamp {stamp}: {prices:?}"),
                )),
            }
        }
        // Daily rows can come twice (today as an extra row): the last one holds.
        if self.daily() {
            bars.reverse();
            let mut seen = std::collections::HashSet::new();
            bars.retain(|b| seen.insert(b.start));
        }
        Answer::Bars {
            bars,
            full: false,
            bad,
        }
    }

    fn final_at(&self, start: i64) -> i64 {
        if self.daily() {
            history::day_over(start, self.timezone)
        } else {
            start + self.interval.millis()
        }
    }
}
