//! Aroon up and down with the oscillator (TA-Lib `AROON`, `AROONOSC`).

use crate::indicators::window::Ring;
use crate::indicators::{triple, Indicator, Outputs};
use crate::record::Bar;

/// Over the last `period + 1` bars: `up = 100 * (period - bars since the highest high) /
/// period`, `down` the same for the lowest low (the latest of equal extremes counts, as in
/// TA-Lib), and `oscillator = up - down`. Outputs `[up, down, oscillator]`; lookback
/// `period`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Aroon {
    period: usize,
    seen: usize,
    highs: Ring,
    lows: Ring,
    /// The extremes and the bar number each was seen at (`None` before the first output).
    highest: Option<(usize, f64)>,
    lowest: Option<(usize, f64)>,
}

impl Aroon {
    pub fn new(period: usize) -> Aroon {
        Aroon {
            period,
            seen: 0,
            highs: Ring::new(period + 1),
            lows: Ring::new(period + 1),
            highest: None,
            lowest: None,
        }
    }
}

/// Keeps `extreme` the latest best value of the window ending at bar `today`: the new
/// value when it is at least as good, or a scan of the window when the old extreme left it.
#[inline]
fn track(
    extreme: &mut Option<(usize, f64)>,
    window: &Ring,
    today: usize,
    oldest: usize,
    value: f64,
    better_or_equal: impl Fn(f64, f64) -> bool,
) -> usize {
    match *extreme {
        Some((at, best)) if at >= oldest => {
            if better_or_equal(value, best) {
                *extreme = Some((today, value));
            }
        }
        _ => {
            let mut best = (oldest, f64::NAN);
            for (k, v) in window.in_order().enumerate() {
                if k == 0 || better_or_equal(v, best.1) {
                    best = (oldest + k, v);
                }
            }
            *extreme = Some(best);
        }
    }
    today - extreme.map_or(today, |(at, _)| at)
}

impl Indicator for Aroon {
    crate::state_methods!();

    fn lookback(&self) -> usize {
        self.period
    }

    #[inline]
    fn update(&mut self, bar: &Bar) -> Option<Outputs> {
        let today = self.seen;
        self.seen += 1;
        self.highs.push(bar.high);
        self.lows.push(bar.low);
        if !self.highs.is_full() {
            return None;
        }
        let oldest = today - self.period;
        let since_high = track(
            &mut self.highest,
            &self.highs,
            today,
            oldest,
            bar.high,
            |v, b| v >= b,
        );
        let since_low = track(
            &mut self.lowest,
            &self.lows,
            today,
            oldest,
            bar.low,
            |v, b| v <= b,
        );
        let factor = 100.0 / self.period as f64;
        let up = factor * (self.period - since_high) as f64;
        let down = factor * (self.period - since_low) as f64;
        Some(triple(up, down, up - down))
    }

    fn reset(&mut self) {
        *self = Aroon::new(self.period);
    }
}
