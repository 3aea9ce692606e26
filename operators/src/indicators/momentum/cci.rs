//! Commodity channel index (TA-Lib `CCI`).

use crate::indicators::window::SlidingMoments;
use crate::indicators::{single, Indicator, Outputs};
use crate::record::Bar;

/// `(tp - mean(tp)) / (0.015 * mean |tp - mean(tp)|)` over `period` typical prices
/// `(high + low + close) / 3`; 0 when either part is 0. Lookback `period - 1`.
///
/// The mean comes from shifted running sums (O(1)); the mean deviation has no running
/// form, so one pass over the window computes it. A window whose spread is only
/// rounding is flat and gives 0, as TA-Lib does.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Cci {
    period: usize,
    moments: SlidingMoments,
}

impl Cci {
    pub fn new(period: usize) -> Cci {
        Cci {
            period,
            moments: SlidingMoments::new(period),
        }
    }
}

/// Sum of `|v - mean|` with four independent accumulators (short dependency chains).
#[inline(always)]
fn absolute_deviations(values: &[f64], mean: f64) -> f64 {
    let mut acc = [0.0f64; 4];
    let quads = values.len() / 4 * 4;
    let mut i = 0;
    while i < quads {
        acc[0] += (values[i] - mean).abs();
        acc[1] += (values[i + 1] - mean).abs();
        acc[2] += (values[i + 2] - mean).abs();
        acc[3] += (values[i + 3] - mean).abs();
        i += 4;
    }
    let mut total = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for v in &values[quads..] {
        total += (v - mean).abs();
    }
    total
}

impl Indicator for Cci {
    crate::state_methods!();

    fn lookback(&self) -> usize {
        self.period - 1
    }

    #[inline]
    fn update(&mut self, bar: &Bar) -> Option<Outputs> {
        let tp = (bar.high + bar.low + bar.close) / 3.0;
        let (mean, _) = self.moments.update(tp)?;
        let deviation = absolute_deviations(self.moments.window(), mean) / self.period as f64;
        let distance = tp - mean;
        let flat = deviation <= 1e-12 * mean.abs();
        Some(single(if distance != 0.0 && !flat {
            distance / (0.015 * deviation)
        } else {
            0.0
        }))
    }

    fn reset(&mut self) {
        self.moments.reset();
    }
}
