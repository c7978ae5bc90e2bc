//! Keyed rate limits (GCRA): joins and password attempts per client address and per
//! tenant. Kept per replica; a client spreading attempts over N replicas gets N times
//! the budget, which the load balancer's affinity keeps small.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// `burst` events at once, then one per `period`.
pub struct RateLimiter {
    period: Duration,
    burst: u32,
    /// Key → theoretical arrival time.
    tat: Mutex<HashMap<String, Instant>>,
}

/// Keys kept before stale ones are swept.
const SWEEP_AT: usize = 10_000;

impl RateLimiter {
    pub fn new(burst: u32, period: Duration) -> Self {
        Self {
            period,
            burst: burst.max(1),
            tat: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one event for `key`; `false` when over the limit (nothing is counted).
    pub fn check(&self, key: &str, now: Instant) -> bool {
        let mut tat = self
            .tat
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if tat.len() >= SWEEP_AT {
            tat.retain(|_, t| *t > now);
        }
        let tolerance = self.period * (self.burst - 1);
        let current = tat.get(key).copied().unwrap_or(now).max(now);
        if current > now + tolerance {
            return false;
        }
        tat.insert(key.to_owned(), current + self.period);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_a_burst_then_one_per_period() {
        let limiter = RateLimiter::new(3, Duration::from_secs(10));
        let t0 = Instant::now();
        assert!(limiter.check("a", t0));
        assert!(limiter.check("a", t0));
        assert!(limiter.check("a", t0));
        assert!(!limiter.check("a", t0));
        assert!(limiter.check("b", t0), "keys are independent");
        assert!(!limiter.check("a", t0 + Duration::from_secs(9)));
        assert!(limiter.check("a", t0 + Duration::from_secs(10)));
    }
}
