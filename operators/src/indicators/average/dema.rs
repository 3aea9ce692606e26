//! Double exponential moving average (TA-Lib `DEMA`).

use crate::indicators::window::SeededEma;
use crate::indicators::{single, Indicator, Outputs, PriceSource};
use crate::record::Bar;

/// `2 * EMA - EMA(EMA)`, each EMA TA-Lib's (seeded with the mean of its first `period`
/// inputs). Lookback `2 * (period - 1)`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Dema {
    source: PriceSource,
    period: usize,
    first: SeededEma,
    second: SeededEma,
}

impl Dema {
    pub fn new(period: usize, source: PriceSource) -> Dema {
        Dema {
            source,
            period,
            first: SeededEma::new(period),
            second: SeededEma::new(period),
        }
    }
}

impl Indicator for Dema {
    crate::state_methods!();

    fn lookback(&self) -> usize {
        2 * (self.period - 1)
    }

    #[inline]
    fn update(&mut self, bar: &Bar) -> Option<Outputs> {
        let one = self.first.update(self.source.of(bar))?;
        let two = self.second.update(one)?;
        Some(single((2.0 * one) - two))
    }

    fn reset(&mut self) {
        self.first.reset();
        self.second.reset();
    }
}
