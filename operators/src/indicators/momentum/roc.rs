//! Rate of change (TA-Lib `ROC`).

use crate::indicators::window::Ring;
use crate::indicators::{single, Indicator, Outputs, PriceSource};
use crate::record::Bar;

/// `100 * (x / x[period bars ago] - 1)`; 0 when the old value is 0. Lookback `period`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Roc {
    source: PriceSource,
    period: usize,
    ring: Ring,
}

impl Roc {
    pub fn new(period: usize, source: PriceSource) -> Roc {
        Roc {
            source,
            period,
            ring: Ring::new(period + 1),
        }
    }
}

impl Indicator for Roc {
    crate::state_methods!();

    fn lookback(&self) -> usize {
        self.period
    }

    #[inline]
    fn update(&mut self, bar: &Bar) -> Option<Outputs> {
        let x = self.source.of(bar);
        self.ring.push(x);
        if !self.ring.is_full() {
            return None;
        }
        let old = self.ring.oldest();
        Some(single(if old != 0.0 {
            ((x / old) - 1.0) * 100.0
        } else {
            0.0
        }))
    }

    fn reset(&mut self) {
        self.ring.clear();
    }
}
