//! What the history sources (`twelvedata_history`, `alphavantage`, `yahoo_history`) share:
//! one partition per symbol pages through its range window by window, in time order, under
//! a credit limit per provider; pages that come back full are split and asked again,
//! overlapping page edges and still-forming bars are dropped, rate limits and transient
//! faults wait and retry the same page, and each page's end is the partition's position,
//! so that a run resumes after the last page its sinks made durable. A provider type only
//! says how to ask for a window and how to read the answer ([`Provider`]).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use marketflow_operators::time::{format_timestamp, DAY};
use marketflow_operators::{Bar, Fixed, Interval, Symbol};

use super::feed::{now_ms, SymbolList};
use crate::config::de::Spanned;
use crate::config::diagnostic::Diagnostic;
use crate::config::values::{Parsed, Secret, TimePoint};
use crate::connector::{
    BackfillRange, Backoff, SourceContext, SourceEvent, Stamper, Task, TaskError,
};
use crate::dead_letter::Rejected;
use crate::metrics::metrics;

/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Transient faults (5xx, network, garbage) tolerated in a row on one page.
const TRANSIENT_ATTEMPTS: u32 = 6;
/// Rate-limit answers tolerated in a row on one page before giving up.
const RATE_LIMITED_ATTEMPTS: u32 = 30;
/// First wait after a fault; doubled each time up to [`BACKOFF_CAP`].
const BACKOFF_FIRST: Duration = Duration::from_millis(500);
const BACKOFF_CAP: Duration = Duration::from_secs(60);
/// The largest response body read.
const MAX_BODY: usize = 64 << 20;

/// A range of time `[start, end)` in ms: for daily bars, of their labels (the session
/// date at 00:00 UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: i64,
    pub end: i64,
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} to {}",
            format_timestamp(self.start),
            format_timestamp(self.end)
        )
    }
}

/// One bar as a provider gives it: its start in UTC ms (a daily bar's label: its session
/// date at 00:00 UTC), prices and volume.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RawBar {
    pub start: i64,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: f64,
}

impl RawBar {
    /// Whether it is a bar at all: finite, positive prices with the low below the high.
    pub fn is_sane(&self) -> bool {
        let prices = [self.open, self.high, self.low, self.close];
        prices.iter().all(|p| p.is_finite() && *p > 0.0)
            && self.low <= self.high
            && self.volume.is_finite()
            && self.volume >= 0.0
    }
}

/// What a provider made of an answer.
#[derive(Debug)]
pub enum Answer {
    /// Bars (in any order, possibly outside the window); `full`: the page held as many rows
    /// as the provider returns at most, so more may exist.
    /// `bad`: rows that could not be read (why, and the row's text).
    Bars {
        bars: Vec<RawBar>,
        full: bool,
        bad: Vec<(String, String)>,
    },
    /// Nothing in this window (a weekend, a holiday).
    Empty,
    /// Out of credits: wait (as long as the provider says, when it does) and ask again.
    RateLimited {
        wait: Option<Duration>,
        message: String,
    },
    /// A fault worth retrying: a 5xx, an outage page, a truncated body.
    Transient(String),
    /// The request cannot succeed: a refused key, an unknown symbol, a refused range.
    Refused(String),
}

/// A request to send.
pub struct Request {
    /// With the API key, for the wire only.
    pub url: String,
    /// Without the API key, for messages.
    pub shown: String,
}

/// How a provider pages through a range.
#[derive(Debug, Clone, Copy)]
pub struct Paging {
    /// The first window's length in ms (of labels, for daily bars); later windows adapt to
    /// how many rows came back.
    pub span: i64,
    /// The longest window the provider accepts.
    pub max_span: i64,
    /// Rows a page holds at most (`None`: the provider returns every row of a window).
    pub rows: Option<usize>,
}

/// How a provider is asked for a window of one symbol's bars, and how its answers read.
pub trait Provider: Send + 'static {
    fn paging(&self) -> Paging;
    /// The earliest time the provider serves at this interval (limits that count back
    /// from now); earlier parts of a range are skipped with a warning.
    fn earliest(&self, _now: i64) -> Option<i64> {
        None
    }
    /// The request for one window.
    fn request(&self, symbol: &str, window: Window) -> Request;
    /// Reads an answer (HTTP status, `Retry-After` seconds, body).
    fn parse(&mut self, status: u16, retry_after: Option<u64>, body: &[u8]) -> Answer;
    /// When a bar starting at `start` is final (its window over), in UTC ms.
    fn final_at(&self, start: i64) -> i64;
}

/// Keys every history source has.
pub struct HistorySettings {
    pub symbols: Vec<String>,
    pub interval: Interval,
    pub start: TimePoint,
    pub end: TimePoint,
    /// Credits (requests) a minute this provider allows.
    pub credits_per_minute: u32,
    /// Sources of one provider and key share one limiter.
    pub limiter_key: String,
    /// Ignore the position an earlier run kept (`marketflow backfill --restart`).
    pub restart: bool,
    /// Trading hours: daily bars span their session.
    pub session: Option<marketflow_operators::Session>,
}

/// The session a history source's daily bars are aligned on (none for intraday bars,
/// which are the provider's).
pub fn daily_session(
    interval: Interval,
    session: &Option<Spanned<crate::config::session::SessionSpec>>,
) -> Option<crate::config::session::SessionSpec> {
    session
        .as_ref()
        .filter(|_| interval.is_daily())
        .map(|s| s.value.clone())
}

/// `[start, end)` on whole days (of daily bars' labels): from the day of `start` up to the
/// day that holds `end`, exclusive.
pub fn whole_days(start: i64, end: i64) -> (i64, i64) {
    (start.div_euclid(DAY) * DAY, end.div_euclid(DAY) * DAY)
}

/// The symbols of a source after `marketflow backfill --symbols`; `None` when none is left.
fn narrow_symbols(listed: Vec<String>, range: &BackfillRange) -> Vec<String> {
    match &range.symbols {
        None => listed,
        Some(wanted) => listed
            .into_iter()
            .filter(|s| wanted.iter().any(|w| w == s))
            .collect(),
    }
}

/// Where a history source partition's position is kept: `TYPE SYMBOL INTERVAL`.
pub fn resume_key(
    type_name: &str,
    symbols: &SymbolList,
    interval: Interval,
    partition: usize,
) -> Option<String> {
    let symbol = symbols.symbols().into_iter().nth(partition)?;
    Some(format!("{type_name} {symbol} {interval}"))
}

/// Narrows a history source's keys to what `marketflow backfill` was asked for.
pub fn narrow(
    range: &BackfillRange,
    symbols: &mut Spanned<SymbolList>,
    (start, end): (&mut Parsed<TimePoint>, &mut Parsed<TimePoint>),
    restart: &mut bool,
) {
    symbols.value = SymbolList::from(narrow_symbols(symbols.symbols(), range));
    *start = narrow_time(start, range.from);
    *end = narrow_time(end, range.to);
    *restart = range.restart;
}

/// A time point from a backfill's `--from`/`--to`, or the configured one.
fn narrow_time(configured: &Parsed<TimePoint>, given: Option<i64>) -> Parsed<TimePoint> {
    match given {
        Some(ms) => Parsed {
            value: TimePoint::At(ms),
            pos: configured.pos,
        },
        None => configured.clone(),
    }
}

/// At most `credits` requests in any 60 seconds, shared by every partition of the sources
/// of one provider and key in this process.
pub struct Limiter {
    credits: usize,
    sent: Mutex<VecDeque<Instant>>,
}

/// A minute, and a little more so that a server counting by its own clock agrees.
const MINUTE: Duration = Duration::from_millis(60_250);

impl Limiter {
    /// The process's limiter for `key` (the first source to ask sets its credits).
    pub fn shared(key: &str, credits: u32) -> Arc<Limiter> {
        static LIMITERS: LazyLock<Mutex<HashMap<String, Arc<Limiter>>>> =
            LazyLock::new(Default::default);
        let mut all = LIMITERS.lock().unwrap_or_else(|e| e.into_inner());
        all.entry(key.to_owned())
            .or_insert_with(|| {
                Arc::new(Limiter {
                    credits: credits.max(1) as usize,
                    sent: Mutex::new(VecDeque::new()),
                })
            })
            .clone()
    }

    /// Waits until a request may be sent, and counts it.
    pub async fn acquire(&self) {
        loop {
            let wait = {
                let mut sent = self.sent.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                while sent
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= MINUTE)
                {
                    sent.pop_front();
                }
                if sent.len() < self.credits {
                    sent.push_back(now);
                    return;
                }
                sent.front()
                    .map_or(Duration::ZERO, |t| MINUTE - now.duration_since(*t))
            };
            tokio::time::sleep(wait).await;
        }
    }
}

/// The task of one partition (one symbol) of a history source.
pub fn task<P: Provider>(provider: P, settings: HistorySettings, ctx: SourceContext) -> Task {
    Task::Async(Box::pin(async move {
        let shutdown = ctx.shutdown.clone();
        tokio::select! {
            result = run(provider, settings, ctx) => result,
            () = shutdown.triggered() => Ok(()),
        }
    }))
}

async fn run<P: Provider>(
    mut provider: P,
    settings: HistorySettings,
    ctx: SourceContext,
) -> Result<(), TaskError> {
    let Some(symbol_text) = settings.symbols.get(ctx.partition).cloned() else {
        return Ok(());
    };
    let symbol = Symbol::new(&symbol_text)
        .map_err(|e| anyhow::anyhow!("`{symbol_text}` is not a symbol: {e}"))?;
    let now = now_ms();
    let start = settings.start.resolve(now);
    let end = settings.end.resolve(now).min(now);
    // After a checkpoint, from where it cut the partition (its state holds what came
    // before); otherwise after the last page an earlier run's sinks made durable.
    let restart = ctx.restart.unwrap_or_default();
    let from = match (ctx.restart, ctx.resume) {
        (Some(cut), _) => cut.position.map_or(start, |p| (p as i64).max(start)),
        (None, Some(position)) if !settings.restart => (position as i64).max(start),
        (None, _) => start,
    };
    let client = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .user_agent(concat!("marketflow/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| anyhow::anyhow!("starting the HTTP client: {e}"))?;
    let limiter = Limiter::shared(&settings.limiter_key, settings.credits_per_minute);
    let mut stamper = match restart.stamper {
        Some(state) => Stamper::restored(0, state),
        None => Stamper::for_partition(0, ctx.partition),
    };
    let records = metrics()
        .source_records
        .with_label_values(&[ctx.name.as_str()]);
    let step = settings.interval.millis();
    let paging = provider.paging();
    let (mut cursor, end) = if settings.interval.is_daily() {
        whole_days(from, end)
    } else {
        (from, end)
    };
    if let Some(earliest) = provider.earliest(now).filter(|e| *e > cursor) {
        let earliest = earliest.div_euclid(step) * step + step;
        tracing::warn!(source = %ctx.name, symbol = %symbol_text, "the provider serves {} bars only from {}: the range before it is skipped", settings.interval, format_timestamp(earliest));
        cursor = earliest;
    }
    let mut span = paging.span.max(step);
    let remaining = |cursor: i64, span: i64| ((end - cursor).max(0) + span - 1) / span;
    ctx.status.history_progress(&ctx.name, &symbol_text, |p| {
        p.pages_total = remaining(cursor, span) as u64;
        p.done = cursor >= end;
    });
    tracing::info!(source = %ctx.name, symbol = %symbol_text, from = %format_timestamp(cursor), to = %format_timestamp(end), "backfilling");
    let mut last_start = i64::MIN;
    while cursor < end {
        let window = Window {
            start: cursor,
            end: cursor.saturating_add(span).min(end),
        };
        let page = Page {
            client: &client,
            limiter: &limiter,
            source: &ctx.name,
            symbol: &symbol_text,
            window,
        };
        let (bars, full) = match page.fetch(&mut provider).await? {
            Answer::Bars { bars, full, bad } => {
                for (reason, row) in &bad {
                    let detail = format!("{symbol_text} {window}: {reason}");
                    let text = row.as_bytes();
                    let text = &text[..text.len().min(4096)];
                    ctx.dead_letters.reject(
                        &ctx.name,
                        "malformed",
                        &detail,
                        Rejected::Frame { text },
                    );
                }
                (bars, full)
            }
            _ => (Vec::new(), false),
        };
        let length = window.end - window.start;
        // A full page may have been cut, unless it holds a row for every slot of the window.
        if full && length > step && (bars.len() as i64) < length / step {
            span = (length / 2 / step).max(1) * step;
            ctx.status.history_progress(&ctx.name, &symbol_text, |p| {
                p.pages_total = p.pages_done + remaining(cursor, span) as u64;
            });
            continue;
        }
        if let Some(rows) = paging.rows.filter(|_| !bars.is_empty()) {
            // The next window holds about four fifths of a page at this page's density.
            let per_row = length as f64 / bars.len() as f64;
            let target = (per_row * rows as f64 * 0.8) as i64;
            span = (target / step)
                .max(1)
                .saturating_mul(step)
                .min(paging.max_span);
        }
        let got = bars.len();
        let (out, position) = finish_page(&mut provider, bars, window, &mut last_start, |b| {
            let mut bar = to_bar(&symbol, settings.interval, b, settings.session.as_ref());
            stamper.stamp_bar(&mut bar);
            bar
        });
        tracing::debug!(source = %ctx.name, symbol = %symbol_text, window = %window, rows = got, bars = out.len(), "page");
        cursor = window.end;
        let count = out.len() as u64;
        records.inc_by(count);
        ctx.out
            .send(SourceEvent::Bars {
                records: out,
                position: position.max(0) as u64,
            })
            .await?;
        ctx.out.send(SourceEvent::Watermark(position)).await?;
        ctx.status.history_progress(&ctx.name, &symbol_text, |p| {
            p.pages_done += 1;
            p.pages_total = p.pages_done + remaining(cursor, span) as u64;
            p.bars += count;
            p.done = cursor >= end;
        });
    }
    ctx.status
        .history_progress(&ctx.name, &symbol_text, |p| p.done = true);
    Ok(())
}

/// The final bars of a page inside its window, in time order, without the rows an earlier
/// page already gave (overlapping edges) or rows without prices; and the position after
/// the page: its end, or the start of a bar still forming (asked for again next run).
fn finish_page<P: Provider>(
    provider: &mut P,
    mut bars: Vec<RawBar>,
    window: Window,
    last_start: &mut i64,
    mut to_bar: impl FnMut(&RawBar) -> Bar,
) -> (Vec<Bar>, i64) {
    let now = now_ms();
    let mut position = window.end;
    bars.retain(|b| b.start >= window.start && b.start < window.end);
    bars.sort_by_key(|b| b.start);
    let mut out = Vec::with_capacity(bars.len());
    for b in &bars {
        if provider.final_at(b.start) > now {
            position = position.min(b.start);
            continue;
        }
        if b.start <= *last_start || !b.is_sane() {
            continue;
        }
        *last_start = b.start;
        out.push(to_bar(b));
    }
    (out, position)
}

/// A provider bar as a marketflow bar: the VWAP is unknown, so the typical price stands
/// in for it; trades are unknown (0).
fn to_bar(
    symbol: &Symbol,
    interval: Interval,
    b: &RawBar,
    session: Option<&marketflow_operators::Session>,
) -> Bar {
    let typical = (b.high + b.low + b.close) / 3.0;
    let (mut start, mut end) = (b.start, b.start + interval.millis());
    if let Some(session) = session.filter(|_| interval.is_daily()) {
        let day = b.start.div_euclid(DAY);
        // The provider traded that day even if the calendar says otherwise: its regular hours.
        let window = session.bounds(day).unwrap_or(marketflow_operators::Window {
            start: session.local_instant(day, session.open),
            end: session.local_instant(day, session.close),
        });
        (start, end) = (window.start, window.end);
    }
    Bar {
        symbol: symbol.clone(),
        interval,
        start,
        end,
        open: b.open,
        high: b.high,
        low: b.low,
        close: b.close,
        volume: Fixed::from_f64(b.volume),
        notional: Fixed::from_f64(typical * b.volume),
        trades: 0,
        revision: 0,
        seq: 0,
        wm: i64::MIN,
        source: Default::default(),
    }
}

/// One page being fetched.
struct Page<'a> {
    client: &'a reqwest::Client,
    limiter: &'a Limiter,
    source: &'a str,
    symbol: &'a str,
    window: Window,
}

impl Page<'_> {
    /// Asks until the provider answers with bars or an empty range; waits out rate limits
    /// and transient faults, gives up on a refusal or too many faults in a row.
    async fn fetch<P: Provider>(&self, provider: &mut P) -> Result<Answer, TaskError> {
        let request = provider.request(self.symbol, self.window);
        let counter = |outcome: &str| {
            metrics()
                .history_requests
                .with_label_values(&[self.source, outcome])
                .inc();
        };
        let (mut transient, mut limited) = (0u32, 0u32);
        let mut backoff = Backoff::new(BACKOFF_FIRST, BACKOFF_CAP, 0.2);
        loop {
            self.limiter.acquire().await;
            let answer = match self.send(&request.url).await {
                Ok((status, retry_after, body)) => provider.parse(status, retry_after, &body),
                Err(e) => Answer::Transient(e),
            };
            let wait = match answer {
                Answer::Bars { .. } => {
                    counter("ok");
                    return Ok(answer);
                }
                Answer::Empty => {
                    counter("empty");
                    return Ok(answer);
                }
                Answer::Refused(message) => {
                    counter("refused");
                    return Err(self.failed(&request, &message));
                }
                Answer::RateLimited { wait, message } => {
                    counter("rate_limited");
                    limited += 1;
                    if limited > RATE_LIMITED_ATTEMPTS {
                        return Err(self.failed(
                            &request,
                            &format!("still rate limited after {limited} attempts: {message}"),
                        ));
                    }
                    tracing::warn!(source = self.source, symbol = self.symbol, window = %self.window, "rate limited, waiting: {message}");
                    wait
                }
                Answer::Transient(message) => {
                    counter("retried");
                    transient += 1;
                    if transient >= TRANSIENT_ATTEMPTS {
                        return Err(self.failed(
                            &request,
                            &format!("gave up after {transient} attempts: {message}"),
                        ));
                    }
                    tracing::warn!(source = self.source, symbol = self.symbol, window = %self.window, "retrying: {message}");
                    None
                }
            };
            tokio::time::sleep(backoff.wait_or(wait)).await;
        }
    }

    /// Sends one request: its status, `Retry-After` seconds and body (bounded).
    async fn send(&self, url: &str) -> Result<(u16, Option<u64>, Vec<u8>), String> {
        // Without the URL: it carries the key.
        let describe = |e: reqwest::Error| {
            let e = e.without_url();
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                text = format!("{text}: {s}");
                source = s.source();
            }
            text
        };
        let mut response = self.client.get(url).send().await.map_err(describe)?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(describe)? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(format!("the answer is larger than {} MiB", MAX_BODY >> 20));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, retry_after, body))
    }

    fn failed(&self, request: &Request, message: &str) -> TaskError {
        TaskError::Failed(anyhow::anyhow!(
            "{} {}: {message} ({})",
            self.symbol,
            self.window,
            request.shown
        ))
    }
}

/// Reads a JSON number or a string holding one (providers send prices as strings).
pub fn number(value: Option<&serde_json::Value>) -> Option<f64> {
    super::feed::number(value?)
}

/// `end`'s default: now.
pub fn now() -> Parsed<TimePoint> {
    Parsed {
        value: TimePoint::Now,
        pos: Default::default(),
    }
}

/// Checks every history source makes: symbols, an HTTP URL, a key when one is needed.
pub fn check(
    path: &str,
    symbols: &Spanned<SymbolList>,
    url: &str,
    key: Option<(&Secret, &str)>,
) -> Vec<Diagnostic> {
    let mut problems = super::feed::check_symbols(path, symbols);
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        problems.push(Diagnostic::new(
            symbols.pos,
            format!("{path}.url"),
            "the URL must start with `https://` (or `http://`)",
        ));
    }
    if let Some((_, variable)) = key.filter(|(k, _)| k.expose().trim().is_empty()) {
        problems.push(
            Diagnostic::new(
                symbols.pos,
                format!("{path}.api_key"),
                "the API key is empty",
            )
            .help(format!(
                "set it from the environment: `api_key: ${{{variable}}}`"
            )),
        );
    }
    problems
}

/// A short fingerprint of a key, so that sources with different keys get their own credits
/// without the key itself being kept in a map's name.
pub fn key_id(key: &Secret) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.expose().hash(&mut h);
    h.finish()
}

/// `YYYY-MM-DD` of a UTC instant.
pub fn format_date(ms: i64) -> String {
    let (y, m, d) = marketflow_operators::time::civil_from_days(ms.div_euclid(DAY));
    format!("{y:04}-{m:02}-{d:02}")
}

/// The start of a body, for messages.
pub fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
    text.trim().replace(['\n', '\r'], " ")
}

/// When the session date labelled `label` (00:00 UTC of that date) is over: the exchange's
/// next midnight.
pub fn day_over(label: i64, timezone: chrono_tz::Tz) -> i64 {
    use chrono::TimeZone as _;
    let (y, m, d) = marketflow_operators::time::civil_from_days(label.div_euclid(DAY) + 1);
    chrono::NaiveDate::from_ymd_opt(y as i32, m, d)
        .and_then(|date| date.and_hms_opt(0, 0, 0))
        .and_then(|t| timezone.from_local_datetime(&t).earliest())
        .map_or(label + 2 * DAY, |t| t.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_points_read() {
        assert_eq!("now".parse::<TimePoint>().ok(), Some(TimePoint::Now));
        assert_eq!(
            "-2d".parse::<TimePoint>().ok(),
            Some(TimePoint::Ago(2 * DAY))
        );
        assert_eq!(
            "1970-01-02".parse::<TimePoint>().ok(),
            Some(TimePoint::At(DAY))
        );
        assert!("yesterday-ish".parse::<TimePoint>().is_err());
    }
}
