//! Fixed-size building blocks shared by the indicators. Each allocates once, at
//! construction, so updates in steady state never touch the allocator.

use std::collections::VecDeque;

/// The last `capacity` values, oldest first when iterated in time order.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Ring {
    values: Vec<f64>,
    next: usize,
    len: usize,
}

impl Ring {
    pub fn new(capacity: usize) -> Ring {
        Ring {
            values: vec![0.0; capacity.max(1)],
            next: 0,
            len: 0,
        }
    }

    /// Appends `value`, overwriting the oldest when full.
    #[inline]
    pub fn push(&mut self, value: f64) {
        self.values[self.next] = value;
        // A branch, not `%`: an integer division would cost more than the whole update.
        self.next += 1;
        if self.next == self.values.len() {
            self.next = 0;
        }
        if self.len < self.values.len() {
            self.len += 1;
        }
    }

    pub fn is_full(&self) -> bool {
        self.len == self.values.len()
    }

    pub fn capacity(&self) -> usize {
        self.values.len()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The oldest value held.
    #[inline]
    pub fn oldest(&self) -> f64 {
        if self.is_full() {
            self.values[self.next]
        } else {
            self.values[0]
        }
    }

    /// The value pushed last (0 when empty).
    #[inline]
    pub fn newest(&self) -> f64 {
        if self.len == 0 {
            return 0.0;
        }
        let at = if self.next == 0 {
            self.values.len() - 1
        } else {
            self.next - 1
        };
        self.values[at]
    }

    /// The value pushed `k` pushes ago (0: the newest); `k` must be below `len()`.
    #[inline]
    pub fn back(&self, k: usize) -> f64 {
        let cap = self.values.len();
        let at = if self.next > k {
            self.next - 1 - k
        } else {
            self.next + cap - 1 - k
        };
        self.values[at]
    }

    /// The values held, oldest first.
    pub fn in_order(&self) -> impl Iterator<Item = f64> + '_ {
        let (newer, older) = if self.is_full() {
            self.values.split_at(self.next)
        } else {
            (&self.values[..self.len], &self.values[..0])
        };
        older.iter().chain(newer).copied()
    }

    /// The values in storage order (not time order), as TA-Lib's circular buffers sum them.
    pub fn storage(&self) -> &[f64] {
        &self.values[..self.len]
    }

    pub fn clear(&mut self) {
        self.next = 0;
        self.len = 0;
    }
}

/// TA-Lib's simple moving average: a running sum, added to before and trimmed after
/// each output, in that order, so the values match TA-Lib's bit for bit.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct RollingMean {
    ring: Ring,
    period: usize,
    sum: f64,
}

impl RollingMean {
    pub fn new(period: usize) -> RollingMean {
        RollingMean {
            ring: Ring::new(period),
            period,
            sum: 0.0,
        }
    }

    #[inline]
    pub fn update(&mut self, value: f64) -> Option<f64> {
        self.ring.push(value);
        self.sum += value;
        if !self.ring.is_full() {
            return None;
        }
        let mean = self.sum / self.period as f64;
        self.sum -= self.ring.oldest();
        Some(mean)
    }

    pub fn reset(&mut self) {
        self.ring.clear();
        self.sum = 0.0;
    }
}

/// TA-Lib's EMA: seeded with the mean of the first `period` values, then
/// `ema += (x - ema) * 2 / (period + 1)`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct SeededEma {
    period: usize,
    k: f64,
    seen: usize,
    sum: f64,
    value: f64,
}

impl SeededEma {
    pub fn new(period: usize) -> SeededEma {
        SeededEma {
            period,
            k: 2.0 / (period as f64 + 1.0),
            seen: 0,
            sum: 0.0,
            value: 0.0,
        }
    }

    #[inline]
    pub fn update(&mut self, x: f64) -> Option<f64> {
        if self.seen < self.period {
            self.seen += 1;
            self.sum += x;
            if self.seen < self.period {
                return None;
            }
            self.value = self.sum / self.period as f64;
        } else {
            self.value += (x - self.value) * self.k;
        }
        Some(self.value)
    }

    /// Starts from a given seed, as if `period` values had been seen.
    pub fn seed(&mut self, value: f64) {
        self.seen = self.period;
        self.value = value;
    }

    pub fn reset(&mut self) {
        self.seen = 0;
        self.sum = 0.0;
        self.value = 0.0;
    }
}

/// The extreme (max or min) of the last `period` values, by a monotonic deque: O(1)
/// amortised per update, no allocation after construction.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct RollingExtreme {
    period: usize,
    max: bool,
    count: u64,
    deque: VecDeque<(u64, f64)>,
}

impl RollingExtreme {
    pub fn max(period: usize) -> RollingExtreme {
        RollingExtreme {
            period,
            max: true,
            count: 0,
            deque: VecDeque::with_capacity(period + 1),
        }
    }

    pub fn min(period: usize) -> RollingExtreme {
        RollingExtreme {
            period,
            max: false,
            count: 0,
            deque: VecDeque::with_capacity(period + 1),
        }
    }

    /// Adds `value`; returns the extreme once `period` values were seen.
    #[inline]
    pub fn update(&mut self, value: f64) -> Option<f64> {
        let beaten = |kept: f64| {
            if self.max {
                kept <= value
            } else {
                kept >= value
            }
        };
        while self.deque.back().is_some_and(|&(_, v)| beaten(v)) {
            self.deque.pop_back();
        }
        self.deque.push_back((self.count, value));
        self.count += 1;
        while self
            .deque
            .front()
            .is_some_and(|&(i, _)| i + (self.period as u64) < self.count)
        {
            self.deque.pop_front();
        }
        (self.count >= self.period as u64).then(|| self.deque.front().map_or(value, |&(_, v)| v))
    }

    pub fn reset(&mut self) {
        self.count = 0;
        self.deque.clear();
    }
}

/// Mean and population variance of the last `period` values in O(1) per update.
///
/// Sums are kept of deviations from a shift near the data, so `E[d²] - E[d]²` cancels
/// little (the plain `E[x²] - E[x]²` of prices near 100 loses eight digits); every
/// `period` updates the shift moves to the current mean and the sums are recomputed
/// exactly, so rounding residue never builds up (on flat prices the variance is 0, as
/// TA-Lib gives).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct SlidingMoments {
    ring: Ring,
    period: usize,
    shift: f64,
    sum: f64,
    sum_squares: f64,
    since_rebase: usize,
}

impl SlidingMoments {
    pub fn new(period: usize) -> SlidingMoments {
        SlidingMoments {
            ring: Ring::new(period),
            period,
            shift: 0.0,
            sum: 0.0,
            sum_squares: 0.0,
            since_rebase: 0,
        }
    }

    /// Adds `x`; `(mean, variance)` of the window once it is full.
    #[inline]
    pub fn update(&mut self, x: f64) -> Option<(f64, f64)> {
        if self.ring.is_empty() {
            self.shift = x;
        }
        self.ring.push(x);
        let d = x - self.shift;
        self.sum += d;
        self.sum_squares += d * d;
        if !self.ring.is_full() {
            return None;
        }
        let n = self.period as f64;
        let mean_d = self.sum / n;
        let variance = self.sum_squares / n - mean_d * mean_d;
        let mean = self.shift + mean_d;
        let old = self.ring.oldest() - self.shift;
        self.sum -= old;
        self.sum_squares -= old * old;
        self.since_rebase += 1;
        if self.since_rebase >= self.period {
            self.rebase(mean);
        }
        Some((mean, variance))
    }

    /// Recomputes the sums exactly around `shift`, leaving out the oldest value (which
    /// the next update evicts).
    fn rebase(&mut self, shift: f64) {
        self.shift = shift;
        self.since_rebase = 0;
        let oldest = self.ring.oldest();
        let (mut sum, mut sum_squares) = (0.0, 0.0);
        for &v in self.ring.storage() {
            let d = v - shift;
            sum += d;
            sum_squares += d * d;
        }
        let d = oldest - shift;
        self.sum = sum - d;
        self.sum_squares = sum_squares - d * d;
    }

    /// The values of the window, in storage order.
    pub fn window(&self) -> &[f64] {
        self.ring.storage()
    }

    pub fn reset(&mut self) {
        self.ring.clear();
        self.sum = 0.0;
        self.sum_squares = 0.0;
        self.since_rebase = 0;
    }
}

/// The maximum and minimum of the last `period` values: a scan of a small window
/// (cheaper than a deque below a few dozen values), a monotonic deque above.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub enum WindowExtremes {
    Scan {
        highs: Ring,
        lows: Ring,
    },
    Deque {
        highs: RollingExtreme,
        lows: RollingExtreme,
    },
}

impl WindowExtremes {
    pub fn new(period: usize) -> WindowExtremes {
        if period <= 48 {
            WindowExtremes::Scan {
                highs: Ring::new(period),
                lows: Ring::new(period),
            }
        } else {
            WindowExtremes::Deque {
                highs: RollingExtreme::max(period),
                lows: RollingExtreme::min(period),
            }
        }
    }

    /// Adds a high and a low; `(highest, lowest)` once `period` pairs were seen.
    #[inline]
    pub fn update(&mut self, high: f64, low: f64) -> Option<(f64, f64)> {
        match self {
            WindowExtremes::Scan { highs, lows } => {
                highs.push(high);
                lows.push(low);
                if !highs.is_full() {
                    return None;
                }
                let mut top = f64::NEG_INFINITY;
                for &v in highs.storage() {
                    top = if v > top { v } else { top };
                }
                let mut bottom = f64::INFINITY;
                for &v in lows.storage() {
                    bottom = if v < bottom { v } else { bottom };
                }
                Some((top, bottom))
            }
            WindowExtremes::Deque { highs, lows } => {
                let top = highs.update(high);
                let bottom = lows.update(low);
                Some((top?, bottom?))
            }
        }
    }

    pub fn reset(&mut self) {
        match self {
            WindowExtremes::Scan { highs, lows } => {
                highs.clear();
                lows.clear();
            }
            WindowExtremes::Deque { highs, lows } => {
                highs.reset();
                lows.reset();
            }
        }
    }
}

/// TA-Lib's `TA_IS_ZERO`.
#[inline]
pub fn is_zero(v: f64) -> bool {
    -0.000_000_000_000_01 < v && v < 0.000_000_000_000_01
}

/// TA-Lib's `TA_IS_ZERO_OR_NEG`.
#[inline]
pub fn is_zero_or_negative(v: f64) -> bool {
    v < 0.000_000_000_000_01
}

/// TA-Lib's true range against the previous close.
#[inline]
pub fn true_range(high: f64, low: f64, previous_close: f64) -> f64 {
    let mut greatest = high - low;
    let up = (previous_close - high).abs();
    if up > greatest {
        greatest = up;
    }
    let down = (previous_close - low).abs();
    if down > greatest {
        greatest = down;
    }
    greatest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_keeps_the_last_values() {
        let mut r = Ring::new(3);
        for v in [1.0, 2.0, 3.0, 4.0] {
            r.push(v);
        }
        assert_eq!(r.oldest(), 2.0);
        assert_eq!(r.storage(), &[4.0, 2.0, 3.0]);
    }

    #[test]
    fn extremes_slide() {
        let mut hi = RollingExtreme::max(3);
        let mut lo = RollingExtreme::min(3);
        let values = [5.0, 1.0, 4.0, 2.0, 3.0, 0.5];
        let highs: Vec<_> = values.iter().map(|v| hi.update(*v)).collect();
        let lows: Vec<_> = values.iter().map(|v| lo.update(*v)).collect();
        assert_eq!(
            highs,
            [None, None, Some(5.0), Some(4.0), Some(4.0), Some(3.0)]
        );
        assert_eq!(
            lows,
            [None, None, Some(1.0), Some(1.0), Some(2.0), Some(0.5)]
        );
    }
}
