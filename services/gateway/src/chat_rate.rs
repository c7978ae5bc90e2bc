//! How fast one member may post in a room's chat: a burst at once, then a steady
//! rate (the generic cell rate algorithm, one cell per member). Sends, edits and file
//! shares count; deletes do not (taking words back, or a host clearing a flood, is
//! never held). A post over the limit is refused before it reaches the chat service,
//! with how long until it would be accepted.

use std::time::{Duration, Instant};

/// The limit every member of this gateway's rooms posts under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChatRate {
    /// Posts per second, steady; 0: no limit.
    pub per_second: u32,
    /// Posts at once, after a quiet moment.
    pub burst: u32,
}

impl ChatRate {
    /// Five posts a second, twenty at once: far above anyone typing, and a member
    /// flooding a 1,000-member room is held to 5,000 deliveries a second.
    pub const DEFAULT: Self = Self {
        per_second: 5,
        burst: 20,
    };

    /// No limit (load tests of the fan-out itself).
    pub const UNLIMITED: Self = Self {
        per_second: 0,
        burst: 0,
    };

    pub fn is_limited(self) -> bool {
        self.per_second > 0
    }
}

/// One member's posts so far, against its [`ChatRate`].
#[derive(Clone, Debug)]
pub(crate) struct ChatAllowance {
    rate: ChatRate,
    /// When the next post would be on time at the steady rate.
    next: Instant,
}

/// A post over the limit.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct OverLimit {
    pub(crate) rate: ChatRate,
    /// Until a post would be accepted.
    pub(crate) retry_after: Duration,
}

impl std::fmt::Display for OverLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "too many chat messages: {} a second, {} at once; try again in {} ms",
            self.rate.per_second,
            self.rate.burst.max(1),
            self.retry_after_ms()
        )
    }
}

impl OverLimit {
    /// [`OverLimit::retry_after`] in whole milliseconds, rounded up (at least 1).
    pub(crate) fn retry_after_ms(&self) -> u32 {
        let ms = self.retry_after.as_micros().div_ceil(1000).max(1);
        u32::try_from(ms).unwrap_or(u32::MAX)
    }
}

impl ChatAllowance {
    pub(crate) fn new(rate: ChatRate, now: Instant) -> Self {
        Self { rate, next: now }
    }

    /// Counts one post at `now`, or refuses it (counting nothing).
    pub(crate) fn take(&mut self, now: Instant) -> Result<(), OverLimit> {
        if !self.rate.is_limited() {
            return Ok(());
        }
        // Between two posts at the steady rate, and how far ahead of now the next may
        // be allowed (the burst).
        let period = Duration::from_secs(1) / self.rate.per_second;
        let burst = period * (self.rate.burst.max(1) - 1);
        let next = self.next.max(now);
        let early = next - now;
        if early > burst {
            return Err(OverLimit {
                rate: self.rate,
                retry_after: early - burst,
            });
        }
        self.next = next + period;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const RATE: ChatRate = ChatRate {
        per_second: 4,
        burst: 3,
    };
    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_burst_at_once_then_the_steady_rate() {
        let t0 = Instant::now();
        let mut allowance = ChatAllowance::new(RATE, t0);
        for _ in 0..3 {
            assert_eq!(allowance.take(t0), Ok(()));
        }
        let over = allowance.take(t0).expect_err("the fourth at once");
        assert_eq!(over.retry_after, 250 * MS);
        assert_eq!(over.retry_after_ms(), 250);
        assert_eq!(
            over.to_string(),
            "too many chat messages: 4 a second, 3 at once; try again in 250 ms"
        );
        // Refused posts count for nothing: the wait does not grow.
        let again = allowance.take(t0 + 100 * MS).expect_err("still early");
        assert_eq!(again.retry_after, 150 * MS);
        assert_eq!(allowance.take(t0 + 250 * MS), Ok(()));
        assert!(allowance.take(t0 + 250 * MS).is_err());
        assert_eq!(allowance.take(t0 + 500 * MS), Ok(()));
        // A quiet moment gives the whole burst back, and no more.
        let later = t0 + Duration::from_secs(10);
        for _ in 0..3 {
            assert_eq!(allowance.take(later), Ok(()));
        }
        assert!(allowance.take(later).is_err());
    }

    #[test]
    fn no_limit_refuses_nothing() {
        let t0 = Instant::now();
        let mut allowance = ChatAllowance::new(ChatRate::UNLIMITED, t0);
        for _ in 0..10_000 {
            assert_eq!(allowance.take(t0), Ok(()));
        }
    }

    #[test]
    fn a_retry_after_under_a_millisecond_still_waits_one() {
        let over = OverLimit {
            rate: RATE,
            retry_after: Duration::from_micros(10),
        };
        assert_eq!(over.retry_after_ms(), 1);
    }

    proptest! {
        /// Over any window, no more posts are accepted than the burst plus the rate
        /// allows; a post that waits as long as it was told is accepted.
        #[test]
        fn accepted_posts_stay_within_the_limit(
            per_second in 1u32..50,
            burst in 1u32..20,
            gaps in prop::collection::vec(0u64..400, 1..200),
        ) {
            let rate = ChatRate { per_second, burst };
            let t0 = Instant::now();
            let mut allowance = ChatAllowance::new(rate, t0);
            let mut now = t0;
            let mut accepted = Vec::new();
            for gap in gaps {
                now += Duration::from_millis(gap);
                match allowance.take(now) {
                    Ok(()) => accepted.push(now),
                    Err(over) => {
                        prop_assert!(over.retry_after > Duration::ZERO);
                        let mut probe = allowance.clone();
                        prop_assert_eq!(probe.take(now + over.retry_after), Ok(()));
                    }
                }
            }
            let period = Duration::from_secs(1) / per_second;
            for (i, first) in accepted.iter().enumerate() {
                for (j, last) in accepted.iter().enumerate().skip(i) {
                    let allowed = u128::from(burst) + (*last - *first).as_nanos() / period.as_nanos();
                    prop_assert!((j - i + 1) as u128 <= allowed, "{} posts in {:?}", j - i + 1, *last - *first);
                }
            }
        }
    }
}
