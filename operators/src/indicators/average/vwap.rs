//! Session VWAP: volume-weighted average price since the session began.

use crate::calendar::{Calendar, Windower};
use crate::fixed::Fixed;
use crate::indicators::{single, Indicator, Outputs};
use crate::interval::Interval;
use crate::record::Bar;

/// Sum of traded notional over sum of volume since the start of the bar's session (the
/// UTC day, or the session of the bars' calendar). Bars built from ticks carry their
/// exact notional, so this is the true VWAP; bars read without a `vwap` column count at
/// their typical price, as pandas-ta does. Integer sums make it exact and order-free.
/// Lookback 0; no value while the session has traded no volume.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Vwap {
    #[serde(skip, default = "utc_days")]
    sessions: Windower,
    session_start: i64,
    notional: Fixed,
    volume: Fixed,
}

impl Vwap {
    pub fn new(calendar: Calendar) -> Vwap {
        Vwap {
            sessions: Windower::new(Interval::D1, calendar),
            session_start: i64::MIN,
            notional: Fixed::ZERO,
            volume: Fixed::ZERO,
        }
    }
}

impl Indicator for Vwap {
    fn save(&self) -> Vec<u8> {
        crate::state::encode(self)
    }
    fn load(&mut self, state: &[u8]) -> Result<(), crate::state::StateError> {
        // The sessions is configuration, not state: it stays this instance's.
        let mut loaded: Vwap = crate::state::decode(state)?;
        std::mem::swap(&mut loaded.sessions, &mut self.sessions);
        *self = loaded;
        Ok(())
    }

    fn lookback(&self) -> usize {
        0
    }

    #[inline]
    fn update(&mut self, bar: &Bar) -> Option<Outputs> {
        let session = self.sessions.window_of(bar.start)?;
        if session.start != self.session_start {
            self.session_start = session.start;
            self.notional = Fixed::ZERO;
            self.volume = Fixed::ZERO;
        }
        self.notional += bar.notional;
        self.volume += bar.volume;
        (!self.volume.is_zero()).then(|| single(self.notional.0 as f64 / self.volume.0 as f64))
    }

    fn reset(&mut self) {
        self.session_start = i64::MIN;
        self.notional = Fixed::ZERO;
        self.volume = Fixed::ZERO;
    }
}

/// What a skipped `sessions` is read as before the instance's own is put back.
fn utc_days() -> Windower {
    Windower::new(Interval::D1, Calendar::Utc)
}
