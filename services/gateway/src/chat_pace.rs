//! How often the hub hands one room's entries to its members: at most once per
//! [`ROOM_PASS_INTERVAL`]. A room whose last hand-off was longer ago than that gets its
//! entries at once; one that had a hand-off within it gets them when the interval is
//! over, together with whatever else arrives meanwhile. In a busy room each member then
//! receives a few entries per write instead of one write per entry: the write (and the
//! client's read) is what a delivery costs, so at a few hundred messages a second to a
//! thousand members this holds the machine back from the saturation where latency grows
//! without bound. A quiet room, or a room's first entry after a pause, is never held.
//!
//! Sans-IO: time is passed in; the hub arms its timer at [`RoomPacer::next_due`].

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::{Duration, Instant};

/// The shortest time between two hand-offs of one room's entries.
pub(crate) const ROOM_PASS_INTERVAL: Duration = Duration::from_millis(12);

/// Rooms' hand-offs, spaced by [`ROOM_PASS_INTERVAL`]. `T` is what is handed off (the
/// hub's encoded entries).
#[derive(Debug)]
pub(crate) struct RoomPacer<T> {
    /// Rooms handed off within the interval, and what is held for when it is over.
    recent: HashMap<String, Vec<T>>,
    /// When each recent room's interval is over, earliest first.
    due: BinaryHeap<Reverse<(Instant, String)>>,
}

impl<T> Default for RoomPacer<T> {
    fn default() -> Self {
        Self {
            recent: HashMap::new(),
            due: BinaryHeap::new(),
        }
    }
}

impl<T> RoomPacer<T> {
    /// `room`'s next entries, in order: returned to hand off now, or held until the
    /// room's interval is over (`None`).
    pub(crate) fn offer(&mut self, room: &str, entries: Vec<T>, now: Instant) -> Option<Vec<T>> {
        if let Some(held) = self.recent.get_mut(room) {
            held.extend(entries);
            return None;
        }
        self.start_interval(room.to_owned(), now);
        Some(entries)
    }

    /// When the hub should call [`RoomPacer::take_due`] next.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.due.peek().map(|Reverse((at, _))| *at)
    }

    /// Rooms whose interval is over and that held entries meanwhile, with those
    /// entries; each starts a new interval. Rooms that held nothing are forgotten.
    pub(crate) fn take_due(&mut self, now: Instant) -> Vec<(String, Vec<T>)> {
        let mut out = Vec::new();
        while let Some(Reverse((at, _))) = self.due.peek()
            && *at <= now
        {
            let Some(Reverse((_, room))) = self.due.pop() else {
                break;
            };
            let Some(held) = self.recent.remove(&room) else {
                continue;
            };
            if !held.is_empty() {
                self.start_interval(room.clone(), now);
                out.push((room, held));
            }
        }
        out
    }

    fn start_interval(&mut self, room: String, now: Instant) {
        self.due
            .push(Reverse((now + ROOM_PASS_INTERVAL, room.clone())));
        self.recent.insert(room, Vec::new());
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_quiet_rooms_entry_goes_out_at_once() {
        let mut pacer = RoomPacer::default();
        let t0 = Instant::now();
        assert_eq!(pacer.offer("a", vec![1], t0), Some(vec![1]));
        // Another room is not held by the first.
        assert_eq!(pacer.offer("b", vec![2], t0), Some(vec![2]));
        // After the interval with nothing held, the room is forgotten and the next entry
        // goes out at once.
        assert!(pacer.take_due(t0 + ROOM_PASS_INTERVAL).is_empty());
        assert!(pacer.recent.is_empty());
        assert_eq!(pacer.next_due(), None);
        assert_eq!(
            pacer.offer("a", vec![3], t0 + ROOM_PASS_INTERVAL + MS),
            Some(vec![3])
        );
    }

    #[test]
    fn entries_within_the_interval_go_out_together_in_order_when_it_is_over() {
        let mut pacer = RoomPacer::default();
        let t0 = Instant::now();
        assert_eq!(pacer.offer("a", vec![1], t0), Some(vec![1]));
        assert_eq!(pacer.offer("a", vec![2, 3], t0 + MS), None);
        assert_eq!(pacer.offer("a", vec![4], t0 + 2 * MS), None);
        assert_eq!(pacer.next_due(), Some(t0 + ROOM_PASS_INTERVAL));
        // Not before it is due.
        assert!(pacer.take_due(t0 + 3 * MS).is_empty());
        let due_at = t0 + ROOM_PASS_INTERVAL;
        assert_eq!(
            pacer.take_due(due_at),
            vec![("a".to_owned(), vec![2, 3, 4])]
        );
        // Handing those off started a new interval: the next entry waits again.
        assert_eq!(pacer.offer("a", vec![5], due_at + MS), None);
        assert_eq!(pacer.next_due(), Some(due_at + ROOM_PASS_INTERVAL));
        assert_eq!(
            pacer.take_due(due_at + ROOM_PASS_INTERVAL),
            vec![("a".to_owned(), vec![5])]
        );
    }

    #[test]
    fn no_entry_waits_longer_than_the_interval_and_none_is_lost_or_reordered() {
        // A busy room: an entry every 0.3 ms for 50 ms, the hub taking what is due
        // whenever it runs (every 0.1 ms here).
        let mut pacer = RoomPacer::default();
        let t0 = Instant::now();
        let step = Duration::from_micros(100);
        let mut out: Vec<(u32, Duration)> = Vec::new();
        let mut hand_off = |entries: Vec<(u32, Instant)>, now: Instant| {
            out.extend(entries.into_iter().map(|(seq, sent)| (seq, now - sent)));
        };
        let mut seq = 0;
        for i in 0..=500u32 {
            let now = t0 + step * i;
            for (_, entries) in pacer.take_due(now) {
                hand_off(entries, now);
            }
            if i % 3 == 0 && i < 500 {
                if let Some(entries) = pacer.offer("a", vec![(seq, now)], now) {
                    hand_off(entries, now);
                }
                seq += 1;
            }
        }
        let end = pacer.next_due().expect("the last interval");
        for (_, entries) in pacer.take_due(end) {
            hand_off(entries, end);
        }
        let seqs: Vec<u32> = out.iter().map(|(seq, _)| *seq).collect();
        assert_eq!(seqs, (0..seq).collect::<Vec<_>>());
        assert!(
            out.iter().all(|(_, waited)| *waited <= ROOM_PASS_INTERVAL),
            "{out:?}"
        );
        // Most were held: the room had a hand-off within the interval.
        let held = out.iter().filter(|(_, waited)| !waited.is_zero()).count();
        assert!(held > out.len() * 3 / 4, "{held} of {}", out.len());
    }

    proptest! {
        /// Whatever rooms entries come for and whenever the hub runs: every entry is
        /// handed off once, each room's in order; none waits past its room's interval
        /// by more than the hub took to run; and no room is handed off twice within an
        /// interval.
        #[test]
        fn every_entry_once_in_order_spaced_and_never_late(
            arrivals in proptest::collection::vec((0u8..4, 0u64..3_000, any::<bool>()), 1..300),
        ) {
            let t0 = Instant::now();
            let us = Duration::from_micros;
            let mut pacer = RoomPacer::default();
            let mut next_seq = [0u32; 4];
            let mut out: Vec<(String, u32, Duration)> = Vec::new();
            let mut handed_at: HashMap<String, Vec<Instant>> = HashMap::new();
            let mut hand_off = |room: String, entries: Vec<(u32, Instant)>, now: Instant| {
                handed_at.entry(room.clone()).or_default().push(now);
                for (seq, at) in entries {
                    out.push((room.clone(), seq, now - at));
                }
            };
            let mut now = t0;
            for (room, gap_us, hub_runs) in arrivals {
                now += us(gap_us);
                // The hub may or may not have run at its timer before this arrival.
                if hub_runs {
                    while let Some(due) = pacer.next_due().filter(|due| *due <= now) {
                        for (room, entries) in pacer.take_due(due) {
                            hand_off(room, entries, due);
                        }
                    }
                }
                for (room, entries) in pacer.take_due(now) {
                    hand_off(room, entries, now);
                }
                let name = format!("room-{room}");
                let seq = next_seq[usize::from(room)];
                next_seq[usize::from(room)] += 1;
                if let Some(entries) = pacer.offer(&name, vec![(seq, now)], now) {
                    hand_off(name, entries, now);
                }
            }
            while let Some(due) = pacer.next_due() {
                for (room, entries) in pacer.take_due(due) {
                    hand_off(room, entries, due);
                }
            }
            for (room, count) in next_seq.iter().enumerate() {
                let name = format!("room-{room}");
                let seqs: Vec<u32> = out.iter().filter(|(r, ..)| *r == name).map(|(_, seq, _)| *seq).collect();
                prop_assert_eq!(seqs, (0..*count).collect::<Vec<_>>());
            }
            // The hub that runs at every arrival (or at its timer) holds nothing past
            // the interval plus the longest gap between two of its runs.
            for (_, _, waited) in &out {
                prop_assert!(*waited <= ROOM_PASS_INTERVAL + us(3_000), "{waited:?}");
            }
            for times in handed_at.values() {
                for pair in times.windows(2) {
                    prop_assert!(pair[1] - pair[0] >= ROOM_PASS_INTERVAL);
                }
            }
        }
    }
}
