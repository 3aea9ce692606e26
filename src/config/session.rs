//! The `session:` block of bar operators: an exchange's trading hours in its time zone.

use std::collections::BTreeMap;
use std::fmt;

use chrono_tz::Tz;
use marketflow_operators::calendar::{parse_date, parse_time_of_day, WEEKDAY_NAMES};
use marketflow_operators::Session;
use serde::Deserialize;

use super::de::suggest;

/// Trading hours: bars are aligned on the open and clipped at the close; `1d` bars are
/// one per session. Ticks outside the session are counted and skipped.
#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SessionConfig {
    /// IANA time zone of the exchange, e.g. `America/New_York`.
    pub timezone: String,
    /// Local opening time `HH:MM` (default `00:00`).
    #[serde(default)]
    pub open: Option<String>,
    /// Local closing time `HH:MM` (default `24:00`); at or before `open` means the session
    /// runs overnight and is labelled by the day it closes.
    #[serde(default)]
    pub close: Option<String>,
    /// Trading weekdays (default all seven), e.g. `[mon, tue, wed, thu, fri]`.
    #[serde(default)]
    pub days: Option<Vec<String>>,
    /// Local dates `YYYY-MM-DD` without a session.
    #[serde(default)]
    pub holidays: Vec<String>,
    /// Local dates that close early, with their closing time: `{"2024-11-29": "13:00"}`.
    #[serde(default)]
    pub early_closes: BTreeMap<String, String>,
}

/// A checked session.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "SessionConfig")]
pub struct SessionSpec {
    pub session: Session,
}

/// Why a session block is invalid.
#[derive(Debug)]
pub struct SessionError(String);

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<SessionConfig> for SessionSpec {
    type Error = SessionError;

    /// Checks every field, so that all mistakes of a block are reported together.
    fn try_from(raw: SessionConfig) -> Result<Self, Self::Error> {
        let mut problems: Vec<String> = Vec::new();
        let timezone: Option<Tz> = match raw.timezone.parse() {
            Ok(tz) => Some(tz),
            Err(_) => {
                let names: Vec<&str> = chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name()).collect();
                let hint = suggest(&raw.timezone, &names)
                    .filter(|h| h.starts_with("did you mean"))
                    .map(|h| h.split('?').next().unwrap_or_default().to_owned() + "?")
                    .unwrap_or_else(|| {
                        "use an IANA name such as America/New_York or Europe/London".to_owned()
                    });
                problems.push(format!("unknown time zone `{}`; {hint}", raw.timezone));
                None
            }
        };
        let mut time = |text: &Option<String>, default: u32, key: &str| match text {
            None => default,
            Some(t) => parse_time_of_day(t).unwrap_or_else(|| {
                problems.push(format!(
                    "`{key}: {t}` is not a time of day; write HH:MM, e.g. 09:30"
                ));
                default
            }),
        };
        let open = time(&raw.open, 0, "open");
        let close = time(&raw.close, 24 * 60, "close");
        let early: Vec<(String, u32)> = raw
            .early_closes
            .iter()
            .map(|(day, at)| (day.clone(), time(&Some(at.clone()), close, "early close")))
            .collect();
        let mut days = [true; 7];
        if let Some(list) = &raw.days {
            days = [false; 7];
            for name in list {
                let lower = name.to_lowercase();
                match WEEKDAY_NAMES.iter().position(|d| lower.starts_with(d)) {
                    Some(index) => days[index] = true,
                    None => problems.push(format!(
                        "`{name}` is not a weekday; use {}",
                        WEEKDAY_NAMES.join(", ")
                    )),
                }
            }
        }
        let mut date = |text: &str| {
            let parsed = parse_date(text);
            if parsed.is_none() {
                problems.push(format!("`{text}` is not a date; write YYYY-MM-DD"));
            }
            parsed
        };
        let mut holidays: Vec<_> = raw.holidays.iter().filter_map(|d| date(d)).collect();
        holidays.sort_unstable();
        let early_closes: BTreeMap<_, _> = early
            .iter()
            .filter_map(|(day, at)| date(day).map(|d| (d, *at)))
            .collect();
        match timezone {
            Some(timezone) if problems.is_empty() => Ok(SessionSpec {
                session: Session {
                    timezone,
                    open,
                    close,
                    days,
                    holidays,
                    early_closes,
                },
            }),
            _ => Err(SessionError(problems.join("; "))),
        }
    }
}

impl fmt::Display for SessionSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.session;
        let hm = |m: u32| format!("{:02}:{:02}", m / 60, m % 60);
        write!(f, "{} {}-{}", s.timezone.name(), hm(s.open), hm(s.close))
    }
}
