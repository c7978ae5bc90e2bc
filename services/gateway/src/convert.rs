//! Room-service shapes to signalling messages.

use confer_proto::signal::{self, server_message::Msg};
use confer_room::api::RoomEvent;
use confer_room::model::{IceServer, ParticipantInfo, ParticipantKind, RoomSettings};

pub(crate) fn participant(p: &ParticipantInfo) -> signal::Participant {
    signal::Participant {
        id: p.id.clone(),
        name: p.name.clone(),
        audio_muted: p.audio_muted,
        video_muted: p.video_muted,
        role: p.role.as_str().to_owned(),
        audio_blocked: p.audio_blocked,
        video_blocked: p.video_blocked,
        pending_name: p.pending_name.clone().unwrap_or_default(),
        identity: p.identity.clone(),
        metadata: p.metadata.clone(),
        can_publish: p.permissions.can_publish,
        can_subscribe: p.permissions.can_subscribe,
        kind: match p.kind {
            ParticipantKind::Standard => String::new(),
            ParticipantKind::Sip => "sip".to_owned(),
        },
        previous_id: p.previous_id.clone().unwrap_or_default(),
        hand_raised_at: p.hand_raised_at.unwrap_or_default(),
    }
}

pub(crate) fn ice_servers(servers: &[IceServer]) -> Vec<signal::IceServer> {
    servers
        .iter()
        .map(|s| signal::IceServer {
            urls: s.urls.clone(),
            username: s.username.clone(),
            credential: s.credential.clone(),
        })
        .collect()
}

pub(crate) fn room_state(settings: &RoomSettings) -> signal::RoomState {
    signal::RoomState {
        locked: settings.locked,
        waiting_room: settings.waiting_room,
        allow_screen_share: settings.allow_screen_share,
        allow_self_unmute: settings.allow_self_unmute,
        allow_chat: settings.allow_chat,
        recording: settings.recording,
        chat_slow_mode_secs: settings.chat_slow_mode_secs,
    }
}

pub(crate) fn room_event(event: RoomEvent) -> Msg {
    match event {
        RoomEvent::ParticipantJoined { participant: p } => {
            Msg::ParticipantJoined(signal::ParticipantJoined {
                participant: Some(participant(&p)),
            })
        }
        RoomEvent::ParticipantUpdated { participant: p } => {
            Msg::ParticipantUpdated(signal::ParticipantUpdated {
                participant: Some(participant(&p)),
            })
        }
        RoomEvent::ParticipantsChanged {
            change,
            participants,
        } => crate::group::changed(change, &participants),
        RoomEvent::ParticipantLeft {
            participant,
            reason,
            rejoin_within_ms,
        } => Msg::ParticipantLeft(signal::ParticipantLeft {
            participant_id: participant,
            reason: reason.as_str().to_owned(),
            rejoin_within_ms: u32::try_from(rejoin_within_ms).unwrap_or(u32::MAX),
        }),
        RoomEvent::Knock { participant: p } => Msg::Knock(signal::Knock {
            participant: Some(participant(&p)),
        }),
        RoomEvent::KnockResolved {
            participant,
            admitted,
        } => Msg::KnockResolved(signal::KnockResolved {
            participant_id: participant,
            admitted,
        }),
        RoomEvent::RoomUpdated { settings } => Msg::RoomState(room_state(&settings)),
        RoomEvent::Data {
            from,
            topic,
            payload,
        } => Msg::Data(signal::DataMessage {
            from_participant_id: from.unwrap_or_default(),
            topic,
            payload,
        }),
    }
}

/// The chat rate a member is told at its join; none when posts are not limited.
pub(crate) fn chat_limit(rate: crate::ChatRate) -> Option<signal::ChatLimit> {
    rate.is_limited().then(|| signal::ChatLimit {
        per_second: rate.per_second,
        burst: rate.burst.max(1),
    })
}
