//! Williams %R (TA-Lib `WILLR`).

use crate::indicators::window::RollingExtreme;
use crate::indicators::{single, Indicator, Outputs};
use crate::record::Bar;

/// `-100 * (highest high - close) / (highest high - lowest low)` over `period` bars, in
/// [-100, 0]; 0 when the range is empty. Lookback `period - 1`.
#[derive(Clone, Debug)]
pub struct WilliamsR {
    period: usize,
    highest: RollingExtreme,
    lowest: RollingExtreme,
}

impl WilliamsR {
    pub fn new(period: usize) -> WilliamsR {
        WilliamsR {
            period,
            highest: RollingExtreme::max(period),
            lowest: RollingExtreme::min(period),
        }
    }
}

impl Indicator for WilliamsR {
    fn lookback(&self) -> usize {
        self.period - 1
    }

    #[inline]
    fn update(&mut self, bar: &Bar) -> Option<Outputs> {
        let highest = self.highest.update(bar.high);
        let lowest = self.lowest.update(bar.low)?;
        let highest = highest?;
        let range = (highest - lowest) / -100.0;
        Some(single(if range != 0.0 {
            (highest - bar.close) / range
        } else {
            0.0
        }))
    }

    fn reset(&mut self) {
        self.highest.reset();
        self.lowest.reset();
    }
}
