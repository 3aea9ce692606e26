//! Population standard deviation (TA-Lib `STDDEV`).

use crate::indicators::window::{is_zero_or_negative, SlidingMoments};
use crate::indicators::{single, Indicator, Outputs, PriceSource};
use crate::record::Bar;

/// `nbdev` × the population standard deviation of the last `period` values, computed
/// around their mean in one pass (stable on flat prices); 0 when the variance is not
/// positive. Lookback `period - 1`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct StdDev {
    source: PriceSource,
    period: usize,
    nbdev: f64,
    moments: SlidingMoments,
}

impl StdDev {
    pub fn new(period: usize, nbdev: f64, source: PriceSource) -> StdDev {
        StdDev {
            source,
            period,
            nbdev,
            moments: SlidingMoments::new(period),
        }
    }
}

impl Indicator for StdDev {
    crate::state_methods!();

    fn lookback(&self) -> usize {
        self.period - 1
    }

    #[inline]
    fn update(&mut self, bar: &Bar) -> Option<Outputs> {
        let (_, variance) = self.moments.update(self.source.of(bar))?;
        let deviation = if is_zero_or_negative(variance) {
            0.0
        } else if self.nbdev == 1.0 {
            variance.sqrt()
        } else {
            variance.sqrt() * self.nbdev
        };
        Some(single(deviation))
    }

    fn reset(&mut self) {
        self.moments.reset();
    }
}
