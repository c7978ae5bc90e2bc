//! Who may post in a room's chat now: asked where a post arrives without the poster's
//! signalling session (a shared file's upload may reach any gateway, minutes after
//! its link was given).

use super::RoomService;
use crate::error::{RoomError, RoomResult};
use crate::model::{ParticipantInfo, ParticipantState};

impl RoomService {
    /// `Ok` when `participant` is an active member of room `key` (or came back as one
    /// after a lost connection) and may post in its chat: a host, or anyone while the
    /// room's `allow_chat` holds. Otherwise
    /// `not_a_member` or `chat_restricted` (both forbidden).
    pub(crate) async fn do_check_chat_poster(
        &self,
        key: &str,
        participant: &str,
    ) -> RoomResult<()> {
        let member = match self.0.live.participant(participant).await? {
            Some((room, info)) if room == key && info.state == ParticipantState::Active => info,
            _ => match self.came_back_as(key, participant).await? {
                Some(info) => info,
                None => {
                    return Err(RoomError::forbidden(
                        "not_a_member",
                        "only the room's members may post in its chat",
                    ));
                }
            },
        };
        if member.is_host() || self.settings(key).await?.allow_chat {
            return Ok(());
        }
        Err(RoomError::forbidden(
            "chat_restricted",
            "only hosts may post in this room's chat now",
        ))
    }

    /// The active member of room `key` that `participant` came back as after its
    /// connection was lost (its `previous_id`), if it did.
    async fn came_back_as(
        &self,
        key: &str,
        participant: &str,
    ) -> RoomResult<Option<ParticipantInfo>> {
        Ok(self.0.live.participants(key).await?.into_iter().find(|m| {
            m.state == ParticipantState::Active && m.previous_id.as_deref() == Some(participant)
        }))
    }
}
