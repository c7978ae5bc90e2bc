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
    /// `tenant/room` once in a room (not while waiting).
    room: Option<String>,
}

#[derive(Default)]
struct Inner {
    sessions: HashMap<String, Local>,
    /// Room key → its local sessions' ids: a room's fan-out touches only its members.
    members: HashMap<String, HashSet<String>>,
    /// Room key → its current active speaker, for members who enter after it spoke up.
    speakers: HashMap<String, String>,
}

impl Inner {
    fn leave_room(&mut self, id: &str, room: &str) {
        if let Some(members) = self.members.get_mut(room) {
            members.remove(id);
            if members.is_empty() {
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
        let Some(local) = inner.sessions.get_mut(id) else {
            return;
        };
        let previous = local.room.replace(key.to_owned());
        if let Some(previous) = previous {
            inner.leave_room(id, &previous);
        }
        inner
            .members
            .entry(key.to_owned())
            .or_default()
            .insert(id.to_owned());
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
        for id in members {
            if let Some(local) = inner.sessions.get(id) {
                let _ = local.tx.send(SessionEvent::Push(Box::new(msg.clone())));
            }
        }
    }

    /// A room's chat entries, in order, to its local members: each to the client's
    /// writer when it is the next one the client is owed, otherwise through its
    /// session (which fills gaps and signs file links).
    pub(crate) fn push_chat(
        &self,
        key: &str,
        pushes: &[Arc<crate::chat::ChatPush>],
        writes: &Arc<crate::chat::HandOffWrites>,
    ) {
        let inner = self.lock();
        let Some(members) = inner.members.get(key) else {
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
                && local.chat.next_run(run.first, run.last, true, || {
                    let _ = local
                        .outbox
                        .send(Outgoing::Entries(run.texts.clone(), writes.clone()));
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
        self.lock().members.values().map(HashSet::len).sum()
    }
}

/// A hand-off's entries when all are encoded once for every member and their seqs run
/// without a gap: what a member owed the first is sent as one.
struct EncodedRun {
    first: u64,
    last: u64,
    texts: Arc<[Utf8Bytes]>,
}

impl EncodedRun {
    fn of(pushes: &[Arc<crate::chat::ChatPush>]) -> Option<Self> {
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
        })
    }
}
