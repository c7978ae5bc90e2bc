//! Which media worker holds which room.
//!
//! A room lives on one worker (forwarding never crosses threads); a new room goes to
//! the worker with the fewest peers. Every peer registration carries a generation, so
//! a worker reporting a peer gone cannot erase the participant's newer registration
//! (a reconnect that raced the old peer's timeout).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use crate::{ParticipantId, RoomId};

/// Index of a media worker.
pub(crate) type WorkerIndex = usize;

struct RoomPlacement {
    worker: WorkerIndex,
    peers: usize,
}

struct Registration {
    room: RoomId,
    worker: WorkerIndex,
    generation: u64,
}

/// What [`Router::register`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Assignment {
    pub(crate) worker: WorkerIndex,
    pub(crate) generation: u64,
    /// The worker holding the participant's previous peer in another room, which must
    /// be removed there first. (A reconnect into the same worker replaces it in place.)
    pub(crate) previous: Option<WorkerIndex>,
}

pub(crate) struct Router {
    peers_per_worker: Vec<usize>,
    rooms: HashMap<RoomId, RoomPlacement>,
    participants: HashMap<ParticipantId, Registration>,
    next_generation: u64,
}

impl Router {
    pub(crate) fn new(workers: usize) -> Self {
        assert!(workers > 0, "a router needs at least one worker");
        Self {
            peers_per_worker: vec![0; workers],
            rooms: HashMap::new(),
            participants: HashMap::new(),
            next_generation: 0,
        }
    }

    /// Places the participant's (new) peer: in its room's worker, or for a new room in
    /// the least-loaded worker.
    pub(crate) fn register(&mut self, room: &RoomId, participant: &ParticipantId) -> Assignment {
        let previous = self.forget_current(participant);
        let worker = match self.rooms.get(room) {
            Some(placement) => placement.worker,
            None => self.least_loaded(),
        };
        let placement = self
            .rooms
            .entry(room.clone())
            .or_insert(RoomPlacement { worker, peers: 0 });
        placement.peers += 1;
        self.peers_per_worker[worker] += 1;
        let generation = self.next_generation;
        self.next_generation += 1;
        self.participants.insert(
            participant.clone(),
            Registration {
                room: room.clone(),
                worker,
                generation,
            },
        );
        Assignment {
            worker,
            generation,
            previous: previous.filter(|&old| old != worker),
        }
    }

    /// The worker holding `room`, placing it (without peers yet) if it is new: relay
    /// links must live where the room's peers will.
    pub(crate) fn worker_for_room(&mut self, room: &RoomId) -> WorkerIndex {
        if let Some(placement) = self.rooms.get(room) {
            return placement.worker;
        }
        let worker = self.least_loaded();
        self.rooms
            .insert(room.clone(), RoomPlacement { worker, peers: 0 });
        worker
    }

    /// The worker holding the participant's peer.
    pub(crate) fn worker_of(&self, participant: &ParticipantId) -> Option<WorkerIndex> {
        self.participants.get(participant).map(|r| r.worker)
    }

    /// The worker holding the participant's peer, and the registration's generation.
    pub(crate) fn registration(&self, participant: &ParticipantId) -> Option<(WorkerIndex, u64)> {
        self.participants
            .get(participant)
            .map(|r| (r.worker, r.generation))
    }

    /// The participant's peer is gone, whichever registration it was.
    #[cfg(test)]
    pub(crate) fn forget(&mut self, participant: &ParticipantId) {
        self.forget_current(participant);
    }

    /// A worker reports the peer of `generation` gone; a newer registration stays.
    pub(crate) fn forget_generation(&mut self, participant: &ParticipantId, generation: u64) {
        if self
            .participants
            .get(participant)
            .is_some_and(|r| r.generation == generation)
        {
            self.forget_current(participant);
        }
    }

    /// Peers placed on each worker.
    #[cfg(test)]
    fn load(&self) -> &[usize] {
        &self.peers_per_worker
    }

    fn forget_current(&mut self, participant: &ParticipantId) -> Option<WorkerIndex> {
        let registration = self.participants.remove(participant)?;
        self.peers_per_worker[registration.worker] -= 1;
        if let Some(placement) = self.rooms.get_mut(&registration.room) {
            placement.peers -= 1;
            if placement.peers == 0 {
                self.rooms.remove(&registration.room);
            }
        }
        Some(registration.worker)
    }

    fn least_loaded(&self) -> WorkerIndex {
        // Ties go to the lowest index, so one worker serves until there is load to spread.
        self.peers_per_worker
            .iter()
            .enumerate()
            .min_by_key(|&(index, peers)| (*peers, index))
            .map_or(0, |(index, _)| index)
    }
}

/// The shared router, locked. Its state is consistent after every call, so a panic
/// elsewhere while it was held leaves nothing half-done.
pub(crate) fn lock(router: &Mutex<Router>) -> MutexGuard<'_, Router> {
    router
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn room(n: u8) -> RoomId {
        RoomId::new(format!("room-{n}"))
    }

    fn who(n: u8) -> ParticipantId {
        ParticipantId::new(format!("p-{n}"))
    }

    #[test]
    fn a_room_stays_on_one_worker_and_new_rooms_go_to_the_emptiest() {
        let mut router = Router::new(2);
        assert_eq!(router.register(&room(1), &who(1)).worker, 0);
        assert_eq!(router.register(&room(1), &who(2)).worker, 0);
        assert_eq!(router.register(&room(2), &who(3)).worker, 1);
        assert_eq!(router.register(&room(3), &who(4)).worker, 1);
        assert_eq!(router.load(), &[2, 2]);
        router.forget(&who(1));
        router.forget(&who(2));
        // Room 1 is empty and gone; the next new room takes the emptied worker.
        assert_eq!(router.register(&room(1), &who(5)).worker, 0);
    }

    #[test]
    fn a_stale_report_does_not_erase_a_reconnect() {
        let mut router = Router::new(2);
        let first = router.register(&room(1), &who(1));
        let again = router.register(&room(1), &who(1));
        assert_eq!(again.previous, None, "same worker: replaced in place");
        router.forget_generation(&who(1), first.generation);
        assert_eq!(router.worker_of(&who(1)), Some(0));
        router.forget_generation(&who(1), again.generation);
        assert_eq!(router.worker_of(&who(1)), None);
        assert_eq!(router.load(), &[0, 0]);
    }

    #[test]
    fn moving_to_a_room_on_another_worker_names_the_old_one() {
        let mut router = Router::new(2);
        router.register(&room(1), &who(1));
        router.register(&room(2), &who(2));
        let moved = router.register(&room(2), &who(1));
        assert_eq!((moved.worker, moved.previous), (1, Some(0)));
        assert_eq!(router.load(), &[0, 2]);
    }

    proptest! {
        /// Whatever the sequence, the counts match the registrations, every member of a
        /// room is on the room's worker, and new rooms never go to a busier worker.
        #[test]
        fn counts_and_placements_stay_consistent(
            ops in proptest::collection::vec((0u8..3, 0u8..6, 0u8..12), 1..200),
            workers in 1usize..4,
        ) {
            let mut router = Router::new(workers);
            for (op, r, p) in ops {
                match op {
                    0 | 1 => {
                        // The load and rooms as `register` sees them, after it has let go
                        // of the participant's previous peer.
                        let mut load = router.load().to_vec();
                        let previous = router.participants.get(&who(p)).map(|r| (r.worker, r.room.clone()));
                        if let Some((worker, _)) = &previous {
                            load[*worker] -= 1;
                        }
                        let room_stays = router.rooms.get(&room(r)).is_some_and(|placement| {
                            placement.peers > 1 || previous.as_ref().is_none_or(|(_, old)| *old != room(r))
                        });
                        let assigned = router.register(&room(r), &who(p));
                        if !room_stays {
                            let min = load.iter().min().copied().unwrap_or(0);
                            prop_assert_eq!(load[assigned.worker], min);
                        }
                    }
                    _ => router.forget(&who(p)),
                }
                let mut expected = vec![0; workers];
                for registration in router.participants.values() {
                    expected[registration.worker] += 1;
                    prop_assert_eq!(router.rooms[&registration.room].worker, registration.worker);
                }
                prop_assert_eq!(router.load(), expected.as_slice());
                let in_rooms: usize = router.rooms.values().map(|p| p.peers).sum();
                prop_assert_eq!(in_rooms, router.participants.len());
            }
        }
    }
}
