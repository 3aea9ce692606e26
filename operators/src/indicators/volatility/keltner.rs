//! Keltner Channels (EMA middle, ATR bands).

use super::atr::Atr;
use crate::indicators::window::SeededEma;
use crate::indicators::{Indicator, Outputs};
use crate::record::Bar;

/// Middle = EMA(`period`) of the close; bands = middle ± `multiplier` × ATR(`atr_period`)
/// (the StockCharts definition: EMA 20, ATR 10, 2). Both parts follow TA-Lib's EMA and
/// ATR. Outputs `[upper, middle, lower]`; lookback `max(period - 1, atr_period)`.
#[derive(Clone, Debug)]
pub struct Keltner {
    period: usize,
    multiplier: f64,
    ema: SeededEma,
    atr: Atr,
}

impl Keltner {
    pub fn new(period: usize, atr_period: usize, multiplier: f64) -> Keltner {
        Keltner {
            period,
            multiplier,
            ema: SeededEma::new(period),
            atr: Atr::new(atr_period),
        }
    }
}

impl Indicator for Keltner {
    fn lookback(&self) -> usize {
        (self.period - 1).max(self.atr.lookback())
    }

    #[inline]
    fn update(&mut self, bar: &Bar) -> Option<Outputs> {
        let middle = self.ema.update(bar.close);
        let atr = self.atr.update(bar)?[0];
        let middle = middle?;
        let width = self.multiplier * atr;
        Some([middle + width, middle, middle - width])
    }

    fn reset(&mut self) {
        self.ema.reset();
        self.atr.reset();
    }
}
