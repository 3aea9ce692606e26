//! Average directional movement rating (TA-Lib `ADXR`).

use super::adx::Adx;
use crate::indicators::window::Ring;
use crate::indicators::{single, Indicator, Outputs};
use crate::record::Bar;

/// `(ADX + ADX[period - 1 bars ago]) / 2`. Lookback `3 * period - 2`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Adxr {
    period: usize,
    adx: Adx,
    history: Ring,
}

impl Adxr {
    pub fn new(period: usize) -> Adxr {
        Adxr {
            period,
            adx: Adx::new(period),
            history: Ring::new(period),
        }
    }
}

impl Indicator for Adxr {
    crate::state_methods!();

    fn lookback(&self) -> usize {
        self.adx.lookback() + self.period - 1
    }

    #[inline]
    fn update(&mut self, bar: &Bar) -> Option<Outputs> {
        let adx = self.adx.update(bar)?[0];
        self.history.push(adx);
        self.history
            .is_full()
            .then(|| single((adx + self.history.oldest()) / 2.0))
    }

    fn reset(&mut self) {
        self.adx.reset();
        self.history.clear();
    }
}
