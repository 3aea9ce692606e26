//! Percentage price oscillator (TA-Lib `PPO`).

use serde::{Deserialize, Serialize};

use crate::indicators::window::{is_zero, RollingMean, SeededEma};
use crate::indicators::{single, Indicator, Outputs, PriceSource};
use crate::record::Bar;

/// The moving average of a PPO.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Average {
    /// TA-Lib's EMA (the usual definition).
    #[default]
    Ema,
    /// TA-Lib's SMA (TA-Lib's default `matype`).
    Sma,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
enum Mean {
    Ema(SeededEma),
    Sma(RollingMean),
}

impl Mean {
    fn new(average: Average, period: usize) -> Mean {
        match average {
            Average::Ema => Mean::Ema(SeededEma::new(period)),
            Average::Sma => Mean::Sma(RollingMean::new(period)),
        }
    }

    #[inline]
    fn update(&mut self, x: f64) -> Option<f64> {
        match self {
            Mean::Ema(m) => m.update(x),
            Mean::Sma(m) => m.update(x),
        }
    }

    fn reset(&mut self) {
        match self {
            Mean::Ema(m) => m.reset(),
            Mean::Sma(m) => m.reset(),
        }
    }
}

/// `100 * (fast - slow) / slow` of two moving averages of the price, both from the first
/// bar, 0 when the slow average is 0. Lookback `slow - 1`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Ppo {
    source: PriceSource,
    slow_period: usize,
    fast: Mean,
    slow: Mean,
}

impl Ppo {
    pub fn new(fast: usize, slow: usize, average: Average, source: PriceSource) -> Ppo {
        let (fast, slow) = (fast.min(slow), fast.max(slow));
        Ppo {
            source,
            slow_period: slow,
            fast: Mean::new(average, fast),
            slow: Mean::new(average, slow),
        }
    }
}

impl Indicator for Ppo {
    crate::state_methods!();

    fn lookback(&self) -> usize {
        self.slow_period - 1
    }

    #[inline]
    fn update(&mut self, bar: &Bar) -> Option<Outputs> {
        let x = self.source.of(bar);
        let fast = self.fast.update(x);
        let slow = self.slow.update(x)?;
        let fast = fast?;
        Some(single(if is_zero(slow) {
            0.0
        } else {
            ((fast - slow) / slow) * 100.0
        }))
    }

    fn reset(&mut self) {
        self.fast.reset();
        self.slow.reset();
    }
}
