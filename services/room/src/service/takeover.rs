//! One place per identity. A token's identity that joins a room it is already in (a
//! second tab, a phone after the laptop, a page that reloaded without leaving) takes
//! its own place: the participant it was is let go (its client is told `replaced`
//! and does not join again by itself), or, when that one's connection was lost a
//! moment ago, is no longer kept to come back. The new connection comes in as that
//! participant came in: past the lock, the password and the waiting room it was let
//! through, with the blocks a host put on it and its place in the hand queue, under
//! the new token's name, role and rights. The others see it come back (`previous_id`),
//! as after a lost connection.
//!
//! Only identities a token vouches for: anonymous guests are each their own.

use std::sync::atomic::Ordering::Relaxed;

use super::RoomService;
use super::rejoin::Departure;
use crate::api::{GatewayCommand, Removal};
use crate::error::RoomResult;
use crate::model::{ParticipantInfo, ParticipantState};

/// What a participant whose identity joined again elsewhere is told.
const REPLACED: &str = "you joined this room again from another tab or device";

impl RoomService {
    /// `identity`'s place in `room_key`, taken for a new connection: the participant
    /// it had there (let go now) or kept after a lost connection. A second listing of
    /// the identity (two connections that joined at once), and one still waiting to
    /// be let in, are let go as well, and give no place. `members` is the room's
    /// member list, read for the join; those let go are taken out of it.
    pub(crate) async fn take_over(
        &self,
        room_key: &str,
        identity: &str,
        members: &mut Vec<ParticipantInfo>,
    ) -> RoomResult<Option<ParticipantInfo>> {
        let mut place = None;
        for kept in self.0.live.departed_in(room_key).await? {
            if kept.identity == identity
                && let Some((room, before)) = self.0.live.take_departed(&kept.id).await?
                && room == room_key
            {
                place = Some(before);
                break;
            }
        }
        let (listed, others) = std::mem::take(members)
            .into_iter()
            .partition::<Vec<_>, _>(|m| m.identity == identity);
        *members = others;
        for member in listed {
            let takes_place = place.is_none() && member.state == ParticipantState::Active;
            let why = if takes_place {
                Departure::Replaced
            } else {
                Departure::Left
            };
            if !self.depart(&member.id, why).await? {
                continue;
            }
            self.command(
                &member,
                GatewayCommand::Remove {
                    participant: member.id.clone(),
                    reason: REPLACED.into(),
                    code: Removal::Replaced,
                },
            )
            .await?;
            if takes_place {
                place = Some(member);
            }
        }
        if place.is_some() {
            self.0.takeovers.fetch_add(1, Relaxed);
        }
        Ok(place.filter(|before| before.state == ParticipantState::Active))
    }
}
