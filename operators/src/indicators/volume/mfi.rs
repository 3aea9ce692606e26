//! Money flow index (TA-Lib `MFI`).

use crate::indicators::window::Ring;
use crate::indicators::{single, Indicator, Outputs};
use crate::record::Bar;

/// Money flow = typical price × volume, positive when the typical price rose, negative
/// when it fell, neither when it moved by 1e-14 of itself or less (TA-Lib's tolerance); `100 * positive / (positive + negative)` over the
/// last `period` flows, 0 when their total is below 1 (TA-Lib's guard). Lookback `period`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Mfi {
    period: usize,
    previous: Option<f64>,
    /// The last `period` flows, signed: positive, negative (stored negated) or 0.
    flows: Ring,
    positive_sum: f64,
    negative_sum: f64,
}

impl Mfi {
    pub fn new(period: usize) -> Mfi {
        Mfi {
            period,
            previous: None,
            flows: Ring::new(period),
            positive_sum: 0.0,
            negative_sum: 0.0,
        }
    }
}

impl Indicator for Mfi {
    crate::state_methods!();

    fn lookback(&self) -> usize {
        self.period
    }

    #[inline]
    fn update(&mut self, bar: &Bar) -> Option<Outputs> {
        let typical = bar.typical_price();
        let previous = self.previous.replace(typical)?;
        let flow = typical * bar.volume.to_f64();
        // TA-Lib 0.6 counts a change within 1e-14 of the price as none (rounding noise).
        let change = typical - previous;
        let moved = change.abs() > 1e-14 * typical.abs().max(previous.abs());
        // Selects rather than branches: rises and falls alternate unpredictably.
        let up = if moved && change > 0.0 { flow } else { 0.0 };
        let down = if moved && change < 0.0 { flow } else { 0.0 };
        if self.flows.is_full() {
            // Flows are stored signed: a rise positive, a fall negated, none 0.
            let old = self.flows.oldest();
            self.positive_sum -= old.max(0.0);
            self.negative_sum -= (-old).max(0.0);
        }
        self.flows.push(up - down);
        self.positive_sum += up;
        self.negative_sum += down;
        if !self.flows.is_full() {
            return None;
        }
        let total = self.positive_sum + self.negative_sum;
        Some(single(if total < 1.0 {
            0.0
        } else {
            100.0 * (self.positive_sum / total)
        }))
    }

    fn reset(&mut self) {
        *self = Mfi::new(self.period);
    }
}
