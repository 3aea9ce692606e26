//! Keltner Channels (EMA or SMA middle, ATR bands).

use super::atr::Atr;
use crate::indicators::window::{RollingMean, SeededEma};
use crate::indicators::{triple, Indicator, KeltnerMiddle, Outputs};
use crate::record::Bar;

/// Middle = EMA(`period`) of the close (the StockCharts definition: EMA 20, ATR 10, 2), or
/// its SMA (the predecessor's: SMA 20, ATR 14, 2); bands = middle ± `multiplier` ×
/// ATR(`atr_period`). Each part follows TA-Lib's EMA, SMA and ATR. Outputs `[upper,
/// middle, lower]`; lookback `max(period - 1, atr_period)`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Keltner {
    period: usize,
    multiplier: f64,
    middle: Middle,
    atr: Atr,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
enum Middle {
    Ema(SeededEma),
    Sma(RollingMean),
}

impl Keltner {
    pub fn new(
        period: usize,
        atr_period: usize,
        multiplier: f64,
        middle: KeltnerMiddle,
    ) -> Keltner {
        Keltner {
            period,
            multiplier,
            middle: match middle {
                KeltnerMiddle::Ema => Middle::Ema(SeededEma::new(period)),
                KeltnerMiddle::Sma => Middle::Sma(RollingMean::new(period)),
            },
            atr: Atr::new(atr_period),
        }
    }
}

impl Indicator for Keltner {
    crate::state_methods!();

    fn lookback(&self) -> usize {
        (self.period - 1).max(self.atr.lookback())
    }

    #[inline]
    fn update(&mut self, bar: &Bar) -> Option<Outputs> {
        let middle = match &mut self.middle {
            Middle::Ema(m) => m.update(bar.close),
            Middle::Sma(m) => m.update(bar.close),
        };
        let atr = self.atr.update(bar)?[0];
        let middle = middle?;
        let width = self.multiplier * atr;
        Some(triple(middle + width, middle, middle - width))
    }

    fn reset(&mut self) {
        match &mut self.middle {
            Middle::Ema(m) => m.reset(),
            Middle::Sma(m) => m.reset(),
        }
        self.atr.reset();
    }
}
