//! The predecessor's REST API (`/api/v2/...`, `../shared/docs/predecessor.md` §4.1): its
//! parameters with their meanings, defaults and bounds (US/Eastern wall-clock filters,
//! `last_minutes`, `5min`...), its shapes (newest first, `data: {row}` for `/latest`, wide
//! analytics rows with flat keys, `timestamp_utc` / `timestamp_est` / `date_est`) and its
//! 404s, over the same store queries as the native API. Its bugs are not kept: numbers
//! are JSON numbers, times are exact, `date_est` is the session date (docs/server.md).

use std::borrow::Cow;

use chrono::{NaiveDate, Offset, TimeZone};
use marketflow_operators::time::DAY;
use marketflow_operators::{Bar, IndicatorRow, Interval, Symbol, Tick};
use rustc_hash::FxHashMap;

use super::api::{count, daily_bars, date, session_day, store_error, ApiError, Params, Reply};
use crate::codec::{write_f64, write_json_str};
use crate::seed::{
    flat_keys, key_shaped, write_eastern, write_utc, write_utc_spaced, EASTERN, TICK_KEYS,
};
use crate::store::{BarQuery, IndicatorQuery, Store, TickQuery};

pub const TIMEZONE_NOTE: &str = "timestamp_est is in America/New_York timezone (EST/EDT)";

/// Which of the predecessor's bar tiers a route reads.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    Intraday,
    Historical,
}

/// What a route returns: a list, the newest row (`/latest`) or the last `n` (`/last/{n}`).
#[derive(Clone, Copy)]
pub enum Take {
    List,
    Latest,
    Last(usize),
}

/// A value of a row.
enum Field {
    Text(String),
    Number(f64),
    Null,
    /// A UTC time as `2024-01-02T14:30:00+00:00`.
    Utc(i64),
    /// A UTC time as `2024-01-02 14:30:00+00:00`.
    Spaced(i64),
    /// A time as `2024-01-02 09:30:00 EST`.
    Eastern(i64),
}

type Row = Vec<(Cow<'static, str>, Field)>;

fn write_field(out: &mut Vec<u8>, field: &Field, quote: bool) {
    let quoted = |out: &mut Vec<u8>, write: &dyn Fn(&mut Vec<u8>)| {
        if quote {
            out.push(b'"');
        }
        write(out);
        if quote {
            out.push(b'"');
        }
    };
    match field {
        Field::Text(t) if quote => write_json_str(out, t),
        Field::Text(t) => out.extend_from_slice(t.as_bytes()),
        Field::Number(n) => write_f64(out, *n),
        Field::Null if quote => out.extend_from_slice(b"null"),
        Field::Null => {}
        Field::Utc(ms) => quoted(out, &|o| write_utc(o, *ms)),
        Field::Spaced(ms) => quoted(out, &|o| write_utc_spaced(o, *ms)),
        Field::Eastern(ms) => quoted(out, &|o| write_eastern(o, *ms)),
    }
}

fn write_row(out: &mut Vec<u8>, row: &Row) {
    out.push(b'{');
    for (i, (key, field)) in row.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_json_str(out, key);
        out.push(b':');
        write_field(out, field, true);
    }
    out.push(b'}');
}

/// The answer: `meta` then `data` (a list, or one row for `/latest`); with `format=csv`
/// a header of the row keys and one line per row.
fn reply(
    params: &Params,
    mut meta: serde_json::Map<String, serde_json::Value>,
    rows: Vec<Row>,
    single: bool,
) -> Result<Reply, ApiError> {
    if params.csv()? {
        let mut out = Vec::with_capacity(64 + rows.len() * 120);
        if let Some(first) = rows.first() {
            let header: Vec<&str> = first.iter().map(|(k, _)| k.as_ref()).collect();
            out.extend_from_slice(header.join(",").as_bytes());
            out.push(b'\n');
        }
        for row in &rows {
            for (i, (_, field)) in row.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_field(&mut out, field, false);
            }
            out.push(b'\n');
        }
        return Ok(Reply {
            body: out,
            content_type: "text/csv; charset=utf-8",
        });
    }
    if !single {
        meta.insert("count".into(), rows.len().into());
    }
    meta.insert("timezone_note".into(), TIMEZONE_NOTE.into());
    let head = serde_json::to_vec(&meta).unwrap_or_else(|_| b"{}".to_vec());
    let mut out = Vec::with_capacity(head.len() + 16 + rows.len() * 260);
    out.extend_from_slice(&head[..head.len() - 1]);
    out.extend_from_slice(if head.len() > 2 {
        b",\"data\":"
    } else {
        b"\"data\":"
    });
    if single {
        match rows.first() {
            Some(row) => write_row(&mut out, row),
            None => out.extend_from_slice(b"null"),
        }
    } else {
        out.push(b'[');
        for (i, row) in rows.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_row(&mut out, row);
        }
        out.push(b']');
    }
    out.push(b'}');
    Ok(Reply::json(out))
}

fn meta(symbol: &Symbol) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    m.insert("symbol".into(), symbol.as_str().into());
    m
}

/// A bounded whole-number parameter.
fn number(params: &Params, name: &str, max: usize) -> Result<Option<usize>, ApiError> {
    params.get(name).map(|t| count(name, t, max)).transpose()
}

/// `HH:MM` or `HH:MM:SS` as milliseconds of the day.
fn time_of_day(name: &str, text: &str) -> Result<i64, ApiError> {
    let parts: Vec<&str> = text.split(':').collect();
    let field = |s: &str, max: i64| {
        (s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<i64>().ok())
            .flatten()
            .filter(|v| *v <= max)
    };
    let parsed = match parts.as_slice() {
        [h, m] => field(h, 23).zip(field(m, 59)).map(|(h, m)| (h, m, 0)),
        [h, m, s] => field(h, 23)
            .zip(field(m, 59))
            .zip(field(s, 59))
            .map(|((h, m), s)| (h, m, s)),
        _ => None,
    };
    parsed
        .map(|(h, m, s)| ((h * 60 + m) * 60 + s) * 1000)
        .ok_or_else(|| {
            ApiError::bad(
                "bad_time",
                format!(
                    "{name}: `{text}` is not a time of day; use HH:MM or HH:MM:SS (US/Eastern)"
                ),
            )
        })
}

/// The UTC instant of a New York wall-clock time (`day` in days since the epoch). In the
/// autumn's repeated hour the first; a time in the spring's skipped hour is the instant
/// the clocks jumped to.
fn eastern(day: i64, millis_of_day: i64) -> i64 {
    let Some(naive) = NaiveDate::from_ymd_opt(1970, 1, 1)
        .and_then(|d| d.checked_add_signed(chrono::Duration::days(day)))
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t + chrono::Duration::milliseconds(millis_of_day))
    else {
        return day * DAY + millis_of_day;
    };
    match EASTERN.from_local_datetime(&naive) {
        chrono::LocalResult::Single(t) | chrono::LocalResult::Ambiguous(t, _) => {
            t.timestamp_millis()
        }
        chrono::LocalResult::None => {
            let later = naive + chrono::Duration::hours(1);
            EASTERN
                .from_local_datetime(&later)
                .earliest()
                .map_or(day * DAY + millis_of_day, |t| {
                    t.timestamp_millis() - 3_600_000
                })
        }
    }
}

/// Today's date in New York.
fn eastern_today(now: i64) -> i64 {
    let offset = EASTERN
        .timestamp_millis_opt(now)
        .single()
        .map_or(0, |t| i64::from(t.offset().fix().local_minus_utc()) * 1000);
    (now + offset).div_euclid(DAY)
}

/// The `[start, end)` of a request's filters on the intraday and realtime tiers, in the
/// predecessor's precedence: `last_minutes` / `last_hours`, then `date` with `start_time`
/// / `end_time`, then `start_date` / `end_date` (all New York wall clock, end dates and
/// end times included).
fn window(
    params: &Params,
    last: Option<(&str, i64, usize)>,
    now: i64,
) -> Result<(Option<i64>, Option<i64>), ApiError> {
    // Every filter given is checked, whichever applies.
    let last = match last {
        Some((name, unit, max)) => number(params, name, max)?.map(|n| n as i64 * unit),
        None => None,
    };
    let start_time = params
        .get("start_time")
        .map(|t| time_of_day("start_time", t))
        .transpose()?;
    let end_time = params
        .get("end_time")
        .map(|t| time_of_day("end_time", t))
        .transpose()?;
    let day = params.get("date").map(|t| date("date", t)).transpose()?;
    let first = params
        .get("start_date")
        .map(|t| date("start_date", t))
        .transpose()?;
    let last_day = params
        .get("end_date")
        .map(|t| date("end_date", t))
        .transpose()?;
    if let Some(back) = last {
        return Ok((Some(now - back), None));
    }
    let range = if day.is_some() || start_time.is_some() || end_time.is_some() {
        // Times without a date are today's.
        let day = day.unwrap_or_else(|| eastern_today(now));
        let start = eastern(day, start_time.unwrap_or(0));
        let end = match end_time {
            Some(t) => eastern(day, t) + 1,
            None => eastern(day + 1, 0),
        };
        (Some(start), Some(end))
    } else {
        (
            first.map(|d| eastern(d, 0)),
            last_day.map(|d| eastern(d + 1, 0)),
        )
    };
    if let (Some(s), Some(e)) = range {
        if s >= e {
            return Err(ApiError::bad(
                "bad_range",
                "the start of the range is not before its end",
            ));
        }
    }
    Ok(range)
}

/// The session dates of a historical request: `last_days` (that many weekdays up to
/// today in New York), else `start_date` / `end_date` (both included).
fn session_dates(params: &Params, now: i64) -> Result<(Option<i64>, Option<i64>), ApiError> {
    // Every filter given is checked, whichever applies.
    let days = number(params, "last_days", 2000)?;
    let first = params
        .get("start_date")
        .map(|t| date("start_date", t))
        .transpose()?;
    let last = params
        .get("end_date")
        .map(|t| date("end_date", t))
        .transpose()?;
    if let Some(n) = days {
        let mut day = eastern_today(now);
        let mut weekdays = 0;
        loop {
            // 1970-01-01 was a Thursday: (day + 3) mod 7 is 0 on Mondays.
            if (day + 3).rem_euclid(7) < 5 {
                weekdays += 1;
                if weekdays == n {
                    break;
                }
            }
            day -= 1;
        }
        return Ok((Some(day), None));
    }
    if let (Some(f), Some(l)) = (first, last) {
        if f > l {
            return Err(ApiError::bad(
                "bad_range",
                "start_date must not be after end_date (both are included)",
            ));
        }
    }
    Ok((first, last))
}

fn tick_row(t: &Tick) -> Row {
    vec![
        ("symbol".into(), Field::Text(t.symbol.as_str().into())),
        ("price".into(), Field::Number(t.price)),
        ("timestamp".into(), Field::Spaced(t.ts)),
        ("volume".into(), Field::Number(t.volume)),
        // Ticks do not record which source read them.
        ("source".into(), Field::Null),
        ("timestamp_utc".into(), Field::Utc(t.ts)),
        ("timestamp_est".into(), Field::Eastern(t.ts)),
    ]
}

/// The presentation fields: `timestamp_utc` and `timestamp_est`, or for daily rows
/// `timestamp_utc` and the session date `date_est`.
fn presentation(row: &mut Row, ts: i64, session: Option<i64>) {
    row.push(("timestamp_utc".into(), Field::Utc(ts)));
    match session {
        Some(day) => {
            let mut text = Vec::with_capacity(24);
            marketflow_operators::time::write_timestamp(&mut text, day * DAY);
            text.truncate(10);
            row.push((
                "date_est".into(),
                Field::Text(String::from_utf8_lossy(&text).into_owned()),
            ));
        }
        None => row.push(("timestamp_est".into(), Field::Eastern(ts))),
    }
}

fn bar_row(b: &Bar, daily: bool) -> Row {
    let mut row: Row = vec![
        ("symbol".into(), Field::Text(b.symbol.as_str().into())),
        ("timestamp".into(), Field::Spaced(b.start)),
        ("open".into(), Field::Number(b.open)),
        ("high".into(), Field::Number(b.high)),
        ("low".into(), Field::Number(b.low)),
        ("close".into(), Field::Number(b.close)),
        ("volume".into(), Field::Number(b.volume.to_f64())),
        (
            "source".into(),
            if b.source.is_empty() {
                Field::Null
            } else {
                Field::Text(b.source.to_string())
            },
        ),
    ];
    presentation(&mut row, b.start, daily.then(|| session_day(b)));
    row
}

/// The rows a `Take` wants; `/latest` and `/last/{n}` on no rows are 404, as before.
fn taken<T>(rows: Vec<T>, take: Take, what: &str, symbol: &Symbol) -> Result<Vec<T>, ApiError> {
    if rows.is_empty() && !matches!(take, Take::List) {
        return Err(ApiError::not_found(
            "no_data",
            format!("No {what} data found for symbol {symbol}"),
        ));
    }
    Ok(rows)
}

fn empty_message(meta: &mut serde_json::Map<String, serde_json::Value>, n: usize, what: String) {
    if n == 0 {
        meta.insert("message".into(), what.into());
    }
}

/// `GET /api/v2/realtime/prices/{symbol}` and `/latest`.
pub async fn realtime_prices(
    store: &Store,
    symbol: Symbol,
    params: &Params,
    take: Take,
    now: i64,
) -> Result<Reply, ApiError> {
    let (start, end, limit) = match take {
        Take::List => {
            let (start, end) = window(params, Some(("last_minutes", 60_000, 1440)), now)?;
            (start, end, number(params, "limit", 5000)?.unwrap_or(100))
        }
        Take::Latest => (None, None, 1),
        Take::Last(n) => (None, None, n),
    };
    let mut ticks = store
        .ticks(&TickQuery {
            symbol: symbol.clone(),
            start,
            end,
            limit,
        })
        .await
        .map_err(store_error)?;
    ticks.reverse();
    let ticks = taken(ticks, take, "real-time", &symbol)?;
    let mut meta = meta(&symbol);
    empty_message(
        &mut meta,
        ticks.len(),
        format!("No real-time data found for {symbol} with the specified filters"),
    );
    let rows = ticks.iter().map(tick_row).collect();
    reply(params, meta, rows, matches!(take, Take::Latest))
}

/// The interval of an intraday request: `interval`, default `5min`; the predecessor's
/// names (`1min`, `5min`, `1h`...) and marketflow's (`1m`, `5m`...).
fn intraday_interval(params: &Params) -> Result<(Interval, String), ApiError> {
    let text = params.get("interval").unwrap_or("5min");
    let interval = super::api::parse_interval(text)?;
    if interval.millis() >= DAY {
        return Err(ApiError::bad(
            "bad_interval",
            format!("interval: `{text}` is daily; daily bars are under /api/v2/historical"),
        ));
    }
    Ok((interval, text.to_owned()))
}

/// A route's bounds: its default and largest `limit`, its largest `last_hours`.
struct Bounds {
    limit: usize,
    max_limit: usize,
    max_hours: usize,
}

/// The bars of an intraday or historical request, newest first.
async fn bars(
    store: &Store,
    symbol: &Symbol,
    params: &Params,
    tier: Tier,
    take: Take,
    bounds: Bounds,
    now: i64,
) -> Result<(Vec<Bar>, Option<String>), ApiError> {
    let fixed = match take {
        Take::List => None,
        Take::Latest => Some(1),
        Take::Last(n) => Some(n),
    };
    let limit = match fixed {
        Some(n) => n,
        None => number(params, "limit", bounds.max_limit)?.unwrap_or(bounds.limit),
    };
    let mut bars = if tier == Tier::Historical {
        let (first, last_day) = match take {
            Take::List => session_dates(params, now)?,
            _ => (None, None),
        };
        let bars = daily_bars(store, symbol, first, last_day, limit).await?;
        (bars, None)
    } else {
        let (interval, name) = intraday_interval(params)?;
        let (start, end) = match take {
            Take::List => window(
                params,
                Some(("last_hours", 3_600_000, bounds.max_hours)),
                now,
            )?,
            _ => (None, None),
        };
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
        (bars, Some(name))
    };
    bars.0.reverse();
    Ok(bars)
}

/// `GET /api/v2/intraday/prices/{symbol}` (+ `/latest`, `/last/{count}`) and
/// `GET /api/v2/historical/prices/{symbol}` (+ `/latest`, `/last/{count}`).
pub async fn prices(
    store: &Store,
    symbol: Symbol,
    params: &Params,
    tier: Tier,
    take: Take,
    now: i64,
) -> Result<Reply, ApiError> {
    let bounds = match tier {
        Tier::Historical => Bounds {
            limit: 252,
            max_limit: 5000,
            max_hours: 0,
        },
        Tier::Intraday => Bounds {
            limit: 100,
            max_limit: 2000,
            max_hours: 168,
        },
    };
    let (bars, interval) = bars(store, &symbol, params, tier, take, bounds, now).await?;
    let what = match &interval {
        Some(i) => format!("intraday {i}"),
        None => "historical".into(),
    };
    let bars = taken(bars, take, &what, &symbol)?;
    let mut meta = meta(&symbol);
    if let Some(interval) = &interval {
        meta.insert("interval".into(), interval.as_str().into());
    }
    if let Take::Last(n) = take {
        meta.insert("requested_count".into(), n.into());
    }
    empty_message(
        &mut meta,
        bars.len(),
        format!("No {what} data found for {symbol} with the specified filters"),
    );
    let daily = tier == Tier::Historical;
    let rows = bars.iter().map(|b| bar_row(b, daily)).collect();
    reply(params, meta, rows, matches!(take, Take::Latest))
}

/// The flat keys a request asks for: `indicators` (repeatable, or comma-separated), else
/// `default`. A name that is no indicator key is refused.
fn requested_keys(params: &Params, default: &[&str]) -> Result<Vec<String>, ApiError> {
    let mut keys: Vec<String> = Vec::new();
    for value in params.get_all("indicators") {
        for key in value.split(',').map(str::trim).filter(|k| !k.is_empty()) {
            if key == "price" {
                continue;
            }
            if key.len() > 64 || !key_shaped(key) {
                let mut known: Vec<&str> = crate::seed::BAR_KEYS.to_vec();
                known.extend(TICK_KEYS);
                return Err(ApiError::bad(
                    "bad_indicator",
                    format!(
                        "Invalid indicator: {key}. {}",
                        crate::config::de::suggest(key, &known)
                            .unwrap_or_else(|| format!("Valid indicators: {}", known.join(", ")))
                    ),
                ));
            }
            if !keys.iter().any(|k| k == key) {
                keys.push(key.to_owned());
            }
        }
    }
    if keys.is_empty() {
        keys = default.iter().map(|k| (*k).to_owned()).collect();
    }
    if keys.len() > 64 {
        return Err(ApiError::bad(
            "bad_indicator",
            "indicators: at most 64 keys per request",
        ));
    }
    Ok(keys)
}

/// Flat values by row time.
fn by_time(rows: &[IndicatorRow]) -> FxHashMap<i64, FxHashMap<String, f64>> {
    let mut out: FxHashMap<i64, FxHashMap<String, f64>> = FxHashMap::default();
    for row in rows {
        let values = out.entry(row.ts).or_default();
        flat_keys(row, |key, value| {
            values.insert(key.to_owned(), value);
        });
    }
    out
}

fn analytics_row(
    symbol: &Symbol,
    ts: i64,
    price: Option<f64>,
    keys: &[String],
    values: &FxHashMap<String, f64>,
    session: Option<i64>,
) -> Row {
    let mut row: Row = Vec::with_capacity(keys.len() + 5);
    row.push(("symbol".into(), Field::Text(symbol.as_str().into())));
    row.push(("timestamp".into(), Field::Spaced(ts)));
    row.push(("price".into(), price.map_or(Field::Null, Field::Number)));
    for key in keys {
        let value = values.get(key).copied().filter(|v| v.is_finite());
        row.push((
            Cow::Owned(key.clone()),
            value.map_or(Field::Null, Field::Number),
        ));
    }
    presentation(&mut row, ts, session);
    row
}

fn analytics_meta(
    symbol: &Symbol,
    interval: Option<&str>,
    keys: &[String],
) -> serde_json::Map<String, serde_json::Value> {
    let mut m = meta(symbol);
    if let Some(interval) = interval {
        m.insert("interval".into(), interval.into());
    }
    let mut listed: Vec<&str> = keys.iter().map(String::as_str).collect();
    listed.push("price");
    m.insert("indicators".into(), listed.into());
    m
}

/// Indicator rows fetched per bar at most (the rows of every indicator of one bar).
const ROWS_PER_BAR: usize = 64;

/// `GET /api/v2/intraday/analytics/{symbol}` (+ `/last/{count}`) and
/// `GET /api/v2/historical/analytics/{symbol}` (+ `/last/{count}`): one wide row per bar,
/// `price` its close, the requested keys flat (null where an indicator has no value yet).
pub async fn bar_analytics(
    store: &Store,
    symbol: Symbol,
    params: &Params,
    tier: Tier,
    take: Take,
    now: i64,
) -> Result<Reply, ApiError> {
    let (default, bounds): (&[&str], _) = match tier {
        Tier::Historical => (
            &["rsi_14", "macd", "sma_20", "sma_50"],
            Bounds {
                limit: 252,
                max_limit: 5000,
                max_hours: 0,
            },
        ),
        Tier::Intraday => (
            &["rsi_14", "macd", "bb_upper", "bb_lower"],
            Bounds {
                limit: 100,
                max_limit: 1000,
                max_hours: 72,
            },
        ),
    };
    let keys = requested_keys(params, default)?;
    let (bars, interval) = bars(store, &symbol, params, tier, take, bounds, now).await?;
    let mut rows = Vec::new();
    if let (Some(newest), Some(oldest)) = (bars.first(), bars.last()) {
        let indicators = store
            .indicators(&IndicatorQuery {
                symbol: symbol.clone(),
                interval: newest.interval,
                indicator: None,
                start: Some(oldest.start),
                end: Some(newest.start + 1),
                limit: (bars.len() * ROWS_PER_BAR).min(200_000),
            })
            .await
            .map_err(store_error)?;
        let values = by_time(&indicators);
        let daily = tier == Tier::Historical;
        for bar in &bars {
            // A bar before any indicator has a value has no analytics row.
            if let Some(values) = values.get(&bar.start) {
                rows.push(analytics_row(
                    &symbol,
                    bar.start,
                    Some(bar.close),
                    &keys,
                    values,
                    daily.then(|| session_day(bar)),
                ));
            }
        }
    }
    let what = match &interval {
        Some(i) => format!("intraday {i} analytics"),
        None => "historical analytics".into(),
    };
    let rows = taken(rows, take, &what, &symbol)?;
    let mut meta = analytics_meta(&symbol, interval.as_deref(), &keys);
    if let Take::Last(n) = take {
        meta.insert("requested_count".into(), n.into());
    }
    empty_message(
        &mut meta,
        rows.len(),
        format!("No {what} found for {symbol}"),
    );
    reply(params, meta, rows, false)
}

/// `GET /api/v2/realtime/analytics/{symbol}`: one wide row per tick-indicator window,
/// newest first, `price` the last tick of the window; default the last 30 minutes.
pub async fn realtime_analytics(
    store: &Store,
    symbol: Symbol,
    params: &Params,
    now: i64,
) -> Result<Reply, ApiError> {
    let keys = requested_keys(params, TICK_KEYS)?;
    let limit = number(params, "limit", 1000)?.unwrap_or(100);
    let dated = ["date", "start_time", "end_time"]
        .iter()
        .any(|p| params.get(p).is_some());
    let recent = number(params, "last_minutes", 180)?.unwrap_or(30) as i64 * 60_000;
    let (start, end) = if dated {
        window(params, None, now)?
    } else {
        (Some(now - recent), None)
    };
    let mut rows = Vec::new();
    if let Some(interval) = store
        .realtime_interval(&symbol)
        .await
        .map_err(store_error)?
    {
        let indicators = store
            .indicators(&IndicatorQuery {
                symbol: symbol.clone(),
                interval,
                indicator: None,
                start,
                end,
                limit: (limit * ROWS_PER_BAR).min(200_000),
            })
            .await
            .map_err(store_error)?;
        let values = by_time(&indicators);
        let mut times: Vec<i64> = values.keys().copied().collect();
        times.sort_unstable_by(|a, b| b.cmp(a));
        times.truncate(limit);
        let ends: Vec<i64> = times.iter().map(|t| t + interval.millis()).collect();
        let prices = store
            .prices_before(&symbol, ends)
            .await
            .map_err(store_error)?;
        for (ts, price) in times.iter().zip(prices) {
            rows.push(analytics_row(&symbol, *ts, price, &keys, &values[ts], None));
        }
    }
    let mut meta = analytics_meta(&symbol, None, &keys);
    empty_message(
        &mut meta,
        rows.len(),
        format!("No real-time analytics found for {symbol}"),
    );
    reply(params, meta, rows, false)
}

/// `GET /api/v2/realtime/symbols`: every symbol with its tick count and span.
pub async fn symbols(store: &Store) -> Result<Reply, ApiError> {
    let spans = store.symbols(true).await.map_err(store_error)?;
    let mut out = Vec::with_capacity(64 + spans.len() * 200);
    out.extend_from_slice(b"{\"count\":");
    out.extend_from_slice(itoa::Buffer::new().format(spans.len()).as_bytes());
    out.extend_from_slice(b",\"symbols\":[");
    for (i, s) in spans.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let row: Row = vec![
            ("symbol".into(), Field::Text(s.symbol.clone())),
            (
                "tick_count".into(),
                Field::Number(s.ticks.unwrap_or_default() as f64),
            ),
            ("first_seen".into(), Field::Spaced(s.first_ts)),
            ("last_seen".into(), Field::Spaced(s.last_ts)),
            ("first_seen_est".into(), Field::Eastern(s.first_ts)),
            ("last_seen_est".into(), Field::Eastern(s.last_ts)),
        ];
        write_row(&mut out, &row);
    }
    out.extend_from_slice(b"],\"timezone_note\":");
    write_json_str(
        &mut out,
        "All timestamps shown in America/New_York timezone",
    );
    out.push(b'}');
    Ok(Reply::json(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(query: &str) -> Params {
        let accepted = [
            "last_minutes",
            "date",
            "start_time",
            "end_time",
            "start_date",
            "end_date",
            "last_days",
        ];
        Params::parse(Some(query), &accepted).unwrap()
    }

    const NOW: i64 = 1_704_224_000_000; // 2024-01-02T19:33:20Z, 14:33 in New York

    #[test]
    fn reads_new_york_wall_clock_filters() {
        let w = |q: &str| window(&params(q), Some(("last_minutes", 60_000, 1440)), NOW);
        assert_eq!(w("last_minutes=5").unwrap(), (Some(NOW - 300_000), None));
        // 2024-01-02 in New York is 05:00Z to 05:00Z the next day.
        assert_eq!(
            w("date=2024-01-02").unwrap(),
            (Some(1_704_171_600_000), Some(1_704_258_000_000))
        );
        // 09:30 to 16:00 EST, 16:00:00 included.
        assert_eq!(
            w("date=2024-01-02&start_time=09:30&end_time=16:00:00").unwrap(),
            (Some(1_704_205_800_000), Some(1_704_229_200_001))
        );
        // Summer time: 09:30 EDT is 13:30Z.
        assert_eq!(
            w("date=2024-07-01&start_time=09:30").unwrap().0,
            Some(1_719_840_600_000)
        );
        assert_eq!(
            w("start_date=2024-01-02&end_date=2024-01-02").unwrap(),
            (Some(1_704_171_600_000), Some(1_704_258_000_000))
        );
        // Times alone are today's.
        assert_eq!(w("start_time=09:30").unwrap().0, Some(1_704_205_800_000));
        for bad in [
            "date=2024-13-01",
            "start_time=9:30",
            "end_time=24:00",
            "last_minutes=0",
            "last_minutes=1441",
            "date=2024-01-02&start_time=10:00&end_time=09:00",
        ] {
            assert!(w(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn counts_trading_days() {
        // Tuesday 2024-01-02: the last 2 weekdays are Monday and Tuesday.
        let (first, last) = session_dates(&params("last_days=2"), NOW).unwrap();
        assert_eq!((first, last), (Some(19_723), None));
        // 3 weekdays back from a Tuesday reach Friday.
        assert_eq!(
            session_dates(&params("last_days=3"), NOW).unwrap().0,
            Some(19_720)
        );
    }
}
