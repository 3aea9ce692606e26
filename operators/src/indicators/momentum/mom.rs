//! Momentum (TA-Lib `MOM`).

use crate::indicators::window::Ring;
use crate::indicators::{single, Indicator, Outputs, PriceSource};
use crate::record::Bar;

/// `x - x[period bars ago]`. Lookback `period`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Mom {
    source: PriceSource,
    period: usize,
    ring: Ring,
}

impl Mom {
    pub fn new(period: usize, source: PriceSource) -> Mom {
        Mom {
            source,
            period,
            ring: Ring::new(period + 1),
        }
    }
}

impl Indicator for Mom {
    crate::state_methods!();

    fn lookback(&self) -> usize {
        self.period
    }

    #[inline]
    fn update(&mut self, bar: &Bar) -> Option<Outputs> {
        let x = self.source.of(bar);
        self.ring.push(x);
        self.ring.is_full().then(|| single(x - self.ring.oldest()))
    }

    fn reset(&mut self) {
        self.ring.clear();
    }
}
