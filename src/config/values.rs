//! Value types of pipeline files that are read from text.

use std::fmt;
use std::str::FromStr;

use marketflow_operators::time::{format_duration, parse_duration, TimeError};
use serde::de::{self, Deserialize, Deserializer};

use super::de::Spanned;
use super::yaml::Pos;

/// A value parsed from its text (`FromStr`), with the position it was written at.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Parsed<T> {
    pub value: T,
    pub pos: Pos,
}

impl<T> std::ops::Deref for Parsed<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<'de, T> Deserialize<'de> for Parsed<T>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text: Spanned<String> = Spanned::deserialize(deserializer)?;
        let value = text.value.parse().map_err(de::Error::custom)?;
        Ok(Parsed {
            value,
            pos: text.pos,
        })
    }
}

/// A length of time such as `2s`, `500ms` or `1h30m`, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Duration(pub i64);

impl FromStr for Duration {
    type Err = TimeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_duration(s).map(Duration)
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(de::Error::custom)
    }
}

impl Duration {
    pub fn as_std(self) -> std::time::Duration {
        std::time::Duration::from_millis(self.0.max(0) as u64)
    }
}

/// A secret such as an API key: read like a string, shown as `***` in debug output, so a
/// config printed to a log never carries it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(pub String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

/// A quantity of memory: `16MiB`, `512KiB`, `1GiB`, `64MB`, `500kB` or a plain number of
/// bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

/// A memory size that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid size `{0}`: expected a number of bytes with a unit B, kB, KiB, MB, MiB, GB or GiB (e.g. `16MiB`)")]
pub struct ByteSizeError(String);

impl FromStr for ByteSize {
    type Err = ByteSizeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ByteSizeError(s.chars().take(40).collect());
        let text = s.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (digits, unit) = text.split_at(split);
        let number: u64 = digits.parse().map_err(|_| err())?;
        let scale: u64 = match unit.trim() {
            "" | "B" => 1,
            "kB" | "KB" => 1_000,
            "KiB" => 1 << 10,
            "MB" => 1_000_000,
            "MiB" => 1 << 20,
            "GB" => 1_000_000_000,
            "GiB" => 1 << 30,
            _ => return Err(err()),
        };
        number.checked_mul(scale).map(ByteSize).ok_or_else(err)
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let units = [(1u64 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
        match units
            .iter()
            .find(|(scale, _)| self.0 >= *scale && self.0 % scale == 0)
        {
            Some((scale, unit)) => write!(f, "{}{unit}", self.0 / scale),
            None => write!(f, "{}B", self.0),
        }
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(de::Error::custom)
    }
}

/// Reads a count within `LO..=HI`, else a positioned error naming the range: for
/// `#[serde(deserialize_with = "count_within::<_, 1, 1000>")]`.
pub fn count_within<'de, D: Deserializer<'de>, const LO: u64, const HI: u64>(
    deserializer: D,
) -> Result<usize, D::Error> {
    let value = u64::deserialize(deserializer)?;
    if (LO..=HI).contains(&value) {
        Ok(value as usize)
    } else {
        Err(de::Error::custom(format!(
            "must be between {LO} and {HI} (got {value})"
        )))
    }
}

/// Reads a duration within `LO_MS..=HI_MS` milliseconds, else a positioned error.
pub fn duration_within<'de, D: Deserializer<'de>, const LO_MS: i64, const HI_MS: i64>(
    deserializer: D,
) -> Result<Duration, D::Error> {
    let value = Duration::deserialize(deserializer)?;
    if (LO_MS..=HI_MS).contains(&value.0) {
        Ok(value)
    } else {
        Err(de::Error::custom(format!(
            "must be between {} and {} (got {value})",
            Duration(LO_MS),
            Duration(HI_MS)
        )))
    }
}

/// [`count_within`] for an optional key.
pub fn optional_count_within<'de, D: Deserializer<'de>, const LO: u64, const HI: u64>(
    deserializer: D,
) -> Result<Option<usize>, D::Error> {
    count_within::<D, LO, HI>(deserializer).map(Some)
}

/// [`duration_within`] for an optional key.
pub fn optional_duration_within<'de, D: Deserializer<'de>, const LO_MS: i64, const HI_MS: i64>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    duration_within::<D, LO_MS, HI_MS>(deserializer).map(Some)
}

/// A point in time for a history range: `now`, a duration back from now (`-365d`), a date
/// (`2025-01-02`, UTC midnight) or an RFC 3339 timestamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimePoint {
    Now,
    /// This many ms before now.
    Ago(i64),
    /// Milliseconds since the epoch (UTC).
    At(i64),
}

impl TimePoint {
    /// The instant it names, given the time now (ms).
    pub fn resolve(self, now: i64) -> i64 {
        match self {
            TimePoint::Now => now,
            TimePoint::Ago(ms) => now - ms,
            TimePoint::At(ms) => ms,
        }
    }
}

/// Why a time point cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not a time: write `now`, a duration back from now (`-365d`), a date (`2025-01-02`) or an RFC 3339 timestamp (`2025-01-02T14:30:00Z`)")]
pub struct TimePointError(String);

impl FromStr for TimePoint {
    type Err = TimePointError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        let err = || TimePointError(text.to_owned());
        if text == "now" {
            return Ok(TimePoint::Now);
        }
        if let Some(back) = text.strip_prefix('-') {
            return parse_duration(back)
                .ok()
                .filter(|ms| *ms > 0)
                .map(TimePoint::Ago)
                .ok_or_else(err);
        }
        if let Some(day) = marketflow_operators::calendar::parse_date(text) {
            return Ok(TimePoint::At(day * marketflow_operators::time::DAY));
        }
        marketflow_operators::time::parse_timestamp(text)
            .map(TimePoint::At)
            .map_err(|_| err())
    }
}
