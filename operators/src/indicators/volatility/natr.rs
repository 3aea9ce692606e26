//! Normalised average true range (TA-Lib `NATR`).

use super::atr::Atr;
use crate::indicators::{single, Indicator, Outputs};
use crate::record::Bar;

/// `100 * ATR(period) / close`, 0 when the close is 0. Lookback `period`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Natr {
    atr: Atr,
}

impl Natr {
    pub fn new(period: usize) -> Natr {
        Natr {
            atr: Atr::new(period),
        }
    }
}

impl Indicator for Natr {
    crate::state_methods!();

    fn lookback(&self) -> usize {
        self.atr.lookback()
    }

    #[inline]
    fn update(&mut self, bar: &Bar) -> Option<Outputs> {
        let atr = self.atr.update(bar)?[0];
        Some(single(if bar.close != 0.0 {
            (atr / bar.close) * 100.0
        } else {
            0.0
        }))
    }

    fn reset(&mut self) {
        self.atr.reset();
    }
}
