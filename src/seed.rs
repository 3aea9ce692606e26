//! The predecessor's names (`../shared/docs/predecessor.md` §4, §5), for the drop-in API:
//! its flat indicator keys (`rsi_14`, `macd_signal`, `bb_upper`, `momentum_10`...) and its
//! time presentation (`timestamp_utc`, `timestamp_est`).

use chrono::TimeZone;
use marketflow_operators::indicators::IndicatorKind;
use marketflow_operators::time::write_timestamp;
use marketflow_operators::{IndicatorRow, Record};

use crate::codec::{write_f64, write_json_str};

/// The predecessor's presentation time zone (`timestamp_est`, its US/Eastern filters).
pub const EASTERN: chrono_tz::Tz = chrono_tz::America::New_York;

/// The predecessor's bar indicator keys (its intraday and historical analytics).
pub const BAR_KEYS: &[&str] = &[
    "sma_20",
    "sma_50",
    "sma_200",
    "ema_12",
    "ema_26",
    "rsi_14",
    "macd",
    "macd_signal",
    "macd_hist",
    "stoch_k",
    "stoch_d",
    "roc_10",
    "momentum_10",
    "willr_14",
    "bb_upper",
    "bb_middle",
    "bb_lower",
    "bb_bandwidth",
    "bb_percent_b",
    "atr_14",
    "atr_percent_14",
    "stddev_20",
    "keltner_upper",
    "keltner_lower",
    "hist_vol_20",
];

/// The predecessor's tick indicator keys (its real-time analytics), in its order.
pub const TICK_KEYS: &[&str] = &[
    "price_velocity_10",
    "price_velocity_50",
    "tick_ratio",
    "tick_vwap_20",
    "volume_momentum",
    "bb_bandwidth",
    "bb_position",
    "tick_rsi_14",
];

/// The key prefix of a multi-output indicator: the predecessor's short one for its own
/// configuration (`bb` for Bollinger 20/2), else the row's id.
fn prefix(row: &IndicatorRow) -> &str {
    let id = row.id.as_str();
    match (row.kind, id) {
        (IndicatorKind::Macd, "macd_12_26_9") => "macd",
        (IndicatorKind::Bollinger, "bollinger_20_2") => "bb",
        (IndicatorKind::TickBollinger, "tick_bollinger_20_2") => "bb",
        (IndicatorKind::Stochastic, "stochastic_14_3_3") => "stoch",
        (IndicatorKind::Keltner, "keltner_20_14_2" | "keltner_20_14_2_sma") => "keltner",
        _ => id,
    }
}

/// The predecessor's name for a single-output id, where it has another one.
fn alias(row: &IndicatorRow) -> Option<String> {
    let id = row.id.as_str();
    match row.kind {
        IndicatorKind::Mom => id.strip_prefix("mom_").map(|n| format!("momentum_{n}")),
        IndicatorKind::Natr => id.strip_prefix("natr_").map(|n| format!("atr_percent_{n}")),
        IndicatorKind::TickRatio if id == "tick_ratio_19" => Some("tick_ratio".into()),
        IndicatorKind::VolumeMomentum if id == "volume_momentum_10" => {
            Some("volume_momentum".into())
        }
        _ => None,
    }
}

/// Calls `emit` with each flat key of a row and its value: a single-output indicator under
/// its id (and the predecessor's name for it: `momentum_10` for `mom_10`), a multi-output
/// one as `PREFIX_OUTPUT` (`macd`, `macd_signal`, `bb_upper`, `stoch_k`, `aroon_14_up`).
pub fn flat_keys(row: &IndicatorRow, mut emit: impl FnMut(&str, f64)) {
    let outputs = row.kind.outputs();
    if outputs.len() == 1 {
        emit(row.id.as_str(), row.outputs[0]);
        if let Some(name) = alias(row) {
            emit(&name, row.outputs[0]);
        }
        return;
    }
    let prefix = prefix(row);
    let mut key = String::with_capacity(prefix.len() + 12);
    for (output, value) in row.values() {
        key.clear();
        key.push_str(prefix);
        if output != row.kind.name() {
            key.push('_');
            key.push_str(output);
        }
        emit(&key, value);
    }
}

/// Whether `key` could be a flat key of some indicator (a mistake is refused, not ignored).
pub fn key_shaped(key: &str) -> bool {
    const PREFIXES: &[&str] = &["bb_", "stoch_", "momentum_", "atr_percent_"];
    BAR_KEYS.contains(&key)
        || TICK_KEYS.contains(&key)
        || PREFIXES.iter().any(|p| key.starts_with(p))
        || IndicatorKind::ALL.iter().any(|k| {
            key == k.name()
                || key
                    .strip_prefix(k.name())
                    .is_some_and(|rest| rest.starts_with('_'))
        })
}

/// `2024-01-02T14:30:00+00:00`, with `.123000` when there are milliseconds: Python's
/// `isoformat()` of the time (the predecessor's `timestamp_utc`).
pub fn write_utc(out: &mut Vec<u8>, ms: i64) {
    write_python(out, ms, b'T');
}

/// `2024-01-02 14:30:00+00:00`: Python's `str()` of the time (the predecessor's
/// `timestamp`), exact to the millisecond.
pub fn write_utc_spaced(out: &mut Vec<u8>, ms: i64) {
    write_python(out, ms, b' ');
}

fn write_python(out: &mut Vec<u8>, ms: i64, separator: u8) {
    let at = out.len();
    write_timestamp(out, ms);
    out[at + 10] = separator;
    out.pop(); // `Z`
    if ms.rem_euclid(1000) != 0 {
        out.extend_from_slice(b"000"); // microseconds, as Python writes them
    }
    out.extend_from_slice(b"+00:00");
}

/// `2024-01-02 09:30:00 EST`: the predecessor's `timestamp_est`.
pub fn write_eastern(out: &mut Vec<u8>, ms: i64) {
    use std::io::Write;
    if let chrono::LocalResult::Single(t) = EASTERN.timestamp_millis_opt(ms) {
        let _ = write!(out, "{}", t.format("%Y-%m-%d %H:%M:%S %Z"));
    }
}

/// Appends a record as the predecessor's topics carried it (predecessor.md §2): a tick as
/// a `market.prices.raw` message, a bar as `market.prices.ohlcv`, indicator values as
/// `analytics.technical` (bars) or `analytics.realtime` (ticks) with flat keys. Times are
/// exact: ISO 8601 UTC for ticks and tick analytics, epoch seconds for bars as before.
pub fn write_message(out: &mut Vec<u8>, record: &Record) {
    let seconds = |out: &mut Vec<u8>, ms: i64| write_f64(out, ms as f64 / 1000.0);
    match record {
        Record::Tick(t) => {
            out.extend_from_slice(b"{\"symbol\":");
            write_json_str(out, t.symbol.as_str());
            out.extend_from_slice(b",\"price\":");
            write_f64(out, t.price);
            out.extend_from_slice(b",\"timestamp\":\"");
            write_utc(out, t.ts);
            out.extend_from_slice(b"\",\"volume\":");
            write_f64(out, t.volume);
            out.extend_from_slice(b",\"source\":\"marketflow\"}");
        }
        Record::Bar(b) => {
            let minutes = b.interval.millis() as f64 / 60_000.0;
            out.extend_from_slice(b"{\"symbol\":");
            write_json_str(out, b.symbol.as_str());
            out.extend_from_slice(b",\"interval\":");
            write_f64(out, minutes);
            out.extend_from_slice(b",\"timestamp\":");
            seconds(out, b.start);
            for (name, value) in [
                ("open", b.open),
                ("high", b.high),
                ("low", b.low),
                ("close", b.close),
                ("volume", b.volume.to_f64()),
            ] {
                out.extend_from_slice(b",\"");
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(b"\":");
                write_f64(out, value);
            }
            out.extend_from_slice(b",\"event_type\":\"price.ohlcv\",\"interval_minutes\":");
            write_f64(out, minutes);
            out.extend_from_slice(b",\"bar_start_ts\":");
            seconds(out, b.start);
            out.extend_from_slice(b",\"bar_end_ts\":");
            seconds(out, b.end);
            out.push(b'}');
        }
        Record::Indicator(row) => {
            let ticks = row.interval.millis() < 60_000;
            out.extend_from_slice(if ticks {
                b"{\"event_type\":\"analytics.realtime\",\"version\":\"1.0\",\"symbol\":"
            } else {
                b"{\"event_type\":\"analytics.technical\",\"version\":\"1.0\",\"symbol\":"
            });
            write_json_str(out, row.symbol.as_str());
            if ticks {
                out.extend_from_slice(b",\"timestamp\":\"");
                write_utc(out, row.ts);
                out.push(b'"');
            } else {
                out.extend_from_slice(b",\"interval_minutes\":");
                write_f64(out, row.interval.millis() as f64 / 60_000.0);
                // The bar's end, as the predecessor stamped live analytics.
                out.extend_from_slice(b",\"timestamp\":");
                seconds(out, row.ts + row.interval.millis());
            }
            out.extend_from_slice(b",\"indicator\":");
            write_json_str(out, row.id.as_str());
            out.extend_from_slice(b",\"indicators\":{");
            let mut first = true;
            flat_keys(row, |key, value| {
                if !first {
                    out.push(b',');
                }
                first = false;
                write_json_str(out, key);
                out.push(b':');
                write_f64(out, value);
            });
            out.extend_from_slice(b"}}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use marketflow_operators::record::MAX_OUTPUTS;
    use marketflow_operators::{Interval, Symbol};

    fn row(kind: IndicatorKind, id: &str) -> IndicatorRow {
        let mut outputs = [0.0; MAX_OUTPUTS];
        for (i, o) in outputs.iter_mut().enumerate() {
            *o = i as f64;
        }
        IndicatorRow {
            symbol: Symbol::new("AAPL").unwrap(),
            interval: Interval::parse("5m").unwrap(),
            ts: 0,
            id: id.into(),
            kind,
            outputs,
            revision: 0,
        }
    }

    fn keys(row: &IndicatorRow) -> Vec<String> {
        let mut keys = Vec::new();
        flat_keys(row, |k, _| keys.push(k.to_owned()));
        keys
    }

    #[test]
    fn names_the_predecessors_keys() {
        assert_eq!(
            keys(&row(IndicatorKind::Macd, "macd_12_26_9")),
            ["macd", "macd_signal", "macd_hist"]
        );
        assert_eq!(
            keys(&row(IndicatorKind::Bollinger, "bollinger_20_2")),
            [
                "bb_upper",
                "bb_middle",
                "bb_lower",
                "bb_bandwidth",
                "bb_percent_b"
            ]
        );
        assert_eq!(
            keys(&row(IndicatorKind::Stochastic, "stochastic_14_3_3")),
            ["stoch_k", "stoch_d"]
        );
        assert_eq!(
            keys(&row(IndicatorKind::Mom, "mom_10")),
            ["mom_10", "momentum_10"]
        );
        assert_eq!(
            keys(&row(IndicatorKind::Natr, "natr_14")),
            ["natr_14", "atr_percent_14"]
        );
        assert_eq!(
            keys(&row(IndicatorKind::TickBollinger, "tick_bollinger_20_2")),
            ["bb_bandwidth", "bb_position"]
        );
        assert_eq!(
            keys(&row(IndicatorKind::Macd, "macd_5_35_5")),
            ["macd_5_35_5", "macd_5_35_5_signal", "macd_5_35_5_hist"]
        );
        assert_eq!(
            keys(&row(IndicatorKind::Adx, "adx_14")),
            ["adx_14", "adx_14_plus_di", "adx_14_minus_di"]
        );
        for key in BAR_KEYS.iter().chain(TICK_KEYS) {
            assert!(key_shaped(key), "{key}");
        }
        assert!(!key_shaped("rsi14") && !key_shaped("bogus"));
    }

    #[test]
    fn writes_the_predecessors_times() {
        let mut out = Vec::new();
        write_utc(&mut out, 1_704_205_800_000);
        out.push(b' ');
        write_utc(&mut out, 1_704_205_801_123);
        out.push(b' ');
        write_utc_spaced(&mut out, 1_704_205_801_123);
        out.push(b' ');
        write_eastern(&mut out, 1_704_205_800_000);
        out.push(b'|');
        write_eastern(&mut out, 1_719_840_600_000);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "2024-01-02T14:30:00+00:00 2024-01-02T14:30:01.123000+00:00 2024-01-02 14:30:01.123000+00:00 2024-01-02 09:30:00 EST|2024-07-01 09:30:00 EDT"
        );
    }
}
