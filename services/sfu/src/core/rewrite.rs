//! Keeps one outgoing RTP stream continuous while its source changes.
//!
//! A receive slot carries one publisher's track at a time under the slot's own SSRC.
//! When the source changes, sequence numbers and timestamps jump; the browser would
//! see that as loss or a clock reset. The rewriter offsets both so the output
//! continues from where the previous source stopped.

/// Sequence and timestamp offsets for one slot.
#[derive(Debug, Default, Clone)]
pub(crate) struct Rewriter {
    source_ssrc: Option<u32>,
    seq_offset: u16,
    ts_offset: u32,
    last_seq: u16,
    last_ts: u32,
    started: bool,
}

impl Rewriter {
    /// Rewrites `(seq, ts)` of a packet from `ssrc`; `ts_gap` is the timestamp step
    /// inserted at a source switch (about one frame).
    pub(crate) fn rewrite(&mut self, ssrc: u32, seq: u16, ts: u32, ts_gap: u32) -> (u16, u32) {
        if self.source_ssrc != Some(ssrc) {
            self.source_ssrc = Some(ssrc);
            if self.started {
                self.seq_offset = self.last_seq.wrapping_add(1).wrapping_sub(seq);
                self.ts_offset = self.last_ts.wrapping_add(ts_gap).wrapping_sub(ts);
            } else {
                self.seq_offset = 0;
                self.ts_offset = 0;
            }
        }
        let out_seq = seq.wrapping_add(self.seq_offset);
        let out_ts = ts.wrapping_add(self.ts_offset);
        // Only move forward: a retransmitted or reordered packet keeps its place.
        if !self.started || seq_newer(out_seq, self.last_seq) {
            self.last_seq = out_seq;
            self.last_ts = out_ts;
        }
        self.started = true;
        (out_seq, out_ts)
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

    #[test]
    fn the_first_source_passes_through_unchanged() {
        let mut rewriter = Rewriter::default();
        assert_eq!(rewriter.rewrite(1, 100, 9000, 3000), (100, 9000));
        assert_eq!(rewriter.rewrite(1, 101, 12000, 3000), (101, 12000));
    }

    #[test]
    fn a_new_source_continues_the_sequence() {
        let mut rewriter = Rewriter::default();
        rewriter.rewrite(1, 100, 9000, 3000);
        rewriter.rewrite(1, 101, 12000, 3000);
        assert_eq!(rewriter.rewrite(2, 50_000, 7, 3000), (102, 15000));
        assert_eq!(rewriter.rewrite(2, 50_001, 3007, 3000), (103, 18000));
    }

    #[test]
    fn reordered_packets_keep_their_place() {
        let mut rewriter = Rewriter::default();
        rewriter.rewrite(1, 10, 0, 3000);
        rewriter.rewrite(1, 12, 0, 3000);
        assert_eq!(rewriter.rewrite(1, 11, 0, 3000).0, 11);
        assert_eq!(rewriter.rewrite(2, 500, 0, 3000).0, 13);
    }

    #[test]
    fn a_restart_closes_the_gap_of_a_pause() {
        let mut rewriter = Rewriter::default();
        rewriter.rewrite(1, 100, 9000, 3000);
        rewriter.restart();
        assert_eq!(rewriter.rewrite(1, 400, 99_000, 3000), (101, 12000));
        assert_eq!(rewriter.rewrite(1, 401, 102_000, 3000), (102, 15000));
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
                    let (seq, _) = rewriter.rewrite(ssrc, start.wrapping_add(i), 0, 3000);
                    if let Some(want) = expected {
                        prop_assert_eq!(seq, want);
                    }
                    expected = Some(seq.wrapping_add(1));
                }
            }
        }
    }
}
