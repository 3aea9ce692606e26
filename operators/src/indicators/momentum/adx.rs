//! Average directional index with +DI and -DI (TA-Lib `ADX`, `PLUS_DI`, `MINUS_DI`).

use crate::indicators::window::{is_zero, true_range};
use crate::indicators::{triple, Indicator, Outputs};
use crate::record::Bar;

/// Wilder-smoothed directional movement and true range; `DI = 100 * DM / TR`,
/// `DX = 100 * |+DI - -DI| / (+DI + -DI)`, ADX seeded with the mean of the first
/// `period` DX values, then Wilder-smoothed. Outputs `[adx, plus_di, minus_di]` from
/// TA-Lib's ADX lookback `2 * period - 1`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Adx {
    period: usize,
    seen: usize,
    previous: (f64, f64, f64),
    plus_dm: f64,
    minus_dm: f64,
    tr: f64,
    dx_sum: f64,
    adx: f64,
}

impl Adx {
    pub fn new(period: usize) -> Adx {
        Adx {
            period,
            seen: 0,
            previous: (0.0, 0.0, 0.0),
            plus_dm: 0.0,
            minus_dm: 0.0,
            tr: 0.0,
            dx_sum: 0.0,
            adx: 0.0,
        }
    }
}

impl Indicator for Adx {
    crate::state_methods!();

    fn lookback(&self) -> usize {
        2 * self.period - 1
    }

    #[inline]
    fn update(&mut self, bar: &Bar) -> Option<Outputs> {
        let (previous_high, previous_low, previous_close) = self.previous;
        self.previous = (bar.high, bar.low, bar.close);
        self.seen += 1;
        if self.seen == 1 {
            return None;
        }
        let n = self.period as f64;
        let up = bar.high - previous_high;
        let down = previous_low - bar.low;
        let range = true_range(bar.high, bar.low, previous_close);
        let smoothing = self.seen > self.period;
        // Multiplying by 1/n instead of dividing differs from TA-Lib by an ulp at most,
        // and Wilder smoothing damps it; divisions were most of the update's cost.
        let inv_n = 1.0 / n;
        if smoothing {
            self.minus_dm -= self.minus_dm * inv_n;
            self.plus_dm -= self.plus_dm * inv_n;
        }
        if down > 0.0 && up < down {
            self.minus_dm += down;
        } else if up > 0.0 && up > down {
            self.plus_dm += up;
        }
        if !smoothing {
            self.tr += range;
            return None;
        }
        self.tr = self.tr - (self.tr * inv_n) + range;
        let (mut plus_di, mut minus_di, mut dx) = (0.0, 0.0, None);
        if !is_zero(self.tr) {
            let scale = 100.0 / self.tr;
            minus_di = self.minus_dm * scale;
            plus_di = self.plus_dm * scale;
            let total = minus_di + plus_di;
            if !is_zero(total) {
                dx = Some(100.0 * ((minus_di - plus_di).abs() / total));
            }
        }
        // The first ADX is the mean of the first `period` DX values (bar 2 * period - 1).
        let first_output = 2 * self.period;
        if self.seen <= first_output {
            self.dx_sum += dx.unwrap_or(0.0);
            if self.seen < first_output {
                return None;
            }
            self.adx = self.dx_sum * inv_n;
        } else if let Some(dx) = dx {
            self.adx = ((self.adx * (n - 1.0)) + dx) * inv_n;
        }
        Some(triple(self.adx, plus_di, minus_di))
    }

    fn reset(&mut self) {
        *self = Adx::new(self.period);
    }
}
