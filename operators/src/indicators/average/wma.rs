//! Linearly weighted moving average (TA-Lib `WMA`).

use crate::indicators::window::Ring;
use crate::indicators::{single, Indicator, Outputs, PriceSource};
use crate::record::Bar;

/// Weights 1..=period, newest heaviest; lookback `period - 1`. Kept as TA-Lib does: a
/// weighted sum and a plain sum, each updated in O(1).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Wma {
    source: PriceSource,
    period: usize,
    ring: Ring,
    seen: usize,
    weighted: f64,
    plain: f64,
    trailing: f64,
}

impl Wma {
    pub fn new(period: usize, source: PriceSource) -> Wma {
        Wma {
            source,
            period,
            ring: Ring::new(period),
            seen: 0,
            weighted: 0.0,
            plain: 0.0,
            trailing: 0.0,
        }
    }
}

impl Indicator for Wma {
    crate::state_methods!();

    fn lookback(&self) -> usize {
        self.period - 1
    }

    #[inline]
    fn update(&mut self, bar: &Bar) -> Option<Outputs> {
        let x = self.source.of(bar);
        self.ring.push(x);
        self.seen += 1;
        if self.seen < self.period {
            self.plain += x;
            self.weighted += x * self.seen as f64;
            return None;
        }
        let n = self.period as f64;
        self.plain += x;
        self.plain -= self.trailing;
        self.weighted += x * n;
        self.trailing = self.ring.oldest();
        let value = self.weighted / (n * (n + 1.0) / 2.0);
        self.weighted -= self.plain;
        Some(single(value))
    }

    fn reset(&mut self) {
        self.ring.clear();
        self.seen = 0;
        self.weighted = 0.0;
        self.plain = 0.0;
        self.trailing = 0.0;
    }
}
