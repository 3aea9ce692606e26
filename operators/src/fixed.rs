//! Exact quantities: volume and notional as integers of 1e-12 units.
//!
//! Sums of `f64` depend on the order of addition, so a 5-minute bar summed from five
//! 1-minute bars would differ in the last bits from one summed from the ticks. Integer
//! sums do not, which makes cascades and any worker count give identical bars.

use serde::{Deserialize, Serialize};

/// Units per 1.0.
pub const SCALE: f64 = 1e12;

/// A quantity in 1e-12 units.
#[derive(
    Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Fixed(pub i128);

impl Fixed {
    pub const ZERO: Fixed = Fixed(0);

    /// Rounds `value` to the nearest 1e-12 (half away from zero); non-finite values give 0.
    #[inline]
    pub fn from_f64(value: f64) -> Fixed {
        let scaled = value * SCALE;
        let rounded = scaled + 0.5f64.copysign(scaled);
        if rounded.abs() < 9.2e18 {
            Fixed(i128::from(rounded as i64))
        } else if rounded.is_finite() {
            Fixed(rounded as i128)
        } else {
            Fixed(0)
        }
    }

    #[inline]
    pub fn to_f64(self) -> f64 {
        self.0 as f64 / SCALE
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }
}

impl std::ops::Add for Fixed {
    type Output = Fixed;
    #[inline]
    fn add(self, rhs: Fixed) -> Fixed {
        Fixed(self.0.saturating_add(rhs.0))
    }
}

impl std::ops::AddAssign for Fixed {
    #[inline]
    fn add_assign(&mut self, rhs: Fixed) {
        self.0 = self.0.saturating_add(rhs.0);
    }
}

impl std::ops::Sub for Fixed {
    type Output = Fixed;
    #[inline]
    fn sub(self, rhs: Fixed) -> Fixed {
        Fixed(self.0.saturating_sub(rhs.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_decimals() {
        for v in [
            0.0,
            0.1,
            1.0,
            100.0,
            12_500.0,
            0.000_000_01,
            123_456.789,
            -2.5,
            9e10,
        ] {
            assert_eq!(Fixed::from_f64(v).to_f64(), v, "{v}");
        }
        assert_eq!(Fixed::from_f64(f64::NAN), Fixed::ZERO);
        assert_eq!(Fixed::from_f64(1e20).to_f64(), 1e20);
    }

    #[test]
    fn sums_are_associative() {
        let values = [0.1, 0.2, 0.3, 1e-8, 123.456, 7.77, 1e9];
        let forward = values
            .iter()
            .fold(Fixed::ZERO, |a, &v| a + Fixed::from_f64(v));
        let backward = values
            .iter()
            .rev()
            .fold(Fixed::ZERO, |a, &v| a + Fixed::from_f64(v));
        assert_eq!(forward, backward);
    }
}
