//! Event time: milliseconds since the Unix epoch, UTC, and human durations.
//!
//! Parsing and formatting are hand-written because they sit on the per-tick path: a
//! `chrono` round trip costs several times more than the arithmetic below.

use std::fmt::Write as _;

/// Milliseconds in one second, minute, hour and day.
pub const SECOND: i64 = 1_000;
pub const MINUTE: i64 = 60 * SECOND;
pub const HOUR: i64 = 60 * MINUTE;
pub const DAY: i64 = 24 * HOUR;

/// A timestamp or duration that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    #[error("invalid timestamp `{0}`: expected RFC 3339 (2024-01-02T14:30:00.123Z) or epoch milliseconds")]
    Timestamp(String),
    #[error(
        "timestamp `{0}` has no UTC offset: add `Z` or `+HH:MM`, or set the source's `timezone`"
    )]
    NaiveTimestamp(String),
    #[error("timestamp `{0}` is out of range (years 1970 to 9999)")]
    OutOfRange(String),
    #[error(
        "invalid duration `{0}`: expected a number with a unit, e.g. 500ms, 2s, 1m, 1h30m, 1d"
    )]
    Duration(String),
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = month as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number, inverse of [`days_from_civil`].
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn digits(&mut self, n: usize) -> Option<u32> {
        let end = self.pos.checked_add(n)?;
        let slice = self.bytes.get(self.pos..end)?;
        let mut value = 0u32;
        for &b in slice {
            if !b.is_ascii_digit() {
                return None;
            }
            value = value * 10 + u32::from(b - b'0');
        }
        self.pos = end;
        Some(value)
    }

    fn expect(&mut self, accepted: &[u8]) -> Option<u8> {
        let b = *self.bytes.get(self.pos)?;
        if accepted.contains(&b) {
            self.pos += 1;
            Some(b)
        } else {
            None
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }
}

/// A civil date and time of day read from text, before any offset is applied.
struct LocalStamp {
    days: i64,
    millis_of_day: i64,
}

fn parse_local(c: &mut Cursor<'_>) -> Option<LocalStamp> {
    let year = c.digits(4)?;
    c.expect(b"-")?;
    let month = c.digits(2)?;
    c.expect(b"-")?;
    let day = c.digits(2)?;
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(i64::from(year), month) {
        return None;
    }
    let days = days_from_civil(i64::from(year), month, day);
    if c.peek().is_none() {
        return Some(LocalStamp {
            days,
            millis_of_day: 0,
        });
    }
    c.expect(b"Tt ")?;
    let hour = c.digits(2)?;
    c.expect(b":")?;
    let minute = c.digits(2)?;
    let second = if c.expect(b":").is_some() {
        c.digits(2)?
    } else {
        0
    };
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut millis = 0i64;
    if c.expect(b".,").is_some() {
        // Keep milliseconds, truncate finer digits (floor, as every feed does).
        let mut scale = 100;
        let mut seen = 0;
        while let Some(b) = c.peek().filter(u8::is_ascii_digit) {
            millis += i64::from(b - b'0') * scale;
            scale /= 10;
            seen += 1;
            c.pos += 1;
        }
        if seen == 0 {
            return None;
        }
    }
    // A leap second is folded into the last millisecond of its minute.
    let (second, millis) = if second == 60 {
        (59, 999)
    } else {
        (second, millis)
    };
    let millis_of_day =
        i64::from(hour) * HOUR + i64::from(minute) * MINUTE + i64::from(second) * SECOND + millis;
    Some(LocalStamp {
        days,
        millis_of_day,
    })
}

/// Reads an offset `Z`, `+HH:MM`, `+HHMM` or `+HH`; `None` inside means no offset was written.
fn parse_offset(c: &mut Cursor<'_>) -> Option<Option<i64>> {
    match c.peek() {
        None => Some(None),
        Some(b'Z' | b'z') => {
            c.pos += 1;
            Some(Some(0))
        }
        Some(b'+' | b'-') => {
            let sign = if c.expect(b"+-")? == b'-' { -1 } else { 1 };
            let hours = c.digits(2)?;
            c.expect(b":");
            let minutes = if c.peek().is_some() { c.digits(2)? } else { 0 };
            if hours > 23 || minutes > 59 {
                return None;
            }
            Some(Some(
                sign * (i64::from(hours) * HOUR + i64::from(minutes) * MINUTE),
            ))
        }
        Some(_) => None,
    }
}

/// Parses an RFC 3339 timestamp (also with a space instead of `T`) or epoch milliseconds.
pub fn parse_timestamp(text: &str) -> Result<i64, TimeError> {
    let text = text.trim();
    if let Some(ms) = parse_epoch_millis(text) {
        return ms;
    }
    match parse_rfc3339_parts(text)? {
        (local, Some(offset)) => finish(text, local.days * DAY + local.millis_of_day - offset),
        (_, None) => Err(TimeError::NaiveTimestamp(text.to_owned())),
    }
}

/// Parses a timestamp that may lack an offset; `resolve_naive` maps a naive local time
/// (milliseconds since the epoch as if it were UTC) to UTC milliseconds.
pub fn parse_timestamp_with(
    text: &str,
    resolve_naive: impl Fn(i64) -> Option<i64>,
) -> Result<i64, TimeError> {
    let text = text.trim();
    if let Some(ms) = parse_epoch_millis(text) {
        return ms;
    }
    match parse_rfc3339_parts(text)? {
        (local, Some(offset)) => finish(text, local.days * DAY + local.millis_of_day - offset),
        (local, None) => {
            let utc = resolve_naive(local.days * DAY + local.millis_of_day)
                .ok_or_else(|| TimeError::Timestamp(text.to_owned()))?;
            finish(text, utc)
        }
    }
}

/// Epoch milliseconds written as digits, optionally with a fraction (floored).
fn parse_epoch_millis(text: &str) -> Option<Result<i64, TimeError>> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, "0"));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !digits(fraction) {
        return None;
    }
    Some(match whole.parse::<i64>() {
        Ok(ms) if ms < MAX_TIMESTAMP => Ok(ms),
        _ => Err(TimeError::OutOfRange(text.to_owned())),
    })
}

fn parse_rfc3339_parts(text: &str) -> Result<(LocalStamp, Option<i64>), TimeError> {
    let mut c = Cursor {
        bytes: text.as_bytes(),
        pos: 0,
    };
    let parsed = parse_local(&mut c).and_then(|local| {
        let offset = parse_offset(&mut c)?;
        (c.pos == c.bytes.len()).then_some((local, offset))
    });
    parsed.ok_or_else(|| TimeError::Timestamp(text.to_owned()))
}

fn finish(text: &str, ms: i64) -> Result<i64, TimeError> {
    if (0..MAX_TIMESTAMP).contains(&ms) {
        Ok(ms)
    } else {
        Err(TimeError::OutOfRange(text.to_owned()))
    }
}

/// The first instant of year 10000: timestamps stay below it so they format in four digits.
pub const MAX_TIMESTAMP: i64 = 253_402_300_800_000;

/// Appends `ms` as RFC 3339 UTC: `2024-01-02T14:30:00Z`, with `.mmm` when not a whole second.
pub fn write_timestamp(out: &mut Vec<u8>, ms: i64) {
    let days = ms.div_euclid(DAY);
    let of_day = ms.rem_euclid(DAY);
    let (year, month, day) = civil_from_days(days);
    let mut buf = [0u8; 24];
    let year = year.clamp(0, 9999) as u32;
    put2(&mut buf[0..2], year / 100);
    put2(&mut buf[2..4], year % 100);
    buf[4] = b'-';
    put2(&mut buf[5..7], month);
    buf[7] = b'-';
    put2(&mut buf[8..10], day);
    buf[10] = b'T';
    let secs = (of_day / SECOND) as u32;
    put2(&mut buf[11..13], secs / 3600);
    buf[13] = b':';
    put2(&mut buf[14..16], secs / 60 % 60);
    buf[16] = b':';
    put2(&mut buf[17..19], secs % 60);
    let millis = (of_day % SECOND) as u32;
    let len = if millis == 0 {
        buf[19] = b'Z';
        20
    } else {
        buf[19] = b'.';
        buf[20] = b'0' + (millis / 100) as u8;
        put2(&mut buf[21..23], millis % 100);
        buf[23] = b'Z';
        24
    };
    out.extend_from_slice(&buf[..len]);
}

fn put2(slot: &mut [u8], value: u32) {
    slot[0] = b'0' + (value / 10) as u8;
    slot[1] = b'0' + (value % 10) as u8;
}

/// `ms` as an RFC 3339 UTC string (see [`write_timestamp`]).
pub fn format_timestamp(ms: i64) -> String {
    let mut out = Vec::with_capacity(24);
    write_timestamp(&mut out, ms);
    String::from_utf8(out).unwrap_or_default()
}

/// Parses a duration such as `500ms`, `2s`, `1m`, `1h30m` or `1d` into milliseconds.
pub fn parse_duration(text: &str) -> Result<i64, TimeError> {
    let err = || TimeError::Duration(text.to_owned());
    let mut rest = text.trim();
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(err());
    }
    let mut total: i64 = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(err());
        }
        let value: i64 = rest[..digits].parse().map_err(|_| err())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = match &rest[..unit_len] {
            "ms" => 1,
            "s" | "sec" | "secs" => SECOND,
            "m" | "min" | "mins" => MINUTE,
            "h" | "hour" | "hours" => HOUR,
            "d" | "day" | "days" => DAY,
            _ => return Err(err()),
        };
        rest = &rest[unit_len..];
        total = value
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(err)?;
    }
    Ok(total)
}

/// Formats milliseconds as the shortest duration text that [`parse_duration`] reads back.
pub fn format_duration(ms: i64) -> String {
    if ms == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    let mut rest = ms;
    for (unit, name) in [
        (DAY, "d"),
        (HOUR, "h"),
        (MINUTE, "m"),
        (SECOND, "s"),
        (1, "ms"),
    ] {
        if rest >= unit {
            let _ = write!(out, "{}{}", rest / unit, name);
            rest %= unit;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rfc3339_variants() {
        assert_eq!(parse_timestamp("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(
            parse_timestamp("2024-01-02T14:30:00.123Z"),
            Ok(1_704_205_800_123)
        );
        assert_eq!(
            parse_timestamp("2024-01-02 14:30:00.123456Z"),
            Ok(1_704_205_800_123)
        );
        assert_eq!(
            parse_timestamp("2024-01-02T09:30:00-05:00"),
            Ok(1_704_205_800_000)
        );
        assert_eq!(
            parse_timestamp("2024-01-02T09:30:00-0500"),
            Ok(1_704_205_800_000)
        );
        assert_eq!(
            parse_timestamp("2024-01-02T20:00+05:30"),
            Ok(1_704_205_800_000)
        );
        assert_eq!(parse_timestamp("1704205800123"), Ok(1_704_205_800_123));
        assert_eq!(parse_timestamp("1704205800123.9"), Ok(1_704_205_800_123));
        assert_eq!(
            parse_timestamp("2024-02-29T00:00:00Z"),
            Ok(1_709_164_800_000)
        );
    }

    #[test]
    fn rejects_bad_timestamps() {
        for bad in [
            "",
            "2024-13-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2024-01-02T25:00:00Z",
            "yesterday",
            "2024-01-02T14:30:00.Z",
            "2024-01-02T14:30:00Zjunk",
        ] {
            assert!(
                matches!(parse_timestamp(bad), Err(TimeError::Timestamp(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            parse_timestamp("2024-01-02T14:30:00"),
            Err(TimeError::NaiveTimestamp(_))
        ));
        assert!(matches!(
            parse_timestamp("1969-12-31T23:59:59Z"),
            Err(TimeError::OutOfRange(_))
        ));
    }

    #[test]
    fn formats_round_trip() {
        for ms in [
            0,
            1_704_205_800_123,
            1_704_205_800_000,
            951_782_400_000,
            MAX_TIMESTAMP - 1,
        ] {
            let text = format_timestamp(ms);
            assert_eq!(parse_timestamp(&text), Ok(ms), "{text}");
        }
        assert_eq!(
            format_timestamp(1_704_205_800_123),
            "2024-01-02T14:30:00.123Z"
        );
        assert_eq!(format_timestamp(1_704_205_800_000), "2024-01-02T14:30:00Z");
        assert_eq!(format_timestamp(5), "1970-01-01T00:00:00.005Z");
    }

    #[test]
    fn civil_round_trip() {
        for days in [-800_000, -1, 0, 1, 10_957, 19_724, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(500));
        assert_eq!(parse_duration("2s"), Ok(2_000));
        assert_eq!(parse_duration("1h30m"), Ok(90 * MINUTE));
        assert_eq!(parse_duration("1d"), Ok(DAY));
        assert_eq!(parse_duration("0"), Ok(0));
        assert!(parse_duration("2").is_err());
        assert!(parse_duration("2 parsecs").is_err());
        assert!(parse_duration("-1s").is_err());
        assert_eq!(format_duration(90 * MINUTE + 500), "1h30m500ms");
    }
}
