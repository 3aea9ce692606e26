//! Williams %R (TA-Lib `WILLR`).

use crate::indicators::window::WindowExtremes;
use crate::indicators::{single, Indicator, Outputs};
use crate::record::Bar;

/// `-100 * (highest high - close) / (highest high - lowest low)` over `period` bars, in
/// [-100, 0]; 0 when the range is empty. Lookback `period - 1`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct WilliamsR {
    period: usize,
    extremes: WindowExtremes,
}

impl WilliamsR {
    pub fn new(period: usize) -> WilliamsR {
        WilliamsR {
            period,
            extremes: WindowExtremes::new(period),
        }
    }
}

impl Indicator for WilliamsR {
    crate::state_methods!();

    fn lookback(&self) -> usize {
        self.period - 1
    }

    #[inline]
    fn update(&mut self, bar: &Bar) -> Option<Outputs> {
        let (highest, lowest) = self.extremes.update(bar.high, bar.low)?;
        let range = (highest - lowest) / -100.0;
        Some(single(if range != 0.0 {
            (highest - bar.close) / range
        } else {
            0.0
        }))
    }

    fn reset(&mut self) {
        self.extremes.reset();
    }
}
