//! This gateway's sessions, by participant id, and the rooms they are in. Who is in a room (across gateways) is the room service's business; this is
//! only where to deliver what concerns a local participant.

use std::collections::HashMap;
use std::sync::Mutex;

use confer_proto::signal::{ServerMessage, server_message::Msg};
use tokio::sync::mpsc;

use crate::session::SessionEvent;

/// Inbound queue of one session: server pushes and room-service commands.
pub(crate) type SessionTx = mpsc::UnboundedSender<SessionEvent>;

struct Local {
    tx: SessionTx,
    /// `tenant/room` once in a room (not while waiting).
    room: Option<String>,
    name: String,
}

#[derive(Default)]
struct Inner {
    sessions: HashMap<String, Local>,
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
    pub(crate) fn register(&self, id: &str, name: &str, tx: SessionTx) {
        self.lock().sessions.insert(
            id.to_owned(),
            Local {
                tx,
                room: None,
                name: name.to_owned(),
            },
        );
    }

    /// The session is in room `key` now.
    pub(crate) fn enter(&self, id: &str, key: &str, name: &str) {
        let mut inner = self.lock();
        if let Some(local) = inner.sessions.get_mut(id) {
            local.room = Some(key.to_owned());
            name.clone_into(&mut local.name);
        }
    }

    pub(crate) fn unregister(&self, id: &str) {
        self.lock().sessions.remove(id);
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
        for local in inner.sessions.values() {
            if local.room.as_deref() == Some(key) {
                let _ = local.tx.send(SessionEvent::Push(Box::new(msg.clone())));
            }
        }
    }

    pub(crate) fn n_participants(&self) -> usize {
        self.lock()
            .sessions
            .values()
            .filter(|local| local.room.is_some())
            .count()
    }
}
