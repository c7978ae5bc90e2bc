//! One change to many participants at once (a host muted everyone, lowered every
//! hand), as the room's local members get it: one `participants_changed` for a
//! client that reads it, one `participant_updated` per participant for one that
//! does not. Both forms are made once per command and shared by every recipient.

use confer_proto::signal::{self, ServerMessage, server_message::Msg};
use confer_room::api::GroupChange;
use confer_room::model::{ParticipantInfo, TrackKind};

use crate::convert;
use crate::rooms::message;

/// A change to many participants, in both forms.
pub(crate) struct GroupUpdate {
    /// `participants_changed`, for clients that joined with `participant_batches`.
    pub(crate) batch: ServerMessage,
    /// One `participant_updated` per participant, for the others.
    pub(crate) each: Vec<ServerMessage>,
}

impl GroupUpdate {
    pub(crate) fn new(change: GroupChange, participants: &[ParticipantInfo]) -> Self {
        Self {
            batch: message(changed(change, participants)),
            each: participants
                .iter()
                .map(|p| {
                    message(Msg::ParticipantUpdated(signal::ParticipantUpdated {
                        participant: Some(convert::participant(p)),
                    }))
                })
                .collect(),
        }
    }
}

/// The `participants_changed` message of `change` to `participants`.
pub(crate) fn changed(change: GroupChange, participants: &[ParticipantInfo]) -> Msg {
    Msg::ParticipantsChanged(signal::ParticipantsChanged {
        participant_ids: participants.iter().map(|p| p.id.clone()).collect(),
        change: Some(fields(change)),
    })
}

/// The fields `change` sets on each participant it names.
fn fields(change: GroupChange) -> signal::ParticipantChange {
    match change {
        GroupChange::Blocked {
            kind: TrackKind::Audio,
        } => signal::ParticipantChange {
            audio_muted: Some(true),
            audio_blocked: Some(true),
            ..Default::default()
        },
        GroupChange::Blocked {
            kind: TrackKind::Video,
        } => signal::ParticipantChange {
            video_muted: Some(true),
            video_blocked: Some(true),
            ..Default::default()
        },
        GroupChange::HandsLowered => signal::ParticipantChange {
            hand_raised_at: Some(0),
            ..Default::default()
        },
    }
}

#[cfg(test)]
mod tests;
