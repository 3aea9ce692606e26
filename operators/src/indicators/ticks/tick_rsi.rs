//! Tick RSI: Cutler's RSI (simple averages) over the last ticks.

use super::TickIndicator;
use crate::indicators::window::Ring;
use crate::indicators::{single, Outputs};
use crate::record::Tick;

/// Over the last `moves` price moves (`moves + 1` ticks): `100 * Σ gains / (Σ gains + Σ
/// losses)`, 50 when the price did not move (the predecessor's all-gain case gave 99.01,
/// not 100). Lookback `moves`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct TickRsi {
    prices: Ring,
}

impl TickRsi {
    pub fn new(moves: usize) -> TickRsi {
        TickRsi {
            prices: Ring::new(moves + 1),
        }
    }
}

impl TickIndicator for TickRsi {
    crate::state_methods!();

    fn lookback(&self) -> usize {
        self.prices.capacity() - 1
    }

    fn update(&mut self, tick: &Tick) -> Option<Outputs> {
        self.prices.push(tick.price);
        if !self.prices.is_full() {
            return None;
        }
        // Summed afresh over the window: exact, and the window is short.
        let (mut gains, mut losses) = (0.0, 0.0);
        let mut previous = None;
        for p in self.prices.in_order() {
            if let Some(q) = previous {
                let change = p - q;
                if change > 0.0 {
                    gains += change;
                } else {
                    losses -= change;
                }
            }
            previous = Some(p);
        }
        let total = gains + losses;
        Some(single(if total > 0.0 {
            100.0 * gains / total
        } else {
            50.0
        }))
    }

    fn reset(&mut self) {
        self.prices.clear();
    }
}
