//! Volume momentum: the volume of the last ticks against the ticks before them.

use super::TickIndicator;
use crate::indicators::window::Ring;
use crate::indicators::{single, Outputs};
use crate::record::Tick;

/// `Σ size (last ticks) / Σ size (the ticks before them)`, two windows of `ticks` ticks; 1
/// when neither has volume, NaN (null) when only the earlier has none (the predecessor
/// added 1 to the divisor). Lookback `2 * ticks - 1`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct VolumeMomentum {
    ticks: usize,
    sizes: Ring,
}

impl VolumeMomentum {
    pub fn new(ticks: usize) -> VolumeMomentum {
        VolumeMomentum {
            ticks,
            sizes: Ring::new(2 * ticks),
        }
    }
}

impl TickIndicator for VolumeMomentum {
    crate::state_methods!();

    fn lookback(&self) -> usize {
        2 * self.ticks - 1
    }

    fn update(&mut self, tick: &Tick) -> Option<Outputs> {
        self.sizes.push(tick.volume);
        if !self.sizes.is_full() {
            return None;
        }
        let (mut earlier, mut recent) = (0.0, 0.0);
        for (k, v) in self.sizes.in_order().enumerate() {
            if k < self.ticks {
                earlier += v;
            } else {
                recent += v;
            }
        }
        Some(single(match (earlier > 0.0, recent > 0.0) {
            (true, _) => recent / earlier,
            (false, false) => 1.0,
            (false, true) => f64::NAN,
        }))
    }

    fn reset(&mut self) {
        self.sizes.clear();
    }
}
