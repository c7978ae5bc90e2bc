//! Data participants send each other (signalling `send_data`): relayed to the room's
//! members as `data`, like the tenant API's, and kept nowhere.

use super::RoomService;
use super::host::not_joined;
use super::notify::Audience;
use crate::api::{ParticipantData, RoomEvent};
use crate::error::{RoomError, RoomResult};
use crate::model::ParticipantState;

/// Largest payload, in bytes, from a participant or the tenant API.
pub(super) const MAX_DATA_BYTES: usize = 15 * 1024;
/// Longest topic, in bytes.
const MAX_TOPIC_BYTES: usize = 128;
/// Most participants one message names.
const MAX_DESTINATIONS: usize = 100;

impl RoomService {
    pub(crate) async fn do_publish_data(&self, id: &str, data: ParticipantData) -> RoomResult<()> {
        let (key, me) = self.0.live.participant(id).await?.ok_or_else(not_joined)?;
        if me.state != ParticipantState::Active {
            return Err(RoomError::forbidden(
                "not_admitted",
                "wait until a host admits you",
            ));
        }
        if !me.permissions.can_publish_data {
            return Err(RoomError::forbidden(
                "permission_denied",
                "you may not send data in this room",
            ));
        }
        check(&data)?;
        let audience = if data.destination.is_empty() {
            Audience::ActiveExcept(me.id.clone())
        } else {
            Audience::ActiveAmong(data.destination)
        };
        let event = RoomEvent::Data {
            from: Some(me.id),
            topic: data.topic,
            payload: data.payload,
        };
        self.notify(&key, audience, event).await
    }
}

fn check(data: &ParticipantData) -> RoomResult<()> {
    if data.payload.len() > MAX_DATA_BYTES {
        return Err(RoomError::invalid(
            "payload_too_large",
            format!("data messages are limited to {MAX_DATA_BYTES} bytes"),
        ));
    }
    if data.topic.len() > MAX_TOPIC_BYTES {
        return Err(RoomError::invalid(
            "topic_too_long",
            format!("topics are limited to {MAX_TOPIC_BYTES} bytes"),
        ));
    }
    if data.destination.len() > MAX_DESTINATIONS {
        return Err(RoomError::invalid(
            "too_many_destinations",
            format!("a data message names at most {MAX_DESTINATIONS} participants"),
        ));
    }
    Ok(())
}
