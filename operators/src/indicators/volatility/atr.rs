//! Average true range, Wilder smoothing (TA-Lib `ATR`).

use crate::indicators::window::true_range;
use crate::indicators::{single, Indicator, Outputs};
use crate::record::Bar;

/// True range from the second bar on; the first ATR is the mean of the first `period`
/// true ranges, then `atr = (atr * (period - 1) + tr) / period`. With period 1 it is
/// the true range itself. Lookback `period`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Atr {
    period: usize,
    seen: usize,
    previous_close: f64,
    sum: f64,
    atr: f64,
}

impl Atr {
    pub fn new(period: usize) -> Atr {
        Atr {
            period,
            seen: 0,
            previous_close: 0.0,
            sum: 0.0,
            atr: 0.0,
        }
    }
}

impl Indicator for Atr {
    crate::state_methods!();

    fn lookback(&self) -> usize {
        self.period
    }

    #[inline]
    fn update(&mut self, bar: &Bar) -> Option<Outputs> {
        let previous_close = std::mem::replace(&mut self.previous_close, bar.close);
        self.seen += 1;
        if self.seen == 1 {
            return None;
        }
        let tr = true_range(bar.high, bar.low, previous_close);
        if self.period == 1 {
            return Some(single(tr));
        }
        let n = self.period as f64;
        if self.seen <= self.period + 1 {
            self.sum += tr;
            if self.seen <= self.period {
                return None;
            }
            self.atr = self.sum / n;
        } else {
            self.atr *= n - 1.0;
            self.atr += tr;
            self.atr /= n;
        }
        Some(single(self.atr))
    }

    fn reset(&mut self) {
        *self = Atr::new(self.period);
    }
}
