//! One room's live chat entries, put back in sequence order on this gateway.
//!
//! The bus may reorder a room's entries (two chat replicas, or two batches of one
//! replica, numbering the room's messages in one order and publishing them in
//! another), drop them (a Redis restart) or repeat them. An entry that arrives ahead of
//! one still missing is held for up to [`REORDER_WAIT`]: nearly always the missing one
//! follows within a millisecond, and both go out in order without a history read. Only
//! a gap that outlasts the wait is read from history (the store is the truth), so the
//! hub never waits on the chat service for a mere reordering.
//!
//! Sans-IO: time is passed in; the hub reads history and arms its timer.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use confer_chat::ChatEntry;

/// How long an entry ahead of a gap waits for the missing ones to arrive on the bus
/// before they are read from history.
pub(crate) const REORDER_WAIT: Duration = Duration::from_millis(25);

/// Entries held ahead of a gap, at most; beyond it the gap is read from history at
/// once, and entries past the held ones come from that read too.
pub(crate) const MAX_AHEAD: usize = 512;

#[derive(Debug, Default)]
pub(crate) struct RoomOrder {
    /// The last seq delivered; `None` until the room's first history page says where
    /// the live stream starts (entries before that are dropped: the page has them).
    last: Option<u64>,
    /// Entries that arrived ahead of `last + 1`, by seq.
    ahead: BTreeMap<u64, ChatEntry>,
    /// The highest seq seen ahead, held or not.
    seen_until: u64,
    /// When the gap before `ahead` is read from history, if it is still open.
    fill_at: Option<Instant>,
}

/// What an entry or a history read released.
#[derive(Debug, Default)]
pub(crate) struct Released {
    /// Entries to deliver now, in sequence order.
    pub(crate) deliver: Vec<ChatEntry>,
    /// A gap opened (or stayed open): the hub should call [`RoomOrder::gap`] at this
    /// instant.
    pub(crate) wake_at: Option<Instant>,
    /// Entries delivered now that had arrived ahead of a missing one.
    pub(crate) reordered: usize,
}

impl RoomOrder {
    /// The room's first history page ends at `last`: the live stream starts after it.
    pub(crate) fn start(&mut self, last: u64) {
        if self.last.is_none() {
            self.last = Some(last);
        }
    }

    /// The last seq delivered, once started.
    pub(crate) fn last(&self) -> Option<u64> {
        self.last
    }

    /// A live entry from the bus.
    pub(crate) fn admit(&mut self, entry: &ChatEntry, now: Instant) -> Released {
        let Some(last) = self.last else {
            return Released::default();
        };
        if entry.seq <= last {
            return Released::default();
        }
        if entry.seq == last + 1 {
            return self.release(std::iter::once(entry.clone()), now);
        }
        self.seen_until = self.seen_until.max(entry.seq);
        if self.ahead.len() < MAX_AHEAD {
            self.ahead.entry(entry.seq).or_insert_with(|| entry.clone());
        } else {
            // Too much held: read the gap now.
            self.fill_at = Some(now);
            return Released {
                wake_at: Some(now),
                ..Released::default()
            };
        }
        match self.fill_at {
            Some(_) => Released::default(),
            None => {
                let at = now + REORDER_WAIT;
                self.fill_at = Some(at);
                Released {
                    wake_at: Some(at),
                    ..Released::default()
                }
            }
        }
    }

    /// The gap to read from history, if it is still open at `now` and its wait is
    /// over: entries after the first seq, up to the second.
    pub(crate) fn gap(&self, now: Instant) -> Option<(u64, u64)> {
        let last = self.last?;
        let due = self.fill_at.is_some_and(|at| at <= now);
        (due && self.seen_until > last).then_some((last, self.seen_until))
    }

    /// Entries read from history (after a gap, a resync or the first page), in
    /// sequence order.
    pub(crate) fn fill(&mut self, entries: Vec<ChatEntry>, now: Instant) -> Released {
        self.release(entries, now)
    }

    /// Delivers `entries` and what they let through from `ahead`, in order.
    fn release(&mut self, entries: impl IntoIterator<Item = ChatEntry>, now: Instant) -> Released {
        let Some(mut last) = self.last else {
            return Released::default();
        };
        let mut out = Released::default();
        for entry in entries {
            if entry.seq == last + 1 {
                last = entry.seq;
                out.deliver.push(entry);
            }
        }
        while let Some(entry) = self.ahead.first_entry() {
            if *entry.key() <= last {
                entry.remove();
            } else if *entry.key() == last + 1 {
                last += 1;
                out.deliver.push(entry.remove());
                out.reordered += 1;
            } else {
                break;
            }
        }
        self.last = Some(last);
        self.fill_at = None;
        if self.seen_until > last {
            // A gap is still open: wait for it afresh.
            let at = now + REORDER_WAIT;
            self.fill_at = Some(at);
            out.wake_at = Some(at);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(seq: u64) -> ChatEntry {
        ChatEntry {
            room: "r".into(),
            seq,
            kind: confer_chat::EntryKind::Text,
            sender_id: "s".into(),
            sender_name: "S".into(),
            sender_identity: String::new(),
            text: format!("#{seq}"),
            client_id: String::new(),
            reply_to: 0,
            target_seq: 0,
            sent_at_ms: 0,
            edited: false,
            deleted: false,
            file_type: String::new(),
            file_size: 0,
        }
    }

    fn seqs(released: &Released) -> Vec<u64> {
        released.deliver.iter().map(|e| e.seq).collect()
    }

    #[test]
    fn a_reordered_pair_goes_out_in_order_without_a_history_read() {
        let now = Instant::now();
        let mut order = RoomOrder::default();
        assert!(seqs(&order.admit(&entry(1), now)).is_empty(), "not started");
        order.start(3);
        assert!(seqs(&order.admit(&entry(3), now)).is_empty(), "in the page");
        let held = order.admit(&entry(5), now);
        assert!(held.deliver.is_empty());
        assert_eq!(held.wake_at, Some(now + REORDER_WAIT));
        assert_eq!(order.gap(now), None, "the wait is not over");
        let both = order.admit(&entry(4), now);
        assert_eq!(seqs(&both), [4, 5]);
        assert_eq!((both.reordered, both.wake_at), (1, None));
        assert_eq!(order.gap(now + REORDER_WAIT), None, "closed");
        assert!(seqs(&order.admit(&entry(5), now)).is_empty(), "once");
    }

    #[test]
    fn a_gap_that_outlasts_the_wait_is_read_from_history() {
        let now = Instant::now();
        let mut order = RoomOrder::default();
        order.start(0);
        assert_eq!(seqs(&order.admit(&entry(1), now)), [1]);
        order.admit(&entry(4), now);
        order.admit(&entry(6), now);
        let later = now + REORDER_WAIT;
        assert_eq!(order.gap(later), Some((1, 6)));
        // History has 2..=6; what was held is not delivered twice.
        let filled = order.fill((2..=6).map(entry).collect(), later);
        assert_eq!(seqs(&filled), [2, 3, 4, 5, 6]);
        assert_eq!(filled.wake_at, None);
        assert_eq!(order.last(), Some(6));
    }

    #[test]
    fn a_short_history_read_keeps_waiting_for_the_rest() {
        let now = Instant::now();
        let mut order = RoomOrder::default();
        order.start(0);
        order.admit(&entry(5), now);
        let later = now + REORDER_WAIT;
        let filled = order.fill(vec![entry(1), entry(2)], later);
        assert_eq!(seqs(&filled), [1, 2]);
        assert_eq!(filled.wake_at, Some(later + REORDER_WAIT));
        assert_eq!(order.gap(later + REORDER_WAIT), Some((2, 5)));
    }

    #[test]
    fn too_much_held_reads_the_gap_at_once() {
        let now = Instant::now();
        let mut order = RoomOrder::default();
        order.start(0);
        for seq in 2..(2 + MAX_AHEAD as u64) {
            order.admit(&entry(seq), now);
        }
        let overflow = 2 + MAX_AHEAD as u64;
        let full = order.admit(&entry(overflow), now);
        assert_eq!(full.wake_at, Some(now));
        assert_eq!(order.gap(now), Some((0, overflow)));
        let filled = order.fill((1..=overflow).map(entry).collect(), now);
        assert_eq!(seqs(&filled), (1..=overflow).collect::<Vec<_>>());
    }

    proptest! {
        /// Whatever the bus does (reorders within a window, repeats, drops), the
        /// entries delivered are consecutive from the start, each once; and once the
        /// gaps are read from history, every entry has gone out.
        #[test]
        fn delivers_each_entry_once_in_order(
            n in 1u64..200,
            moves in proptest::collection::vec((0usize..200, 0usize..8), 0..100),
            dropped in proptest::collection::hash_set(1u64..200, 0..10),
            repeated in proptest::collection::vec(1u64..200, 0..20),
        ) {
            let mut arrivals: Vec<u64> = (1..=n).filter(|s| !dropped.contains(s)).collect();
            arrivals.extend(repeated.iter().filter(|s| **s <= n));
            for (at, by) in moves {
                if arrivals.len() > 1 {
                    let from = at % arrivals.len();
                    let to = (from + by).min(arrivals.len() - 1);
                    let seq = arrivals.remove(from);
                    arrivals.insert(to, seq);
                }
            }
            let mut now = Instant::now();
            let mut order = RoomOrder::default();
            order.start(0);
            let mut delivered = Vec::new();
            for seq in arrivals {
                delivered.extend(seqs(&order.admit(&entry(seq), now)));
                now += Duration::from_millis(1);
                if let Some((after, until)) = order.gap(now) {
                    let filled = order.fill((after + 1..=until).map(entry).collect(), now);
                    delivered.extend(seqs(&filled));
                }
            }
            prop_assert_eq!(&delivered, &(1..=delivered.len() as u64).collect::<Vec<_>>());
            // Whatever is still missing at the end is read once its wait is over.
            now += REORDER_WAIT;
            if let Some((after, until)) = order.gap(now) {
                delivered.extend(seqs(&order.fill((after + 1..=until).map(entry).collect(), now)));
            }
            let last_arrived = (1..=n).rev().find(|s| !dropped.contains(s) || repeated.contains(s));
            let expected = last_arrived.unwrap_or(0);
            prop_assert_eq!(delivered, (1..=expected).collect::<Vec<_>>());
        }
    }
}
