//! The record shapes on the wire: one JSON object per record (files, Kafka values,
//! WebSocket frames) and CSV rows, written and read here and nowhere else.

use std::borrow::Cow;

use marketflow_operators::time::{
    parse_timestamp, parse_timestamp_with, write_timestamp, TimeError,
};
use marketflow_operators::{Bar, Fixed, Interval, Symbol, Tick};
use serde::Deserialize;

use marketflow_operators::{IndicatorRow, Record};

/// A record that could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CodecError {
    #[error("not valid JSON: {0}")]
    Json(String),
    #[error("record type `{0}` where `{1}` was expected")]
    WrongType(String, &'static str),
    #[error("missing field `{0}`")]
    Missing(&'static str),
    #[error("{found} fields where the header has {expected}")]
    FieldCount { expected: usize, found: usize },
    #[error("field `{field}`: {message}")]
    Field {
        field: &'static str,
        message: String,
    },
    #[error(transparent)]
    Time(#[from] TimeError),
    #[error("{0}")]
    Symbol(String),
}

fn field(field: &'static str, message: impl Into<String>) -> CodecError {
    CodecError::Field {
        field,
        message: message.into(),
    }
}

/// Appends a JSON number: integers without a fraction, others in shortest round-trip
/// form; NaN and infinities (never valid JSON) as `null`.
pub fn write_f64(out: &mut Vec<u8>, value: f64) {
    if !value.is_finite() {
        out.extend_from_slice(b"null");
    } else if value == value.trunc() && value.abs() < 1e15 {
        out.extend_from_slice(itoa::Buffer::new().format(value as i64).as_bytes());
    } else {
        out.extend_from_slice(ryu::Buffer::new().format_finite(value).as_bytes());
    }
}

fn write_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

fn write_quoted_timestamp(out: &mut Vec<u8>, ms: i64) {
    out.push(b'"');
    write_timestamp(out, ms);
    out.push(b'"');
}

/// Appends `text` as a JSON string.
pub fn write_json_str(out: &mut Vec<u8>, text: &str) {
    if text.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    } else {
        let quoted = serde_json::to_string(text).unwrap_or_else(|_| "\"\"".to_owned());
        out.extend_from_slice(quoted.as_bytes());
    }
}

/// Appends the JSON of a tick (no newline).
pub fn write_tick_json(out: &mut Vec<u8>, tick: &Tick) {
    out.extend_from_slice(b"{\"type\":\"tick\",\"symbol\":");
    write_json_str(out, tick.symbol.as_str());
    out.extend_from_slice(b",\"ts\":");
    write_quoted_timestamp(out, tick.ts);
    out.extend_from_slice(b",\"price\":");
    write_f64(out, tick.price);
    out.extend_from_slice(b",\"volume\":");
    write_f64(out, tick.volume);
    out.push(b'}');
}

/// Appends the JSON of a bar (no newline).
pub fn write_bar_json(out: &mut Vec<u8>, bar: &Bar) {
    out.extend_from_slice(b"{\"type\":\"bar\",\"symbol\":");
    write_json_str(out, bar.symbol.as_str());
    out.extend_from_slice(b",\"interval\":\"");
    out.extend_from_slice(bar.interval.to_string().as_bytes());
    out.extend_from_slice(b"\",\"start\":");
    write_quoted_timestamp(out, bar.start);
    out.extend_from_slice(b",\"end\":");
    write_quoted_timestamp(out, bar.end);
    for (name, value) in [
        (&b",\"open\":"[..], bar.open),
        (b",\"high\":", bar.high),
        (b",\"low\":", bar.low),
        (b",\"close\":", bar.close),
    ] {
        out.extend_from_slice(name);
        write_f64(out, value);
    }
    out.extend_from_slice(b",\"volume\":");
    write_f64(out, bar.volume.to_f64());
    out.extend_from_slice(b",\"trades\":");
    write_u64(out, bar.trades);
    out.extend_from_slice(b",\"vwap\":");
    write_f64(out, bar.vwap().unwrap_or(f64::NAN));
    out.extend_from_slice(b",\"revision\":");
    write_u64(out, u64::from(bar.revision));
    out.push(b'}');
}

/// Appends the JSON of an indicator row (no newline).
pub fn write_indicator_json(out: &mut Vec<u8>, row: &IndicatorRow) {
    out.extend_from_slice(b"{\"type\":\"indicator\",\"symbol\":");
    write_json_str(out, row.symbol.as_str());
    out.extend_from_slice(b",\"interval\":\"");
    out.extend_from_slice(row.interval.to_string().as_bytes());
    out.extend_from_slice(b"\",\"ts\":");
    write_quoted_timestamp(out, row.ts);
    out.extend_from_slice(b",\"id\":");
    write_json_str(out, &row.id);
    out.extend_from_slice(b",\"indicator\":");
    write_json_str(out, row.kind.name());
    out.extend_from_slice(b",\"values\":");
    write_indicator_values(out, row);
    if row.revision > 0 {
        out.extend_from_slice(b",\"revision\":");
        write_u64(out, u64::from(row.revision));
    }
    out.push(b'}');
}

/// Appends the `values` object of an indicator row: `{"macd":0.12,"signal":0.09,"hist":0.03}`.
pub fn write_indicator_values(out: &mut Vec<u8>, row: &IndicatorRow) {
    out.push(b'{');
    for (i, (name, value)) in row.values().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_json_str(out, name);
        out.push(b':');
        write_f64(out, value);
    }
    out.push(b'}');
}

/// Appends the JSON of any record (no newline).
pub fn write_record_json(out: &mut Vec<u8>, record: &Record) {
    match record {
        Record::Tick(t) => write_tick_json(out, t),
        Record::Bar(b) => write_bar_json(out, b),
        Record::Indicator(i) => write_indicator_json(out, i),
    }
}

/// The CSV header for records of one kind.
pub fn csv_header(kind: RecordKind) -> &'static str {
    match kind {
        RecordKind::Tick => "ts,symbol,price,volume",
        RecordKind::Bar => {
            "symbol,interval,start,end,open,high,low,close,volume,trades,vwap,revision"
        }
        RecordKind::Indicator => "symbol,interval,ts,id,indicator,output,value",
    }
}

/// Appends a record as CSV line(s), each ending in a newline; an indicator row gives one
/// line per output (long format).
pub fn write_record_csv(out: &mut Vec<u8>, record: &Record) {
    match record {
        Record::Tick(t) => {
            write_timestamp(out, t.ts);
            out.push(b',');
            out.extend_from_slice(t.symbol.as_str().as_bytes());
            out.push(b',');
            write_f64(out, t.price);
            out.push(b',');
            write_f64(out, t.volume);
            out.push(b'\n');
        }
        Record::Bar(b) => {
            out.extend_from_slice(b.symbol.as_str().as_bytes());
            out.push(b',');
            out.extend_from_slice(b.interval.to_string().as_bytes());
            out.push(b',');
            write_timestamp(out, b.start);
            out.push(b',');
            write_timestamp(out, b.end);
            for value in [b.open, b.high, b.low, b.close, b.volume.to_f64()] {
                out.push(b',');
                write_f64(out, value);
            }
            out.push(b',');
            write_u64(out, b.trades);
            out.push(b',');
            if let Some(vwap) = b.vwap() {
                write_f64(out, vwap);
            }
            out.push(b',');
            write_u64(out, u64::from(b.revision));
            out.push(b'\n');
        }
        Record::Indicator(row) => {
            for (name, value) in row.values() {
                out.extend_from_slice(row.symbol.as_str().as_bytes());
                out.push(b',');
                out.extend_from_slice(row.interval.to_string().as_bytes());
                out.push(b',');
                write_timestamp(out, row.ts);
                out.push(b',');
                out.extend_from_slice(row.id.as_bytes());
                out.push(b',');
                out.extend_from_slice(row.kind.name().as_bytes());
                out.push(b',');
                out.extend_from_slice(name.as_bytes());
                out.push(b',');
                write_f64(out, value);
                out.push(b'\n');
            }
        }
    }
}

/// A file's record encoding.
#[derive(serde::Deserialize, schemars::JsonSchema, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Csv,
    Jsonl,
}

impl Format {
    /// The format implied by a file name, if any.
    pub fn from_path(path: &std::path::Path) -> Option<Format> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "csv" => Some(Format::Csv),
            "jsonl" | "ndjson" | "json" => Some(Format::Jsonl),
            _ => None,
        }
    }
}

/// Which of the three record shapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecordKind {
    Tick,
    Bar,
    Indicator,
}

/// How naive timestamps (no UTC offset) are read: rejected, or placed in a time zone.
#[derive(Clone, Copy, Debug, Default)]
pub enum NaiveTime {
    #[default]
    Reject,
    In(chrono_tz::Tz),
}

impl NaiveTime {
    /// Reads a timestamp: RFC 3339, epoch milliseconds, or (with a zone) naive local time.
    pub fn parse(self, text: &str) -> Result<i64, TimeError> {
        match self {
            NaiveTime::Reject => parse_timestamp(text),
            NaiveTime::In(tz) => parse_timestamp_with(text, |naive_ms| {
                let session = marketflow_operators::Session::all_day(tz);
                let days = naive_ms.div_euclid(marketflow_operators::time::DAY);
                let minute = (naive_ms.rem_euclid(marketflow_operators::time::DAY) / 60_000) as u32;
                let rest = naive_ms.rem_euclid(60_000);
                Some(session.local_instant(days, minute) + rest)
            }),
        }
    }
}

/// A number given as a JSON number or a numeric string (REST feeds send strings).
#[derive(Deserialize)]
#[serde(untagged)]
enum Number<'a> {
    Float(f64),
    #[serde(borrow)]
    Text(Cow<'a, str>),
}

impl Number<'_> {
    fn get(&self, name: &'static str) -> Result<f64, CodecError> {
        match self {
            Number::Float(v) => Ok(*v),
            Number::Text(t) => t
                .trim()
                .parse()
                .map_err(|_| field(name, format!("`{t}` is not a number"))),
        }
    }
}

/// A timestamp given as RFC 3339 text or as epoch milliseconds.
#[derive(Deserialize)]
#[serde(untagged)]
enum Stamp<'a> {
    Millis(i64),
    #[serde(borrow)]
    Text(Cow<'a, str>),
}

impl Stamp<'_> {
    fn get(&self, naive: NaiveTime) -> Result<i64, CodecError> {
        match self {
            Stamp::Millis(ms) if *ms >= 0 => Ok(*ms),
            Stamp::Millis(ms) => Err(TimeError::OutOfRange(ms.to_string()).into()),
            Stamp::Text(t) => Ok(naive.parse(t)?),
        }
    }
}

#[derive(Deserialize)]
struct TickJson<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    symbol: Option<Cow<'a, str>>,
    #[serde(borrow, alias = "timestamp")]
    ts: Option<Stamp<'a>>,
    #[serde(borrow)]
    price: Option<Number<'a>>,
    #[serde(borrow)]
    volume: Option<Number<'a>>,
}

/// Parts of a tick read from a file; the source stamps `seq` and `wm`.
pub fn parse_tick_json(line: &[u8], naive: NaiveTime) -> Result<Tick, CodecError> {
    let raw: TickJson<'_> =
        serde_json::from_slice(line).map_err(|e| CodecError::Json(e.to_string()))?;
    if let Some(kind) = raw.kind.as_deref().filter(|k| *k != "tick") {
        return Err(CodecError::WrongType(kind.to_owned(), "tick"));
    }
    let symbol = raw.symbol.ok_or(CodecError::Missing("symbol"))?;
    let ts = raw.ts.ok_or(CodecError::Missing("ts"))?.get(naive)?;
    let price = raw
        .price
        .ok_or(CodecError::Missing("price"))?
        .get("price")?;
    let volume = match raw.volume {
        Some(v) => v.get("volume")?,
        None => 0.0,
    };
    make_tick(&symbol, ts, price, volume)
}

/// Checks the values of a tick and builds it.
pub fn make_tick(symbol: &str, ts: i64, price: f64, volume: f64) -> Result<Tick, CodecError> {
    let symbol = Symbol::new(symbol).map_err(|e| CodecError::Symbol(e.to_string()))?;
    if !price.is_finite() || price <= 0.0 {
        return Err(field("price", format!("{price} is not a positive number")));
    }
    if !volume.is_finite() || volume < 0.0 {
        return Err(field(
            "volume",
            format!("{volume} is not a non-negative number"),
        ));
    }
    Ok(Tick {
        symbol,
        ts,
        price,
        volume,
        seq: 0,
        wm: i64::MIN,
    })
}

#[derive(Deserialize)]
struct BarJson<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    symbol: Option<Cow<'a, str>>,
    #[serde(borrow)]
    interval: Option<Cow<'a, str>>,
    #[serde(borrow, alias = "ts", alias = "timestamp")]
    start: Option<Stamp<'a>>,
    #[serde(borrow)]
    open: Option<Number<'a>>,
    #[serde(borrow)]
    high: Option<Number<'a>>,
    #[serde(borrow)]
    low: Option<Number<'a>>,
    #[serde(borrow)]
    close: Option<Number<'a>>,
    #[serde(borrow)]
    volume: Option<Number<'a>>,
    trades: Option<u64>,
    #[serde(borrow)]
    vwap: Option<Number<'a>>,
    /// Written by marketflow: the end of a session bar is not `start + interval`.
    #[serde(borrow)]
    end: Option<Stamp<'a>>,
    revision: Option<u32>,
}

/// Prices and sizes of a bar as read, before checks.
pub struct BarFields<'a> {
    pub symbol: &'a str,
    pub interval: Interval,
    pub start: i64,
    pub ohlc: [f64; 4],
    pub volume: f64,
    pub trades: Option<u64>,
    pub vwap: Option<f64>,
}

/// Reads a bar record; `interval` is used when the record has none.
pub fn parse_bar_json(
    line: &[u8],
    interval: Option<Interval>,
    naive: NaiveTime,
) -> Result<Bar, CodecError> {
    let raw: BarJson<'_> =
        serde_json::from_slice(line).map_err(|e| CodecError::Json(e.to_string()))?;
    if let Some(kind) = raw.kind.as_deref().filter(|k| *k != "bar") {
        return Err(CodecError::WrongType(kind.to_owned(), "bar"));
    }
    let interval = match raw.interval.as_deref() {
        Some(text) => Interval::parse(text).map_err(|e| field("interval", e.to_string()))?,
        None => interval.ok_or(CodecError::Missing("interval"))?,
    };
    let price =
        |n: Option<Number<'_>>, name: &'static str| n.ok_or(CodecError::Missing(name))?.get(name);
    let symbol = raw.symbol.ok_or(CodecError::Missing("symbol"))?;
    let end = raw.end.map(|e| e.get(naive)).transpose()?;
    let mut bar = make_bar(BarFields {
        symbol: &symbol,
        interval,
        start: raw.start.ok_or(CodecError::Missing("start"))?.get(naive)?,
        ohlc: [
            price(raw.open, "open")?,
            price(raw.high, "high")?,
            price(raw.low, "low")?,
            price(raw.close, "close")?,
        ],
        volume: match raw.volume {
            Some(v) => v.get("volume")?,
            None => 0.0,
        },
        trades: raw.trades,
        vwap: raw.vwap.map(|v| v.get("vwap")).transpose()?,
    })?;
    if let Some(end) = end {
        if end <= bar.start {
            return Err(field("end", "the end of a bar must come after its start"));
        }
        bar.end = end;
    }
    bar.revision = raw.revision.unwrap_or(0);
    Ok(bar)
}

#[derive(Deserialize)]
struct IndicatorJson<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    symbol: Option<Cow<'a, str>>,
    #[serde(borrow)]
    interval: Option<Cow<'a, str>>,
    #[serde(borrow)]
    ts: Option<Stamp<'a>>,
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    indicator: Option<Cow<'a, str>>,
    values: Option<rustc_hash::FxHashMap<String, Option<f64>>>,
    revision: Option<u32>,
}

/// Reads an indicator record as [`write_indicator_json`] writes it.
pub fn parse_indicator_json(line: &[u8], naive: NaiveTime) -> Result<IndicatorRow, CodecError> {
    let raw: IndicatorJson<'_> =
        serde_json::from_slice(line).map_err(|e| CodecError::Json(e.to_string()))?;
    if let Some(kind) = raw.kind.as_deref().filter(|k| *k != "indicator") {
        return Err(CodecError::WrongType(kind.to_owned(), "indicator"));
    }
    let interval = raw.interval.ok_or(CodecError::Missing("interval"))?;
    let interval = Interval::parse(&interval).map_err(|e| field("interval", e.to_string()))?;
    let kind = raw.indicator.ok_or(CodecError::Missing("indicator"))?;
    let values = raw.values.ok_or(CodecError::Missing("values"))?;
    indicator_row(
        &raw.symbol.ok_or(CodecError::Missing("symbol"))?,
        interval,
        raw.ts.ok_or(CodecError::Missing("ts"))?.get(naive)?,
        &raw.id.ok_or(CodecError::Missing("id"))?,
        &kind,
        &values,
        raw.revision.unwrap_or(0),
    )
}

/// Builds an indicator row from its parts; outputs missing from `values` (or null) are NaN.
pub fn indicator_row(
    symbol: &str,
    interval: Interval,
    ts: i64,
    id: &str,
    kind: &str,
    values: &rustc_hash::FxHashMap<String, Option<f64>>,
    revision: u32,
) -> Result<IndicatorRow, CodecError> {
    use marketflow_operators::indicators::IndicatorKind;
    let kind = IndicatorKind::ALL
        .into_iter()
        .find(|k| k.name() == kind)
        .ok_or_else(|| field("indicator", format!("unknown indicator `{kind}`")))?;
    let mut outputs = [f64::NAN; marketflow_operators::record::MAX_OUTPUTS];
    for (slot, name) in outputs.iter_mut().zip(kind.outputs()) {
        *slot = values.get(*name).copied().flatten().unwrap_or(f64::NAN);
    }
    Ok(IndicatorRow {
        symbol: Symbol::new(symbol).map_err(|e| CodecError::Symbol(e.to_string()))?,
        interval,
        ts,
        id: id.into(),
        kind,
        outputs,
        revision,
    })
}

/// Reads any record by its `type` field (`tick`, `bar` or `indicator`).
pub fn parse_record_json(line: &[u8], naive: NaiveTime) -> Result<Record, CodecError> {
    #[derive(Deserialize)]
    struct Kind<'a> {
        #[serde(rename = "type", borrow)]
        kind: Option<Cow<'a, str>>,
    }
    let kind: Kind<'_> =
        serde_json::from_slice(line).map_err(|e| CodecError::Json(e.to_string()))?;
    match kind.kind.as_deref() {
        Some("tick") => parse_tick_json(line, naive).map(Record::Tick),
        Some("bar") => parse_bar_json(line, None, naive).map(Record::Bar),
        Some("indicator") => parse_indicator_json(line, naive).map(Record::Indicator),
        Some(other) => Err(CodecError::WrongType(
            other.to_owned(),
            "tick, bar or indicator",
        )),
        None => Err(CodecError::Missing("type")),
    }
}

/// Checks the values of a bar and builds it.
pub fn make_bar(f: BarFields<'_>) -> Result<Bar, CodecError> {
    let symbol = Symbol::new(f.symbol).map_err(|e| CodecError::Symbol(e.to_string()))?;
    let [open, high, low, close] = f.ohlc;
    if f.ohlc.iter().any(|p| !p.is_finite() || *p <= 0.0) {
        return Err(field(
            "open/high/low/close",
            "prices must be positive numbers",
        ));
    }
    if high < open.max(close).max(low) || low > open.min(close) {
        return Err(field(
            "high/low",
            format!("high {high} and low {low} do not bound open {open} and close {close}"),
        ));
    }
    if !f.volume.is_finite() || f.volume < 0.0 {
        return Err(field(
            "volume",
            format!("{} is not a non-negative number", f.volume),
        ));
    }
    let vwap = f
        .vwap
        .filter(|v| v.is_finite())
        .unwrap_or((high + low + close) / 3.0);
    Ok(Bar {
        symbol,
        interval: f.interval,
        start: f.start,
        end: f.start + f.interval.millis(),
        open,
        high,
        low,
        close,
        volume: Fixed::from_f64(f.volume),
        notional: Fixed::from_f64(vwap * f.volume),
        trades: f.trades.unwrap_or(1),
        revision: 0,
        seq: 0,
        wm: i64::MIN,
        source: Default::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_json_round_trip() {
        let line = br#"{"type":"tick","symbol":"AAPL","ts":"2024-01-02T14:30:00.123Z","price":185.64,"volume":100}"#;
        let tick = parse_tick_json(line, NaiveTime::Reject).unwrap();
        let mut out = Vec::new();
        write_tick_json(&mut out, &tick);
        assert_eq!(out, line);
    }

    #[test]
    fn tick_json_accepts_strings_and_millis() {
        let tick = parse_tick_json(
            br#"{"symbol":"EUR/USD","ts":1704205800123,"price":"1.0945"}"#,
            NaiveTime::Reject,
        )
        .unwrap();
        assert_eq!(
            (tick.ts, tick.price, tick.volume),
            (1_704_205_800_123, 1.0945, 0.0)
        );
    }

    #[test]
    fn tick_json_errors_are_specific() {
        let cases: [(&[u8], &str); 5] = [
            (br#"{"symbol":"A","price":1}"#, "missing field `ts`"),
            (
                br#"{"symbol":"A","ts":"x","price":1}"#,
                "invalid timestamp `x`",
            ),
            (br#"{"symbol":"A","ts":1,"price":-1}"#, "field `price`"),
            (
                br#"{"type":"bar","symbol":"A","ts":1,"price":1}"#,
                "record type `bar`",
            ),
            (b"{oops", "not valid JSON"),
        ];
        for (line, expected) in cases {
            let err = parse_tick_json(line, NaiveTime::Reject)
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{err}");
        }
    }

    #[test]
    fn naive_timestamps_in_a_zone() {
        let ny = NaiveTime::In(chrono_tz::America::New_York);
        assert_eq!(
            ny.parse("2024-01-02 09:30:00"),
            parse_timestamp("2024-01-02T14:30:00Z")
        );
        assert_eq!(
            ny.parse("2024-07-02 09:30:00.250"),
            parse_timestamp("2024-07-02T13:30:00.250Z")
        );
        assert!(NaiveTime::Reject.parse("2024-01-02 09:30:00").is_err());
    }

    #[test]
    fn numbers() {
        let mut out = Vec::new();
        for v in [100.0, 185.64, 0.1, -0.0, 1e20, f64::NAN] {
            write_f64(&mut out, v);
            out.push(b' ');
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "100 185.64 0.1 0 1e20 null "
        );
    }

    #[test]
    fn any_record_round_trips_through_its_json() {
        for line in [
            &br#"{"type":"tick","symbol":"AAPL","ts":"2024-01-02T14:30:00.123Z","price":185.64,"volume":100}"#[..],
            br#"{"type":"bar","symbol":"AAPL","interval":"1d","start":"2024-01-02T14:30:00Z","end":"2024-01-02T21:00:00Z","open":185.6,"high":185.9,"low":185.5,"close":185.7,"volume":12500,"trades":42,"vwap":185.71,"revision":2}"#,
            br#"{"type":"indicator","symbol":"AAPL","interval":"5m","ts":"2024-01-02T14:30:00Z","id":"macd_12_26_9","indicator":"macd","values":{"macd":0.12,"signal":0.09,"hist":0.03}}"#,
        ] {
            let record = parse_record_json(line, NaiveTime::Reject).unwrap();
            let mut out = Vec::new();
            write_record_json(&mut out, &record);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                String::from_utf8(line.to_vec()).unwrap()
            );
        }
        for (line, expected) in [
            (&br#"{"symbol":"A"}"#[..], "missing field `type`"),
            (br#"{"type":"quote"}"#, "record type `quote`"),
            (
                br#"{"type":"indicator","symbol":"A","interval":"1m","ts":1,"id":"x","indicator":"nope","values":{}}"#,
                "unknown indicator `nope`",
            ),
        ] {
            let err = parse_record_json(line, NaiveTime::Reject).unwrap_err().to_string();
            assert!(err.contains(expected), "{err}");
        }
    }

    #[test]
    fn bar_json_round_trip() {
        let line = br#"{"type":"bar","symbol":"AAPL","interval":"1m","start":"2024-01-02T14:30:00Z","end":"2024-01-02T14:31:00Z","open":185.6,"high":185.9,"low":185.5,"close":185.7,"volume":12500,"trades":42,"vwap":185.71,"revision":0}"#;
        let bar = parse_bar_json(line, None, NaiveTime::Reject).unwrap();
        let mut out = Vec::new();
        write_bar_json(&mut out, &bar);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            String::from_utf8(line.to_vec()).unwrap()
        );
    }
}
