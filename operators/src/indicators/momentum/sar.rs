//! Parabolic SAR (TA-Lib `SAR`).

use crate::indicators::{single, Indicator, Outputs};
use crate::record::Bar;

/// Wilder's stop and reverse, bootstrapped as TA-Lib does: the first bar only sets the
/// initial extreme; the trade starts short when the second bar's -DM is positive, else
/// long, with the first bar's low (long) or high (short) as the first SAR. The factor
/// starts at `acceleration`, grows by it at each new extreme up to `maximum`, and the SAR
/// never enters the last two bars' range. Lookback 1.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Sar {
    acceleration: f64,
    maximum: f64,
    seen: usize,
    long: bool,
    sar: f64,
    extreme: f64,
    factor: f64,
    /// The previous bar's high and low.
    previous: (f64, f64),
}

impl Sar {
    pub fn new(acceleration: f64, maximum: f64) -> Sar {
        let acceleration = acceleration.min(maximum);
        Sar {
            acceleration,
            maximum,
            seen: 0,
            long: true,
            sar: 0.0,
            extreme: 0.0,
            factor: acceleration,
            previous: (0.0, 0.0),
        }
    }

    /// The SAR to output for a bar of `high`/`low`, after which the next one is prepared.
    fn step(&mut self, high: f64, low: f64, (previous_high, previous_low): (f64, f64)) -> f64 {
        let (reverse, output) = if self.long {
            (low <= self.sar, self.extreme.max(previous_high).max(high))
        } else {
            (high >= self.sar, self.extreme.min(previous_low).min(low))
        };
        let output = if reverse {
            self.long = !self.long;
            self.factor = self.acceleration;
            self.extreme = if self.long { high } else { low };
            output
        } else {
            if self.long && high > self.extreme || !self.long && low < self.extreme {
                self.extreme = if self.long { high } else { low };
                self.factor = (self.factor + self.acceleration).min(self.maximum);
            }
            self.sar
        };
        self.sar = output + self.factor * (self.extreme - output);
        self.sar = if self.long {
            self.sar.min(previous_low).min(low)
        } else {
            self.sar.max(previous_high).max(high)
        };
        output
    }
}

impl Indicator for Sar {
    crate::state_methods!();

    fn lookback(&self) -> usize {
        1
    }

    #[inline]
    fn update(&mut self, bar: &Bar) -> Option<Outputs> {
        let previous = std::mem::replace(&mut self.previous, (bar.high, bar.low));
        self.seen += 1;
        match self.seen {
            1 => None,
            2 => {
                // TA-Lib's MINUS_DM of the first two bars picks the direction.
                let down = previous.1 - bar.low;
                let up = bar.high - previous.0;
                self.long = !(down > 0.0 && down > up);
                if self.long {
                    self.extreme = bar.high;
                    self.sar = previous.1;
                } else {
                    self.extreme = bar.low;
                    self.sar = previous.0;
                }
                // The first step compares the bar with itself, not with the one before.
                Some(single(self.step(bar.high, bar.low, (bar.high, bar.low))))
            }
            _ => Some(single(self.step(bar.high, bar.low, previous))),
        }
    }

    fn reset(&mut self) {
        *self = Sar::new(self.acceleration, self.maximum);
    }
}
