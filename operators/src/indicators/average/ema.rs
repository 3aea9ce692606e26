//! Exponential moving average (TA-Lib `EMA`, default compatibility).

use crate::indicators::window::SeededEma;
use crate::indicators::{single, Indicator, Outputs, PriceSource};
use crate::record::Bar;

/// `k = 2 / (period + 1)`, seeded with the SMA of the first `period` values;
/// lookback `period - 1`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Ema {
    source: PriceSource,
    ema: SeededEma,
    period: usize,
}

impl Ema {
    pub fn new(period: usize, source: PriceSource) -> Ema {
        Ema {
            source,
            ema: SeededEma::new(period),
            period,
        }
    }
}

impl Indicator for Ema {
    crate::state_methods!();

    fn lookback(&self) -> usize {
        self.period - 1
    }

    #[inline]
    fn update(&mut self, bar: &Bar) -> Option<Outputs> {
        self.ema.update(self.source.of(bar)).map(single)
    }

    fn reset(&mut self) {
        self.ema.reset();
    }
}
