//! Slow stochastic oscillator (TA-Lib `STOCH` with SMA smoothing).

use crate::indicators::window::{RollingMean, WindowExtremes};
use crate::indicators::{triple, Indicator, Outputs};
use crate::record::Bar;

/// Fast %K = `100 * (close - lowest low) / (highest high - lowest low)` over `k` bars
/// (0 when the range is empty); %K = SMA(`k_smooth`) of fast %K; %D = SMA(`d`) of %K.
/// Lookback `k + k_smooth + d - 3`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Stochastic {
    periods: (usize, usize, usize),
    extremes: WindowExtremes,
    slow_k: RollingMean,
    slow_d: RollingMean,
}

impl Stochastic {
    pub fn new(k: usize, k_smooth: usize, d: usize) -> Stochastic {
        Stochastic {
            periods: (k, k_smooth, d),
            extremes: WindowExtremes::new(k),
            slow_k: RollingMean::new(k_smooth),
            slow_d: RollingMean::new(d),
        }
    }
}

impl Indicator for Stochastic {
    crate::state_methods!();

    fn lookback(&self) -> usize {
        self.periods.0 + self.periods.1 + self.periods.2 - 3
    }

    #[inline]
    fn update(&mut self, bar: &Bar) -> Option<Outputs> {
        let (highest, lowest) = self.extremes.update(bar.high, bar.low)?;
        let range = (highest - lowest) / 100.0;
        let fast_k = if range != 0.0 {
            (bar.close - lowest) / range
        } else {
            0.0
        };
        let k = self.slow_k.update(fast_k)?;
        let d = self.slow_d.update(k)?;
        Some(triple(k, d, f64::NAN))
    }

    fn reset(&mut self) {
        *self = Stochastic::new(self.periods.0, self.periods.1, self.periods.2);
    }
}
