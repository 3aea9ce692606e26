//! On-balance volume (TA-Lib `OBV`).

use crate::indicators::{single, Indicator, Outputs};
use crate::record::Bar;

/// Starts at the first bar's volume; adds the volume of an up-close bar, subtracts that
/// of a down-close bar. Lookback 0.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Obv {
    started: bool,
    previous_close: f64,
    obv: f64,
}

impl Indicator for Obv {
    crate::state_methods!();

    fn lookback(&self) -> usize {
        0
    }

    #[inline]
    fn update(&mut self, bar: &Bar) -> Option<Outputs> {
        let volume = bar.volume.to_f64();
        if !self.started {
            self.started = true;
            self.obv = volume;
        } else if bar.close > self.previous_close {
            self.obv += volume;
        } else if bar.close < self.previous_close {
            self.obv -= volume;
        }
        self.previous_close = bar.close;
        Some(single(self.obv))
    }

    fn reset(&mut self) {
        *self = Obv::default();
    }
}
