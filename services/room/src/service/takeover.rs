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
//!
//! Joins of one identity to one room take turns (a hold in live state, shared by
//! every replica): two tabs opened at once, through two room-service replicas, would
//! otherwise each read the room before the other is in it, and both get in.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use tracing::warn;

use super::RoomService;
use super::rejoin::Departure;
use crate::api::{GatewayCommand, Removal};
use crate::error::{RoomError, RoomResult};
use crate::model::{ParticipantInfo, ParticipantState};

/// What a participant whose identity joined again elsewhere is told.
const REPLACED: &str = "you joined this room again from another tab or device";

/// Longest one join holds its identity's joins to a room (a replica that stops
/// mid-join holds them no longer).
const IDENTITY_HOLD: Duration = Duration::from_secs(5);
/// Longest a join waits for another join of its identity, then goes ahead anyway.
const IDENTITY_WAIT: Duration = Duration::from_secs(3);
/// How often a waiting join looks again.
const IDENTITY_RETRY: Duration = Duration::from_millis(20);

/// A join's turn for its identity in a room, given back with [`IdentityTurn::end`];
/// a join dropped before that (its gateway's request cancelled) gives it back as it
/// goes, so the next join of the identity need not wait for the hold to run out.
pub(crate) struct IdentityTurn {
    service: RoomService,
    room_key: String,
    identity: String,
    /// Taken when the turn is given back.
    token: Option<String>,
}

impl IdentityTurn {
    /// Gives the turn back; a failure only leaves the hold to run out.
    pub(crate) async fn end(mut self) {
        // Kept until given back: a join dropped meanwhile gives it back on drop.
        if let Some(token) = &self.token {
            self.service
                .give_back(&self.room_key, &self.identity, token)
                .await;
        }
        self.token = None;
    }
}

impl Drop for IdentityTurn {
    fn drop(&mut self) {
        let Some(token) = self.token.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (service, room_key, identity) = (
            self.service.clone(),
            std::mem::take(&mut self.room_key),
            std::mem::take(&mut self.identity),
        );
        runtime.spawn(async move { service.give_back(&room_key, &identity, &token).await });
    }
}

impl RoomService {
    /// Waits for `identity`'s turn to join `room_key`: until no other join of it is
    /// reading the room and taking its place, at most [`IDENTITY_WAIT`]. `None`
    /// when the wait ran out (the join goes ahead without a turn).
    pub(crate) async fn identity_turn(
        &self,
        room_key: &str,
        identity: &str,
    ) -> RoomResult<Option<IdentityTurn>> {
        let deadline = Instant::now() + IDENTITY_WAIT;
        loop {
            if let Some(token) = self.hold_identity(room_key, identity).await? {
                return Ok(Some(IdentityTurn {
                    service: self.clone(),
                    room_key: room_key.to_owned(),
                    identity: identity.to_owned(),
                    token: Some(token),
                }));
            }
            if Instant::now() >= deadline {
                warn!(
                    room = room_key,
                    identity, "another join of this identity held it too long; going ahead"
                );
                return Ok(None);
            }
            self.0.identity_waits.fetch_add(1, Relaxed);
            tokio::time::sleep(IDENTITY_RETRY).await;
        }
    }

    /// One try at holding `identity`'s joins to `room_key`. The request runs on its
    /// own task: a join dropped while it is in flight (its hold may be taken in live
    /// state all the same) has the hold given back there, not left to run out.
    async fn hold_identity(&self, room_key: &str, identity: &str) -> RoomResult<Option<String>> {
        let (held_tx, held) = tokio::sync::oneshot::channel();
        let (service, room_key, identity) =
            (self.clone(), room_key.to_owned(), identity.to_owned());
        tokio::spawn(async move {
            let hold = service
                .0
                .live
                .hold_identity(&room_key, &identity, IDENTITY_HOLD)
                .await;
            if let Err(Ok(Some(token))) = held_tx.send(hold) {
                service.give_back(&room_key, &identity, &token).await;
            }
        });
        held.await
            .map_err(|_| RoomError::internal("the identity hold's task ended"))?
    }

    /// Gives back the hold `token` of `identity`'s turn in `room_key`; a failure
    /// only leaves the hold to run out.
    async fn give_back(&self, room_key: &str, identity: &str, token: &str) {
        if let Err(err) = self
            .0
            .live
            .release_identity(room_key, identity, token)
            .await
        {
            warn!(%err, room = room_key, "could not give back an identity's turn");
        }
    }

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
