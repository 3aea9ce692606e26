//! Kaufman adaptive moving average (TA-Lib `KAMA`).

use crate::indicators::window::{is_zero, Ring};
use crate::indicators::{single, Indicator, Outputs, PriceSource};
use crate::record::Bar;

/// Efficiency ratio `|x - x[period]| / Σ|x - x[1]|` over the last `period` changes (1 when
/// the change is at least the path, or the path is 0), smoothing constant
/// `(er * (2/3 - 2/31) + 2/31)²` (fast 2, slow 30), and `kama += sc * (x - kama)` from the
/// price before the first value. Lookback `period`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Kama {
    source: PriceSource,
    period: usize,
    /// The last `period + 1` prices.
    prices: Ring,
    path: f64,
    kama: f64,
}

const SLOWEST: f64 = 2.0 / 31.0;
const SPREAD: f64 = 2.0 / 3.0 - SLOWEST;

impl Kama {
    pub fn new(period: usize, source: PriceSource) -> Kama {
        Kama {
            source,
            period,
            prices: Ring::new(period + 1),
            path: 0.0,
            kama: 0.0,
        }
    }
}

impl Indicator for Kama {
    crate::state_methods!();

    fn lookback(&self) -> usize {
        self.period
    }

    #[inline]
    fn update(&mut self, bar: &Bar) -> Option<Outputs> {
        let x = self.source.of(bar);
        let full_before = self.prices.is_full();
        let (oldest, second) = if full_before {
            let mut old = self.prices.in_order();
            (old.next().unwrap_or(x), old.next().unwrap_or(x))
        } else {
            (0.0, 0.0)
        };
        // Before the first value, the price before it stands for the previous KAMA.
        let previous = self.prices.newest();
        if !self.prices.is_empty() {
            self.path += (x - self.prices.newest()).abs();
        }
        if full_before {
            // The change leaving the window: from the oldest price to the next.
            self.path -= (second - oldest).abs();
        }
        self.prices.push(x);
        if !self.prices.is_full() {
            return None;
        }
        let change = x - self.prices.oldest();
        let ratio = if self.path <= change || is_zero(self.path) {
            1.0
        } else {
            (change / self.path).abs()
        };
        let constant = ratio * SPREAD + SLOWEST;
        let constant = constant * constant;
        let start = if full_before { self.kama } else { previous };
        self.kama = ((x - start) * constant) + start;
        Some(single(self.kama))
    }

    fn reset(&mut self) {
        self.prices.clear();
        self.path = 0.0;
        self.kama = 0.0;
    }
}
