//! When the hub hands one room's entries to its members.
//!
//! A room's local members are split into lanes (`Rooms` decides how many: one for
//! up to 64 members). A quiet room's entry, or its first after a pause, goes to every
//! lane at once. In a busy room the lanes take turns: each turn hands one lane what
//! came since its last, and the next turn comes a gap later, the room's period over
//! its lanes. So every member gets at most one write per period, whatever it carries,
//! and a big room's writes are spread over the period instead of going out all
//! together: no member's write waits behind the whole room's, and the gateway is never
//! busy with one room's round while everything else waits.
//!
//! The period is [`MIN_SPACING`], or, when writing the whole room takes longer than
//! the spacing less a [`REST`], that writing time and the rest (a lane's writing time
//! times the lanes stands for the room's). A lane's turn also waits for its last
//! hand-off to be written ([`RoomPacer::written`]) and its share of the rest, never
//! longer than [`MAX_HOLD`] after that hand-off: the busier the gateway, the more each
//! turn carries. A member whose writes stall holds its lane at most [`MAX_HOLD`].
//!
//! Turns are spaced from when they were due, not from when the hub's timer (which
//! rounds up to its next millisecond) brought them: otherwise every turn of a room
//! of 8 lanes would come most of a millisecond late and its period would grow by
//! the lateness of all 8.
//!
//! With one lane this is: no sooner than the spacing after the last hand-off, and not
//! before that one is written and rested, but never later than its hold.
//!
//! Sans-IO: time is passed in; the hub arms its timer at [`RoomPacer::next_due`] and
//! reports each hand-off's writes done with its id.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::time::{Duration, Instant};

/// The shortest period of a room: between two hand-offs to a member.
pub(crate) const MIN_SPACING: Duration = Duration::from_millis(6);

/// The longest a lane's entries wait for its previous hand-off's writes.
pub(crate) const MAX_HOLD: Duration = Duration::from_millis(24);

/// Added to a room's period when writing it all took longer than [`MIN_SPACING`]
/// less this; shorter rounds are only spaced.
pub(crate) const REST: Duration = Duration::from_millis(2);

/// How late the hub's timer may fire: it rounds a wake-up up to its next millisecond.
const TIMER_TICK: Duration = Duration::from_millis(1);

/// Entries to hand to one lane of a room's members now. `id` names the hand-off for
/// [`RoomPacer::written`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct HandOff<T> {
    pub(crate) room: String,
    pub(crate) lane: usize,
    pub(crate) id: u64,
    pub(crate) entries: Vec<T>,
}

/// One lane of a busy room.
#[derive(Debug)]
struct Lane {
    /// How many of the room's entries it was handed, since the room got busy.
    got: u64,
    /// Its last hand-off.
    id: u64,
    handed_at: Instant,
    /// That hand-off went to every lane at once.
    whole_room: bool,
    /// When its members' writers had written it.
    written_at: Option<Instant>,
}

/// A room handed off lately: its lanes and whose turn is next.
#[derive(Debug)]
struct Wheel<T> {
    /// Entries a lane has still to be handed, in order; the first is number `base`.
    log: VecDeque<T>,
    base: u64,
    lanes: Vec<Lane>,
    /// The lane whose turn is next.
    turn: usize,
    /// When the last turn went.
    turned_at: Instant,
    /// Between two hand-offs to a lane; turns are this over the lanes apart.
    period: Duration,
    /// When the room is next looked at, and that timer's number (others are stale).
    due: Instant,
    timer: u64,
}

impl<T> Wheel<T> {
    fn end(&self) -> u64 {
        self.base + self.log.len() as u64
    }

    /// The next lane, from the turn on, with entries to be handed.
    fn next_lane(&self) -> Option<usize> {
        let n = self.lanes.len();
        (0..n)
            .map(|i| (self.turn + i) % n)
            .find(|&lane| self.lanes[lane].got < self.end())
    }
}

/// Rooms' hand-offs, lane by lane, spaced and each after that lane's last is written.
/// `T` is what is handed off (the hub's encoded entries).
#[derive(Debug)]
pub(crate) struct RoomPacer<T> {
    spacing: Duration,
    hold: Duration,
    rest: Duration,
    rooms: HashMap<String, Wheel<T>>,
    /// Earliest first: when, the timer's number, the room.
    timers: BinaryHeap<Reverse<(Instant, u64, String)>>,
    next_id: u64,
    next_timer: u64,
    /// Hand-offs whose writes made their room's period longer than the spacing.
    rests: u64,
}

impl<T: Clone> Default for RoomPacer<T> {
    fn default() -> Self {
        Self::new(MIN_SPACING, MAX_HOLD, REST)
    }
}

impl<T: Clone> RoomPacer<T> {
    /// Periods of at least `spacing`, and `rest` longer than writing the room when
    /// that is not shorter than the spacing; a lane waits at most `hold` for its last
    /// hand-off's writes.
    pub(crate) fn new(spacing: Duration, hold: Duration, rest: Duration) -> Self {
        Self {
            spacing,
            hold: hold.max(spacing),
            rest,
            rooms: HashMap::new(),
            timers: BinaryHeap::new(),
            next_id: 0,
            next_timer: 0,
            rests: 0,
        }
    }

    /// `room`'s next entries, in order, with the room's lane count now: handed to
    /// every lane now if the room is quiet, otherwise held for the lanes' turns (any
    /// turn due already goes now).
    pub(crate) fn offer(
        &mut self,
        room: &str,
        lanes: usize,
        entries: Vec<T>,
        now: Instant,
    ) -> Vec<HandOff<T>> {
        let lanes = lanes.max(1);
        if let Some(wheel) = self.rooms.get_mut(room) {
            let base = wheel.base;
            // A lane added meanwhile is owed everything still held.
            while wheel.lanes.len() < lanes {
                wheel.lanes.push(Lane {
                    got: base,
                    id: u64::MAX,
                    handed_at: now,
                    whole_room: false,
                    written_at: Some(now),
                });
            }
            wheel.log.extend(entries);
            // A turn may be due at once: the room may only have been waiting for a
            // lane's writes before being forgotten.
            return self.step(room, now, false);
        }
        let count = entries.len() as u64;
        let mut hand_offs = Vec::with_capacity(lanes);
        let mut lane_states = Vec::with_capacity(lanes);
        let mut entries = Some(entries);
        for lane in 0..lanes {
            let id = self.next_id;
            self.next_id += 1;
            lane_states.push(Lane {
                got: count,
                id,
                handed_at: now,
                whole_room: true,
                written_at: None,
            });
            hand_offs.push(HandOff {
                room: room.to_owned(),
                lane,
                id,
                entries: if lane + 1 == lanes {
                    entries.take().unwrap_or_default()
                } else {
                    entries.clone().unwrap_or_default()
                },
            });
        }
        self.rooms.insert(
            room.to_owned(),
            Wheel {
                log: VecDeque::new(),
                base: count,
                lanes: lane_states,
                turn: 0,
                turned_at: now,
                period: self.spacing,
                due: now,
                timer: u64::MAX,
            },
        );
        self.arm(room);
        hand_offs
    }

    /// Hand-off `id` of `room` is written: what its lanes are owed and due now. A
    /// hand-off superseded already is ignored.
    pub(crate) fn written(&mut self, room: &str, id: u64, now: Instant) -> Vec<HandOff<T>> {
        let Some(wheel) = self.rooms.get_mut(room) else {
            return Vec::new();
        };
        let lanes = wheel.lanes.len() as u32;
        let Some(lane) = wheel
            .lanes
            .iter_mut()
            .find(|lane| lane.id == id && lane.written_at.is_none())
        else {
            return Vec::new();
        };
        lane.written_at = Some(now);
        let took = now - lane.handed_at;
        let room_took = if lane.whole_room { took } else { took * lanes };
        if took < self.hold && self.hold > self.spacing && room_took + self.rest > self.spacing {
            self.rests += 1;
        }
        wheel.period = (room_took + self.rest).clamp(self.spacing, self.hold);
        self.step(room, now, false)
    }

    /// Hand-offs whose writes lengthened their room's period so far.
    pub(crate) fn rests(&self) -> u64 {
        self.rests
    }

    /// When the hub should call [`RoomPacer::take_due`] next.
    pub(crate) fn next_due(&mut self) -> Option<Instant> {
        while let Some(Reverse((at, timer, room))) = self.timers.peek() {
            if self.rooms.get(room).is_some_and(|w| w.timer == *timer) {
                return Some(*at);
            }
            self.timers.pop();
        }
        None
    }

    /// The lanes whose turn has come, and what they are owed; rooms with nothing left
    /// to hand whose lanes are all written (or past their hold) are forgotten.
    pub(crate) fn take_due(&mut self, now: Instant) -> Vec<HandOff<T>> {
        let mut out = Vec::new();
        while let Some(Reverse((at, timer, room))) = self.timers.peek()
            && *at <= now
        {
            let current = self.rooms.get(room).is_some_and(|w| w.timer == *timer);
            let Some(Reverse((_, _, room))) = self.timers.pop() else {
                break;
            };
            if current {
                out.extend(self.step(&room, now, true));
            }
        }
        out
    }

    /// When `lane` may be handed off again: once written and rested (a whole-room
    /// hand-off the whole rest, a turn its lane's share), or when its hold is over.
    fn ready(&self, lane: &Lane, lanes: usize) -> Instant {
        let hold_over = lane.handed_at + self.hold;
        let rest = if lane.whole_room {
            self.rest
        } else {
            self.rest / lanes as u32
        };
        lane.written_at
            .map_or(hold_over, |written| (written + rest).min(hold_over))
    }

    /// When `wheel` is next looked at: its next turn, or, with nothing to hand, when it
    /// may be forgotten.
    fn due(&self, wheel: &Wheel<T>) -> Instant {
        let lanes = wheel.lanes.len();
        let spaced = wheel.turned_at + wheel.period / lanes as u32;
        match wheel.next_lane() {
            Some(lane) => spaced.max(self.ready(&wheel.lanes[lane], lanes)),
            None => wheel
                .lanes
                .iter()
                .map(|lane| self.ready(lane, lanes))
                .fold(spaced, Instant::max),
        }
    }

    /// Arms `room`'s timer at its due time, unless it is armed there already.
    fn arm(&mut self, room: &str) {
        let Some(wheel) = self.rooms.get(room) else {
            return;
        };
        let due = self.due(wheel);
        if wheel.timer != u64::MAX && wheel.due == due {
            return;
        }
        let timer = self.next_timer;
        self.next_timer += 1;
        if let Some(wheel) = self.rooms.get_mut(room) {
            wheel.due = due;
            wheel.timer = timer;
        }
        self.timers.push(Reverse((due, timer, room.to_owned())));
    }

    /// Takes `room`'s turns that are due by `now`, or forgets it. `on_timer`: the
    /// hub's timer for the room fired (`now` may be up to its tick past the due time).
    fn step(&mut self, room: &str, now: Instant, on_timer: bool) -> Vec<HandOff<T>> {
        let mut out = Vec::new();
        loop {
            let Some(wheel) = self.rooms.get(room) else {
                return out;
            };
            let due = self.due(wheel);
            if due > now {
                self.arm(room);
                return out;
            }
            let Some(lane) = wheel.next_lane() else {
                self.rooms.remove(room);
                return out;
            };
            out.push(self.turn(room, lane, on_timer.then_some(due), now));
        }
    }

    /// Hands `lane` of `room` what it is owed. `timed`: when the turn was due, if its
    /// timer brought it.
    fn turn(
        &mut self,
        room: &str,
        lane: usize,
        timed: Option<Instant>,
        now: Instant,
    ) -> HandOff<T> {
        let id = self.next_id;
        self.next_id += 1;
        let wheel = self.rooms.get_mut(room).expect("a busy room");
        let from = (wheel.lanes[lane].got - wheel.base) as usize;
        let entries: Vec<T> = wheel.log.range(from..).cloned().collect();
        let end = wheel.end();
        wheel.lanes[lane] = Lane {
            got: end,
            id,
            handed_at: now,
            whole_room: false,
            written_at: None,
        };
        wheel.turn = (lane + 1) % wheel.lanes.len();
        // A turn its timer brought a tick late keeps its place: the next is spaced
        // from when this one was due, so the timer's rounding up does not lengthen
        // every turn of a busy room's period (8 lanes, 1 ms apart, would otherwise
        // turn every 2). Never so that the next turn would be due already.
        let gap = wheel.period / wheel.lanes.len() as u32;
        wheel.turned_at = match timed {
            Some(due) if now - due <= TIMER_TICK && now - due < gap => due,
            _ => now,
        };
        // What every lane has now is held no longer.
        let all_got = wheel.lanes.iter().map(|l| l.got).min().unwrap_or(end);
        wheel.log.drain(..(all_got - wheel.base) as usize);
        wheel.base = all_got;
        HandOff {
            room: room.to_owned(),
            lane,
            id,
            entries,
        }
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

    /// The entries of a one-lane room's hand-off, if there was one.
    fn entries<T>(mut hand_offs: Vec<HandOff<T>>) -> Option<Vec<T>> {
        assert!(hand_offs.len() <= 1, "one lane");
        hand_offs.pop().map(|h| h.entries)
    }

    /// The hand-off of a one-lane room.
    fn one<T>(mut hand_offs: Vec<HandOff<T>>) -> HandOff<T> {
        assert_eq!(hand_offs.len(), 1, "one lane, at once");
        hand_offs.pop().expect("one")
    }

    #[test]
    fn a_quiet_rooms_entry_goes_out_at_once() {
        let mut pacer = pacer();
        let t0 = Instant::now();
        let first = one(pacer.offer("a", 1, vec![1], t0));
        assert_eq!(first.entries, vec![1]);
        // Another room is not held by the first.
        assert_eq!(entries(pacer.offer("b", 1, vec![2], t0)), Some(vec![2]));
        // Written with nothing held: once spaced, the room is forgotten, and its next
        // entry goes out at once, long before the hold would have ended.
        assert!(pacer.written("a", first.id, t0 + MS).is_empty());
        assert!(pacer.take_due(t0 + SPACING).is_empty());
        assert!(!pacer.rooms.contains_key("a"));
        assert_eq!(
            entries(pacer.offer("a", 1, vec![3], t0 + SPACING)),
            Some(vec![3])
        );
        // A room whose hold ends unwritten with nothing held is forgotten too.
        assert!(pacer.take_due(t0 + HOLD).is_empty());
        assert!(!pacer.rooms.contains_key("b"));
        assert!(pacer.take_due(t0 + SPACING + HOLD).is_empty());
        assert!(pacer.rooms.is_empty());
        assert_eq!(pacer.next_due(), None);
    }

    #[test]
    fn entries_that_come_meanwhile_go_out_together_once_spaced_and_written() {
        let mut pacer = pacer();
        let t0 = Instant::now();
        let first = one(pacer.offer("a", 1, vec![1], t0));
        assert!(pacer.offer("a", 1, vec![2, 3], t0 + MS).is_empty());
        // Written before its spacing is over: the held ones wait for the spacing.
        assert!(pacer.written("a", first.id, t0 + 2 * MS).is_empty());
        assert_eq!(pacer.next_due(), Some(t0 + SPACING));
        let second = pacer.take_due(t0 + SPACING);
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].entries, vec![2, 3]);
        let t1 = t0 + SPACING;
        // Spaced before it is written: the held one waits for the write.
        assert!(pacer.offer("a", 1, vec![4], t1 + MS).is_empty());
        assert!(pacer.take_due(t1 + SPACING).is_empty());
        assert_eq!(
            pacer.next_due(),
            Some(t1 + HOLD),
            "the hold still bounds it"
        );
        assert!(
            pacer.written("a", first.id, t1 + SPACING).is_empty(),
            "superseded"
        );
        let third = pacer.written("a", second[0].id, t1 + SPACING + MS);
        assert_eq!(entries(third), Some(vec![4]));
    }

    #[test]
    fn a_write_that_stalls_holds_its_room_no_longer_than_the_hold() {
        let mut pacer = pacer();
        let t0 = Instant::now();
        let first = one(pacer.offer("a", 1, vec![1], t0));
        assert!(pacer.offer("a", 1, vec![2], t0 + MS).is_empty());
        assert!(pacer.take_due(t0 + HOLD - MS).is_empty());
        let due = pacer.take_due(t0 + HOLD);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].entries, vec![2]);
        // The stalled hand-off's late report changes nothing: the room waits for the
        // hand-off that went out at the end of the hold.
        assert!(pacer.offer("a", 1, vec![3], t0 + HOLD + MS).is_empty());
        assert!(
            pacer.take_due(t0 + HOLD + SPACING).is_empty(),
            "not written"
        );
        assert!(pacer.written("a", first.id, t0 + HOLD + SPACING).is_empty());
        let after = pacer.written("a", due[0].id, t0 + HOLD + SPACING + MS);
        assert_eq!(entries(after), Some(vec![3]));
    }

    #[test]
    fn a_round_written_late_in_its_spacing_rests_before_the_next() {
        let mut pacer = RoomPacer::new(SPACING, HOLD, RESTING);
        let t0 = Instant::now();
        let first = one(pacer.offer("a", 1, vec![1], t0));
        assert!(pacer.offer("a", 1, vec![2], t0 + MS).is_empty());
        // Written at 3 ms: its rest ends at 6 ms, after its spacing.
        assert!(pacer.written("a", first.id, t0 + 3 * MS).is_empty());
        assert_eq!(pacer.rests(), 1);
        assert!(pacer.take_due(t0 + SPACING).is_empty(), "resting");
        assert_eq!(pacer.next_due(), Some(t0 + 6 * MS));
        let second = pacer.take_due(t0 + 6 * MS);
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].entries, vec![2]);
        // Written early in its spacing: it rests no longer than the spacing.
        let t1 = t0 + 6 * MS;
        assert!(pacer.offer("a", 1, vec![3], t1 + MS).is_empty());
        assert!(pacer.written("a", second[0].id, t1 + MS).is_empty());
        assert_eq!(pacer.rests(), 1, "only spaced");
        assert_eq!(pacer.next_due(), Some(t1 + SPACING));
        let third = pacer.take_due(t1 + SPACING);
        assert_eq!(third.len(), 1);
        assert_eq!(third[0].entries, vec![3]);
        // Written just before its hold ends: the rest ends with the hold, and the
        // room is handed off once.
        let t2 = t1 + SPACING;
        assert!(pacer.offer("a", 1, vec![4], t2 + MS).is_empty());
        assert!(pacer.take_due(t2 + SPACING).is_empty(), "not written");
        assert!(pacer.written("a", third[0].id, t2 + HOLD - MS).is_empty());
        assert_eq!(pacer.rests(), 2);
        assert!(pacer.take_due(t2 + HOLD - MS).is_empty(), "resting");
        let fourth = pacer.take_due(t2 + HOLD);
        assert_eq!(fourth.len(), 1);
        assert_eq!(fourth[0].entries, vec![4]);
        assert!(pacer.take_due(t2 + HOLD + RESTING).is_empty());
    }

    /// Lanes and what each was handed.
    fn lanes<T: Clone>(hand_offs: &[HandOff<T>]) -> Vec<(usize, Vec<T>)> {
        hand_offs
            .iter()
            .map(|h| (h.lane, h.entries.clone()))
            .collect()
    }

    #[test]
    fn a_busy_rooms_lanes_take_turns_spread_over_its_period() {
        let mut pacer = pacer();
        let t0 = Instant::now();
        // Quiet: every lane at once.
        let round = pacer.offer("a", 4, vec![1], t0);
        assert_eq!(
            lanes(&round),
            [(0, vec![1]), (1, vec![1]), (2, vec![1]), (3, vec![1])]
        );
        for h in &round {
            assert!(pacer.written("a", h.id, t0 + MS / 4).is_empty());
        }
        // Busy: one lane a turn, a quarter of the 4 ms spacing apart, each with what
        // came since its own last turn.
        assert!(pacer.offer("a", 4, vec![2], t0 + MS / 2).is_empty());
        assert_eq!(pacer.next_due(), Some(t0 + MS));
        let mut turns = Vec::new();
        for (at, entry) in [(1, Some(3)), (2, None), (3, Some(4)), (4, None), (5, None)] {
            let now = t0 + at * MS;
            let turn = pacer.take_due(now);
            assert_eq!(turn.len(), 1, "one lane at {at} ms");
            // Written in a quarter of a millisecond: the room takes 1 ms to write,
            // well within its spacing.
            assert!(pacer.written("a", turn[0].id, now + MS / 4).is_empty());
            turns.extend(lanes(&turn));
            if let Some(entry) = entry {
                assert!(pacer.offer("a", 4, vec![entry], now + MS / 2).is_empty());
            }
        }
        assert_eq!(
            turns,
            [
                (0, vec![2]),
                (1, vec![2, 3]),
                (2, vec![2, 3]),
                (3, vec![2, 3, 4]),
                (0, vec![3, 4]),
            ]
        );
        assert_eq!(pacer.rests(), 0);
        // Lane 1 is owed entry 4 still; the others have everything.
        assert_eq!(pacer.next_due(), Some(t0 + 6 * MS));
        assert_eq!(lanes(&pacer.take_due(t0 + 6 * MS)), [(1, vec![4])]);
    }

    #[test]
    fn a_turn_its_timer_brings_a_tick_late_keeps_its_place() {
        let mut pacer = pacer();
        let t0 = Instant::now();
        let round = pacer.offer("a", 4, vec![0], t0);
        for h in &round {
            assert!(pacer.written("a", h.id, t0 + MS / 4).is_empty());
        }
        // Busy, turns 1 ms apart; every timer fires 0.9 ms late.
        assert!(pacer.offer("a", 4, vec![1], t0 + MS / 2).is_empty());
        let late = MS * 9 / 10;
        let mut at = Vec::new();
        for entry in 2..10 {
            let due = pacer.next_due().expect("a turn to come");
            let now = due + late;
            let turn = pacer.take_due(now);
            assert_eq!(turn.len(), 1, "one lane at a time");
            // Written, and the next entry in, before the next turn is due.
            assert!(pacer.written("a", turn[0].id, now + MS / 20).is_empty());
            assert!(pacer.offer("a", 4, vec![entry], now + MS / 20).is_empty());
            at.push(now - t0);
        }
        // Each turn comes when it was due plus the lateness: the room's period stays
        // its spacing instead of growing by the lateness at every turn.
        let expected: Vec<Duration> = (1..9).map(|k| k * MS + late).collect();
        assert_eq!(at, expected);

        // A turn later than the timer's tick counts from when it came.
        let due = pacer.next_due().expect("a turn to come");
        let now = due + 2 * MS;
        assert_eq!(pacer.take_due(now).len(), 1);
        assert_eq!(pacer.next_due(), Some(now + MS));
    }

    #[test]
    fn a_room_whose_lanes_write_slowly_turns_less_often() {
        let mut pacer = RoomPacer::new(SPACING, HOLD, RESTING);
        let t0 = Instant::now();
        let round = pacer.offer("a", 4, vec![1], t0);
        // The whole room written in 2 ms: its period is that and the 3 ms rest, 5 ms.
        for h in &round {
            assert!(pacer.written("a", h.id, t0 + 2 * MS).is_empty());
        }
        assert_eq!(pacer.rests(), 4, "each lane's write lengthened the period");
        assert!(pacer.offer("a", 4, vec![2], t0 + 3 * MS).is_empty());
        // Lane 0 rests the whole rest after the round's writes.
        assert_eq!(pacer.next_due(), Some(t0 + 5 * MS));
        let turn = pacer.take_due(t0 + 5 * MS);
        assert_eq!(lanes(&turn), [(0, vec![2])]);
        // That lane took 1 ms: a room of four such lanes takes 4 ms to write, so its
        // period is 7 ms, a turn every 1.75 ms.
        assert!(pacer.written("a", turn[0].id, t0 + 6 * MS).is_empty());
        assert_eq!(pacer.next_due(), Some(t0 + 5 * MS + 7 * MS / 4));
        // A lane not yet written holds the turns up, at most its hold.
        let turn = pacer.take_due(t0 + 5 * MS + 7 * MS / 4);
        assert_eq!(lanes(&turn), [(1, vec![2])]);
        assert!(pacer.offer("a", 4, vec![3], t0 + 7 * MS).is_empty());
        let mut at = t0 + 5 * MS + 7 * MS / 4;
        for lane in [2, 3] {
            at += 7 * MS / 4;
            assert_eq!(lanes(&pacer.take_due(at)), [(lane, vec![2, 3])]);
        }
        let lane_1_handed = t0 + 5 * MS + 7 * MS / 4;
        // Lane 0 was written: its turn comes. Lane 1 never is: its turn waits for the
        // end of its hold.
        at += 7 * MS / 4;
        let turn = pacer.take_due(at);
        assert_eq!(lanes(&turn), [(0, vec![3])]);
        assert_eq!(pacer.next_due(), Some(lane_1_handed + HOLD));
        assert!(pacer.take_due(lane_1_handed + HOLD - MS).is_empty());
        assert_eq!(lanes(&pacer.take_due(lane_1_handed + HOLD)), [(1, vec![3])]);
    }

    #[test]
    fn a_lane_added_to_a_busy_room_is_owed_what_is_held() {
        let mut pacer = pacer();
        let t0 = Instant::now();
        let round = pacer.offer("a", 1, vec![1], t0);
        assert!(pacer.written("a", round[0].id, t0 + MS).is_empty());
        // Two lanes now: turns half the spacing apart, the first one due already.
        assert_eq!(
            lanes(&pacer.offer("a", 2, vec![2], t0 + SPACING / 2)),
            [(0, vec![2])]
        );
        assert_eq!(pacer.next_due(), Some(t0 + SPACING));
        assert_eq!(lanes(&pacer.take_due(t0 + SPACING)), [(1, vec![2])]);
    }

    /// A hand-off the simulated hub made: room, lane, id, when, whether it went to
    /// the whole room at once, and its entries' seq and wait.
    struct Made {
        room: String,
        lane: usize,
        id: u64,
        at: Instant,
        whole_room: bool,
        waits: Vec<(u32, Duration)>,
    }

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
        fn hand_off(&mut self, hand_off: HandOff<(u32, Instant)>, now: Instant, whole_room: bool) {
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
            self.out.push(Made {
                room: hand_off.room,
                lane: hand_off.lane,
                id: hand_off.id,
                at: now,
                whole_room,
                waits,
            });
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
                let made = if report == Some(next) {
                    let (_, room, id) = self.reports.remove(0);
                    self.pacer.written(&room, id, next)
                } else {
                    self.pacer.take_due(next)
                };
                for h in made {
                    self.hand_off(h, next, false);
                }
            }
        }
    }

    proptest! {
        /// Whatever rooms entries come for, in however many lanes, and however long
        /// each hand-off takes to be written (or if it never is): every entry is
        /// handed to each lane of its room once, in order; none waits longer than the
        /// hold (plus the turns of the other lanes, each at most the hold over the
        /// lanes); a lane is handed off again only once its last hand-off is written
        /// and rested, or its hold is over, and no sooner than its share of the
        /// spacing; and a room's turns are that share apart.
        #[test]
        fn every_entry_once_in_order_to_every_lane_within_the_hold_and_one_write_at_a_time(
            arrivals in proptest::collection::vec((0u8..4, 0u64..3_000), 1..300),
            delays in proptest::collection::vec(proptest::option::weighted(0.9, 0u64..20_000), 1..20),
            spacing_us in prop_oneof![Just(0u64), 0u64..12_000, Just(12_000)],
            hold_us in 0u64..24_000,
            rest_us in prop_oneof![Just(0u64), 0u64..8_000],
            lanes in prop_oneof![Just(vec![1usize; 4]), proptest::collection::vec(1usize..=4, 4)],
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
                let room = usize::from(room);
                let name = format!("room-{room}");
                let seq = next_seq[room];
                next_seq[room] += 1;
                let quiet = !hub.pacer.rooms.contains_key(&name);
                for h in hub.pacer.offer(&name, lanes[room], vec![(seq, now)], now) {
                    hub.hand_off(h, now, quiet);
                }
            }
            hub.run_until(now + Duration::from_secs(1));
            prop_assert!(hub.pacer.rooms.is_empty());
            prop_assert_eq!(hub.pacer.next_due(), None);
            for (room, count) in next_seq.iter().enumerate() {
                let name = format!("room-{room}");
                for lane in 0..lanes[room] {
                    let seqs: Vec<u32> = hub.out.iter()
                        .filter(|made| made.room == name && made.lane == lane)
                        .flat_map(|made| made.waits.iter().map(|(seq, _)| *seq))
                        .collect();
                    prop_assert_eq!(seqs, (0..*count).collect::<Vec<_>>(), "{} lane {}", name, lane);
                }
            }
            let share = |room: &str| {
                let n: usize = room["room-".len()..].parse().expect("a room number");
                lanes[n] as u32
            };
            for made in &hub.out {
                let n = share(&made.room);
                let longest = hold + hold / n * (n - 1);
                for (_, waited) in &made.waits {
                    prop_assert!(*waited <= longest, "{waited:?} over {longest:?}");
                }
            }
            // Consecutive hand-offs of a lane: the later one no earlier than the
            // earlier one's share of the spacing and its write's rest, or the end of
            // its hold. Consecutive turns of a room: that share of the spacing apart.
            let mut free: HashMap<(&str, usize), Instant> = HashMap::new();
            let mut turned: HashMap<&str, Instant> = HashMap::new();
            for made in &hub.out {
                let n = share(&made.room);
                let room = made.room.as_str();
                if let Some(free) = free.get(&(room, made.lane)) {
                    prop_assert!(made.at >= *free, "{room}/{}: at {:?}, free at {free:?}", made.lane, made.at);
                }
                if !made.whole_room && let Some(last) = turned.get(room) {
                    prop_assert!(made.at >= *last + spacing / n, "{room}: turns too close");
                }
                turned.insert(room, made.at);
                let hold_over = made.at + hold;
                let rested = if made.whole_room { rest } else { rest / n };
                let lane_free = hub.written[&made.id].map_or(hold_over, |written| {
                    (written + rested).max(made.at + spacing / n).min(hold_over)
                });
                free.insert((room, made.lane), lane_free);
            }
        }
    }
}
