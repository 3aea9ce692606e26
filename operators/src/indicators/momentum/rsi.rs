//! Relative strength index, Wilder smoothing (TA-Lib `RSI`).

use crate::indicators::window::is_zero;
use crate::indicators::{single, Indicator, Outputs, PriceSource};
use crate::record::Bar;

/// Average gain and loss seeded with their means over the first `period` changes, then
/// `avg = (avg * (period - 1) + x) / period`; `100 * gain / (gain + loss)`, 0 when there
/// was no movement at all. Lookback `period`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Rsi {
    source: PriceSource,
    period: usize,
    seen: usize,
    previous: f64,
    gain: f64,
    loss: f64,
}

impl Rsi {
    pub fn new(period: usize, source: PriceSource) -> Rsi {
        Rsi {
            source,
            period,
            seen: 0,
            previous: 0.0,
            gain: 0.0,
            loss: 0.0,
        }
    }

    /// Folds in the next price; whether the averages are ready.
    #[inline]
    pub(crate) fn advance(&mut self, x: f64) -> bool {
        let change = x - self.previous;
        self.previous = x;
        self.seen += 1;
        let n = self.period as f64;
        if self.seen == 1 {
            return false;
        }
        if self.seen <= self.period + 1 {
            if change < 0.0 {
                self.loss -= change;
            } else {
                self.gain += change;
            }
            if self.seen <= self.period {
                return false;
            }
            self.loss /= n;
            self.gain /= n;
            return true;
        }
        self.loss *= n - 1.0;
        self.gain *= n - 1.0;
        if change < 0.0 {
            self.loss -= change;
        } else {
            self.gain += change;
        }
        self.loss /= n;
        self.gain /= n;
        true
    }

    /// The smoothed average gain and loss.
    pub(crate) fn averages(&self) -> (f64, f64) {
        (self.gain, self.loss)
    }

    fn value(&self) -> f64 {
        let total = self.gain + self.loss;
        if is_zero(total) {
            0.0
        } else {
            100.0 * (self.gain / total)
        }
    }
}

impl Indicator for Rsi {
    crate::state_methods!();

    fn lookback(&self) -> usize {
        self.period
    }

    #[inline]
    fn update(&mut self, bar: &Bar) -> Option<Outputs> {
        self.advance(self.source.of(bar))
            .then(|| single(self.value()))
    }

    fn reset(&mut self) {
        *self = Rsi::new(self.period, self.source);
    }
}
