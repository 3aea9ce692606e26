//! Rate limits (`server.rate_limit`): token buckets (governor's GCRA) per API key, per
//! client address, for failed authentication per address, and per WebSocket connection.
//!
//! An address that runs out of failed attempts is locked out until its bucket refills:
//! its keys are not even checked meanwhile, so guessing costs the server nothing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::spec::server::{Bucket, RateLimitConfig};

/// Addresses locked out at once at most (each a few dozen bytes).
const MAX_LOCKED: usize = 100_000;

pub struct Limits {
    per_key: DefaultKeyedRateLimiter<Arc<str>>,
    per_address: DefaultKeyedRateLimiter<IpAddr>,
    failed_auth: DefaultKeyedRateLimiter<IpAddr>,
    locked: Mutex<HashMap<IpAddr, Instant>>,
    ws_commands: Quota,
    clock: DefaultClock,
}

/// How long a limited caller should wait.
pub struct Limited(pub Duration);

impl Limited {
    /// `Retry-After` in whole seconds, at least 1.
    pub fn retry_after(&self) -> u64 {
        (self.0.as_secs() + u64::from(self.0.subsec_nanos() > 0)).max(1)
    }
}

fn quota(bucket: &Bucket) -> Quota {
    let burst = NonZeroU32::new(bucket.burst()).unwrap_or(NonZeroU32::MIN);
    Quota::with_period(bucket.rate.period())
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(burst)
}

impl Limits {
    pub fn new(config: &RateLimitConfig) -> Limits {
        Limits {
            per_key: RateLimiter::keyed(quota(&config.per_key)),
            per_address: RateLimiter::keyed(quota(&config.per_address)),
            failed_auth: RateLimiter::keyed(quota(&config.failed_auth)),
            locked: Mutex::default(),
            ws_commands: quota(&config.ws_commands),
            clock: DefaultClock::default(),
        }
    }

    fn verdict<K: std::hash::Hash + Eq + Clone>(
        &self,
        limiter: &DefaultKeyedRateLimiter<K>,
        key: &K,
    ) -> Result<(), Limited> {
        limiter
            .check_key(key)
            .map_err(|not_until| Limited(not_until.wait_time_from(self.clock.now())))
    }

    /// One request from `address`.
    pub fn address(&self, address: IpAddr) -> Result<(), Limited> {
        self.verdict(&self.per_address, &address)
    }

    /// One request with the key named `name`.
    pub fn key(&self, name: &Arc<str>) -> Result<(), Limited> {
        self.verdict(&self.per_key, name)
    }

    /// Whether `address` is locked out after failed attempts.
    pub fn locked_out(&self, address: IpAddr) -> Result<(), Limited> {
        let Ok(mut locked) = self.locked.lock() else {
            return Ok(());
        };
        let now = Instant::now();
        match locked.get(&address) {
            Some(until) if *until > now => Err(Limited(*until - now)),
            Some(_) => {
                locked.remove(&address);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// A wrong or unknown key from `address`: `Err` once its attempts run out, and it is
    /// locked out until they refill.
    pub fn failed(&self, address: IpAddr) -> Result<(), Limited> {
        let limited = self.verdict(&self.failed_auth, &address);
        if let Err(Limited(wait)) = &limited {
            if let Ok(mut locked) = self.locked.lock() {
                if locked.len() >= MAX_LOCKED {
                    let now = Instant::now();
                    locked.retain(|_, until| *until > now);
                }
                if locked.len() < MAX_LOCKED {
                    locked.insert(address, Instant::now() + *wait);
                }
            }
        }
        limited
    }

    /// The command bucket of a new WebSocket connection.
    pub fn ws_commands(&self) -> DefaultDirectRateLimiter {
        RateLimiter::direct(self.ws_commands)
    }

    /// Forgets buckets that are full again (run now and then: the address maps would
    /// otherwise keep every address ever seen).
    pub fn forget_idle(&self) {
        for limiter in [&self.per_address, &self.failed_auth] {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        self.per_key.retain_recent();
        if let Ok(mut locked) = self.locked.lock() {
            let now = Instant::now();
            locked.retain(|_, until| *until > now);
            locked.shrink_to_fit();
        }
    }

    pub fn tracked_addresses(&self) -> usize {
        self.per_address.len() + self.failed_auth.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_attempts_lock_an_address_out() {
        let mut config = RateLimitConfig::default();
        config.failed_auth.rate.value = "2/min".parse().unwrap();
        config.failed_auth.burst = Some(3);
        let limits = Limits::new(&config);
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        for _ in 0..3 {
            assert!(limits.locked_out(a).is_ok());
            assert!(limits.failed(a).is_ok());
        }
        let limited = limits.failed(a).unwrap_err();
        assert!(limited.retry_after() >= 1 && limited.retry_after() <= 30);
        assert!(limits.locked_out(a).is_err());
        assert!(limits.locked_out(b).is_ok() && limits.failed(b).is_ok());
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(Limited(Duration::from_millis(1)).retry_after(), 1);
        assert_eq!(Limited(Duration::ZERO).retry_after(), 1);
        assert_eq!(Limited(Duration::from_secs(2)).retry_after(), 2);
        assert_eq!(Limited(Duration::from_millis(2001)).retry_after(), 3);
    }
}
