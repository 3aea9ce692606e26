//! Price velocity: the percentage change over the last ticks.

use super::TickIndicator;
use crate::indicators::window::Ring;
use crate::indicators::{single, Outputs};
use crate::record::Tick;

/// `100 * (p / p_first - 1)` over the last `ticks` prices (the newest against the oldest
/// of the window: `ticks - 1` moves); 0 when the oldest is 0. Lookback `ticks - 1`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct PriceVelocity {
    prices: Ring,
}

impl PriceVelocity {
    pub fn new(ticks: usize) -> PriceVelocity {
        PriceVelocity {
            prices: Ring::new(ticks),
        }
    }
}

impl TickIndicator for PriceVelocity {
    crate::state_methods!();

    fn lookback(&self) -> usize {
        self.prices.capacity() - 1
    }

    fn update(&mut self, tick: &Tick) -> Option<Outputs> {
        self.prices.push(tick.price);
        if !self.prices.is_full() {
            return None;
        }
        let first = self.prices.oldest();
        Some(single(if first != 0.0 {
            (tick.price / first - 1.0) * 100.0
        } else {
            0.0
        }))
    }

    fn reset(&mut self) {
        self.prices.clear();
    }
}
