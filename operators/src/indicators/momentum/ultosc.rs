//! Ultimate oscillator (TA-Lib `ULTOSC`).

use crate::indicators::window::{is_zero, Ring};
use crate::indicators::{single, Indicator, Outputs};
use crate::record::Bar;

/// Buying pressure `close - min(low, previous close)` over the true range, summed over
/// three windows; `100 * (4 * short + 2 * medium + long) / 7` of their ratios (a window
/// with no range adds 0). The periods are sorted, shortest weighted most. Lookback: the
/// longest period.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Ultosc {
    /// Shortest first.
    periods: [usize; 3],
    previous_close: Option<f64>,
    pressure: Ring,
    range: Ring,
    sums: [(f64, f64); 3],
}

impl Ultosc {
    pub fn new(short: usize, medium: usize, long: usize) -> Ultosc {
        let mut periods = [short, medium, long];
        periods.sort_unstable();
        Ultosc {
            periods,
            previous_close: None,
            pressure: Ring::new(periods[2] + 1),
            range: Ring::new(periods[2] + 1),
            sums: [(0.0, 0.0); 3],
        }
    }
}

impl Indicator for Ultosc {
    crate::state_methods!();

    fn lookback(&self) -> usize {
        self.periods[2]
    }

    #[inline]
    fn update(&mut self, bar: &Bar) -> Option<Outputs> {
        let previous = self.previous_close.replace(bar.close)?;
        let true_low = bar.low.min(previous);
        let pressure = bar.close - true_low;
        let range = (bar.high - bar.low)
            .max((previous - bar.high).abs())
            .max((previous - bar.low).abs());
        self.pressure.push(pressure);
        self.range.push(range);
        let held = self.pressure.len();
        for (sum, period) in self.sums.iter_mut().zip(self.periods) {
            sum.0 += pressure;
            sum.1 += range;
            if held > period {
                // The term that left this window: `period` bars back.
                sum.0 -= self.pressure.back(period);
                sum.1 -= self.range.back(period);
            }
        }
        if held < self.periods[2] {
            return None;
        }
        let mut output = 0.0;
        for ((a, b), weight) in self.sums.iter().zip([4.0, 2.0, 1.0]) {
            if !is_zero(*b) {
                output += weight * (a / b);
            }
        }
        Some(single(100.0 * (output / 7.0)))
    }

    fn reset(&mut self) {
        *self = Ultosc::new(self.periods[0], self.periods[1], self.periods[2]);
    }
}
