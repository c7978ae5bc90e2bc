//! Rooms as participants see them: who is in, their names and mute state, and the
//! recent chat. In memory, one lock; every operation is short.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use confer_proto::signal::{ChatMessage, Participant, ServerMessage, server_message::Msg};
use confer_sfu::ParticipantId;
use tokio::sync::mpsc;

/// Outbound queue of one signalling connection.
pub(crate) type Outbox = mpsc::UnboundedSender<ServerMessage>;

struct Member {
    info: Participant,
    outbox: Outbox,
}

#[derive(Default)]
struct Room {
    members: Vec<(ParticipantId, Member)>,
    chat: VecDeque<ChatMessage>,
    next_seq: u64,
}

#[derive(Default)]
struct Inner {
    rooms: HashMap<String, Room>,
    room_of: HashMap<ParticipantId, String>,
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
        // to serve; poisoning would take every room down with one bug.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds a participant; returns who was already there and the chat history.
    pub(crate) fn enter(
        &self,
        room: &str,
        id: ParticipantId,
        info: Participant,
        outbox: Outbox,
    ) -> (Vec<Participant>, Vec<ChatMessage>) {
        let mut inner = self.lock();
        inner.room_of.insert(id.clone(), room.to_owned());
        let state = inner.rooms.entry(room.to_owned()).or_default();
        let others: Vec<Participant> = state.members.iter().map(|(_, m)| m.info.clone()).collect();
        let joined = message(Msg::ParticipantJoined(
            confer_proto::signal::ParticipantJoined {
                participant: Some(info.clone()),
            },
        ));
        for (_, member) in &state.members {
            let _ = member.outbox.send(joined.clone());
        }
        state.members.push((id, Member { info, outbox }));
        (others, state.chat.iter().cloned().collect())
    }

    /// Removes a participant and tells the others; false if it was not there.
    pub(crate) fn leave(&self, id: &ParticipantId) -> bool {
        let mut inner = self.lock();
        let Some(room) = inner.room_of.remove(id) else {
            return false;
        };
        let Some(state) = inner.rooms.get_mut(&room) else {
            return false;
        };
        state.members.retain(|(member, _)| member != id);
        let left = message(Msg::ParticipantLeft(
            confer_proto::signal::ParticipantLeft {
                participant_id: id.to_string(),
            },
        ));
        for (_, member) in &state.members {
            let _ = member.outbox.send(left.clone());
        }
        if state.members.is_empty() {
            inner.rooms.remove(&room);
        }
        true
    }

    /// Sends `msg` to one participant, wherever it is.
    pub(crate) fn send_to(&self, id: &ParticipantId, msg: ServerMessage) -> bool {
        let inner = self.lock();
        let Some(room) = inner.room_of.get(id) else {
            return false;
        };
        inner
            .rooms
            .get(room)
            .and_then(|state| state.members.iter().find(|(member, _)| member == id))
            .is_some_and(|(_, member)| member.outbox.send(msg).is_ok())
    }

    /// Records a chat message from `id` and delivers it to everyone in the room.
    pub(crate) fn chat(
        &self,
        id: &ParticipantId,
        text: String,
        now_ms: u64,
        history: usize,
    ) -> Option<ChatMessage> {
        let mut inner = self.lock();
        let room = inner.room_of.get(id)?.clone();
        let state = inner.rooms.get_mut(&room)?;
        let name = state
            .members
            .iter()
            .find(|(member, _)| member == id)?
            .1
            .info
            .name
            .clone();
        state.next_seq += 1;
        let chat = ChatMessage {
            seq: state.next_seq,
            participant_id: id.to_string(),
            name,
            text,
            sent_at_ms: now_ms,
        };
        state.chat.push_back(chat.clone());
        while state.chat.len() > history {
            state.chat.pop_front();
        }
        let delivery = message(Msg::Chat(chat.clone()));
        for (_, member) in &state.members {
            let _ = member.outbox.send(delivery.clone());
        }
        Some(chat)
    }

    /// Updates mute state and tells everyone in the room.
    pub(crate) fn set_muted(&self, id: &ParticipantId, kind: &str, muted: bool) -> bool {
        let mut inner = self.lock();
        let Some(room) = inner.room_of.get(id).cloned() else {
            return false;
        };
        let Some(state) = inner.rooms.get_mut(&room) else {
            return false;
        };
        let Some((_, member)) = state.members.iter_mut().find(|(member, _)| member == id) else {
            return false;
        };
        match kind {
            "audio" => member.info.audio_muted = muted,
            "video" => member.info.video_muted = muted,
            _ => return false,
        }
        let updated = message(Msg::ParticipantUpdated(
            confer_proto::signal::ParticipantUpdated {
                participant: Some(member.info.clone()),
            },
        ));
        for (_, member) in &state.members {
            let _ = member.outbox.send(updated.clone());
        }
        true
    }

    pub(crate) fn n_participants(&self) -> usize {
        self.lock().room_of.len()
    }
}
