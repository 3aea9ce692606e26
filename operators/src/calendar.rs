//! Which window an instant belongs to: epoch-aligned UTC windows, or the windows of an
//! exchange session in its own time zone (DST, holidays and early closes included).

use std::collections::BTreeMap;

use chrono::{LocalResult, NaiveDate, TimeZone};
use chrono_tz::Tz;

use crate::interval::Interval;
use crate::time::{civil_from_days, days_from_civil, DAY, MINUTE};

/// A half-open window `[start, end)` in milliseconds since the epoch.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Window {
    pub start: i64,
    pub end: i64,
}

impl Window {
    pub fn contains(&self, ts: i64) -> bool {
        self.start <= ts && ts < self.end
    }
}

/// Days of the week, Monday first, as used by `Session::days`.
pub const WEEKDAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// The weekday of a day number, 0 = Monday (1970-01-01 was a Thursday).
pub fn weekday(days: i64) -> usize {
    (days + 3).rem_euclid(7) as usize
}

/// A trading session repeated every listed weekday in a time zone.
///
/// `open`/`close` are minutes after local midnight; `close` may be 1440 (24:00). A session
/// whose close is not after its open runs overnight: it opens the evening before its
/// trading day (futures and FX style) and is labelled by the day it closes.
#[derive(Clone, Debug, PartialEq)]
pub struct Session {
    pub timezone: Tz,
    pub open: u32,
    pub close: u32,
    /// Trading weekdays, Monday first.
    pub days: [bool; 7],
    /// Local dates (day numbers) with no session.
    pub holidays: Vec<i64>,
    /// Local dates (day numbers) that close early, with their close in minutes.
    pub early_closes: BTreeMap<i64, u32>,
}

impl Session {
    /// A session open all day every day in `timezone`: daily bars on local midnights.
    pub fn all_day(timezone: Tz) -> Session {
        Session {
            timezone,
            open: 0,
            close: 24 * 60,
            days: [true; 7],
            holidays: Vec::new(),
            early_closes: BTreeMap::new(),
        }
    }

    fn overnight(&self) -> bool {
        self.close <= self.open
    }

    /// The instant of local wall-clock `minute` on local date `day`. A time skipped by a
    /// DST jump maps to the instant of the jump; a repeated time to its first occurrence.
    pub fn local_instant(&self, day: i64, minute: u32) -> i64 {
        let (day, minute) = (day + i64::from(minute / 1440), minute % 1440);
        let (y, m, d) = civil_from_days(day);
        let Some(date) = NaiveDate::from_ymd_opt(y as i32, m, d) else {
            return day * DAY + i64::from(minute) * MINUTE;
        };
        let mut naive = date
            .and_hms_opt(minute / 60, minute % 60, 0)
            .unwrap_or_default();
        for _ in 0..=24 * 60 {
            match self.timezone.from_local_datetime(&naive) {
                LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => {
                    return t.timestamp_millis()
                }
                LocalResult::None => naive += chrono::Duration::minutes(1),
            }
        }
        day * DAY + i64::from(minute) * MINUTE
    }

    /// The UTC offset in milliseconds in force at `ts`.
    pub fn offset_at(&self, ts: i64) -> i64 {
        use chrono::Offset;
        match self.timezone.timestamp_millis_opt(ts) {
            LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => {
                i64::from(t.offset().fix().local_minus_utc()) * 1000
            }
            LocalResult::None => 0,
        }
    }

    /// The bounds of the session of trading day `day`, if it trades that day.
    pub fn bounds(&self, day: i64) -> Option<Window> {
        if !self.days[weekday(day)] || self.holidays.binary_search(&day).is_ok() {
            return None;
        }
        let close_minute = self.early_closes.get(&day).copied().unwrap_or(self.close);
        let open_day = if self.overnight() { day - 1 } else { day };
        let start = self.local_instant(open_day, self.open);
        let end = self.local_instant(day, close_minute);
        (start < end).then_some(Window { start, end })
    }

    /// The session containing `ts`, or the gap between sessions it falls in.
    fn locate(&self, ts: i64) -> Result<Window, Window> {
        let local_day = (ts + self.offset_at(ts)).div_euclid(DAY);
        for day in [local_day, local_day + 1] {
            if let Some(bounds) = self.bounds(day) {
                if bounds.contains(ts) {
                    return Ok(bounds);
                }
            }
        }
        // Outside any session: find the gap so later instants in it are answered at once.
        let previous_close = (1..=14)
            .filter_map(|back| self.bounds(local_day + 1 - back))
            .map(|w| w.end)
            .find(|&end| end <= ts)
            .unwrap_or(ts);
        let next_open = (0..=14)
            .filter_map(|ahead| self.bounds(local_day + ahead))
            .map(|w| w.start)
            .find(|&start| start > ts)
            .unwrap_or(ts + 1);
        Err(Window {
            start: previous_close,
            end: next_open,
        })
    }
}

/// How instants are cut into windows of one interval.
#[derive(Clone, Debug, PartialEq)]
pub enum Calendar {
    /// Windows aligned on the Unix epoch: UTC days for `1d`.
    Utc,
    /// Windows aligned on each session's open and clipped at its close; `1d` is the session.
    Session(Session),
}

/// Assigns instants to windows, remembering the last session looked up.
#[derive(Clone, Debug)]
pub struct Windower {
    interval: i64,
    calendar: Calendar,
    cached: Option<Result<Window, Window>>,
}

impl Windower {
    pub fn new(interval: Interval, calendar: Calendar) -> Windower {
        Windower {
            interval: interval.millis(),
            calendar,
            cached: None,
        }
    }

    pub fn calendar(&self) -> &Calendar {
        &self.calendar
    }

    /// The window holding `ts`, or `None` when `ts` falls outside every session.
    #[inline]
    pub fn window_of(&mut self, ts: i64) -> Option<Window> {
        match &self.calendar {
            Calendar::Utc => {
                let start = ts - ts.rem_euclid(self.interval);
                Some(Window {
                    start,
                    end: start + self.interval,
                })
            }
            Calendar::Session(session) => {
                let located = match self.cached {
                    Some(hit) if span(hit).contains(ts) => hit,
                    _ => {
                        let found = session.locate(ts);
                        self.cached = Some(found);
                        found
                    }
                };
                let session_window = located.ok()?;
                if self.interval >= DAY {
                    return Some(session_window);
                }
                let offset = (ts - session_window.start) / self.interval * self.interval;
                let start = session_window.start + offset;
                Some(Window {
                    start,
                    end: (start + self.interval).min(session_window.end),
                })
            }
        }
    }
}

fn span(located: Result<Window, Window>) -> Window {
    match located {
        Ok(w) | Err(w) => w,
    }
}

/// Parses `HH:MM` (or `24:00`) into minutes after midnight.
pub fn parse_time_of_day(text: &str) -> Option<u32> {
    let (h, m) = text.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    match (h, m) {
        (24, 0) => Some(1440),
        (0..=23, 0..=59) => Some(h * 60 + m),
        _ => None,
    }
}

/// Parses a `YYYY-MM-DD` date into its day number.
pub fn parse_date(text: &str) -> Option<i64> {
    let mut parts = text.splitn(3, '-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: u32 = parts.next()?.parse().ok()?;
    let d: u32 = parts.next()?.parse().ok()?;
    NaiveDate::from_ymd_opt(y as i32, m, d)?;
    Some(days_from_civil(y, m, d))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::{format_timestamp, parse_timestamp};

    fn ts(text: &str) -> i64 {
        parse_timestamp(text).unwrap()
    }

    fn nyse() -> Session {
        Session {
            timezone: chrono_tz::America::New_York,
            open: 9 * 60 + 30,
            close: 16 * 60,
            days: [true, true, true, true, true, false, false],
            holidays: vec![parse_date("2024-12-25").unwrap()],
            early_closes: [(parse_date("2024-11-29").unwrap(), 13 * 60)]
                .into_iter()
                .collect(),
        }
    }

    fn daily(session: Session) -> Windower {
        Windower::new(Interval::D1, Calendar::Session(session))
    }

    fn show(w: Option<Window>) -> Option<(String, String)> {
        w.map(|w| (format_timestamp(w.start), format_timestamp(w.end)))
    }

    fn pair(a: &str, b: &str) -> Option<(String, String)> {
        Some((a.to_owned(), b.to_owned()))
    }

    #[test]
    fn utc_windows() {
        let mut w = Windower::new(Interval::M5, Calendar::Utc);
        assert_eq!(
            show(w.window_of(ts("2024-01-02T14:33:10Z"))),
            pair("2024-01-02T14:30:00Z", "2024-01-02T14:35:00Z")
        );
        let mut d = Windower::new(Interval::D1, Calendar::Utc);
        assert_eq!(
            show(d.window_of(ts("2024-01-02T23:59:59.999Z"))),
            pair("2024-01-02T00:00:00Z", "2024-01-03T00:00:00Z")
        );
    }

    #[test]
    fn new_york_session_across_march_dst() {
        let mut w = daily(nyse());
        // Friday before the change: EST, open 14:30Z.
        assert_eq!(
            show(w.window_of(ts("2024-03-08T15:00:00Z"))),
            pair("2024-03-08T14:30:00Z", "2024-03-08T21:00:00Z")
        );
        // Monday after 2024-03-10: EDT, open 13:30Z.
        assert_eq!(
            show(w.window_of(ts("2024-03-11T13:30:00Z"))),
            pair("2024-03-11T13:30:00Z", "2024-03-11T20:00:00Z")
        );
        // 13:29Z on that Monday is before the open.
        assert_eq!(w.window_of(ts("2024-03-11T13:29:59Z")), None);
        // The weekend has no session.
        assert_eq!(w.window_of(ts("2024-03-09T15:00:00Z")), None);
    }

    #[test]
    fn new_york_session_across_november_dst() {
        let mut w = daily(nyse());
        assert_eq!(
            show(w.window_of(ts("2024-11-01T19:59:59Z"))),
            pair("2024-11-01T13:30:00Z", "2024-11-01T20:00:00Z")
        );
        assert_eq!(w.window_of(ts("2024-11-01T20:00:00Z")), None);
        assert_eq!(
            show(w.window_of(ts("2024-11-04T14:30:00Z"))),
            pair("2024-11-04T14:30:00Z", "2024-11-04T21:00:00Z")
        );
        assert_eq!(w.window_of(ts("2024-11-04T14:29:00Z")), None);
    }

    #[test]
    fn holidays_and_early_closes() {
        let mut w = daily(nyse());
        assert_eq!(w.window_of(ts("2024-12-25T16:00:00Z")), None);
        assert_eq!(
            show(w.window_of(ts("2024-11-29T15:00:00Z"))),
            pair("2024-11-29T14:30:00Z", "2024-11-29T18:00:00Z")
        );
        assert_eq!(w.window_of(ts("2024-11-29T18:00:00Z")), None);
    }

    #[test]
    fn intraday_windows_align_on_the_open_and_clip_at_the_close() {
        let mut w = Windower::new(Interval::parse("1h").unwrap(), Calendar::Session(nyse()));
        assert_eq!(
            show(w.window_of(ts("2024-01-02T14:45:00Z"))),
            pair("2024-01-02T14:30:00Z", "2024-01-02T15:30:00Z")
        );
        assert_eq!(
            show(w.window_of(ts("2024-01-02T20:45:00Z"))),
            pair("2024-01-02T20:30:00Z", "2024-01-02T21:00:00Z")
        );
    }

    #[test]
    fn overnight_session_is_labelled_by_its_close() {
        let session = Session {
            timezone: chrono_tz::America::Chicago,
            open: 17 * 60,
            close: 16 * 60,
            days: [true, true, true, true, true, false, false],
            holidays: vec![],
            early_closes: BTreeMap::new(),
        };
        let mut w = daily(session);
        // Sunday 17:00 CT opens Monday's session.
        assert_eq!(
            show(w.window_of(ts("2024-01-07T23:30:00Z"))),
            pair("2024-01-07T23:00:00Z", "2024-01-08T22:00:00Z")
        );
        // The hour between close and re-open is outside.
        assert_eq!(w.window_of(ts("2024-01-08T22:30:00Z")), None);
    }

    #[test]
    fn all_day_local_calendar_days_have_23_and_25_hours_at_dst() {
        let mut w = daily(Session::all_day(chrono_tz::Europe::London));
        let spring = w.window_of(ts("2024-03-31T12:00:00Z")).unwrap();
        assert_eq!(spring.end - spring.start, 23 * 3_600_000);
        let autumn = w.window_of(ts("2024-10-27T12:00:00Z")).unwrap();
        assert_eq!(autumn.end - autumn.start, 25 * 3_600_000);
    }

    #[test]
    fn a_time_skipped_by_dst_maps_to_the_jump() {
        let session = Session {
            open: 2 * 60 + 30,
            close: 12 * 60,
            ..Session::all_day(chrono_tz::America::New_York)
        };
        let day = parse_date("2024-03-10").unwrap();
        assert_eq!(
            format_timestamp(session.local_instant(day, session.open)),
            "2024-03-10T07:00:00Z"
        );
    }

    #[test]
    fn times_of_day() {
        assert_eq!(parse_time_of_day("09:30"), Some(570));
        assert_eq!(parse_time_of_day("24:00"), Some(1440));
        assert_eq!(parse_time_of_day("9:30"), None);
        assert_eq!(parse_time_of_day("24:01"), None);
    }
}
