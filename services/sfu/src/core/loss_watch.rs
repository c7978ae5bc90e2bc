//! Notices packets a publisher lost on its way in and did not resend in time.
//!
//! The SFU asks publishers to resend what it misses (NACK), but a resend can be lost too,
//! or never come. A subscriber of that layer then holds an incomplete frame; it asks the
//! SFU, whose cache cannot have the packet either, and Chromium only gives up and asks
//! for a keyframe after about three seconds of frozen video. So each video layer watches
//! its own sequence numbers: a gap that stays open for [`REPAIR_WAIT`] means the layer
//! needs a keyframe now.
//!
//! Not every gap is lost media. A publisher answered without RTX (see `rtx.rs`) probes
//! bandwidth with padding-only packets in the media stream itself, and padding is never
//! resent. A sender pads only after the last packet of a picture, under that picture's
//! timestamp, so a gap between a picture's end (or padding) and padding of the same
//! timestamp can only have held padding, whatever the codec: it is not watched, and
//! the slots that forward the layer take it out of their numbering (`rewrite.rs`), so
//! no subscriber waits for what will never come. VP8 tells more of the other gaps
//! (below).
//!
//! Sequence numbers come from the network; any order, wrap or jump is handled.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::frame::Vp8Position;

/// How long a missing packet may take to arrive (a resend, or reordering) before the
/// layer counts as broken: several NACK rounds at 20 ms, with room for a slow uplink.
pub(crate) const REPAIR_WAIT: Duration = Duration::from_millis(350);
/// More missing packets than this at once is a break, whatever the timing.
const MAX_MISSING: usize = 256;
/// VP8 PictureIDs count modulo 2^15.
const PICTURE_ID_MODULUS: u16 = 1 << 15;

/// A received packet, as far as judging the gap next to it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Around {
    pub(crate) timestamp: u32,
    pub(crate) marker: bool,
    /// Padding only: a bandwidth probe, no media.
    pub(crate) padding: bool,
    pub(crate) vp8: Option<Vp8Position>,
}

/// The media packets on either side of one gap.
#[derive(Debug)]
struct Gap {
    id: u64,
    before: Option<Around>,
    after: Option<Around>,
}

/// What one packet told of its layer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Seen {
    /// A packet that may have held a referenced picture has been missing longer than
    /// [`REPAIR_WAIT`] (or too many are): the layer needs a keyframe.
    pub(crate) broken: bool,
    /// How many sequence numbers just before this packet were padding that never came.
    pub(crate) lost_padding: u16,
    /// The packet had come before, or is older than anything still awaited: not to be
    /// forwarded again.
    pub(crate) duplicate: bool,
}

/// Open gaps of one incoming stream.
#[derive(Debug, Default)]
pub(crate) struct LossWatch {
    highest: Option<u16>,
    /// The newest media packet received in order: what precedes any new gap.
    last_media: Option<Around>,
    /// The newest packet received in order, media or padding.
    last: Option<Around>,
    /// Missing sequence numbers, oldest first: when each went missing, and its gap.
    missing: VecDeque<(u16, Instant, u64)>,
    gaps: VecDeque<Gap>,
    next_gap: u64,
    /// The highest temporal layer seen: its pictures are never referenced.
    top_temporal_id: u8,
}

impl LossWatch {
    /// Records packet `seq` (`packet` is `None` when nothing is known of it). Each
    /// break answers once.
    pub(crate) fn on_packet(&mut self, now: Instant, seq: u16, packet: Option<Around>) -> Seen {
        let mut seen = Seen::default();
        seen.broken = self.record(now, seq, packet, &mut seen);
        seen
    }

    /// Whether packet `seq` came before, or is older than anything still awaited:
    /// forwarding it (again) helps no one.
    pub(crate) fn already_seen(&self, seq: u16) -> bool {
        let Some(highest) = self.highest else {
            return false;
        };
        let ahead = seq.wrapping_sub(highest);
        ahead == 0 || (ahead >= 0x8000 && !self.missing.iter().any(|(m, _, _)| *m == seq))
    }

    fn record(&mut self, now: Instant, seq: u16, packet: Option<Around>, seen: &mut Seen) -> bool {
        if self.already_seen(seq) {
            // Had already come (a resend sent as a bandwidth probe, say), or is from
            // before a break.
            seen.duplicate = true;
            return self.expire(now);
        }
        let media = packet.filter(|p| !p.padding);
        if let Some(tid) = media.and_then(|m| m.vp8).and_then(|v| v.temporal_id) {
            self.top_temporal_id = self.top_temporal_id.max(tid);
        }
        let Some(highest) = self.highest else {
            self.highest = Some(seq);
            self.last_media = media;
            self.last = packet;
            return false;
        };
        let ahead = seq.wrapping_sub(highest);
        if ahead < 0x8000 {
            if self.missing.len() + usize::from(ahead) > MAX_MISSING {
                self.highest = Some(seq);
                self.last_media = media;
                self.last = packet;
                self.forget();
                return true;
            }
            if ahead > 1 && only_padding_fits(self.last, packet) {
                seen.lost_padding = ahead - 1;
            } else if ahead > 1 {
                let id = self.next_gap;
                self.next_gap += 1;
                self.gaps.push_back(Gap {
                    id,
                    before: self.last_media,
                    after: None,
                });
                for step in 1..ahead {
                    self.missing
                        .push_back((highest.wrapping_add(step), now, id));
                }
            }
            self.highest = Some(seq);
            self.last = packet;
            if media.is_some() {
                for gap in self.gaps.iter_mut().rev() {
                    if gap.after.is_some() {
                        break;
                    }
                    gap.after = media;
                }
                self.last_media = media;
            }
        } else if let Some(at) = self
            .missing
            .iter()
            .position(|(missing, _, _)| *missing == seq)
        {
            self.missing.remove(at);
        }
        self.expire(now)
    }

    fn expire(&mut self, now: Instant) -> bool {
        let mut broken = false;
        while let Some(&(_, since, gap)) = self.missing.front() {
            if now.saturating_duration_since(since) < REPAIR_WAIT {
                break;
            }
            self.missing.pop_front();
            broken |= self
                .gaps
                .iter()
                .find(|g| g.id == gap)
                .is_none_or(|g| may_be_referenced(g, self.top_temporal_id));
        }
        if broken {
            // One keyframe repairs every gap before it.
            self.forget();
            return true;
        }
        let oldest_open = self
            .missing
            .front()
            .map_or(self.next_gap, |(_, _, gap)| *gap);
        while self.gaps.front().is_some_and(|g| g.id < oldest_open) {
            self.gaps.pop_front();
        }
        false
    }

    fn forget(&mut self) {
        self.missing.clear();
        self.gaps.clear();
    }
}

/// Whether what a gap lost may be a picture others are decoded from. Only VP8 says
/// enough to tell: a gap inside one picture, or at the edge of adjacent pictures, of
/// the top temporal layer (never referenced), or between whole pictures (padding), is
/// harmless; anything else, or not knowing, matters.
fn may_be_referenced(gap: &Gap, top_temporal_id: u8) -> bool {
    let (Some(before), Some(after)) = (gap.before, gap.after) else {
        return true;
    };
    let (Some(b), Some(a)) = (before.vp8, after.vp8) else {
        return true;
    };
    let unreferenced = |tid: Option<u8>| top_temporal_id > 0 && tid == Some(top_temporal_id);
    if before.timestamp == after.timestamp {
        return !unreferenced(b.temporal_id);
    }
    let adjacent = match (b.picture_id, a.picture_id) {
        (Some(b), Some(a)) => a.wrapping_sub(b) % PICTURE_ID_MODULUS == 1,
        _ => false,
    };
    if !adjacent {
        return true;
    }
    let harmless = match (before.marker, a.starts_picture) {
        (true, true) => true,
        (false, true) => unreferenced(b.temporal_id),
        (true, false) => unreferenced(a.temporal_id),
        (false, false) => unreferenced(b.temporal_id) && unreferenced(a.temporal_id),
    };
    !harmless
}

/// Padding comes after a picture's last packet and carries its timestamp, so between
/// a picture's end (or padding) and padding of the same timestamp nothing else was sent.
fn only_padding_fits(prev: Option<Around>, next: Option<Around>) -> bool {
    let (Some(prev), Some(next)) = (prev, next) else {
        return false;
    };
    next.padding && (prev.marker || prev.padding) && prev.timestamp == next.timestamp
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    impl LossWatch {
        fn broken(&mut self, now: Instant, seq: u16, packet: Option<Around>) -> bool {
            self.on_packet(now, seq, packet).broken
        }
    }

    fn ms(base: Instant, ms: u64) -> Instant {
        base + Duration::from_millis(ms)
    }

    #[test]
    fn a_gap_that_is_filled_in_time_is_not_a_break() {
        let t = Instant::now();
        let mut watch = LossWatch::default();
        assert!(!watch.broken(t, 10, None));
        assert!(!watch.broken(ms(t, 10), 12, None));
        assert!(
            !watch.broken(ms(t, 50), 11, None),
            "the resend fills the gap"
        );
        assert!(!watch.broken(ms(t, 1000), 13, None));
    }

    #[test]
    fn a_gap_left_open_is_one_break() {
        let t = Instant::now();
        let mut watch = LossWatch::default();
        watch.broken(t, 65_534, None);
        assert!(
            !watch.broken(ms(t, 10), 1, None),
            "65535 and 0 are missing, across the wrap"
        );
        assert!(!watch.broken(ms(t, 200), 2, None));
        assert!(
            watch.broken(ms(t, 400), 3, None),
            "still missing after the wait"
        );
        assert!(!watch.broken(ms(t, 800), 4, None), "reported once");
        assert!(
            !watch.broken(ms(t, 810), 65_535, None),
            "a late resend is harmless"
        );
    }

    #[test]
    fn a_packet_that_came_before_is_a_duplicate() {
        let t = Instant::now();
        let mut watch = LossWatch::default();
        assert!(!watch.already_seen(10), "nothing seen yet");
        assert!(!watch.on_packet(t, 10, None).duplicate);
        watch.on_packet(t, 13, None);
        assert!(watch.already_seen(10) && watch.already_seen(13));
        assert!(
            !watch.already_seen(11) && !watch.already_seen(14),
            "missing, and new"
        );
        assert!(watch.on_packet(t, 13, None).duplicate, "the newest again");
        assert!(watch.on_packet(t, 10, None).duplicate, "an older one again");
        assert!(!watch.on_packet(t, 11, None).duplicate, "a missing one");
        assert!(watch.on_packet(t, 11, None).duplicate, "and again");
    }

    #[test]
    fn a_jump_is_a_break_at_once() {
        let t = Instant::now();
        let mut watch = LossWatch::default();
        watch.broken(t, 100, None);
        assert!(watch.broken(ms(t, 1), 100 + 1000, None));
        assert!(!watch.broken(ms(t, 2), 100 + 1001, None));
    }

    /// A VP8 packet of picture `picture_id` in temporal layer `tid` (of 0..=2).
    fn vp8(timestamp: u32, picture_id: u16, tid: u8, starts: bool, marker: bool) -> Option<Around> {
        Some(Around {
            timestamp,
            marker,
            padding: false,
            vp8: Some(Vp8Position {
                picture_id: Some(picture_id),
                temporal_id: Some(tid),
                starts_picture: starts,
            }),
        })
    }

    #[test]
    fn a_lost_top_layer_packet_needs_no_keyframe() {
        let t = Instant::now();
        let mut watch = LossWatch::default();
        // Picture 1 (TL0) whole, picture 2 (TL2) loses its middle packet (seq 4).
        watch.broken(t, 1, vp8(0, 1, 0, true, true));
        watch.broken(t, 2, vp8(3000, 2, 2, true, false));
        watch.broken(t, 3, vp8(3000, 2, 2, false, false));
        watch.broken(t, 5, vp8(3000, 2, 2, false, true));
        // The tail of picture 3 (TL2) and padding between pictures 4 and 5.
        watch.broken(t, 6, vp8(6000, 3, 2, true, false));
        watch.broken(t, 8, vp8(9000, 4, 1, true, true));
        watch.broken(t, 10, vp8(12000, 5, 2, true, true));
        assert!(!watch.broken(ms(t, 400), 11, vp8(15000, 6, 0, true, true)));
    }

    #[test]
    fn a_lost_base_layer_packet_needs_a_keyframe() {
        let t = Instant::now();
        let mut watch = LossWatch::default();
        watch.broken(t, 1, vp8(0, 1, 2, true, true));
        // Picture 2 (TL0) loses its last packet.
        watch.broken(t, 2, vp8(3000, 2, 0, true, false));
        watch.broken(t, 4, vp8(6000, 3, 2, true, true));
        assert!(watch.broken(ms(t, 400), 5, vp8(9000, 4, 1, true, true)));
    }

    #[test]
    fn a_whole_lost_picture_needs_a_keyframe() {
        let t = Instant::now();
        let mut watch = LossWatch::default();
        watch.broken(t, 1, vp8(0, 1, 2, true, true));
        watch.broken(t, 3, vp8(6000, 3, 2, true, true));
        assert!(watch.broken(ms(t, 400), 4, vp8(9000, 4, 2, true, true)));
    }

    /// A packet of a codec that says nothing of its pictures (H.264, say).
    fn media(timestamp: u32, marker: bool) -> Option<Around> {
        Some(Around {
            timestamp,
            marker,
            padding: false,
            vp8: None,
        })
    }

    /// A padding-only packet under `timestamp`.
    fn padding(timestamp: u32) -> Option<Around> {
        Some(Around {
            timestamp,
            marker: false,
            padding: true,
            vp8: None,
        })
    }

    #[test]
    fn lost_probes_between_a_picture_and_its_padding_are_taken_out() {
        let t = Instant::now();
        let mut watch = LossWatch::default();
        watch.on_packet(t, 1, media(0, false));
        watch.on_packet(t, 2, media(0, true));
        // Probes after picture 0: seq 3 lost between its end and padding, 5 and 6
        // between two paddings; none is ever resent.
        assert_eq!(watch.on_packet(t, 4, padding(0)).lost_padding, 1);
        assert_eq!(watch.on_packet(t, 7, padding(0)).lost_padding, 2);
        assert_eq!(watch.on_packet(t, 8, media(3000, false)), Seen::default());
        assert_eq!(
            watch.on_packet(ms(t, 400), 9, media(3000, true)),
            Seen::default(),
            "no keyframe needed"
        );
    }

    #[test]
    fn a_gap_that_may_have_held_media_still_needs_a_keyframe() {
        let cases = [
            // The end of a picture, then the next one: a whole picture may be gone.
            ("after a picture's end", media(0, true), media(3000, false)),
            // Padding, then media: the lost packet may have started that picture.
            ("between padding and media", padding(0), media(3000, true)),
            // Padding of another timestamp: a picture was sent in between.
            (
                "between paddings of two pictures",
                padding(0),
                padding(3000),
            ),
            // Inside a picture: its own media is missing.
            ("inside a picture", media(0, false), padding(0)),
        ];
        for (case, before, after) in cases {
            let t = Instant::now();
            let mut watch = LossWatch::default();
            watch.broken(t, 1, before);
            assert_eq!(watch.on_packet(t, 3, after).lost_padding, 0, "{case}");
            assert!(watch.broken(ms(t, 400), 4, media(6000, true)), "{case}");
        }
    }

    proptest! {
        #[test]
        fn in_order_streams_never_break(start in any::<u16>(), len in 1u16..2000) {
            let t = Instant::now();
            let mut watch = LossWatch::default();
            for i in 0..len {
                prop_assert!(!watch.broken(ms(t, u64::from(i) * 5), start.wrapping_add(i), None));
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
                watch.broken(ms(t, clock), seq, None);
                prop_assert!(watch.missing.len() <= MAX_MISSING);
            }
        }
    }
}
