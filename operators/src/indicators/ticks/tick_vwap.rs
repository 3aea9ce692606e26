//! Tick VWAP: the volume-weighted price of the last ticks.

use super::TickIndicator;
use crate::indicators::window::Ring;
use crate::indicators::{single, Outputs};
use crate::record::Tick;

/// `Σ price × size / Σ size` over the last `ticks` ticks, each tick's own size (the
/// predecessor weighted by the cumulative day volume); the mean price when the window
/// has no volume (quotes, FX). Lookback `ticks - 1`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct TickVwap {
    prices: Ring,
    sizes: Ring,
}

impl TickVwap {
    pub fn new(ticks: usize) -> TickVwap {
        TickVwap {
            prices: Ring::new(ticks),
            sizes: Ring::new(ticks),
        }
    }
}

impl TickIndicator for TickVwap {
    crate::state_methods!();

    fn lookback(&self) -> usize {
        self.prices.capacity() - 1
    }

    fn update(&mut self, tick: &Tick) -> Option<Outputs> {
        self.prices.push(tick.price);
        self.sizes.push(tick.volume);
        if !self.prices.is_full() {
            return None;
        }
        // Summed afresh: a running sum of products would drift over millions of ticks.
        let (mut notional, mut volume, mut sum) = (0.0, 0.0, 0.0);
        for (p, v) in self.prices.in_order().zip(self.sizes.in_order()) {
            notional += p * v;
            volume += v;
            sum += p;
        }
        let n = self.prices.len() as f64;
        Some(single(if volume > 0.0 {
            notional / volume
        } else {
            sum / n
        }))
    }

    fn reset(&mut self) {
        self.prices.clear();
        self.sizes.clear();
    }
}
