//! Bar intervals: a whole number of seconds from one second to one day.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::time::{DAY, HOUR, MINUTE, SECOND};

/// The length of a bar window in milliseconds.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Interval(i64);

/// An interval that cannot be read or is outside 1s..=1d.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid interval `{0}`: expected a whole number of seconds from 1s to 1d, e.g. 1s, 30s, 1m, 5m, 15m, 1h, 4h, 1d")]
pub struct IntervalError(pub String);

impl Interval {
    pub const M1: Interval = Interval(MINUTE);
    pub const M5: Interval = Interval(5 * MINUTE);
    pub const D1: Interval = Interval(DAY);

    /// An interval of `ms` milliseconds, if it is a whole number of seconds within 1s..=1d.
    pub fn from_millis(ms: i64) -> Option<Interval> {
        ((SECOND..=DAY).contains(&ms) && ms % SECOND == 0).then_some(Interval(ms))
    }

    pub fn millis(self) -> i64 {
        self.0
    }

    /// Whether this interval tiles `coarser` exactly.
    pub fn divides(self, coarser: Interval) -> bool {
        coarser.0 % self.0 == 0
    }

    /// Whether this is a daily interval (windows follow the calendar's days or sessions).
    pub fn is_daily(self) -> bool {
        self.0 == DAY
    }

    /// Reads `1m`, `5min`, `1h`, `1day`, `30s` and the like.
    pub fn parse(text: &str) -> Result<Interval, IntervalError> {
        let err = || IntervalError(text.to_owned());
        let digits = text.bytes().take_while(u8::is_ascii_digit).count();
        let count: i64 = text[..digits].parse().map_err(|_| err())?;
        let unit = match &text[digits..] {
            "s" | "sec" => SECOND,
            "m" | "min" => MINUTE,
            "h" | "hour" => HOUR,
            "d" | "day" => DAY,
            _ => return Err(err()),
        };
        count
            .checked_mul(unit)
            .and_then(Interval::from_millis)
            .ok_or_else(err)
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0;
        if ms % DAY == 0 {
            write!(f, "{}d", ms / DAY)
        } else if ms % HOUR == 0 {
            write!(f, "{}h", ms / HOUR)
        } else if ms % MINUTE == 0 {
            write!(f, "{}m", ms / MINUTE)
        } else {
            write!(f, "{}s", ms / SECOND)
        }
    }
}

impl fmt::Debug for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::str::FromStr for Interval {
    type Err = IntervalError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Interval::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        for (text, canonical) in [
            ("1s", "1s"),
            ("90s", "90s"),
            ("1m", "1m"),
            ("5min", "5m"),
            ("60m", "1h"),
            ("4h", "4h"),
            ("1day", "1d"),
            ("24h", "1d"),
        ] {
            assert_eq!(
                Interval::parse(text).map(|i| i.to_string()),
                Ok(canonical.to_owned()),
                "{text}"
            );
        }
        for bad in ["", "m", "0m", "2d", "1w", "1.5m", "-1m", "25h"] {
            assert!(Interval::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn divides() {
        assert!(Interval::M1.divides(Interval::M5));
        assert!(Interval::M5.divides(Interval::D1));
        assert!(!Interval::parse("7m").unwrap().divides(Interval::D1));
    }
}
