//! Moving average convergence/divergence (TA-Lib `MACD`).

use crate::indicators::window::{Ring, SeededEma};
use crate::indicators::{triple, Indicator, Outputs, PriceSource};
use crate::record::Bar;

/// `macd = EMA(fast) - EMA(slow)`, `signal = EMA(signal) of macd`, `hist = macd - signal`.
///
/// As in TA-Lib, both EMAs start on bar `slow - 1`: the slow one seeded with the mean of
/// the first `slow` values, the fast one with the mean of the last `fast` of them (not
/// from bar 0). The signal line is seeded with the mean of the first `signal` MACD
/// values. Lookback `slow + signal - 2`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Macd {
    source: PriceSource,
    fast_period: usize,
    slow_period: usize,
    signal_period: usize,
    history: Ring,
    seen: usize,
    fast: SeededEma,
    slow: SeededEma,
    signal: SeededEma,
}

impl Macd {
    pub fn new(fast: usize, slow: usize, signal: usize, source: PriceSource) -> Macd {
        let (fast, slow) = if slow < fast {
            (slow, fast)
        } else {
            (fast, slow)
        };
        Macd {
            source,
            fast_period: fast,
            slow_period: slow,
            signal_period: signal,
            history: Ring::new(slow),
            seen: 0,
            fast: SeededEma::new(fast),
            slow: SeededEma::new(slow),
            signal: SeededEma::new(signal),
        }
    }

    /// The mean of the last `n` values held, summed oldest first as TA-Lib does.
    fn mean_of_last(&self, n: usize) -> f64 {
        let storage = self.history.storage();
        let len = storage.len();
        // When full, storage order is time order rotated: the oldest sits at `oldest_at`.
        let oldest_at = if self.history.is_full() {
            self.seen % len
        } else {
            0
        };
        let mut sum = 0.0;
        for i in (len - n)..len {
            sum += storage[(oldest_at + i) % len];
        }
        sum / n as f64
    }
}

impl Indicator for Macd {
    crate::state_methods!();

    fn lookback(&self) -> usize {
        self.slow_period + self.signal_period - 2
    }

    #[inline]
    fn update(&mut self, bar: &Bar) -> Option<Outputs> {
        let x = self.source.of(bar);
        self.seen += 1;
        let (fast, slow) = if self.seen < self.slow_period {
            self.history.push(x);
            return None;
        } else if self.seen == self.slow_period {
            self.history.push(x);
            let slow = self.mean_of_last(self.slow_period);
            let fast = self.mean_of_last(self.fast_period);
            self.slow.seed(slow);
            self.fast.seed(fast);
            (fast, slow)
        } else {
            (self.fast.update(x)?, self.slow.update(x)?)
        };
        let macd = fast - slow;
        let signal = self.signal.update(macd)?;
        Some(triple(macd, signal, macd - signal))
    }

    fn reset(&mut self) {
        *self = Macd::new(
            self.fast_period,
            self.slow_period,
            self.signal_period,
            self.source,
        );
    }
}
