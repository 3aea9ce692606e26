//! Simple moving average (TA-Lib `SMA`).

use crate::indicators::window::RollingMean;
use crate::indicators::{single, Indicator, Outputs, PriceSource};
use crate::record::Bar;

/// Mean of the last `period` values; lookback `period - 1`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Sma {
    source: PriceSource,
    mean: RollingMean,
    period: usize,
}

impl Sma {
    pub fn new(period: usize, source: PriceSource) -> Sma {
        Sma {
            source,
            mean: RollingMean::new(period),
            period,
        }
    }
}

impl Indicator for Sma {
    crate::state_methods!();

    fn lookback(&self) -> usize {
        self.period - 1
    }

    #[inline]
    fn update(&mut self, bar: &Bar) -> Option<Outputs> {
        self.mean.update(self.source.of(bar)).map(single)
    }

    fn reset(&mut self) {
        self.mean.reset();
    }
}
