//! Notices packets a publisher lost on its way in and did not resend in time.
//!
//! The SFU asks publishers to resend what it misses (NACK), but a resend can be lost too,
//! or never come. A subscriber of that layer then holds an incomplete frame; it asks the
//! SFU, whose cache cannot have the packet either, and Chromium only gives up and asks
//! for a keyframe after about three seconds of frozen video. So each video layer watches
//! its own sequence numbers: a gap that stays open for [`REPAIR_WAIT`] means the layer
//! needs a keyframe now.
//!
//! Sequence numbers come from the network; any order, wrap or jump is handled.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How long a missing packet may take to arrive (a resend, or reordering) before the
/// layer counts as broken: several NACK rounds at 20 ms, with room for a slow uplink.
pub(crate) const REPAIR_WAIT: Duration = Duration::from_millis(350);
/// More missing packets than this at once is a break, whatever the timing.
const MAX_MISSING: usize = 256;

/// Open gaps of one incoming stream.
#[derive(Debug, Default)]
pub(crate) struct LossWatch {
    highest: Option<u16>,
    /// Missing sequence numbers, oldest first, with when each was found missing.
    missing: VecDeque<(u16, Instant)>,
}

impl LossWatch {
    /// Records packet `seq`; `true` when a packet has now been missing longer than
    /// [`REPAIR_WAIT`] (or too many are), so the layer needs a keyframe. Each gap
    /// answers `true` once.
    pub(crate) fn on_packet(&mut self, now: Instant, seq: u16) -> bool {
        let Some(highest) = self.highest else {
            self.highest = Some(seq);
            return false;
        };
        let ahead = seq.wrapping_sub(highest);
        if ahead == 0 {
            // A duplicate.
        } else if ahead < 0x8000 {
            if usize::from(ahead) > MAX_MISSING
                || self.missing.len() + usize::from(ahead) > MAX_MISSING
            {
                self.missing.clear();
                self.highest = Some(seq);
                return true;
            }
            for step in 1..ahead {
                self.missing.push_back((highest.wrapping_add(step), now));
            }
            self.highest = Some(seq);
        } else if let Some(at) = self.missing.iter().position(|(missing, _)| *missing == seq) {
            self.missing.remove(at);
        }
        self.expire(now)
    }

    fn expire(&mut self, now: Instant) -> bool {
        let mut broken = false;
        while let Some(&(_, since)) = self.missing.front() {
            if now.saturating_duration_since(since) < REPAIR_WAIT {
                break;
            }
            self.missing.pop_front();
            broken = true;
        }
        if broken {
            // One keyframe repairs every gap before it.
            self.missing.clear();
        }
        broken
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(base: Instant, ms: u64) -> Instant {
        base + Duration::from_millis(ms)
    }

    #[test]
    fn a_gap_that_is_filled_in_time_is_not_a_break() {
        let t = Instant::now();
        let mut watch = LossWatch::default();
        assert!(!watch.on_packet(t, 10));
        assert!(!watch.on_packet(ms(t, 10), 12));
        assert!(!watch.on_packet(ms(t, 50), 11), "the resend fills the gap");
        assert!(!watch.on_packet(ms(t, 1000), 13));
    }

    #[test]
    fn a_gap_left_open_is_one_break() {
        let t = Instant::now();
        let mut watch = LossWatch::default();
        watch.on_packet(t, 65_534);
        assert!(
            !watch.on_packet(ms(t, 10), 1),
            "65535 and 0 are missing, across the wrap"
        );
        assert!(!watch.on_packet(ms(t, 200), 2));
        assert!(
            watch.on_packet(ms(t, 400), 3),
            "still missing after the wait"
        );
        assert!(!watch.on_packet(ms(t, 800), 4), "reported once");
        assert!(
            !watch.on_packet(ms(t, 810), 65_535),
            "a late resend is harmless"
        );
    }

    #[test]
    fn a_jump_is_a_break_at_once() {
        let t = Instant::now();
        let mut watch = LossWatch::default();
        watch.on_packet(t, 100);
        assert!(watch.on_packet(ms(t, 1), 100 + 1000));
        assert!(!watch.on_packet(ms(t, 2), 100 + 1001));
    }

    proptest! {
        #[test]
        fn in_order_streams_never_break(start in any::<u16>(), len in 1u16..2000) {
            let t = Instant::now();
            let mut watch = LossWatch::default();
            for i in 0..len {
                prop_assert!(!watch.on_packet(ms(t, u64::from(i) * 5), start.wrapping_add(i)));
            }
        }

        #[test]
        fn any_sequence_keeps_the_watch_bounded(
            seqs in proptest::collection::vec((any::<u16>(), 0u64..1000), 0..500)
        ) {
            let t = Instant::now();
            let mut watch = LossWatch::default();
            let mut clock = 0;
            for (seq, step) in seqs {
                clock += step;
                watch.on_packet(ms(t, clock), seq);
                prop_assert!(watch.missing.len() <= MAX_MISSING);
            }
        }
    }
}
