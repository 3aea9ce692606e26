//! Chande momentum oscillator (TA-Lib `CMO`).

use super::rsi::Rsi;
use crate::indicators::window::is_zero;
use crate::indicators::{single, Indicator, Outputs, PriceSource};
use crate::record::Bar;

/// `100 * (gain - loss) / (gain + loss)` of the Wilder-smoothed average gain and loss,
/// smoothed as TA-Lib's RSI is; 0 without movement. Lookback `period`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Cmo {
    source: PriceSource,
    averages: Rsi,
}

impl Cmo {
    pub fn new(period: usize, source: PriceSource) -> Cmo {
        Cmo {
            source,
            averages: Rsi::new(period, source),
        }
    }
}

impl Indicator for Cmo {
    crate::state_methods!();

    fn lookback(&self) -> usize {
        self.averages.lookback()
    }

    #[inline]
    fn update(&mut self, bar: &Bar) -> Option<Outputs> {
        if !self.averages.advance(self.source.of(bar)) {
            return None;
        }
        let (gain, loss) = self.averages.averages();
        let total = gain + loss;
        Some(single(if is_zero(total) {
            0.0
        } else {
            100.0 * ((gain - loss) / total)
        }))
    }

    fn reset(&mut self) {
        self.averages.reset();
    }
}
