//! This gateway's sessions, by participant id, and the rooms they are in. Who is in a
//! room (across gateways) is the room service's business; this is only where to
//! deliver what concerns a local participant.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use confer_proto::signal::{ServerMessage, server_message::Msg};
use confer_sfu::core::Quality;
use tokio::sync::mpsc;

use crate::chat_cursor::ChatCursor;
use crate::session::SessionEvent;
use crate::socket::Outbound;

/// Inbound queue of one session: server pushes and room-service commands.
pub(crate) type SessionTx = mpsc::UnboundedSender<SessionEvent>;

struct Local {
    link: Arc<Link>,
    /// `tenant/room` once in a room (not while waiting), and its lane there.
    room: Option<(String, usize)>,
}

/// The ways to one session: its inbound queue, and the way to its client with its
/// place in the room's chat (entries that come next are written there straight from
/// the hub). A room's lanes hold these, so a fan-out looks nothing up per member.
struct Link {
    tx: SessionTx,
    out: Arc<Outbound>,
    chat: Arc<ChatCursor>,
}

/// A room's local members, in lanes that take turns for its chat (`chat_pace`).
#[derive(Default)]
struct RoomMembers {
    lanes: Vec<HashMap<String, Arc<Link>>>,
}

/// Members per lane before a room gets another: a lane is written in one turn.
const LANE_MEMBERS: usize = 64;

/// The most lanes a room has.
const MAX_LANES: usize = 8;

impl RoomMembers {
    fn len(&self) -> usize {
        self.lanes.iter().map(HashMap::len).sum()
    }

    fn all(&self) -> impl Iterator<Item = &Arc<Link>> {
        self.lanes.iter().flat_map(HashMap::values)
    }

    /// Adds `id` to the lane with the fewest members, first adding a lane when the
    /// room has outgrown its lanes. A member never changes lanes, and a room's lanes
    /// are only ever added to, so a lane's turns reach each of its members in order.
    fn add(&mut self, id: &str, link: Arc<Link>) -> usize {
        let wanted = (self.len() / LANE_MEMBERS + 1).min(MAX_LANES);
        if self.lanes.len() < wanted {
            self.lanes.push(HashMap::new());
        }
        let lane = (0..self.lanes.len())
            .min_by_key(|&lane| self.lanes[lane].len())
            .unwrap_or(0);
        self.lanes[lane].insert(id.to_owned(), link);
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
    /// Room key → its participants' connection quality, for members who enter later;
    /// kept while the room has members here.
    qualities: HashMap<String, HashMap<String, Quality>>,
}

impl Inner {
    fn leave_room(&mut self, id: &str, (room, lane): &(String, usize)) {
        if let Some(members) = self.members.get_mut(room) {
            if let Some(lane) = members.lanes.get_mut(*lane) {
                lane.remove(id);
            }
            if members.len() == 0 {
                self.members.remove(room);
                self.qualities.remove(room);
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
        out: Arc<Outbound>,
        chat: Arc<ChatCursor>,
    ) {
        let local = Local {
            link: Arc::new(Link { tx, out, chat }),
            room: None,
        };
        self.lock().sessions.insert(id.to_owned(), local);
    }

    /// The session is in room `key` now.
    pub(crate) fn enter(&self, id: &str, key: &str) {
        let mut inner = self.lock();
        let Some((previous, link)) = inner
            .sessions
            .get_mut(id)
            .map(|local| (local.room.take(), local.link.clone()))
        else {
            return;
        };
        if let Some(previous) = previous {
            inner.leave_room(id, &previous);
        }
        let lane = inner
            .members
            .entry(key.to_owned())
            .or_default()
            .add(id, link);
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
            .is_some_and(|local| local.link.tx.send(event).is_ok())
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
        for link in members.all() {
            let _ = link.tx.send(SessionEvent::Push(Box::new(msg.clone())));
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
        // The lane's members, taken out of the lock: their writes are system calls,
        // and no other session should wait on them.
        let members: Vec<Arc<Link>> = match self.lock().members.get(key) {
            Some(members) => members
                .lanes
                .get(lane)
                .map(|lane| lane.values().cloned().collect())
                .unwrap_or_default(),
            None => return,
        };
        let run = EncodedRun::of(pushes);
        for local in &members {
            // The usual case: every entry encoded once for all, and the member owed
            // the first: the run's frames, made once, in one write.
            if let Some(run) = &run
                && local.chat.next_run(run.first, run.last, true, |batches| {
                    let frames = if batches { run.batches() } else { run.plain() };
                    local.out.frames(frames, Some(writes));
                })
            {
                continue;
            }
            // One entry at a time; what the socket cannot take yet holds the
            // hand-off's `writes` until it is written.
            for (i, push) in pushes.iter().enumerate() {
                let direct = push.framed().is_some_and(|frame| {
                    local.chat.next(push.seq(), true, || {
                        let last = i + 1 == pushes.len();
                        local.out.frames(frame, last.then_some(writes));
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

    /// An SFU rated a participant's connection: kept while the room has members
    /// here. Whether that is news to them (a room's SFUs in several regions each tell
    /// what they hear, and repeat a level below excellent now and then).
    pub(crate) fn set_quality(&self, key: &str, participant: &str, quality: Quality) -> bool {
        let mut inner = self.lock();
        if !inner.members.contains_key(key) {
            return false;
        }
        inner
            .qualities
            .entry(key.to_owned())
            .or_default()
            .insert(participant.to_owned(), quality)
            != Some(quality)
    }

    /// The connection quality of those of `present` rated so far in room `key`; the
    /// others' (gone) are forgotten.
    pub(crate) fn qualities(&self, key: &str, present: &HashSet<&str>) -> Vec<(String, Quality)> {
        let mut inner = self.lock();
        let Some(rated) = inner.qualities.get_mut(key) else {
            return Vec::new();
        };
        rated.retain(|participant, _| present.contains(participant.as_str()));
        rated.iter().map(|(p, q)| (p.clone(), *q)).collect()
    }

    pub(crate) fn n_participants(&self) -> usize {
        self.lock().members.values().map(RoomMembers::len).sum()
    }
}

/// Most entries in one `chat_batch` frame: a hand-off of entries read from history
/// (after a resync, say) may hold thousands.
const BATCH_ENTRIES: usize = 200;

/// A hand-off's entries when all are encoded once for every member and their seqs run
/// without a gap: what a member owed the first is sent in one write of frames made
/// once for all, and as one frame (per [`BATCH_ENTRIES`]) to a client that reads
/// `chat_batch`.
struct EncodedRun<'a> {
    first: u64,
    last: u64,
    pushes: &'a [Arc<crate::chat::ChatPush>],
    /// Each entry's `chat` frame, back to back, made for the first member that reads them.
    plain: std::cell::OnceCell<Bytes>,
    /// The run's `chat_batch` frames, made for the first member that reads them.
    batches: std::cell::OnceCell<Bytes>,
}

impl<'a> EncodedRun<'a> {
    fn of(pushes: &'a [Arc<crate::chat::ChatPush>]) -> Option<Self> {
        let first = pushes.first()?.seq();
        for (i, push) in pushes.iter().enumerate() {
            push.framed()?;
            if push.seq() != first + i as u64 {
                return None;
            }
        }
        Some(Self {
            first,
            last: first + pushes.len() as u64 - 1,
            pushes,
            plain: std::cell::OnceCell::new(),
            batches: std::cell::OnceCell::new(),
        })
    }

    /// The run as `chat` frames, one per entry.
    fn plain(&self) -> &Bytes {
        self.plain.get_or_init(|| match self.pushes {
            [one] => one.framed().cloned().unwrap_or_default(),
            _ => {
                let mut out = bytes::BytesMut::new();
                for frame in self.pushes.iter().filter_map(|push| push.framed()) {
                    out.extend_from_slice(frame);
                }
                out.freeze()
            }
        })
    }

    /// The run as a client that reads `chat_batch` gets it: one entry as its `chat`,
    /// more as `chat_batch` frames of up to [`BATCH_ENTRIES`].
    fn batches(&self) -> &Bytes {
        if self.pushes.len() == 1 {
            return self.plain();
        }
        self.batches.get_or_init(|| {
            let texts: Vec<String> = self
                .pushes
                .chunks(BATCH_ENTRIES)
                .map(|chunk| {
                    let entries = chunk.iter().filter_map(|push| push.encoded_entry());
                    confer_proto::signal::chat_batch_text(entries)
                })
                .collect();
            crate::socket::text_frames(texts.iter().map(String::as_str))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::socket::testing::connected;

    /// Registers session `id`; its client is `out` (one for all in tests that write
    /// nothing).
    fn session_to(rooms: &Rooms, id: &str, out: &Arc<Outbound>) {
        let (tx, _) = mpsc::unbounded_channel();
        rooms.register(id, tx, out.clone(), Arc::default());
    }

    /// Sessions `p{i}` for each `i` of `ids`, each entering room `key`.
    fn enter_all(rooms: &Rooms, ids: std::ops::Range<usize>, key: &str, out: &Arc<Outbound>) {
        for i in ids {
            session_to(rooms, &format!("p{i}"), out);
            rooms.enter(&format!("p{i}"), key);
        }
    }

    #[tokio::test]
    async fn a_run_goes_as_one_chat_batch_to_a_client_that_reads_them() {
        use crate::chat::HandOffWrites;
        let rooms = Rooms::default();
        let mut clients = Vec::new();
        for (id, batches) in [("plain", false), ("batched", true)] {
            let (tx, _) = mpsc::unbounded_channel();
            let (out, client) = connected().await;
            let cursor = Arc::new(ChatCursor::default());
            cursor.open(0, batches, || {});
            rooms.register(id, tx, out, cursor);
            rooms.enter(id, "t/room");
            clients.push(client);
        }
        let (report, mut reported) = mpsc::unbounded_channel();
        let writes = Arc::new(HandOffWrites::new("t/room".into(), 1, report));
        rooms.push_chat("t/room", 0, &entries(1..=3), &writes);
        drop(writes);
        assert!(
            reported.try_recv().is_ok(),
            "written to both sockets at once"
        );
        // A long run (entries read from history) goes in frames of up to 200, and a
        // run of one is its `chat` frame.
        let (report, _) = mpsc::unbounded_channel();
        let writes = Arc::new(HandOffWrites::new("t/room".into(), 2, report));
        rooms.push_chat("t/room", 0, &entries(4..=453), &writes);
        rooms.push_chat("t/room", 0, &entries(454..=454), &writes);

        let [mut plain, mut batched] = <[_; 2]>::try_from(clients).ok().expect("two");
        let read = tokio::task::spawn_blocking(move || {
            let plain: Vec<serde_json::Value> = (0..454).map(|_| json(&plain.text())).collect();
            let batched: Vec<serde_json::Value> = (0..5).map(|_| json(&batched.text())).collect();
            (plain, batched)
        });
        let (plain, batched) = read.await.expect("readers");
        let seqs: Vec<u64> = plain
            .iter()
            .filter_map(|f| f["chat"]["seq"].as_u64())
            .collect();
        assert!(
            seqs.iter().copied().eq(1..=454),
            "one `chat` frame each, in order"
        );
        let sizes: Vec<_> = batched[..4].iter().map(|f| batch_seqs(f).len()).collect();
        assert_eq!(
            sizes,
            [3, 200, 200, 50],
            "one frame, then frames of up to 200"
        );
        let seqs: Vec<u64> = batched[..4].iter().flat_map(batch_seqs).collect();
        assert!(seqs.iter().copied().eq(1..=453), "in order, each once");
        assert_eq!(batched[4]["chat"]["seq"].as_u64(), Some(454));
    }

    fn json(text: &str) -> serde_json::Value {
        serde_json::from_str(text).expect("JSON")
    }

    /// The seqs in a `chat_batch` frame.
    fn batch_seqs(frame: &serde_json::Value) -> Vec<u64> {
        let entries = frame["chat_batch"]["entries"].as_array().expect("a batch");
        entries.iter().filter_map(|e| e["seq"].as_u64()).collect()
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

    fn lane_sizes(rooms: &Rooms, key: &str) -> Vec<usize> {
        rooms.lock().members[key]
            .lanes
            .iter()
            .map(HashMap::len)
            .collect()
    }

    #[tokio::test]
    async fn a_big_rooms_members_fill_lanes_of_64_up_to_8_and_never_change_lanes() {
        let rooms = Rooms::default();
        let (out, _client) = connected().await;
        enter_all(&rooms, 0..64, "t/big", &out);
        assert_eq!(rooms.lanes("t/big"), 1);
        enter_all(&rooms, 64..65, "t/big", &out);
        assert_eq!(lane_sizes(&rooms, "t/big"), [64, 1]);
        // Newcomers go to the emptiest lane; those already in stay where they are.
        enter_all(&rooms, 65..128, "t/big", &out);
        assert_eq!(lane_sizes(&rooms, "t/big"), [64, 64]);
        for i in 0..10 {
            rooms.unregister(&format!("p{i}"));
        }
        assert_eq!(lane_sizes(&rooms, "t/big"), [54, 64]);
        session_to(&rooms, "again", &out);
        rooms.enter("again", "t/big");
        assert_eq!(lane_sizes(&rooms, "t/big"), [55, 64]);
        enter_all(&rooms, 128..1_000, "t/big", &out);
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
