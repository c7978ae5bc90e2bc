//! Keeps one outgoing RTP stream continuous while its source changes.
//!
//! A receive slot carries one publisher's track at a time under the slot's own SSRC.
//! When the source changes, sequence numbers and timestamps jump; the browser would
//! see that as loss or a clock reset. The rewriter offsets both so the output
//! continues from where the previous source stopped.
//!
//! It also takes lost padding out of the numbering. Padding that never arrived is
//! never resent, so the hole it leaves would stay open at the subscriber; a receiver
//! that orders H.264 pictures by sequence number alone waits at such a hole until the
//! next keyframe. Each such gap lowers the offset from the packet after it on; older
//! packets (resends) keep the offset they had.

use std::collections::VecDeque;

/// Gaps taken out that are remembered, for resends from before them.
const SHIFTS_KEPT: usize = 64;

/// Sequence and timestamp offsets for one slot.
#[derive(Debug, Default, Clone)]
pub(crate) struct Rewriter {
    source_ssrc: Option<u32>,
    /// The sequence offset before the oldest remembered shift.
    seq_offset: u16,
    /// Gaps taken out of the numbering, oldest first: the first source sequence number
    /// after the gap, how many were taken out, and the offset from there on.
    shifts: VecDeque<Shift>,
    ts_offset: u32,
    last_seq: u16,
    last_ts: u32,
    started: bool,
}

#[derive(Debug, Clone, Copy)]
struct Shift {
    from: u16,
    taken: u16,
    offset: u16,
}

impl Rewriter {
    /// Rewrites `(seq, ts)` of a packet from `ssrc`; `ts_gap` is the timestamp step
    /// inserted at a source switch (about one frame). `None` for a packet whose number
    /// was taken out (lost padding that turned up after all).
    pub(crate) fn rewrite(
        &mut self,
        ssrc: u32,
        seq: u16,
        ts: u32,
        ts_gap: u32,
    ) -> Option<(u16, u32)> {
        if self.source_ssrc != Some(ssrc) {
            self.source_ssrc = Some(ssrc);
            self.shifts.clear();
            if self.started {
                self.seq_offset = self.last_seq.wrapping_add(1).wrapping_sub(seq);
                self.ts_offset = self.last_ts.wrapping_add(ts_gap).wrapping_sub(ts);
            } else {
                self.seq_offset = 0;
                self.ts_offset = 0;
            }
        }
        let out_seq = seq.wrapping_add(self.offset_of(seq)?);
        let out_ts = ts.wrapping_add(self.ts_offset);
        // Only move forward: a retransmitted or reordered packet keeps its place.
        if !self.started || seq_newer(out_seq, self.last_seq) {
            self.last_seq = out_seq;
            self.last_ts = out_ts;
        }
        self.started = true;
        Some((out_seq, out_ts))
    }

    /// Takes the `taken` sequence numbers just before `seq` of `ssrc` out of the
    /// numbering: packets from `seq` on follow the one before the gap directly.
    pub(crate) fn take_out(&mut self, ssrc: u32, seq: u16, taken: u16) {
        if self.source_ssrc != Some(ssrc) || taken == 0 {
            return;
        }
        let offset = self
            .shifts
            .back()
            .map_or(self.seq_offset, |shift| shift.offset)
            .wrapping_sub(taken);
        if self.shifts.len() == SHIFTS_KEPT
            && let Some(oldest) = self.shifts.pop_front()
        {
            self.seq_offset = oldest.offset;
        }
        self.shifts.push_back(Shift {
            from: seq,
            taken,
            offset,
        });
    }

    /// The offset for source sequence number `seq`; `None` if it was taken out.
    fn offset_of(&self, seq: u16) -> Option<u16> {
        for shift in self.shifts.iter().rev() {
            let behind = shift.from.wrapping_sub(seq);
            if behind == 0 || behind >= 0x8000 {
                return Some(shift.offset);
            }
            if behind <= shift.taken {
                return None;
            }
        }
        Some(self.seq_offset)
    }

    /// The slot stopped forwarding (a paused tile): the next packet, even from the same
    /// source, continues from the last one sent instead of leaving a gap the receiver
    /// would ask to have resent.
    pub(crate) fn restart(&mut self) {
        self.source_ssrc = None;
    }
}

fn seq_newer(a: u16, b: u16) -> bool {
    a != b && a.wrapping_sub(b) < 0x8000
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn seq_of(rewritten: Option<(u16, u32)>) -> u16 {
        rewritten.expect("numbered").0
    }

    #[test]
    fn lost_padding_leaves_no_hole_and_resends_keep_their_numbers() {
        let mut rewriter = Rewriter::default();
        rewriter.rewrite(1, 65_533, 0, 3000);
        // 65534 is media that will be resent; 65535 and 0 were padding, lost.
        rewriter.take_out(1, 1, 2);
        assert_eq!(seq_of(rewriter.rewrite(1, 1, 0, 3000)), 65_535);
        assert_eq!(seq_of(rewriter.rewrite(1, 2, 0, 3000)), 0);
        assert_eq!(
            seq_of(rewriter.rewrite(1, 65_534, 0, 3000)),
            65_534,
            "a resend"
        );
        assert_eq!(rewriter.rewrite(1, 0, 0, 3000), None, "padding taken out");
        rewriter.take_out(1, 10, 7);
        assert_eq!(seq_of(rewriter.rewrite(1, 10, 0, 3000)), 1);
        assert_eq!(
            seq_of(rewriter.rewrite(1, 2, 0, 3000)),
            0,
            "before both gaps"
        );
    }

    #[test]
    fn a_new_source_forgets_what_was_taken_out() {
        let mut rewriter = Rewriter::default();
        rewriter.rewrite(1, 100, 0, 3000);
        rewriter.take_out(1, 103, 2);
        assert_eq!(seq_of(rewriter.rewrite(1, 103, 0, 3000)), 101);
        rewriter.take_out(2, 7, 3);
        assert_eq!(seq_of(rewriter.rewrite(2, 7, 0, 3000)), 102);
        assert_eq!(seq_of(rewriter.rewrite(2, 8, 0, 3000)), 103);
    }

    #[test]
    fn the_first_source_passes_through_unchanged() {
        let mut rewriter = Rewriter::default();
        assert_eq!(rewriter.rewrite(1, 100, 9000, 3000), Some((100, 9000)));
        assert_eq!(rewriter.rewrite(1, 101, 12000, 3000), Some((101, 12000)));
    }

    #[test]
    fn a_new_source_continues_the_sequence() {
        let mut rewriter = Rewriter::default();
        rewriter.rewrite(1, 100, 9000, 3000);
        rewriter.rewrite(1, 101, 12000, 3000);
        assert_eq!(rewriter.rewrite(2, 50_000, 7, 3000), Some((102, 15000)));
        assert_eq!(rewriter.rewrite(2, 50_001, 3007, 3000), Some((103, 18000)));
    }

    #[test]
    fn reordered_packets_keep_their_place() {
        let mut rewriter = Rewriter::default();
        rewriter.rewrite(1, 10, 0, 3000);
        rewriter.rewrite(1, 12, 0, 3000);
        assert_eq!(seq_of(rewriter.rewrite(1, 11, 0, 3000)), 11);
        assert_eq!(seq_of(rewriter.rewrite(2, 500, 0, 3000)), 13);
    }

    #[test]
    fn a_restart_closes_the_gap_of_a_pause() {
        let mut rewriter = Rewriter::default();
        rewriter.rewrite(1, 100, 9000, 3000);
        rewriter.restart();
        assert_eq!(rewriter.rewrite(1, 400, 99_000, 3000), Some((101, 12000)));
        assert_eq!(rewriter.rewrite(1, 401, 102_000, 3000), Some((102, 15000)));
    }

    proptest! {
        #[test]
        fn output_is_contiguous_across_any_switches(
            runs in proptest::collection::vec((Just(()), any::<u16>(), 1u16..50), 1..10)
        ) {
            let mut rewriter = Rewriter::default();
            let mut expected: Option<u16> = None;
            for (run, (_, start, len)) in runs.into_iter().enumerate() {
                let ssrc = run as u32;
                for i in 0..len {
                    let seq = seq_of(rewriter.rewrite(ssrc, start.wrapping_add(i), 0, 3000));
                    if let Some(want) = expected {
                        prop_assert_eq!(seq, want);
                    }
                    expected = Some(seq.wrapping_add(1));
                }
            }
        }

        #[test]
        fn taking_gaps_out_keeps_the_output_contiguous(
            gaps in proptest::collection::vec((1u16..20, 0u16..5), 1..200),
            start in any::<u16>(),
        ) {
            let mut rewriter = Rewriter::default();
            let mut seq = start;
            let mut expected = seq_of(rewriter.rewrite(1, seq, 0, 3000)).wrapping_add(1);
            let mut sent = vec![(start, expected.wrapping_sub(1))];
            for (run, lost) in gaps {
                seq = seq.wrapping_add(lost);
                rewriter.take_out(1, seq.wrapping_add(1), lost);
                for _ in 0..run {
                    seq = seq.wrapping_add(1);
                    let out = seq_of(rewriter.rewrite(1, seq, 0, 3000));
                    prop_assert_eq!(out, expected);
                    expected = expected.wrapping_add(1);
                    sent.push((seq, out));
                }
            }
            // The last SHIFTS_KEPT gaps' resends map where their packets went.
            for &(seq, out) in sent.iter().rev().take(SHIFTS_KEPT) {
                prop_assert_eq!(seq_of(rewriter.rewrite(1, seq, 0, 3000)), out);
            }
        }
    }
}
