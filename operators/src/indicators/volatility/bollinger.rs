//! Bollinger Bands (TA-Lib `BBANDS` with an SMA middle band).

use crate::indicators::window::{is_zero_or_negative, SlidingMoments};
use crate::indicators::{Indicator, Outputs, PriceSource};
use crate::record::Bar;

/// Middle = SMA(period); bands = middle ± `stddev` × the population standard deviation
/// of the window around the middle (0 when not positive). Outputs
/// `[upper, middle, lower]`; lookback `period - 1`.
#[derive(Clone, Debug)]
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
    fn lookback(&self) -> usize {
        self.period - 1
    }

    #[inline]
    fn update(&mut self, bar: &Bar) -> Option<Outputs> {
        let (middle, variance) = self.moments.update(self.source.of(bar))?;
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
        Some([middle + width, middle, middle - width])
    }

    fn reset(&mut self) {
        self.moments.reset();
    }
}
