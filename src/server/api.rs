//! The REST API: query parameters checked strictly (HTTP 400 with a JSON error naming the
//! parameter), answers written straight into a buffer with the record codec. Nothing from
//! a request reaches SQL except as a bound parameter.

use chrono::{SecondsFormat, TimeZone};
use hyper::StatusCode;
use marketflow_operators::indicators::IndicatorKind;
use marketflow_operators::time::{write_timestamp, DAY};
use marketflow_operators::{Bar, IndicatorRow, Interval, Record, Symbol, Tick};

use crate::codec::{
    csv_header, write_bar_json, write_indicator_json, write_json_str, write_record_csv,
    write_tick_json, RecordKind,
};
use crate::config::de::suggest;
use crate::store::{BarQuery, IndicatorQuery, Store};

/// An answer body and its content type.
pub struct Reply {
    pub body: Vec<u8>,
    pub content_type: &'static str,
}

impl Reply {
    pub fn json(body: Vec<u8>) -> Reply {
        Reply {
            body,
            content_type: "application/json",
        }
    }
}

/// Query parameters of the predecessor's API (`/api/v2`), with the hint given when a
/// client sends them to the native one.
const SEED_PARAMETERS: &[(&str, &str)] = &[
    ("last_minutes", "use `start` (an RFC 3339 time) instead"),
    ("last_hours", "use `start` (an RFC 3339 time) instead"),
    ("last_days", "use `start_date` instead"),
    ("start_time", "use `start`"),
    ("end_time", "use `end`"),
    ("date", "use `start` and `end`"),
    (
        "indicators",
        "use `indicator` (one name or id; omit it for every indicator)",
    ),
];

/// Parameters that may be given more than once (the predecessor's `indicators=`).
const REPEATABLE: &[&str] = &["indicators"];

/// Rows a list query may ask for.
pub const MAX_LIMIT: usize = 5000;

/// An answer other than 200: its status, a stable code and a message for people.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn bad(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code,
            message: message.into(),
        }
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            code,
            message: message.into(),
        }
    }

    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "store_unavailable",
            message: message.into(),
        }
    }

    /// `{"detail":...,"error":{"code":...,"message":...}}`: `detail` is what FastAPI
    /// clients of the predecessor read.
    pub fn body(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(80 + 2 * self.message.len());
        out.extend_from_slice(b"{\"detail\":");
        write_json_str(&mut out, &self.message);
        out.extend_from_slice(b",\"error\":{\"code\":");
        write_json_str(&mut out, self.code);
        out.extend_from_slice(b",\"message\":");
        write_json_str(&mut out, &self.message);
        out.extend_from_slice(b"}}");
        out
    }
}

/// A failed store query: logged in full, answered without database details.
pub fn store_error(e: crate::store::StoreError) -> ApiError {
    tracing::error!(error = %e, "store query failed");
    ApiError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        code: "store_error",
        message: "the store could not answer this query (see the server log)".into(),
    }
}

/// The query string of a request: every name must be one the route accepts, once.
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    pub fn parse(query: Option<&str>, accepted: &[&str]) -> Result<Params, ApiError> {
        Params::parse_ignoring(query, accepted, &[])
    }

    /// [`Params::parse`], dropping the names in `ignored` (parameters of the API's other
    /// routes, which the predecessor's FastAPI ignored where a route had no use for them).
    pub fn parse_ignoring(
        query: Option<&str>,
        accepted: &[&str],
        ignored: &[&str],
    ) -> Result<Params, ApiError> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for part in query
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
        {
            let (name, value) = part.split_once('=').unwrap_or((part, ""));
            let name = percent_decode(name)
                .ok_or_else(|| ApiError::bad("bad_parameter", "query string is not valid UTF-8"))?;
            let value = percent_decode(value).ok_or_else(|| {
                ApiError::bad("bad_parameter", format!("{name}: value is not valid UTF-8"))
            })?;
            if !accepted.contains(&name.as_str()) && ignored.contains(&name.as_str()) {
                continue;
            }
            if !accepted.contains(&name.as_str()) {
                let seed = SEED_PARAMETERS.iter().find(|(n, _)| *n == name);
                let hint = seed
                    .map(|(_, hint)| {
                        format!("`{name}` is the predecessor's (its routes are under /api/v2); here {hint}")
                    })
                    .or_else(|| suggest(&name, accepted))
                    .unwrap_or_else(|| "this route takes no query parameters".into());
                return Err(ApiError::bad(
                    "unknown_parameter",
                    format!("unknown query parameter `{name}`; {hint}"),
                ));
            }
            if pairs.iter().any(|(n, _)| *n == name) && !REPEATABLE.contains(&name.as_str()) {
                return Err(ApiError::bad(
                    "bad_parameter",
                    format!("{name}: given more than once"),
                ));
            }
            pairs.push((name, value));
        }
        Ok(Params { pairs })
    }

    /// Every value of a repeatable parameter, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The row count: `fixed` when the route sets it (`/latest`, `/last/{count}`), else
    /// `limit` (1 to [`MAX_LIMIT`]), else `default`.
    pub fn limit(&self, fixed: Option<usize>, default: usize) -> Result<usize, ApiError> {
        match (fixed, self.get("limit")) {
            (Some(n), _) => Ok(n),
            (None, None) => Ok(default),
            (None, Some(text)) => count("limit", text, MAX_LIMIT),
        }
    }

    pub fn interval(&self, default: Interval) -> Result<Interval, ApiError> {
        match self.get("interval") {
            None => Ok(default),
            Some(text) => parse_interval(text),
        }
    }

    /// `start` and `end` (RFC 3339, a date, or epoch ms), start before end.
    pub fn range(&self) -> Result<(Option<i64>, Option<i64>), ApiError> {
        let start = self.get("start").map(|t| instant("start", t)).transpose()?;
        let end = self.get("end").map(|t| instant("end", t)).transpose()?;
        if let (Some(s), Some(e)) = (start, end) {
            if s >= e {
                return Err(ApiError::bad(
                    "bad_range",
                    "start must be before end (start is inclusive, end exclusive)",
                ));
            }
        }
        Ok((start, end))
    }

    /// Whether the answer is CSV (`format=csv`) rather than JSON (the default).
    pub fn csv(&self) -> Result<bool, ApiError> {
        match self.get("format") {
            None | Some("json") => Ok(false),
            Some("csv") => Ok(true),
            Some(other) => Err(ApiError::bad(
                "bad_parameter",
                format!("format: `{other}` is not `json` or `csv`"),
            )),
        }
    }

    /// Whether rows come newest first (`order=desc`); time order by default.
    pub fn descending(&self) -> Result<bool, ApiError> {
        match self.get("order") {
            None | Some("asc") => Ok(false),
            Some("desc") => Ok(true),
            Some(other) => Err(ApiError::bad(
                "bad_parameter",
                format!("order: `{other}` is not `asc` or `desc`"),
            )),
        }
    }
}

/// A whole number from 1 to `max`.
pub fn count(name: &str, text: &str, max: usize) -> Result<usize, ApiError> {
    match text.parse::<usize>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        Ok(n) if n > max => Err(ApiError::bad(
            "bad_parameter",
            format!("{name}: {n} is over the maximum of {max}"),
        )),
        _ => Err(ApiError::bad(
            "bad_parameter",
            format!("{name}: `{text}` is not a whole number from 1 to {max}"),
        )),
    }
}

pub fn parse_interval(text: &str) -> Result<Interval, ApiError> {
    Interval::parse(text).map_err(|_| {
        ApiError::bad(
            "bad_interval",
            format!("interval: unknown interval `{text}`; use a whole number of s, m (min), h or d from 1s to 1d, e.g. 1m, 5m, 15m, 1h, 1d"),
        )
    })
}

/// An instant: RFC 3339 with an offset, a date `YYYY-MM-DD` (midnight UTC) or epoch
/// milliseconds (up to 15 digits). A time without an offset is refused: it is ambiguous.
pub fn instant(name: &str, text: &str) -> Result<i64, ApiError> {
    let bytes = text.as_bytes();
    let bad = |why: &str| {
        ApiError::bad(
            "bad_time",
            format!("{name}: `{text}` is not a time{why}; use RFC 3339 (2024-01-02T14:30:00Z), a date (2024-01-02) or epoch milliseconds"),
        )
    };
    if (1..=15).contains(&bytes.len()) && bytes.iter().all(u8::is_ascii_digit) {
        return text.parse().map_err(|_| bad(""));
    }
    if let Some(day) = full_date(text) {
        return Ok(day * DAY);
    }
    if bytes.len() > 10 && matches!(bytes[10], b'T' | b't') {
        if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
            return Ok(t.timestamp_millis());
        }
        if chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f").is_ok() {
            return Err(bad(" with an offset (add `Z` for UTC)"));
        }
    }
    Err(bad(""))
}

/// Days since the epoch of a strict `YYYY-MM-DD`.
fn full_date(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let shaped = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !shaped {
        return None;
    }
    let date = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    Some(i64::from(
        date.signed_duration_since(chrono::NaiveDate::from_ymd_opt(1970, 1, 1)?)
            .num_days() as i32,
    ))
}

/// A calendar date `YYYY-MM-DD` as days since the epoch.
pub fn date(name: &str, text: &str) -> Result<i64, ApiError> {
    full_date(text).ok_or_else(|| {
        ApiError::bad(
            "bad_time",
            format!("{name}: `{text}` is not a date; use YYYY-MM-DD"),
        )
    })
}

/// A symbol from a path segment: percent-decoded, upper-case, checked.
pub fn symbol(segment: &str) -> Result<Symbol, ApiError> {
    let text = percent_decode(segment)
        .ok_or_else(|| ApiError::bad("bad_symbol", "symbol is not valid UTF-8"))?;
    if !text.is_ascii() {
        return Err(ApiError::bad(
            "bad_symbol",
            "symbol: expected 1 to 32 printable ASCII characters without spaces, commas, quotes or backslashes",
        ));
    }
    Symbol::new(&text.to_ascii_uppercase()).map_err(|e| ApiError::bad("bad_symbol", e.to_string()))
}

/// Decodes `%XX` escapes and `+` (a space in query strings); None if not UTF-8.
pub fn percent_decode(text: &str) -> Option<String> {
    if !text.contains(['%', '+']) {
        return Some(text.to_owned());
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

use crate::seed::EASTERN;

fn write_presentation(out: &mut Vec<u8>, ms: i64) {
    out.extend_from_slice(b",\"timestamp_utc\":\"");
    write_timestamp(out, ms);
    out.extend_from_slice(b"\",\"timestamp_est\":\"");
    if let chrono::LocalResult::Single(t) = EASTERN.timestamp_millis_opt(ms) {
        out.extend_from_slice(t.to_rfc3339_opts(SecondsFormat::AutoSi, false).as_bytes());
    }
    out.push(b'"');
}

/// Appends a record's JSON with the presentation fields added before its closing brace.
fn with_presentation(out: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>), ms: i64) {
    write(out);
    out.pop(); // the record's closing brace
    write_presentation(out, ms);
    out.push(b'}');
}

pub const TIMEZONE_NOTE: &str = "times are UTC (RFC 3339); timestamp_est shows them in America/New_York; data is in time order unless order=desc";

/// Writes `{"symbol":..,<extra>,"count":n,"timezone_note":..,"data":[rows]}`, or with
/// `format=csv` a header and one line per row (the record CSV of the file sink).
fn envelope<T: Clone + Into<Record>>(
    params: &Params,
    symbol: Option<&Symbol>,
    extra: &[(&str, Option<&str>)],
    rows: &[T],
    kind: RecordKind,
    mut write_row: impl FnMut(&mut Vec<u8>, &T),
) -> Result<Reply, ApiError> {
    let descending = params.descending()?;
    let ordered: Box<dyn Iterator<Item = &T>> = if descending {
        Box::new(rows.iter().rev())
    } else {
        Box::new(rows.iter())
    };
    if params.csv()? {
        let mut out = Vec::with_capacity(64 + rows.len() * 120);
        out.extend_from_slice(csv_header(kind).as_bytes());
        out.push(b'\n');
        for row in ordered {
            write_record_csv(&mut out, &row.clone().into());
        }
        return Ok(Reply {
            body: out,
            content_type: "text/csv; charset=utf-8",
        });
    }
    let mut out = Vec::with_capacity(128 + rows.len() * 260);
    out.push(b'{');
    if let Some(symbol) = symbol {
        out.extend_from_slice(b"\"symbol\":");
        write_json_str(&mut out, symbol.as_str());
        out.push(b',');
    }
    for (name, value) in extra {
        write_json_str(&mut out, name);
        out.push(b':');
        match value {
            Some(v) => write_json_str(&mut out, v),
            None => out.extend_from_slice(b"null"),
        }
        out.push(b',');
    }
    out.extend_from_slice(b"\"count\":");
    out.extend_from_slice(itoa::Buffer::new().format(rows.len()).as_bytes());
    out.extend_from_slice(b",\"timezone_note\":");
    write_json_str(&mut out, TIMEZONE_NOTE);
    out.extend_from_slice(b",\"data\":[");
    for (i, row) in ordered.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_row(&mut out, row);
    }
    out.extend_from_slice(b"]}");
    Ok(Reply::json(out))
}

fn write_tick_row(out: &mut Vec<u8>, t: &Tick) {
    with_presentation(out, |o| write_tick_json(o, t), t.ts);
}

fn write_bar_row(out: &mut Vec<u8>, b: &Bar) {
    with_presentation(out, |o| write_bar_json(o, b), b.start);
}

/// A daily bar also carries its session date.
fn write_daily_row(out: &mut Vec<u8>, b: &Bar) {
    write_bar_row(out, b);
    out.pop();
    out.extend_from_slice(b",\"date\":\"");
    let mut stamp = Vec::with_capacity(24);
    write_timestamp(&mut stamp, session_day(b) * DAY);
    out.extend_from_slice(&stamp[..10]);
    out.extend_from_slice(b"\"}");
}

fn write_indicator_row(out: &mut Vec<u8>, r: &IndicatorRow) {
    with_presentation(out, |o| write_indicator_json(o, r), r.ts);
}

/// The calendar date of a daily bar's session: the UTC date of its midpoint, which is the
/// local date of every exchange session (they are shorter than a day and within ±14 h).
pub fn session_day(b: &Bar) -> i64 {
    (b.start + (b.end - b.start) / 2).div_euclid(DAY)
}

/// 404 for a symbol the store has never seen; an empty answer is for a known symbol.
async fn known(store: &Store, symbol: &Symbol, rows: usize) -> Result<(), ApiError> {
    if rows > 0 || store.has_symbol(symbol).await.map_err(store_error)? {
        Ok(())
    } else {
        Err(ApiError::not_found(
            "unknown_symbol",
            format!("no data for symbol `{symbol}` (GET /api/v2/symbols lists the known ones)"),
        ))
    }
}

/// `GET /api/v2/realtime/prices/{symbol}`: the latest ticks.
pub async fn realtime_prices(
    store: &Store,
    symbol: Symbol,
    params: &Params,
    limit: Option<usize>,
) -> Result<Reply, ApiError> {
    let limit = params.limit(limit, 100)?;
    let ticks = store
        .latest_ticks(&symbol, limit)
        .await
        .map_err(store_error)?;
    known(store, &symbol, ticks.len()).await?;
    envelope(
        params,
        Some(&symbol),
        &[],
        &ticks,
        RecordKind::Tick,
        write_tick_row,
    )
}

/// `GET /api/v2/intraday/prices/{symbol}`: bars below a day.
pub async fn intraday_prices(
    store: &Store,
    symbol: Symbol,
    params: &Params,
    limit: Option<usize>,
) -> Result<Reply, ApiError> {
    let interval = params.interval(Interval::M1)?;
    let (start, end) = params.range()?;
    let limit = params.limit(limit, 100)?;
    let bars = store
        .bars(&BarQuery {
            symbol: symbol.clone(),
            interval,
            start,
            end,
            limit,
        })
        .await
        .map_err(store_error)?;
    known(store, &symbol, bars.len()).await?;
    let interval = interval.to_string();
    envelope(
        params,
        Some(&symbol),
        &[("interval", Some(&interval))],
        &bars,
        RecordKind::Bar,
        write_bar_row,
    )
}

/// `GET /api/v2/historical/prices/{symbol}`: daily bars by session date, both dates included.
pub async fn historical_prices(
    store: &Store,
    symbol: Symbol,
    params: &Params,
    limit: Option<usize>,
) -> Result<Reply, ApiError> {
    let first = params
        .get("start_date")
        .map(|t| date("start_date", t))
        .transpose()?;
    let last = params
        .get("end_date")
        .map(|t| date("end_date", t))
        .transpose()?;
    if let (Some(f), Some(l)) = (first, last) {
        if f > l {
            return Err(ApiError::bad(
                "bad_range",
                "start_date must not be after end_date (both are included)",
            ));
        }
    }
    let limit = params.limit(limit, 252)?;
    let bars = daily_bars(store, &symbol, first, last, limit).await?;
    known(store, &symbol, bars.len()).await?;
    envelope(
        params,
        Some(&symbol),
        &[("interval", Some("1d"))],
        &bars,
        RecordKind::Bar,
        write_daily_row,
    )
}

/// The latest `limit` daily bars whose session date is from `first` to `last` (days since
/// the epoch, both included), in time order.
pub async fn daily_bars(
    store: &Store,
    symbol: &Symbol,
    first: Option<i64>,
    last: Option<i64>,
    limit: usize,
) -> Result<Vec<Bar>, ApiError> {
    // Sessions start up to 14 h either side of their date's UTC midnight: fetch a margin,
    // then keep the bars whose session date is in range.
    const MARGIN: i64 = 14 * 3_600_000;
    let mut bars = store
        .bars(&BarQuery {
            symbol: symbol.clone(),
            interval: Interval::D1,
            start: first.map(|d| d * DAY - MARGIN),
            end: last.map(|d| (d + 1) * DAY + MARGIN),
            limit: limit + 2,
        })
        .await
        .map_err(store_error)?;
    bars.retain(|b| {
        let day = session_day(b);
        first.is_none_or(|f| day >= f) && last.is_none_or(|l| day <= l)
    });
    let skip = bars.len().saturating_sub(limit);
    bars.drain(..skip);
    Ok(bars)
}

/// Whether `name` is an indicator name (`rsi`) or has the shape of a generated id (`rsi_14`).
fn indicator_shaped(name: &str) -> bool {
    IndicatorKind::ALL.iter().any(|k| {
        name == k.name()
            || name
                .strip_prefix(k.name())
                .is_some_and(|rest| rest.starts_with('_'))
    })
}

/// `GET /api/v2/analytics/{symbol}`: indicator rows of one interval.
pub async fn analytics(
    store: &Store,
    symbol: Symbol,
    params: &Params,
    default_interval: Interval,
    limit: Option<usize>,
) -> Result<Reply, ApiError> {
    let interval = params.interval(default_interval)?;
    let indicator = params.get("indicator").map(str::to_owned);
    if let Some(name) = &indicator {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !valid {
            return Err(ApiError::bad(
                "bad_indicator",
                format!("indicator: `{name}` is not an indicator name or id (letters, digits, `_`, `.`, `-`)"),
            ));
        }
    }
    let (start, end) = params.range()?;
    let limit = params.limit(limit, 100)?;
    let rows = store
        .indicators(&IndicatorQuery {
            symbol: symbol.clone(),
            interval,
            indicator: indicator.clone(),
            start,
            end,
            limit,
        })
        .await
        .map_err(store_error)?;
    if let Some(name) = indicator.as_deref().filter(|_| rows.is_empty()) {
        // A custom id with rows is fine; an empty answer for a name that is no indicator
        // is a mistake worth saying (the seed dropped unknown indicators silently).
        if !indicator_shaped(name) {
            let names: Vec<&str> = IndicatorKind::ALL.iter().map(|k| k.name()).collect();
            return Err(ApiError::not_found(
                "unknown_indicator",
                format!(
                    "indicator: unknown indicator `{name}`; {}",
                    suggest(name, &names).unwrap_or_default()
                ),
            ));
        }
    }
    known(store, &symbol, rows.len()).await?;
    let interval = interval.to_string();
    envelope(
        params,
        Some(&symbol),
        &[
            ("interval", Some(&interval)),
            ("indicator", indicator.as_deref()),
        ],
        &rows,
        RecordKind::Indicator,
        write_indicator_row,
    )
}

/// `GET /api/v2/symbols`: every symbol with the span of its data.
pub async fn symbols(store: &Store) -> Result<Reply, ApiError> {
    let spans = store.symbols(false).await.map_err(store_error)?;
    let mut out = Vec::with_capacity(64 + spans.len() * 160);
    out.extend_from_slice(b"{\"count\":");
    out.extend_from_slice(itoa::Buffer::new().format(spans.len()).as_bytes());
    out.extend_from_slice(b",\"symbols\":[");
    for (i, s) in spans.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"symbol\":");
        write_json_str(&mut out, &s.symbol);
        for (name, ms) in [("first_seen", s.first_ts), ("last_seen", s.last_ts)] {
            out.extend_from_slice(b",\"");
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\":\"");
            write_timestamp(&mut out, ms);
            out.push(b'"');
        }
        out.push(b'}');
    }
    out.extend_from_slice(b"],\"timezone_note\":");
    write_json_str(&mut out, TIMEZONE_NOTE);
    out.push(b'}');
    Ok(Reply::json(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_percent_escapes() {
        assert_eq!(percent_decode("EUR%2FUSD").as_deref(), Some("EUR/USD"));
        assert_eq!(percent_decode("a+b%20c").as_deref(), Some("a b c"));
        assert_eq!(percent_decode("100%").as_deref(), Some("100%"));
        assert_eq!(percent_decode("%zz").as_deref(), Some("%zz"));
        assert_eq!(percent_decode("%ff"), None);
    }

    #[test]
    fn checks_parameters() {
        let accepted = ["limit", "start", "end"];
        let p = Params::parse(Some("limit=5&start=2024-01-02"), &accepted).unwrap();
        assert_eq!(p.limit(None, 100).unwrap(), 5);
        assert_eq!(p.limit(Some(1), 100).unwrap(), 1);
        assert_eq!(p.range().unwrap().0, Some(1_704_153_600_000));
        for (query, code) in [
            ("limt=5", "unknown_parameter"),
            ("limit=5&limit=6", "bad_parameter"),
            ("limit=0", "bad_parameter"),
            ("limit=5001", "bad_parameter"),
            ("limit=x", "bad_parameter"),
            ("start=yesterday", "bad_time"),
            ("start=2024-01-03&end=2024-01-02", "bad_range"),
        ] {
            let err = Params::parse(Some(query), &accepted)
                .and_then(|p| p.limit(None, 100).and_then(|_| p.range()))
                .unwrap_err();
            assert_eq!(err.code, code, "{query}");
            assert_eq!(err.status, StatusCode::BAD_REQUEST);
        }
    }

    #[test]
    fn reads_times() {
        assert_eq!(instant("t", "1704205800000").unwrap(), 1_704_205_800_000);
        assert_eq!(
            instant("t", "2024-01-02T14:30:00Z").unwrap(),
            instant("t", "2024-01-02T09:30:00-05:00").unwrap()
        );
        assert_eq!(instant("t", "1969-12-31T23:59:59Z").unwrap(), -1000);
        assert_eq!(instant("t", "2024-01-02").unwrap(), 1_704_153_600_000);
        let naive = instant("t", "2024-01-02T14:30:00").unwrap_err();
        assert!(
            naive.message.contains("with an offset"),
            "{}",
            naive.message
        );
        for bad in [
            "2024-1-2",
            "2024-01-02 14:30:00Z",
            "+2024-01-02",
            "1234567890123456",
            "2024-02-30",
        ] {
            assert!(instant("t", bad).is_err(), "{bad}");
        }
        assert!(date("d", "2024-01-02T00:00:00Z").is_err());
        assert!(date("d", "2024-13-02").is_err());
    }
}
