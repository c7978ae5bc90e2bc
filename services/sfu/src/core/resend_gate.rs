//! Which retransmissions to one subscriber actually go out.
//!
//! The SFU answers NACKs from its packet cache ([`super::responder`]). A subscriber
//! behind a congested link loses many packets and asks again for each of them every
//! few milliseconds; answered in full, the resends alone can exceed what the link
//! carries and keep it congested. Two rules, as in libwebrtc's send-side history:
//!
//! - a packet is resent at most once per round trip (the subscriber's next NACK for it
//!   may have crossed the first resend);
//! - resends together stay within a quarter of the subscriber's bandwidth estimate
//!   (a token bucket holding 100 ms of that rate).
//!
//! A resend is known by the packet it repeats (its stream and sequence number), whether
//! it goes out on an RTX stream or as the packet again.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Until a round trip has been measured.
const DEFAULT_ROUND_TRIP: Duration = Duration::from_millis(50);
const MIN_ROUND_TRIP: Duration = Duration::from_millis(5);
const MAX_ROUND_TRIP: Duration = Duration::from_millis(500);
/// Until the congestion controller has an estimate, bits per second (its start value).
const DEFAULT_ESTIMATE_BPS: f64 = 1_000_000.0;
/// The share of the estimate resends may use.
const RESEND_SHARE: f64 = 0.25;
/// The bucket holds this much of the resend rate.
const BURST: Duration = Duration::from_millis(100);
/// Past this many remembered resends, the ones older than `MAX_ROUND_TRIP` are forgotten.
const REMEMBERED: usize = 4096;

#[derive(Debug)]
pub(crate) struct ResendGate {
    round_trip: Duration,
    estimate_bps: f64,
    /// Bytes that may be resent now.
    tokens: f64,
    refilled_at: Option<Instant>,
    last_resent: HashMap<(u32, u16), Instant>,
}

impl Default for ResendGate {
    fn default() -> Self {
        Self {
            round_trip: DEFAULT_ROUND_TRIP,
            estimate_bps: DEFAULT_ESTIMATE_BPS,
            tokens: bucket_bytes(DEFAULT_ESTIMATE_BPS),
            refilled_at: None,
            last_resent: HashMap::new(),
        }
    }
}

fn bucket_bytes(estimate_bps: f64) -> f64 {
    estimate_bps * RESEND_SHARE / 8.0 * BURST.as_secs_f64()
}

impl ResendGate {
    pub(crate) fn on_round_trip(&mut self, round_trip: Duration) {
        self.round_trip = round_trip.clamp(MIN_ROUND_TRIP, MAX_ROUND_TRIP);
    }

    pub(crate) fn on_estimate(&mut self, bits_per_second: f64) {
        if bits_per_second.is_finite() && bits_per_second > 0.0 {
            self.estimate_bps = bits_per_second;
        }
    }

    /// Whether the resend of `(ssrc, sequence)`, `bytes` long, goes out at `now`.
    pub(crate) fn allow(&mut self, now: Instant, ssrc: u32, sequence: u16, bytes: usize) -> bool {
        self.refill(now);
        let key = (ssrc, sequence);
        if self
            .last_resent
            .get(&key)
            .is_some_and(|at| now.saturating_duration_since(*at) < self.round_trip)
        {
            return false;
        }
        let bytes = bytes as f64;
        if self.tokens < bytes {
            return false;
        }
        self.tokens -= bytes;
        if self.last_resent.len() >= REMEMBERED {
            self.last_resent
                .retain(|_, at| now.saturating_duration_since(*at) < MAX_ROUND_TRIP);
            if self.last_resent.len() >= REMEMBERED {
                self.last_resent.clear();
            }
        }
        self.last_resent.insert(key, now);
        true
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = self
            .refilled_at
            .map_or(Duration::ZERO, |at| now.saturating_duration_since(at));
        self.refilled_at = Some(now);
        let rate_bytes = self.estimate_bps * RESEND_SHARE / 8.0;
        self.tokens =
            (self.tokens + rate_bytes * elapsed.as_secs_f64()).min(bucket_bytes(self.estimate_bps));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_packet_is_resent_once_per_round_trip() {
        let start = Instant::now();
        let mut gate = ResendGate::default();
        gate.on_round_trip(Duration::from_millis(40));
        assert!(gate.allow(start, 1, 10, 1_000));
        assert!(!gate.allow(start + Duration::from_millis(39), 1, 10, 1_000));
        assert!(gate.allow(start + Duration::from_millis(39), 1, 11, 1_000));
        assert!(gate.allow(start + Duration::from_millis(40), 1, 10, 1_000));
        assert!(gate.allow(start + Duration::from_millis(40), 2, 10, 1_000));
    }

    #[test]
    fn resends_stay_within_a_quarter_of_the_estimate() {
        let start = Instant::now();
        let mut gate = ResendGate::default();
        gate.on_estimate(400_000.0);
        // Every packet a different one, asked for as fast as can be: over 10 s, no more
        // than a quarter of 400 kbit/s (12,500 bytes/s) and the first bucket go out.
        let mut sent = 0usize;
        for i in 0..100_000u32 {
            let now = start + Duration::from_micros(u64::from(i) * 100);
            if gate.allow(now, 7, i as u16, 1_000) {
                sent += 1_000;
            }
        }
        let allowed = 12_500.0 * 10.0 + bucket_bytes(DEFAULT_ESTIMATE_BPS);
        assert!(sent as f64 <= allowed, "{sent} bytes resent in 10 s");
        assert!(
            sent as f64 >= 12_500.0 * 10.0 * 0.9,
            "{sent} bytes resent in 10 s"
        );
    }

    proptest! {
        /// Whatever the requests, memory stays bounded and no packet goes out twice
        /// within a round trip.
        #[test]
        fn bounded_and_never_twice_within_a_round_trip(
            requests in proptest::collection::vec((0u64..5_000, 0u32..4, any::<u16>(), 1usize..1_500), 1..3_000),
        ) {
            let start = Instant::now();
            let mut gate = ResendGate::default();
            gate.on_round_trip(Duration::from_millis(20));
            let mut elapsed_ms = 0;
            let mut sent: HashMap<(u32, u16), Instant> = HashMap::new();
            for (step, ssrc, sequence, bytes) in requests {
                elapsed_ms += step % 7;
                let now = start + Duration::from_millis(elapsed_ms);
                if gate.allow(now, ssrc, sequence, bytes)
                    && let Some(before) = sent.insert((ssrc, sequence), now)
                {
                    prop_assert!(now.duration_since(before) >= Duration::from_millis(20));
                }
                prop_assert!(gate.last_resent.len() <= REMEMBERED);
            }
        }
    }
}
