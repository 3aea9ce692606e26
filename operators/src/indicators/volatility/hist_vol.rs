//! Historical volatility: the annualised deviation of log returns (no TA-Lib equivalent).

use crate::calendar::Calendar;
use crate::indicators::window::{is_zero_or_negative, SlidingMoments};
use crate::indicators::{single, Indicator, Outputs, PriceSource};
use crate::interval::Interval;
use crate::record::Bar;
use crate::time::{DAY, MINUTE};

/// `100 * sqrt(periods per year) * σ` of the last `period` log returns `ln(x / x[1])`
/// (population deviation, as TA-Lib's `STDDEV`). Periods per year follow the bars'
/// interval and calendar unless given: 252 trading days a year for a session of five
/// weekdays (`365.25 * days / 7` for other sessions, 365.25 on the UTC calendar), times
/// the bars of a trading day (the session's length over the interval, rounded up, or a
/// whole day's). Lookback `period`; a return from or to a price that is not positive
/// counts as 0.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct HistVol {
    source: PriceSource,
    period: usize,
    #[serde(skip, default = "utc")]
    calendar: Calendar,
    periods_per_year: Option<f64>,
    scale: f64,
    previous: Option<f64>,
    moments: SlidingMoments,
}

impl HistVol {
    pub fn new(
        period: usize,
        source: PriceSource,
        calendar: Calendar,
        periods_per_year: Option<f64>,
    ) -> HistVol {
        HistVol {
            source,
            period,
            calendar,
            periods_per_year,
            scale: 0.0,
            previous: None,
            moments: SlidingMoments::new(period),
        }
    }
}

/// Bars of `interval` in a year of `calendar`'s trading.
pub fn periods_per_year(interval: Interval, calendar: &Calendar) -> f64 {
    let (days_per_year, minutes_per_day) = match calendar {
        Calendar::Utc => (365.25, 1440),
        Calendar::Session(s) => {
            let weekdays = s.days.iter().filter(|d| **d).count();
            let days = if weekdays == 5 {
                252.0
            } else {
                365.25 * weekdays as f64 / 7.0
            };
            let length = if s.close > s.open {
                s.close - s.open
            } else {
                s.close + 1440 - s.open
            };
            (days, i64::from(length))
        }
    };
    let millis = interval.millis();
    if millis >= DAY {
        days_per_year * DAY as f64 / millis as f64
    } else {
        let per_day = (minutes_per_day * MINUTE + millis - 1) / millis;
        days_per_year * per_day as f64
    }
}

impl Indicator for HistVol {
    fn save(&self) -> Vec<u8> {
        crate::state::encode(self)
    }
    fn load(&mut self, state: &[u8]) -> Result<(), crate::state::StateError> {
        // The calendar is configuration, not state: it stays this instance's.
        let mut loaded: HistVol = crate::state::decode(state)?;
        std::mem::swap(&mut loaded.calendar, &mut self.calendar);
        *self = loaded;
        Ok(())
    }

    fn lookback(&self) -> usize {
        self.period
    }

    #[inline]
    fn update(&mut self, bar: &Bar) -> Option<Outputs> {
        let x = self.source.of(bar);
        let previous = self.previous.replace(x)?;
        if self.scale == 0.0 {
            let per_year = self
                .periods_per_year
                .unwrap_or_else(|| periods_per_year(bar.interval, &self.calendar));
            self.scale = 100.0 * per_year.sqrt();
        }
        let change = if x > 0.0 && previous > 0.0 {
            (x / previous).ln()
        } else {
            0.0
        };
        let (_, variance) = self.moments.update(change)?;
        let deviation = if is_zero_or_negative(variance) {
            0.0
        } else {
            variance.sqrt()
        };
        Some(single(deviation * self.scale))
    }

    fn reset(&mut self) {
        self.previous = None;
        self.moments.reset();
    }
}

/// What a skipped `calendar` is read as before the instance's own is put back.
fn utc() -> Calendar {
    Calendar::Utc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::Session;

    #[test]
    fn annualisation_follows_the_interval_and_the_session() {
        let nyse = Calendar::Session(Session {
            open: 9 * 60 + 30,
            close: 16 * 60,
            days: [true, true, true, true, true, false, false],
            ..Session::all_day(chrono_tz::America::New_York)
        });
        let i = |s: &str| Interval::parse(s).unwrap();
        assert_eq!(periods_per_year(i("1d"), &nyse), 252.0);
        assert_eq!(periods_per_year(i("5m"), &nyse), 252.0 * 78.0);
        // 6.5 hours of hourly bars: 7 a day, the last one clipped at the close.
        assert_eq!(periods_per_year(i("1h"), &nyse), 252.0 * 7.0);
        assert_eq!(periods_per_year(i("1d"), &Calendar::Utc), 365.25);
        assert_eq!(periods_per_year(i("1h"), &Calendar::Utc), 365.25 * 24.0);
    }
}
