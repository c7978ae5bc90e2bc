//! This gateway's sessions, by participant id, and the rooms they are in. Who is in a
//! room (across gateways) is the room service's business; this is only where to
//! deliver what concerns a local participant.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use axum::extract::ws::Utf8Bytes;
use confer_proto::signal::{ServerMessage, server_message::Msg};
use tokio::sync::mpsc;

use crate::chat_cursor::ChatCursor;
use crate::session::{Outgoing, SessionEvent};

/// Inbound queue of one session: server pushes and room-service commands.
pub(crate) type SessionTx = mpsc::UnboundedSender<SessionEvent>;

struct Local {
    tx: SessionTx,
    /// The session's client writer, and its place in the room's chat: entries that
    /// come next go there straight from the hub.
    outbox: mpsc::UnboundedSender<Outgoing>,
    chat: Arc<ChatCursor>,
    /// `tenant/room` once in a room (not while waiting), and its lane there.
    room: Option<(String, usize)>,
}

/// A room's local members, in lanes that take turns for its chat (`chat_pace`).
#[derive(Default)]
struct RoomMembers {
    lanes: Vec<HashSet<String>>,
}

/// Members per lane before a room gets another: a lane is written in one turn.
const LANE_MEMBERS: usize = 64;

/// The most lanes a room has.
const MAX_LANES: usize = 8;

impl RoomMembers {
    fn len(&self) -> usize {
        self.lanes.iter().map(HashSet::len).sum()
    }

    fn all(&self) -> impl Iterator<Item = &String> {
        self.lanes.iter().flatten()
    }

    /// Adds `id` to the lane with the fewest members, first adding a lane when the
    /// room has outgrown its lanes. A member never changes lanes, and a room's lanes
    /// are only ever added to, so a lane's turns reach each of its members in order.
    fn add(&mut self, id: &str) -> usize {
        let wanted = (self.len() / LANE_MEMBERS + 1).min(MAX_LANES);
        if self.lanes.len() < wanted {
            self.lanes.push(HashSet::new());
        }
        let lane = (0..self.lanes.len())
            .min_by_key(|&lane| self.lanes[lane].len())
            .unwrap_or(0);
        self.lanes[lane].insert(id.to_owned());
        lane
    }
}

#[derive(Default)]
struct Inner {
    sessions: HashMap<String, Local>,
    /// Room key → its local sessions' ids: a room's fan-out touches only its members.
    members: HashMap<String, RoomMembers>,
    /// Room key → its current active speaker, for members who enter after it spoke up.
    speakers: HashMap<String, String>,
}

impl Inner {
    fn leave_room(&mut self, id: &str, (room, lane): &(String, usize)) {
        if let Some(members) = self.members.get_mut(room) {
            if let Some(lane) = members.lanes.get_mut(*lane) {
                lane.remove(id);
            }
            if members.len() == 0 {
                self.members.remove(room);
            }
        }
    }
}

#[derive(Default)]
pub(crate) struct Rooms(Mutex<Inner>);

pub(crate) fn message(msg: Msg) -> ServerMessage {
    ServerMessage {
        request_id: String::new(),
        msg: Some(msg),
    }
}

impl Rooms {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves plain maps behind, still consistent enough
        // to serve; poisoning would take every session down with one bug.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers a session before the room service hears of it.
    pub(crate) fn register(
        &self,
        id: &str,
        tx: SessionTx,
        outbox: mpsc::UnboundedSender<Outgoing>,
        chat: Arc<ChatCursor>,
    ) {
        let local = Local {
            tx,
            outbox,
            chat,
            room: None,
        };
        self.lock().sessions.insert(id.to_owned(), local);
    }

    /// The session is in room `key` now.
    pub(crate) fn enter(&self, id: &str, key: &str) {
        let mut inner = self.lock();
        let Some(previous) = inner.sessions.get_mut(id).map(|local| local.room.take()) else {
            return;
        };
        if let Some(previous) = previous {
            inner.leave_room(id, &previous);
        }
        let lane = inner.members.entry(key.to_owned()).or_default().add(id);
        if let Some(local) = inner.sessions.get_mut(id) {
            local.room = Some((key.to_owned(), lane));
        }
    }

    pub(crate) fn unregister(&self, id: &str) {
        let mut inner = self.lock();
        if let Some(room) = inner.sessions.remove(id).and_then(|local| local.room) {
            inner.leave_room(id, &room);
        }
    }

    pub(crate) fn is_local(&self, id: &str) -> bool {
        self.lock().sessions.contains_key(id)
    }

    /// Hands `event` to a local session; false when it is not here.
    pub(crate) fn deliver(&self, id: &str, event: SessionEvent) -> bool {
        self.lock()
            .sessions
            .get(id)
            .is_some_and(|local| local.tx.send(event).is_ok())
    }

    /// Sends `msg` to a local session's client.
    pub(crate) fn push(&self, id: &str, msg: ServerMessage) -> bool {
        self.deliver(id, SessionEvent::Push(Box::new(msg)))
    }

    /// Sends `msg` to every local session in room `key`.
    pub(crate) fn push_room(&self, key: &str, msg: &ServerMessage) {
        let inner = self.lock();
        let Some(members) = inner.members.get(key) else {
            return;
        };
        for id in members.all() {
            if let Some(local) = inner.sessions.get(id) {
                let _ = local.tx.send(SessionEvent::Push(Box::new(msg.clone())));
            }
        }
    }

    /// How many lanes room `key`'s local members are in (none when it has none here).
    pub(crate) fn lanes(&self, key: &str) -> usize {
        self.lock()
            .members
            .get(key)
            .map_or(0, |members| members.lanes.len())
    }

    /// A room's chat entries, in order, to the local members in one of its lanes: each
    /// to the client's writer when it is the next one the client is owed, otherwise
    /// through its session (which fills gaps and signs file links).
    pub(crate) fn push_chat(
        &self,
        key: &str,
        lane: usize,
        pushes: &[Arc<crate::chat::ChatPush>],
        writes: &Arc<crate::chat::HandOffWrites>,
    ) {
        let inner = self.lock();
        let Some(members) = inner.members.get(key).and_then(|m| m.lanes.get(lane)) else {
            return;
        };
        let run = EncodedRun::of(pushes);
        for id in members {
            let Some(local) = inner.sessions.get(id) else {
                continue;
            };
            // The usual case: every entry encoded once for all, and the member owed
            // the first: one message to its writer for the lot.
            if let Some(run) = &run
                && local.chat.next_run(run.first, run.last, true, |batches| {
                    let frames = if batches {
                        run.batches().clone()
                    } else {
                        run.texts.clone()
                    };
                    let _ = local.outbox.send(Outgoing::Entries(frames, writes.clone()));
                })
            {
                continue;
            }
            // One member's entries back to back: its writer sends them in one write,
            // and holds the hand-off's `writes` until it has.
            for (i, push) in pushes.iter().enumerate() {
                let direct = push.encoded().is_some_and(|text| {
                    local.chat.next(push.seq(), true, || {
                        let last = i + 1 == pushes.len();
                        let writes = last.then(|| writes.clone());
                        let _ = local.outbox.send(Outgoing::Encoded(text.clone(), writes));
                    })
                });
                if !direct {
                    let _ = local.tx.send(SessionEvent::Chat(push.clone()));
                }
            }
        }
    }

    /// The SFU named a room's active speaker (`None`: nobody speaks).
    pub(crate) fn set_speaker(&self, key: &str, participant: Option<String>) {
        let mut inner = self.lock();
        match participant {
            Some(participant) => inner.speakers.insert(key.to_owned(), participant),
            None => inner.speakers.remove(key),
        };
    }

    pub(crate) fn speaker(&self, key: &str) -> Option<String> {
        self.lock().speakers.get(key).cloned()
    }

    pub(crate) fn n_participants(&self) -> usize {
        self.lock().members.values().map(RoomMembers::len).sum()
    }
}

/// Most entries in one `chat_batch` frame: a hand-off of entries read from history
/// (after a resync, say) may hold thousands.
const BATCH_ENTRIES: usize = 200;

/// A hand-off's entries when all are encoded once for every member and their seqs run
/// without a gap: what a member owed the first is sent as one writer message, and
/// as one frame (per [`BATCH_ENTRIES`]) to a client that reads `chat_batch`.
struct EncodedRun<'a> {
    first: u64,
    last: u64,
    texts: Arc<[Utf8Bytes]>,
    pushes: &'a [Arc<crate::chat::ChatPush>],
    /// The run's `chat_batch` frames, made for the first member that reads them.
    batches: std::cell::OnceCell<Arc<[Utf8Bytes]>>,
}

impl<'a> EncodedRun<'a> {
    fn of(pushes: &'a [Arc<crate::chat::ChatPush>]) -> Option<Self> {
        let first = pushes.first()?.seq();
        let mut texts = Vec::with_capacity(pushes.len());
        for (i, push) in pushes.iter().enumerate() {
            if push.seq() != first + i as u64 {
                return None;
            }
            texts.push(push.encoded()?.clone());
        }
        Some(Self {
            first,
            last: first + pushes.len() as u64 - 1,
            texts: texts.into(),
            pushes,
            batches: std::cell::OnceCell::new(),
        })
    }

    /// The run as a client that reads `chat_batch` gets it: one entry as its `chat`,
    /// more as `chat_batch` frames of up to [`BATCH_ENTRIES`].
    fn batches(&self) -> &Arc<[Utf8Bytes]> {
        self.batches.get_or_init(|| {
            if self.texts.len() == 1 {
                return self.texts.clone();
            }
            let chunks = self.pushes.chunks(BATCH_ENTRIES);
            chunks
                .map(|chunk| {
                    let entries = chunk.iter().filter_map(|push| push.encoded_entry());
                    confer_proto::signal::chat_batch_text(entries).into()
                })
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(rooms: &Rooms, id: &str) {
        let (tx, _) = mpsc::unbounded_channel();
        let (outbox, _) = mpsc::unbounded_channel();
        rooms.register(id, tx, outbox, Arc::default());
    }

    /// Sessions `p{i}` for each `i` of `ids`, each entering room `key`.
    fn enter_all(rooms: &Rooms, ids: std::ops::Range<usize>, key: &str) {
        for i in ids {
            session(rooms, &format!("p{i}"));
            rooms.enter(&format!("p{i}"), key);
        }
    }

    #[test]
    fn a_run_goes_as_one_chat_batch_to_a_client_that_reads_them() {
        use crate::chat::HandOffWrites;
        let rooms = Rooms::default();
        let mut outboxes = Vec::new();
        for (id, batches) in [("plain", false), ("batched", true)] {
            let (tx, _) = mpsc::unbounded_channel();
            let (outbox, outgoing) = mpsc::unbounded_channel();
            let cursor = Arc::new(ChatCursor::default());
            cursor.open(0, batches, || {});
            rooms.register(id, tx, outbox, cursor);
            rooms.enter(id, "t/room");
            outboxes.push(outgoing);
        }
        let pushes = entries(1..=3);
        let (report, mut reported) = mpsc::unbounded_channel();
        let writes = Arc::new(HandOffWrites::new("t/room".into(), 1, report));
        rooms.push_chat("t/room", 0, &pushes, &writes);
        drop(writes);

        let Ok(Outgoing::Entries(texts, plain_writes)) = outboxes[0].try_recv() else {
            panic!("a client that does not read batches gets the entries one by one");
        };
        assert_eq!(texts.len(), 3);
        let Ok(Outgoing::Entries(frames, batched_writes)) = outboxes[1].try_recv() else {
            panic!("a client that reads batches gets the run in one writer message");
        };
        assert_eq!(batch_contents(&frames), [vec![1, 2, 3]], "one frame");
        for outgoing in &mut outboxes {
            assert!(outgoing.try_recv().is_err(), "one writer message each");
        }
        drop(plain_writes);
        assert!(
            reported.try_recv().is_err(),
            "written once both writers are"
        );
        drop(batched_writes);
        assert!(reported.try_recv().is_ok());

        // A long run (entries read from history) goes in frames of up to 200.
        let (report, _) = mpsc::unbounded_channel();
        let writes = Arc::new(HandOffWrites::new("t/room".into(), 2, report));
        rooms.push_chat("t/room", 0, &entries(4..=453), &writes);
        let Ok(Outgoing::Entries(frames, _)) = outboxes[1].try_recv() else {
            panic!("the long run in one writer message");
        };
        let sizes: Vec<_> = batch_contents(&frames).iter().map(Vec::len).collect();
        assert_eq!(sizes, [200, 200, 50]);
        let seqs: Vec<u64> = batch_contents(&frames).concat();
        assert!(seqs.iter().copied().eq(4..=453), "in order, each once");

        // A run of one is its `chat` frame.
        rooms.push_chat("t/room", 0, &entries(454..=454), &writes);
        let Ok(Outgoing::Entries(frames, _)) = outboxes[1].try_recv() else {
            panic!("one entry in one writer message");
        };
        let frame: serde_json::Value = serde_json::from_str(&frames[0]).expect("JSON");
        assert_eq!(
            (frames.len(), frame["chat"]["seq"].as_u64()),
            (1, Some(454))
        );
    }

    /// Chat entries `seqs`, as the hub pushes them.
    fn entries(seqs: std::ops::RangeInclusive<u64>) -> Vec<Arc<crate::chat::ChatPush>> {
        seqs.map(|seq| {
            let entry = confer_proto::signal::ChatMessage {
                seq,
                text: format!("m{seq}"),
                kind: "text".into(),
                ..Default::default()
            };
            Arc::new(crate::chat::ChatPush::new(entry, true))
        })
        .collect()
    }

    /// The seqs in each `chat_batch` frame.
    fn batch_contents(frames: &[Utf8Bytes]) -> Vec<Vec<u64>> {
        frames
            .iter()
            .map(|frame| {
                let frame: serde_json::Value = serde_json::from_str(frame).expect("JSON");
                let entries = frame["chat_batch"]["entries"].as_array().expect("a batch");
                entries.iter().filter_map(|e| e["seq"].as_u64()).collect()
            })
            .collect()
    }

    fn lane_sizes(rooms: &Rooms, key: &str) -> Vec<usize> {
        rooms.lock().members[key]
            .lanes
            .iter()
            .map(HashSet::len)
            .collect()
    }

    #[test]
    fn a_big_rooms_members_fill_lanes_of_64_up_to_8_and_never_change_lanes() {
        let rooms = Rooms::default();
        enter_all(&rooms, 0..64, "t/big");
        assert_eq!(rooms.lanes("t/big"), 1);
        enter_all(&rooms, 64..65, "t/big");
        assert_eq!(lane_sizes(&rooms, "t/big"), [64, 1]);
        // Newcomers go to the emptiest lane; those already in stay where they are.
        enter_all(&rooms, 65..128, "t/big");
        assert_eq!(lane_sizes(&rooms, "t/big"), [64, 64]);
        for i in 0..10 {
            rooms.unregister(&format!("p{i}"));
        }
        assert_eq!(lane_sizes(&rooms, "t/big"), [54, 64]);
        session(&rooms, "again");
        rooms.enter("again", "t/big");
        assert_eq!(lane_sizes(&rooms, "t/big"), [55, 64]);
        enter_all(&rooms, 128..1_000, "t/big");
        let sizes = lane_sizes(&rooms, "t/big");
        assert_eq!(sizes.len(), 8);
        assert_eq!(sizes.iter().sum::<usize>(), 991);
        assert!(sizes.iter().all(|&n| (123..=124).contains(&n)), "{sizes:?}");
        assert_eq!(rooms.n_participants(), 991);
        // A small room has one lane; moving rooms leaves the old one's lane.
        rooms.enter("again", "t/small");
        assert_eq!(rooms.lanes("t/small"), 1);
        assert_eq!(rooms.lanes("t/big"), 8);
        assert_eq!(lane_sizes(&rooms, "t/big").iter().sum::<usize>(), 990);
        rooms.unregister("again");
        assert_eq!(rooms.lanes("t/small"), 0);
    }
}
