//! Capped exponential backoff with jitter: the one used by every reconnect and retry of the
//! sources and sinks (live feeds, history requests, database writes, topic creation).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Waits that start at `first`, double after each attempt up to `cap`, and are shortened by
/// up to a share (`jitter`) at random, so that clients that lost the same server do not all
/// come back at once.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    cap: Duration,
    /// The share of a wait taken off at most (0.5: up to half).
    jitter: f64,
    step: Duration,
    seed: u64,
}

impl Backoff {
    pub fn new(first: Duration, cap: Duration, jitter: f64) -> Backoff {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            | 1;
        Backoff {
            first,
            cap: cap.max(first),
            jitter: jitter.clamp(0.0, 1.0),
            step: first,
            seed,
        }
    }

    /// Starts over from the first wait (after a success that lasted).
    pub fn reset(&mut self) {
        self.step = self.first;
    }

    /// The next wait: the current step, less its jitter.
    pub fn wait(&mut self) -> Duration {
        self.wait_or(None)
    }

    /// The next wait, or `wait` instead of the step when the server said how long (a
    /// `Retry-After`), capped; the step doubles either way.
    pub fn wait_or(&mut self, wait: Option<Duration>) -> Duration {
        let wait = wait.unwrap_or(self.step).min(self.cap);
        self.step = (self.step * 2).min(self.cap);
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        wait - wait.mul_f64(self.jitter * (self.seed % 1000) as f64 / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIRST: Duration = Duration::from_millis(250);
    const CAP: Duration = Duration::from_secs(30);

    #[test]
    fn waits_double_up_to_the_cap_with_jitter_and_reset() {
        let mut b = Backoff::new(FIRST, CAP, 0.5);
        let first = b.wait();
        assert!(first <= FIRST && first >= FIRST / 2, "{first:?}");
        for _ in 0..20 {
            assert!(b.wait() <= CAP);
        }
        assert!(b.wait() >= CAP / 2, "the step stays at the cap");
        b.reset();
        assert!(b.wait() <= FIRST);
    }

    #[test]
    fn a_wait_the_server_gave_is_kept_but_capped() {
        let mut b = Backoff::new(FIRST, CAP, 0.0);
        assert_eq!(
            b.wait_or(Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        assert_eq!(b.wait_or(Some(Duration::from_secs(99))), CAP);
        // The step went on doubling meanwhile: 250 ms, 500 ms, now 1 s.
        assert_eq!(b.wait(), Duration::from_secs(1));
    }

    #[test]
    fn without_jitter_the_waits_are_exact() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(300), 0.0);
        let waits: Vec<u128> = (0..4).map(|_| b.wait().as_millis()).collect();
        assert_eq!(waits, [100, 200, 300, 300]);
    }
}
