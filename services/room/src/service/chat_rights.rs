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

    /// Slow mode: takes the turn of `participant`'s identity to post `client_id` in
    /// its room, for `wait_secs`: 0 when taken (or when `client_id` took it: a
    /// resend), else the milliseconds until it is free. One turn per identity, so a
    /// reload or a second tab posts no sooner. Hosts are never held; an empty
    /// `client_id` is a message like no other.
    pub(crate) async fn do_chat_slow_mode_turn(
        &self,
        participant: &str,
        client_id: &str,
        wait_secs: u32,
    ) -> RoomResult<u64> {
        let Some((key, member)) = self.0.live.participant(participant).await? else {
            return Err(RoomError::forbidden(
                "not_a_member",
                "only the room's members may post in its chat",
            ));
        };
        if member.is_host() || wait_secs == 0 {
            return Ok(0);
        }
        let message = if client_id.is_empty() {
            format!("unnamed-{:016x}", rand::random::<u64>())
        } else {
            client_id.to_owned()
        };
        let wait = std::time::Duration::from_secs(u64::from(wait_secs));
        let left = self
            .0
            .live
            .take_slow_mode_turn(&key, &member.identity, &message, wait)
            .await?;
        Ok(u64::try_from(left.as_millis()).unwrap_or(u64::MAX))
    }

    /// Slow mode: gives back the turn the message `client_id` took (it was not posted
    /// after all). A message without a client id cannot be named, so keeps its turn.
    pub(crate) async fn do_chat_slow_mode_give_back(
        &self,
        participant: &str,
        client_id: &str,
    ) -> RoomResult<()> {
        if client_id.is_empty() {
            return Ok(());
        }
        let Some((key, member)) = self.0.live.participant(participant).await? else {
            return Ok(());
        };
        self.0
            .live
            .give_back_slow_mode_turn(&key, &member.identity, client_id)
            .await
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
