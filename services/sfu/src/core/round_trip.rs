//! Round-trip time and jitter of the streams the SFU sends, from the reception reports
//! subscribers send back (RFC 3550 §6.4): a report names the last sender report it saw
//! (LSR, the middle 32 bits of its NTP time) and how long ago it saw it (DLSR, in
//! 1/65536 s); the round trip is the time since that sender report went out, less that
//! delay. The SFU remembers when each of its sender reports left, by the same 32 bits,
//! so no wall clock is involved. Jitter comes in RTP timestamp units and is converted
//! with the stream's clock rate.
//!
//! Report blocks come from the network: unknown streams, reports of sender reports
//! never sent, and delays longer than the time since are ignored.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Sender reports remembered per peer: a few per outgoing stream (one a second each).
const REMEMBERED: usize = 256;

#[derive(Debug, Default)]
pub(crate) struct RoundTrips {
    /// (SSRC, NTP middle 32 bits) of sender reports sent, and when; oldest first.
    sent: VecDeque<(u32, u32, Instant)>,
    /// Clock rate of each outgoing stream.
    clock_rates: HashMap<u32, u32>,
}

impl RoundTrips {
    pub(crate) fn stream_bound(&mut self, ssrc: u32, clock_rate: u32) {
        self.clock_rates.insert(ssrc, clock_rate);
    }

    pub(crate) fn stream_unbound(&mut self, ssrc: u32) {
        self.clock_rates.remove(&ssrc);
        self.sent.retain(|(s, _, _)| *s != ssrc);
    }

    /// Whether `ssrc` is a stream this peer is sent.
    pub(crate) fn sends(&self, ssrc: u32) -> bool {
        self.clock_rates.contains_key(&ssrc)
    }

    /// A sender report for `ssrc` with NTP time `ntp` left at `now`.
    pub(crate) fn report_sent(&mut self, now: Instant, ssrc: u32, ntp: u64) {
        if self.sent.len() == REMEMBERED {
            self.sent.pop_front();
        }
        self.sent.push_back((ssrc, (ntp >> 16) as u32, now));
    }

    /// The round trip a reception block received at `now` implies, if it names a
    /// sender report of ours.
    pub(crate) fn round_trip(
        &self,
        now: Instant,
        ssrc: u32,
        last_sender_report: u32,
        delay: u32,
    ) -> Option<Duration> {
        if last_sender_report == 0 {
            return None;
        }
        let (_, _, sent) = self
            .sent
            .iter()
            .rev()
            .find(|(s, lsr, _)| *s == ssrc && *lsr == last_sender_report)?;
        let delay = Duration::from_secs_f64(f64::from(delay) / 65536.0);
        now.saturating_duration_since(*sent).checked_sub(delay)
    }

    /// Interarrival jitter of `ssrc` in time, from RTP timestamp units.
    pub(crate) fn jitter(&self, ssrc: u32, jitter: u32) -> Option<Duration> {
        let rate = *self.clock_rates.get(&ssrc)?;
        (rate > 0).then(|| Duration::from_secs_f64(f64::from(jitter) / f64::from(rate)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_report_of_our_sender_report_gives_the_round_trip() {
        let t = Instant::now();
        let mut trips = RoundTrips::default();
        trips.stream_bound(7, 90_000);
        let ntp: u64 = 0x0001_2345_6789_0000;
        trips.report_sent(t, 7, ntp);
        let lsr = (ntp >> 16) as u32;
        // Received 130 ms later, held 30 ms (1966 / 65536 s) by the subscriber.
        let rtt = trips
            .round_trip(t + Duration::from_millis(130), 7, lsr, 1966)
            .expect("a round trip");
        assert!((rtt.as_secs_f64() - 0.100).abs() < 0.001, "{rtt:?}");
        assert_eq!(trips.jitter(7, 900), Some(Duration::from_millis(10)));
    }

    #[test]
    fn unknown_reports_streams_and_impossible_delays_give_nothing() {
        let t = Instant::now();
        let mut trips = RoundTrips::default();
        trips.report_sent(t, 7, 0x0001_0000_0000_0000);
        let lsr = 0x0001_0000;
        assert_eq!(
            trips.round_trip(t, 7, 0, 0),
            None,
            "no sender report seen yet"
        );
        assert_eq!(trips.round_trip(t, 8, lsr, 0), None, "another stream");
        assert_eq!(
            trips.round_trip(t, 7, lsr + 1, 0),
            None,
            "a report never sent"
        );
        assert_eq!(
            trips.round_trip(t + Duration::from_millis(10), 7, lsr, 65536),
            None,
            "held longer than it has been away"
        );
        assert_eq!(trips.jitter(7, 100), None, "clock rate unknown");
        trips.stream_unbound(7);
        assert_eq!(
            trips.round_trip(t + Duration::from_secs(1), 7, lsr, 0),
            None
        );
    }

    proptest! {
        #[test]
        fn any_report_block_is_safe_and_memory_stays_bounded(
            blocks in proptest::collection::vec((any::<u32>(), any::<u32>(), any::<u32>(), any::<u64>()), 0..600)
        ) {
            let t = Instant::now();
            let mut trips = RoundTrips::default();
            for (i, (ssrc, lsr, delay, ntp)) in blocks.into_iter().enumerate() {
                let now = t + Duration::from_millis(i as u64);
                trips.report_sent(now, ssrc % 4, ntp);
                let _ = trips.round_trip(now, ssrc % 4, lsr, delay);
                let _ = trips.jitter(ssrc, delay);
                prop_assert!(trips.sent.len() <= REMEMBERED);
            }
        }
    }
}
