//! Triple exponential moving average (TA-Lib `TEMA`).

use crate::indicators::window::SeededEma;
use crate::indicators::{single, Indicator, Outputs, PriceSource};
use crate::record::Bar;

/// `3 * EMA - 3 * EMA(EMA) + EMA(EMA(EMA))` with TA-Lib's EMAs. Lookback
/// `3 * (period - 1)`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Tema {
    source: PriceSource,
    period: usize,
    emas: [SeededEma; 3],
}

impl Tema {
    pub fn new(period: usize, source: PriceSource) -> Tema {
        Tema {
            source,
            period,
            emas: [
                SeededEma::new(period),
                SeededEma::new(period),
                SeededEma::new(period),
            ],
        }
    }
}

impl Indicator for Tema {
    crate::state_methods!();

    fn lookback(&self) -> usize {
        3 * (self.period - 1)
    }

    #[inline]
    fn update(&mut self, bar: &Bar) -> Option<Outputs> {
        let one = self.emas[0].update(self.source.of(bar))?;
        let two = self.emas[1].update(one)?;
        let three = self.emas[2].update(two)?;
        Some(single((3.0 * one) - (3.0 * two) + three))
    }

    fn reset(&mut self) {
        self.emas.iter_mut().for_each(SeededEma::reset);
    }
}
