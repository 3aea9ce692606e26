//! Bollinger bandwidth and position over the last ticks.

use super::TickIndicator;
use crate::indicators::window::{is_zero_or_negative, SlidingMoments};
use crate::indicators::Outputs;
use crate::record::Tick;

/// Mean ± `stddev` × population σ of the last `ticks` prices; `bandwidth = (upper -
/// lower) / mean`, `position = (p - lower) / (upper - lower)` (0.5 when the bands meet).
/// Outputs `[bandwidth, position]`; lookback `ticks - 1`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct TickBollinger {
    ticks: usize,
    multiplier: f64,
    moments: SlidingMoments,
}

impl TickBollinger {
    pub fn new(ticks: usize, multiplier: f64) -> TickBollinger {
        TickBollinger {
            ticks,
            multiplier,
            moments: SlidingMoments::new(ticks),
        }
    }
}

impl TickIndicator for TickBollinger {
    crate::state_methods!();

    fn lookback(&self) -> usize {
        self.ticks - 1
    }

    fn update(&mut self, tick: &Tick) -> Option<Outputs> {
        let (mean, variance) = self.moments.update(tick.price)?;
        let deviation = if is_zero_or_negative(variance) {
            0.0
        } else {
            variance.sqrt()
        };
        let width = 2.0 * self.multiplier * deviation;
        let lower = mean - self.multiplier * deviation;
        let bandwidth = if mean != 0.0 { width / mean } else { 0.0 };
        let position = if width > 0.0 {
            (tick.price - lower) / width
        } else {
            0.5
        };
        Some([bandwidth, position, f64::NAN, f64::NAN, f64::NAN])
    }

    fn reset(&mut self) {
        self.moments.reset();
    }
}
