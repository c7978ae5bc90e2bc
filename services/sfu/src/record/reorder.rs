//! A recorded track's packets back in sequence order before they become frames.
//!
//! Forwarding passes packets on as they come; a subscriber's jitter buffer puts them
//! in order. The recorder needs the same: a packet lost on the way is asked for again
//! (the SFU's NACKs) and its resend comes behind later ones. Without waiting for it
//! the frame it belongs to is lost, and every video frame after it until a keyframe.
//! So packets are held here until the ones before them have come, or until a gap has
//! been open for [`WAIT`] of the track's arrivals (then what is missing is lost).
//!
//! Time is the packets' arrival time: a gap is given up when a packet arrives [`WAIT`]
//! after the oldest one held behind it, and everything left is let go at the end.

use std::collections::VecDeque;
use std::time::Duration;

use super::RtpIn;

/// How long a missing packet is waited for: a resend's round trip, with room to spare.
pub(super) const WAIT: Duration = Duration::from_millis(300);

/// Packets held at most behind a gap (a few seconds of a high-rate video layer); a
/// packet further ahead lets every one held go first.
const MAX_HELD: usize = 1024;

/// One track's packets, in order.
#[derive(Debug, Default)]
pub(super) struct Reorder {
    /// The stream being ordered, and the sequence number it waits for next.
    next: Option<(u32, u16)>,
    /// Packets from `next` on, by their distance from it; `None` is a gap.
    held: VecDeque<Option<RtpIn>>,
}

impl Reorder {
    /// Takes a packet; the packets now in order come back (possibly none).
    pub(super) fn push(&mut self, packet: RtpIn) -> Vec<RtpIn> {
        let mut out = Vec::new();
        let Some((ssrc, next)) = self.next else {
            self.restart(packet, &mut out);
            return out;
        };
        if ssrc != packet.ssrc {
            // Another stream (a simulcast layer moved to): what is held goes first.
            self.drain_into(&mut out);
            self.restart(packet, &mut out);
            return out;
        }
        let ahead = packet.seq.wrapping_sub(next) as i16;
        if ahead < 0 {
            return out; // let go already (given up on, or a duplicate)
        }
        let ahead = ahead as usize;
        if ahead >= MAX_HELD {
            self.drain_into(&mut out);
            self.restart(packet, &mut out);
            return out;
        }
        if self.held.len() <= ahead {
            self.held.resize_with(ahead + 1, || None);
        }
        let at = packet.at;
        if self.held[ahead].is_none() {
            self.held[ahead] = Some(packet);
        }
        self.release(&mut out);
        // Gaps older than the wait are given up on: up to the first packet held that
        // arrived within it.
        while let Some(oldest) = self.held.iter().flatten().next()
            && at.saturating_duration_since(oldest.at) >= WAIT
        {
            self.skip_gap();
            self.release(&mut out);
        }
        out
    }

    /// Everything held, in order, whatever is still missing (the track's end).
    pub(super) fn drain(&mut self) -> Vec<RtpIn> {
        let mut out = Vec::new();
        self.drain_into(&mut out);
        out
    }

    fn drain_into(&mut self, out: &mut Vec<RtpIn>) {
        out.extend(self.held.drain(..).flatten());
        self.next = None;
    }

    fn restart(&mut self, packet: RtpIn, out: &mut Vec<RtpIn>) {
        self.next = Some((packet.ssrc, packet.seq.wrapping_add(1)));
        out.push(packet);
    }

    /// Lets go of the packets at the front that are in order.
    fn release(&mut self, out: &mut Vec<RtpIn>) {
        while let Some(Some(_)) = self.held.front() {
            if let Some(Some(packet)) = self.held.pop_front() {
                self.advance(1);
                out.push(packet);
            }
        }
    }

    /// Gives up on the missing packets at the front.
    fn skip_gap(&mut self) {
        while let Some(None) = self.held.front() {
            self.held.pop_front();
            self.advance(1);
        }
    }

    fn advance(&mut self, by: u16) {
        if let Some((_, next)) = self.next.as_mut() {
            *next = next.wrapping_add(by);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use proptest::prelude::*;

    use super::*;

    fn packet(seq: u16, at: Instant) -> RtpIn {
        RtpIn {
            ssrc: 5,
            seq,
            timestamp: u32::from(seq) * 3000,
            marker: true,
            payload: vec![seq as u8].into(),
            at,
        }
    }

    fn seqs(packets: &[RtpIn]) -> Vec<u16> {
        packets.iter().map(|p| p.seq).collect()
    }

    #[test]
    fn a_late_packet_takes_its_place_and_what_waited_follows() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut order = Reorder::default();
        assert_eq!(seqs(&order.push(packet(65_534, t0))), [65_534]);
        // 65,535 is late; 0 and 1 (across the wrap) wait for it.
        assert_eq!(seqs(&order.push(packet(0, t0 + ms(5)))), [] as [u16; 0]);
        assert_eq!(seqs(&order.push(packet(1, t0 + ms(10)))), [] as [u16; 0]);
        assert_eq!(
            seqs(&order.push(packet(65_535, t0 + ms(80)))),
            [65_535, 0, 1]
        );
        // A duplicate, and one older than what went, are dropped.
        assert!(order.push(packet(1, t0 + ms(81))).is_empty());
        assert!(order.push(packet(65_000, t0 + ms(82))).is_empty());
        assert_eq!(seqs(&order.push(packet(2, t0 + ms(90)))), [2]);
    }

    #[test]
    fn a_gap_is_given_up_on_after_the_wait() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut order = Reorder::default();
        assert_eq!(seqs(&order.push(packet(10, t0))), [10]);
        // 11 never comes.
        assert!(order.push(packet(12, t0 + ms(10))).is_empty());
        assert!(order.push(packet(13, t0 + ms(200))).is_empty());
        // 14 arrives the wait after 12, the oldest held: 11 is given up on.
        assert_eq!(
            seqs(&order.push(packet(14, t0 + ms(10) + WAIT))),
            [12, 13, 14]
        );
        // Too late now.
        assert!(order.push(packet(11, t0 + ms(320))).is_empty());
        // The end lets everything held go, gaps and all.
        assert!(order.push(packet(16, t0 + ms(330))).is_empty());
        assert!(order.push(packet(18, t0 + ms(340))).is_empty());
        assert_eq!(seqs(&order.drain()), [16, 18]);
    }

    #[test]
    fn another_stream_or_a_jump_lets_what_is_held_go_first() {
        let t0 = Instant::now();
        let mut order = Reorder::default();
        order.push(packet(1, t0));
        assert!(order.push(packet(3, t0)).is_empty());
        let mut other = packet(900, t0);
        other.ssrc = 6;
        assert_eq!(seqs(&order.push(other)), [3, 900]);
        // The new stream is ordered from there.
        let mut late = packet(902, t0);
        late.ssrc = 6;
        assert!(order.push(late).is_empty());
        // Far ahead: a sender that jumped.
        let mut jump = packet(30_000, t0);
        jump.ssrc = 6;
        assert_eq!(seqs(&order.push(jump)), [902, 30_000]);
    }

    proptest! {
        /// Packets of a stream, shuffled within a window and some dropped, come out
        /// once each, in order, each one that arrived (within the wait) among them.
        #[test]
        fn any_arrival_order_comes_out_in_order_once(
            start in any::<u16>(),
            count in 1usize..400,
            swaps in proptest::collection::vec((0usize..400, 0usize..8), 0..200),
            lost in proptest::collection::vec(0usize..400, 0..20),
        ) {
            let t0 = Instant::now();
            let mut arrivals: Vec<u16> = (0..count)
                .filter(|i| !lost.contains(i))
                .map(|i| start.wrapping_add(i as u16))
                .collect();
            for (at, by) in swaps {
                if at + by < arrivals.len() {
                    arrivals.swap(at, at + by);
                }
            }
            let mut order = Reorder::default();
            let mut out = Vec::new();
            for (i, seq) in arrivals.iter().enumerate() {
                // Half a millisecond apart: all of them within the wait.
                out.extend(order.push(packet(*seq, t0 + Duration::from_micros(i as u64 * 500))));
            }
            out.extend(order.drain());
            let offsets: Vec<u16> = out.iter().map(|p| p.seq.wrapping_sub(start)).collect();
            prop_assert!(offsets.windows(2).all(|w| w[0] < w[1]), "{offsets:?}");
            // The first arrival starts the stream: what came before it in sequence is
            // late already. Everything from it on comes out.
            let first = arrivals.first().map(|s| s.wrapping_sub(start));
            let expected: Vec<u16> = arrivals
                .iter()
                .map(|s| s.wrapping_sub(start))
                .filter(|o| Some(*o) >= first)
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            prop_assert_eq!(offsets, expected);
        }
    }
}
