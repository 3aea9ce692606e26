//! Bollinger Bands (TA-Lib `BBANDS` with an SMA middle band).

use crate::indicators::window::{is_zero_or_negative, SlidingMoments};
use crate::indicators::{Indicator, Outputs, PriceSource};
use crate::record::Bar;

/// Middle = SMA(period); bands = middle ± `stddev` × the population standard deviation
/// of the window around the middle (0 when not positive); `bandwidth = (upper - lower) /
/// middle` (0 when the middle is 0) and `percent_b = (x - lower) / (upper - lower)` (0.5
/// when the bands meet). Outputs `[upper, middle, lower, bandwidth, percent_b]`; lookback
/// `period - 1`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Bollinger {
    source: PriceSource,
    period: usize,
    multiplier: f64,
    moments: SlidingMoments,
}

impl Bollinger {
    pub fn new(period: usize, multiplier: f64, source: PriceSource) -> Bollinger {
        Bollinger {
            source,
            period,
            multiplier,
            moments: SlidingMoments::new(period),
        }
    }
}

impl Indicator for Bollinger {
    crate::state_methods!();

    fn lookback(&self) -> usize {
        self.period - 1
    }

    #[inline]
    fn update(&mut self, bar: &Bar) -> Option<Outputs> {
        let x = self.source.of(bar);
        let (middle, variance) = self.moments.update(x)?;
        let deviation = if is_zero_or_negative(variance) {
            0.0
        } else {
            variance.sqrt()
        };
        let width = if self.multiplier == 1.0 {
            deviation
        } else {
            deviation * self.multiplier
        };
        let (upper, lower) = (middle + width, middle - width);
        let bandwidth = if middle != 0.0 {
            (upper - lower) / middle
        } else {
            0.0
        };
        let percent_b = if upper > lower {
            (x - lower) / (upper - lower)
        } else {
            0.5
        };
        Some([upper, middle, lower, bandwidth, percent_b])
    }

    fn reset(&mut self) {
        self.moments.reset();
    }
}
