//! Commodity channel index (TA-Lib `CCI`).

use crate::indicators::window::Ring;
use crate::indicators::{single, Indicator, Outputs};
use crate::record::Bar;

/// `(tp - mean(tp)) / (0.015 * mean |tp - mean(tp)|)` over `period` typical prices
/// `(high + low + close) / 3`; 0 when either part is 0. Lookback `period - 1`.
///
/// As in TA-Lib the mean is summed afresh over the window on every bar (a running sum
/// would leave rounding residue on flat prices and turn 0/0 into noise); both passes use
/// four independent accumulators to stay short.
#[derive(Clone, Debug)]
pub struct Cci {
    period: usize,
    ring: Ring,
}

impl Cci {
    pub fn new(period: usize) -> Cci {
        Cci {
            period,
            ring: Ring::new(period),
        }
    }
}

fn sum_of(values: &[f64], f: impl Fn(f64) -> f64) -> f64 {
    let mut acc = [0.0f64; 4];
    let mut chunks = values.chunks_exact(4);
    for chunk in &mut chunks {
        for (a, v) in acc.iter_mut().zip(chunk) {
            *a += f(*v);
        }
    }
    let tail: f64 = chunks.remainder().iter().map(|v| f(*v)).sum();
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

impl Indicator for Cci {
    fn lookback(&self) -> usize {
        self.period - 1
    }

    #[inline]
    fn update(&mut self, bar: &Bar) -> Option<Outputs> {
        let tp = (bar.high + bar.low + bar.close) / 3.0;
        self.ring.push(tp);
        if !self.ring.is_full() {
            return None;
        }
        let n = self.period as f64;
        let values = self.ring.storage();
        let mean = sum_of(values, |v| v) / n;
        let deviation = sum_of(values, |v| (v - mean).abs()) / n;
        let distance = tp - mean;
        // A window whose spread is only rounding is flat: CCI is 0, as TA-Lib gives.
        let flat = deviation <= 1e-12 * mean.abs();
        Some(single(if distance != 0.0 && !flat {
            distance / (0.015 * deviation)
        } else {
            0.0
        }))
    }

    fn reset(&mut self) {
        self.ring.clear();
    }
}
