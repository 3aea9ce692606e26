//! Tick ratio: up-ticks against down-ticks.

use super::TickIndicator;
use crate::indicators::window::Ring;
use crate::indicators::{single, Outputs};
use crate::record::Tick;

/// Over the last `moves` price moves (`moves + 1` ticks): up-ticks / down-ticks; 10 when there
/// are up-ticks and no down-tick (the predecessor's cap), 1 when the price did not move.
/// Lookback `moves`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct TickRatio {
    /// +1, -1 or 0 per move.
    moves: Ring,
    previous: Option<f64>,
    up: usize,
    down: usize,
}

impl TickRatio {
    pub fn new(moves: usize) -> TickRatio {
        TickRatio {
            moves: Ring::new(moves),
            previous: None,
            up: 0,
            down: 0,
        }
    }
}

impl TickIndicator for TickRatio {
    crate::state_methods!();

    fn lookback(&self) -> usize {
        self.moves.capacity()
    }

    fn update(&mut self, tick: &Tick) -> Option<Outputs> {
        let previous = self.previous.replace(tick.price)?;
        let step = if tick.price > previous {
            1.0
        } else if tick.price < previous {
            -1.0
        } else {
            0.0
        };
        if self.moves.is_full() {
            match self.moves.oldest() {
                s if s > 0.0 => self.up -= 1,
                s if s < 0.0 => self.down -= 1,
                _ => {}
            }
        }
        self.moves.push(step);
        match step {
            s if s > 0.0 => self.up += 1,
            s if s < 0.0 => self.down += 1,
            _ => {}
        }
        if !self.moves.is_full() {
            return None;
        }
        Some(single(match (self.up, self.down) {
            (0, 0) => 1.0,
            (_, 0) => 10.0,
            (up, down) => up as f64 / down as f64,
        }))
    }

    fn reset(&mut self) {
        self.moves.clear();
        self.previous = None;
        self.up = 0;
        self.down = 0;
    }
}
