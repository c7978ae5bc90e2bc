//! When the hub hands one room's entries to its members: no sooner than
//! [`MIN_SPACING`] after the room's previous hand-off, and not before its members'
//! writers have written that one ([`RoomPacer::written`]), but never later than
//! [`MAX_HOLD`] after it. Entries that come for the room meanwhile are held and go out
//! together, so each member gets them in one write: a delivery's cost is the write (and
//! the client's read), whatever it carries. The spacing alone would fix the rate of
//! writes whatever the machine can do; waiting for the writes makes it follow the
//! machine: the busier the gateway, the longer a round of writes takes and the more the
//! next one carries. A round whose writes end less than a [`REST`] before its spacing
//! does, or later, is followed by that rest before the next: a big room's rounds would otherwise follow each other
//! back to back and take all the gateway's time, leaving none for other rooms and
//! signalling. A quiet room, or a room's first entry after a pause, is never held; a
//! member whose writes stall holds its room at most [`MAX_HOLD`], and no rest
//! outlasts it.
//!
//! Sans-IO: time is passed in; the hub arms its timer at [`RoomPacer::next_due`] and
//! reports each hand-off's writes done with its id.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::{Duration, Instant};

/// The shortest time between two hand-offs of one room.
pub(crate) const MIN_SPACING: Duration = Duration::from_millis(8);

/// The longest a room's entries wait for its previous hand-off's writes.
pub(crate) const MAX_HOLD: Duration = Duration::from_millis(24);

/// The least time between a room's hand-off being written and its next, when writing
/// it took longer than [`MIN_SPACING`] less this. Shorter rounds are only spaced.
pub(crate) const REST: Duration = Duration::from_millis(4);

/// Entries to hand to a room's members now. `id` names the hand-off for
/// [`RoomPacer::written`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct HandOff<T> {
    pub(crate) room: String,
    pub(crate) id: u64,
    pub(crate) entries: Vec<T>,
}

/// A room handed off lately.
#[derive(Debug)]
struct Recent<T> {
    /// Its last hand-off.
    id: u64,
    /// Which its members' writers have written.
    written: bool,
    /// Its spacing is over.
    spaced: bool,
    /// What came since, in order.
    held: Vec<T>,
    /// When its last hand-off went out.
    handed_at: Instant,
    /// Written late in its spacing: released when its rest ends, not its spacing.
    resting: bool,
}

/// What ends when a [`Timer`] fires.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Ends {
    Spacing,
    Hold,
    Rest,
}

/// A timer of a hand-off: the end of its spacing, of its hold, or of the rest after
/// its writes.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Timer {
    at: Instant,
    id: u64,
    room: String,
    ends: Ends,
}

/// Rooms' hand-offs, spaced and each after the one before it is written. `T` is what
/// is handed off (the hub's encoded entries).
#[derive(Debug)]
pub(crate) struct RoomPacer<T> {
    spacing: Duration,
    hold: Duration,
    rest: Duration,
    recent: HashMap<String, Recent<T>>,
    /// Earliest first; some are for hand-offs already superseded.
    timers: BinaryHeap<Reverse<Timer>>,
    next_id: u64,
    /// Rounds followed by a rest, since the start.
    rests: u64,
}

impl<T> Default for RoomPacer<T> {
    fn default() -> Self {
        Self::new(MIN_SPACING, MAX_HOLD, REST)
    }
}

impl<T> RoomPacer<T> {
    /// Hand-offs at least `spacing` apart and `rest` after the last is written; held
    /// entries wait at most `hold`.
    pub(crate) fn new(spacing: Duration, hold: Duration, rest: Duration) -> Self {
        Self {
            spacing,
            hold: hold.max(spacing),
            rest,
            recent: HashMap::new(),
            timers: BinaryHeap::new(),
            next_id: 0,
            rests: 0,
        }
    }

    /// `room`'s next entries, in order: returned to hand off now, or held until the
    /// room's last hand-off is spaced and written, or its hold is over (`None`).
    pub(crate) fn offer(
        &mut self,
        room: &str,
        entries: Vec<T>,
        now: Instant,
    ) -> Option<HandOff<T>> {
        if let Some(recent) = self.recent.get_mut(room) {
            recent.held.extend(entries);
            return None;
        }
        Some(self.hand_off(room.to_owned(), entries, now))
    }

    /// Hand-off `id` of `room` is written: what the room held meanwhile, to hand off
    /// now if its spacing is over and it need not rest. A hand-off superseded already
    /// is ignored.
    pub(crate) fn written(&mut self, room: &str, id: u64, now: Instant) -> Option<HandOff<T>> {
        let recent = self.recent.get_mut(room).filter(|r| r.id == id)?;
        recent.written = true;
        let rest_over = (now + self.rest).min(recent.handed_at + self.hold);
        if rest_over > now && rest_over > recent.handed_at + self.spacing {
            recent.resting = true;
            self.rests += 1;
            self.timers.push(Reverse(Timer {
                at: rest_over,
                id,
                room: room.to_owned(),
                ends: Ends::Rest,
            }));
            return None;
        }
        if !recent.spaced {
            return None;
        }
        self.release(room.to_owned(), now)
    }

    /// Rounds of writes followed by a rest so far.
    pub(crate) fn rests(&self) -> u64 {
        self.rests
    }

    /// When the hub should call [`RoomPacer::take_due`] next.
    pub(crate) fn next_due(&mut self) -> Option<Instant> {
        while let Some(Reverse(timer)) = self.timers.peek() {
            if self.current(timer) {
                return Some(timer.at);
            }
            self.timers.pop();
        }
        None
    }

    /// Rooms whose spacing (or rest) is over with their last hand-off written, or whose
    /// hold is over, and what they held meanwhile; rooms that held nothing are
    /// forgotten.
    pub(crate) fn take_due(&mut self, now: Instant) -> Vec<HandOff<T>> {
        let mut out = Vec::new();
        while let Some(Reverse(timer)) = self.timers.peek()
            && timer.at <= now
        {
            let Some(Reverse(timer)) = self.timers.pop() else {
                break;
            };
            if !self.current(&timer) {
                continue;
            }
            let Some(recent) = self.recent.get_mut(&timer.room) else {
                continue;
            };
            recent.spaced = true;
            match timer.ends {
                Ends::Hold | Ends::Rest => out.extend(self.release(timer.room, now)),
                // Its rest ends later, and releases it then.
                Ends::Spacing if recent.resting => {}
                Ends::Spacing if recent.written => out.extend(self.release(timer.room, now)),
                Ends::Spacing => {
                    let at = recent.handed_at + self.hold;
                    self.timers.push(Reverse(Timer {
                        ends: Ends::Hold,
                        at,
                        ..timer
                    }));
                }
            }
        }
        out
    }

    fn current(&self, timer: &Timer) -> bool {
        self.recent
            .get(&timer.room)
            .is_some_and(|r| r.id == timer.id)
    }

    /// `room` may be handed off again: what it held goes now, or it is forgotten.
    fn release(&mut self, room: String, now: Instant) -> Option<HandOff<T>> {
        let held = std::mem::take(&mut self.recent.get_mut(&room)?.held);
        if held.is_empty() {
            self.recent.remove(&room);
            return None;
        }
        Some(self.hand_off(room, held, now))
    }

    fn hand_off(&mut self, room: String, entries: Vec<T>, now: Instant) -> HandOff<T> {
        let id = self.next_id;
        self.next_id += 1;
        self.timers.push(Reverse(Timer {
            at: now + self.spacing,
            id,
            room: room.clone(),
            ends: Ends::Spacing,
        }));
        self.recent.insert(
            room.clone(),
            Recent {
                id,
                written: false,
                spaced: false,
                held: Vec::new(),
                handed_at: now,
                resting: false,
            },
        );
        HandOff { room, id, entries }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const SPACING: Duration = Duration::from_millis(4);
    const HOLD: Duration = Duration::from_millis(12);

    /// Rounds written late in their spacing rest this long.
    const RESTING: Duration = Duration::from_millis(3);

    /// A pacer whose rounds are only spaced.
    fn pacer() -> RoomPacer<u32> {
        RoomPacer::new(SPACING, HOLD, Duration::ZERO)
    }

    fn entries<T>(hand_off: Option<HandOff<T>>) -> Option<Vec<T>> {
        hand_off.map(|h| h.entries)
    }

    #[test]
    fn a_quiet_rooms_entry_goes_out_at_once() {
        let mut pacer = pacer();
        let t0 = Instant::now();
        let first = pacer.offer("a", vec![1], t0).expect("at once");
        assert_eq!(first.entries, vec![1]);
        // Another room is not held by the first.
        assert_eq!(entries(pacer.offer("b", vec![2], t0)), Some(vec![2]));
        // Written with nothing held: once spaced, the room is forgotten, and its next
        // entry goes out at once, long before the hold would have ended.
        assert_eq!(pacer.written("a", first.id, t0 + MS), None);
        assert!(pacer.take_due(t0 + SPACING).is_empty());
        assert!(!pacer.recent.contains_key("a"));
        assert_eq!(
            entries(pacer.offer("a", vec![3], t0 + SPACING)),
            Some(vec![3])
        );
        // A room whose hold ends unwritten with nothing held is forgotten too.
        assert!(pacer.take_due(t0 + HOLD).is_empty());
        assert!(!pacer.recent.contains_key("b"));
        assert!(pacer.take_due(t0 + SPACING + HOLD).is_empty());
        assert!(pacer.recent.is_empty());
        assert_eq!(pacer.next_due(), None);
    }

    #[test]
    fn entries_that_come_meanwhile_go_out_together_once_spaced_and_written() {
        let mut pacer = pacer();
        let t0 = Instant::now();
        let first = pacer.offer("a", vec![1], t0).expect("at once");
        assert_eq!(pacer.offer("a", vec![2, 3], t0 + MS), None);
        // Written before its spacing is over: the held ones wait for the spacing.
        assert_eq!(pacer.written("a", first.id, t0 + 2 * MS), None);
        assert_eq!(pacer.next_due(), Some(t0 + SPACING));
        let second = pacer.take_due(t0 + SPACING);
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].entries, vec![2, 3]);
        let t1 = t0 + SPACING;
        // Spaced before it is written: the held one waits for the write.
        assert_eq!(pacer.offer("a", vec![4], t1 + MS), None);
        assert!(pacer.take_due(t1 + SPACING).is_empty());
        assert_eq!(
            pacer.next_due(),
            Some(t1 + HOLD),
            "the hold still bounds it"
        );
        assert_eq!(
            pacer.written("a", first.id, t1 + SPACING),
            None,
            "superseded"
        );
        let third = pacer.written("a", second[0].id, t1 + SPACING + MS);
        assert_eq!(entries(third), Some(vec![4]));
    }

    #[test]
    fn a_write_that_stalls_holds_its_room_no_longer_than_the_hold() {
        let mut pacer = pacer();
        let t0 = Instant::now();
        let first = pacer.offer("a", vec![1], t0).expect("at once");
        assert_eq!(pacer.offer("a", vec![2], t0 + MS), None);
        assert!(pacer.take_due(t0 + HOLD - MS).is_empty());
        let due = pacer.take_due(t0 + HOLD);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].entries, vec![2]);
        // The stalled hand-off's late report changes nothing: the room waits for the
        // hand-off that went out at the end of the hold.
        assert_eq!(pacer.offer("a", vec![3], t0 + HOLD + MS), None);
        assert!(
            pacer.take_due(t0 + HOLD + SPACING).is_empty(),
            "not written"
        );
        assert_eq!(pacer.written("a", first.id, t0 + HOLD + SPACING), None);
        let after = pacer.written("a", due[0].id, t0 + HOLD + SPACING + MS);
        assert_eq!(entries(after), Some(vec![3]));
    }

    #[test]
    fn a_round_written_late_in_its_spacing_rests_before_the_next() {
        let mut pacer = RoomPacer::new(SPACING, HOLD, RESTING);
        let t0 = Instant::now();
        let first = pacer.offer("a", vec![1], t0).expect("at once");
        assert_eq!(pacer.offer("a", vec![2], t0 + MS), None);
        // Written at 3 ms: its rest ends at 6 ms, after its spacing.
        assert_eq!(pacer.written("a", first.id, t0 + 3 * MS), None);
        assert_eq!(pacer.rests(), 1);
        assert!(pacer.take_due(t0 + SPACING).is_empty(), "resting");
        assert_eq!(pacer.next_due(), Some(t0 + 6 * MS));
        let second = pacer.take_due(t0 + 6 * MS);
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].entries, vec![2]);
        // Written early in its spacing: it rests no longer than the spacing.
        let t1 = t0 + 6 * MS;
        assert_eq!(pacer.offer("a", vec![3], t1 + MS), None);
        assert_eq!(pacer.written("a", second[0].id, t1 + MS), None);
        assert_eq!(pacer.rests(), 1, "only spaced");
        assert_eq!(pacer.next_due(), Some(t1 + SPACING));
        let third = pacer.take_due(t1 + SPACING);
        assert_eq!(third.len(), 1);
        assert_eq!(third[0].entries, vec![3]);
        // Written just before its hold ends: the rest ends with the hold, and the
        // room is handed off once.
        let t2 = t1 + SPACING;
        assert_eq!(pacer.offer("a", vec![4], t2 + MS), None);
        assert!(pacer.take_due(t2 + SPACING).is_empty(), "not written");
        assert_eq!(pacer.written("a", third[0].id, t2 + HOLD - MS), None);
        assert_eq!(pacer.rests(), 2);
        assert!(pacer.take_due(t2 + HOLD - MS).is_empty(), "resting");
        let fourth = pacer.take_due(t2 + HOLD);
        assert_eq!(fourth.len(), 1);
        assert_eq!(fourth[0].entries, vec![4]);
        assert!(pacer.take_due(t2 + HOLD + RESTING).is_empty());
    }

    /// A hand-off the simulated hub made: room, id, when, entries' seq and wait.
    type Made = (String, u64, Instant, Vec<(u32, Duration)>);

    /// A simulated hub: entries arrive, each hand-off is written after its own delay
    /// (or never), and the hub runs at every arrival, write report and timer.
    struct Hub {
        pacer: RoomPacer<(u32, Instant)>,
        /// Write reports to come: when, room, hand-off.
        reports: Vec<(Instant, String, u64)>,
        /// Each hand-off's time to be written, µs, in turn (`None`: never).
        delays: Vec<Option<u64>>,
        /// Hand-offs made, in order.
        out: Vec<Made>,
        /// When each hand-off was written (`None`: never).
        written: HashMap<u64, Option<Instant>>,
    }

    impl Hub {
        fn hand_off(&mut self, hand_off: HandOff<(u32, Instant)>, now: Instant) {
            let delay = self.delays[self.out.len() % self.delays.len()];
            let written = delay.map(|us| now + Duration::from_micros(us));
            if let Some(at) = written {
                self.reports.push((at, hand_off.room.clone(), hand_off.id));
            }
            self.written.insert(hand_off.id, written);
            let waits = hand_off
                .entries
                .iter()
                .map(|(seq, at)| (*seq, now - *at))
                .collect();
            self.out.push((hand_off.room, hand_off.id, now, waits));
        }

        /// Runs every report and timer up to `until`, in time order.
        fn run_until(&mut self, until: Instant) {
            loop {
                self.reports.sort_by_key(|(at, ..)| *at);
                let report = self.reports.first().map(|(at, ..)| *at);
                let timer = self.pacer.next_due();
                let next = match (report, timer) {
                    (Some(r), Some(t)) => r.min(t),
                    (Some(r), None) => r,
                    (None, Some(t)) => t,
                    (None, None) => return,
                };
                if next > until {
                    return;
                }
                if report == Some(next) {
                    let (_, room, id) = self.reports.remove(0);
                    if let Some(h) = self.pacer.written(&room, id, next) {
                        self.hand_off(h, next);
                    }
                } else {
                    for h in self.pacer.take_due(next) {
                        self.hand_off(h, next);
                    }
                }
            }
        }
    }

    proptest! {
        /// Whatever rooms entries come for, and however long each hand-off takes to be
        /// written (or if it never is): every entry is handed off once, each room's in
        /// order; none waits longer than the hold; and a room is handed off again only
        /// once its last hand-off is spaced, written and rested, or its hold is over.
        #[test]
        fn every_entry_once_in_order_never_past_the_hold_and_one_write_at_a_time(
            arrivals in proptest::collection::vec((0u8..4, 0u64..3_000), 1..300),
            delays in proptest::collection::vec(proptest::option::weighted(0.9, 0u64..20_000), 1..20),
            spacing_us in prop_oneof![Just(0u64), 0u64..12_000, Just(12_000)],
            hold_us in 0u64..24_000,
            rest_us in prop_oneof![Just(0u64), 0u64..8_000],
        ) {
            let t0 = Instant::now();
            let spacing = Duration::from_micros(spacing_us);
            let hold = Duration::from_micros(hold_us).max(spacing);
            let rest = Duration::from_micros(rest_us);
            let mut hub = Hub {
                pacer: RoomPacer::new(spacing, hold, rest),
                reports: Vec::new(),
                delays,
                out: Vec::new(),
                written: HashMap::new(),
            };
            let mut next_seq = [0u32; 4];
            let mut now = t0;
            for (room, gap_us) in arrivals {
                now += Duration::from_micros(gap_us);
                hub.run_until(now);
                let name = format!("room-{room}");
                let seq = next_seq[usize::from(room)];
                next_seq[usize::from(room)] += 1;
                if let Some(h) = hub.pacer.offer(&name, vec![(seq, now)], now) {
                    hub.hand_off(h, now);
                }
            }
            hub.run_until(now + Duration::from_secs(1));
            prop_assert!(hub.pacer.recent.is_empty());
            for (room, count) in next_seq.iter().enumerate() {
                let name = format!("room-{room}");
                let seqs: Vec<u32> = hub.out.iter()
                    .filter(|(r, ..)| *r == name)
                    .flat_map(|(.., waits)| waits.iter().map(|(seq, _)| *seq))
                    .collect();
                prop_assert_eq!(seqs, (0..*count).collect::<Vec<_>>());
            }
            for (.., waits) in &hub.out {
                for (_, waited) in waits {
                    prop_assert!(*waited <= hold, "{waited:?}");
                }
            }
            // Consecutive hand-offs of a room: the later one no earlier than the
            // earlier one's spacing and its write's rest, or the end of its hold.
            let mut last: HashMap<&str, Instant> = HashMap::new();
            for (room, id, at, _) in &hub.out {
                if let Some(free) = last.get(room.as_str()) {
                    prop_assert!(at >= free, "{room}: at {at:?}, free at {free:?}");
                }
                let hold_over = *at + hold;
                let free = hub.written[id]
                    .map_or(hold_over, |written| (written + rest).max(*at + spacing).min(hold_over));
                last.insert(room.as_str(), free);
            }
        }
    }
}
