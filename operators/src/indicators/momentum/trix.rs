//! TRIX: the rate of change of a triple-smoothed EMA (TA-Lib `TRIX`).

use crate::indicators::window::SeededEma;
use crate::indicators::{single, Indicator, Outputs, PriceSource};
use crate::record::Bar;

/// `100 * (e / e[1] - 1)` of `e = EMA(EMA(EMA(x)))` (TA-Lib's EMAs), 0 when the previous
/// is 0. Lookback `3 * (period - 1) + 1`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Trix {
    source: PriceSource,
    period: usize,
    emas: [SeededEma; 3],
    previous: Option<f64>,
}

impl Trix {
    pub fn new(period: usize, source: PriceSource) -> Trix {
        Trix {
            source,
            period,
            emas: [
                SeededEma::new(period),
                SeededEma::new(period),
                SeededEma::new(period),
            ],
            previous: None,
        }
    }
}

impl Indicator for Trix {
    crate::state_methods!();

    fn lookback(&self) -> usize {
        3 * (self.period - 1) + 1
    }

    #[inline]
    fn update(&mut self, bar: &Bar) -> Option<Outputs> {
        let one = self.emas[0].update(self.source.of(bar))?;
        let two = self.emas[1].update(one)?;
        let three = self.emas[2].update(two)?;
        let previous = self.previous.replace(three)?;
        Some(single(if previous != 0.0 {
            ((three / previous) - 1.0) * 100.0
        } else {
            0.0
        }))
    }

    fn reset(&mut self) {
        self.emas.iter_mut().for_each(SeededEma::reset);
        self.previous = None;
    }
}
