//! Coming back after a lost connection. Every join is answered with a rejoin ticket:
//! the room and the participant, sealed under the master key. A participant whose
//! connection was lost (the network dropped, its gateway restarted or went away, its
//! SFU drained) and whose client shows that ticket within
//! [`RoomConfig::rejoin_grace`](super::RoomConfig) comes back as it was: its identity,
//! name, role, rights and host blocks, straight past the lock, the password and the
//! waiting room it was let through once. A participant that left or was removed by a
//! host has nothing to come back to: its ticket is worth a plain join.

use super::RoomService;
use super::notify::Audience;
use crate::api::{LeaveReason, RoomEvent};
use crate::clock::unix_millis_i64;
use crate::error::RoomResult;
use crate::model::{ParticipantInfo, ParticipantState};

/// What a rejoin ticket is sealed for (authenticated with it, so nothing else the
/// master key seals is ever taken for one).
const PURPOSE: &str = "confer rejoin v1";

/// Why a participant leaves its room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Departure {
    /// It left, or a host removed it: for good.
    Left,
    /// Its connection was lost: it may come back as it was for a while.
    Lost,
    /// It came back through another connection, which takes its place.
    Replaced,
}

impl Departure {
    /// How the participant's members and the tenant hear of it.
    pub(crate) fn reason(self) -> LeaveReason {
        match self {
            Self::Left => LeaveReason::Left,
            // Replaced: it is coming back right now.
            Self::Lost | Self::Replaced => LeaveReason::ConnectionLost,
        }
    }
}

/// How rejoins went, for `/metrics`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum RejoinOutcome {
    /// The participant came back as it was.
    Returned,
    /// The ticket was not for this room, not the service's, or for someone who left
    /// for good or too long ago: a plain join.
    Plain,
}

impl RejoinOutcome {
    fn label(self) -> &'static str {
        match self {
            Self::Returned => "returned",
            Self::Plain => "plain",
        }
    }
}

impl RoomService {
    /// The ticket with which `participant`'s client comes back to `room_key`.
    pub(crate) fn rejoin_ticket(&self, room_key: &str, participant: &str) -> String {
        self.0
            .store
            .master_key()
            .seal_for(PURPOSE, &format!("{room_key}\n{participant}"))
    }

    /// Who `ticket` brings back to `room_key` for `identity` (`None` for an anonymous
    /// join, which the ticket alone vouches for): the participant as it was when its
    /// connection was lost, or, when its gateway went away and the room still lists
    /// it, as it is (it leaves now, replaced). Each participant comes back once.
    pub(crate) async fn returning(
        &self,
        room_key: &str,
        ticket: &str,
        identity: Option<&str>,
    ) -> RoomResult<Option<ParticipantInfo>> {
        let opened = self.0.store.master_key().open_for(PURPOSE, ticket);
        let Some(id) = opened
            .as_deref()
            .and_then(|plain| plain.split_once('\n'))
            .filter(|(room, _)| *room == room_key)
            .map(|(_, id)| id.to_owned())
        else {
            self.count_rejoin(RejoinOutcome::Plain);
            return Ok(None);
        };
        let mut before = self.take_departed(room_key, &id).await?;
        if before.is_none() {
            before = self.replace(room_key, &id, identity).await?;
        }
        if before.is_none() {
            // The old connection's leave may have come between the two.
            before = self.take_departed(room_key, &id).await?;
        }
        if let Some(kept) = &before
            && identity.is_some_and(|identity| identity != kept.identity)
        {
            // Shown with someone else's token: it is still its own participant's.
            self.keep_for_rejoin(room_key, kept).await;
            before = None;
        }
        let before = before.filter(|before| before.state == ParticipantState::Active);
        self.count_rejoin(if before.is_some() {
            RejoinOutcome::Returned
        } else {
            RejoinOutcome::Plain
        });
        Ok(before)
    }

    /// Keeps `before` for it to come back (once more, when its return did not get
    /// in); `false` when it cannot come back.
    pub(crate) async fn keep_for_rejoin(&self, room_key: &str, before: &ParticipantInfo) -> bool {
        let grace = self.0.config.rejoin_grace;
        if grace.is_zero() {
            return false;
        }
        match self.0.live.keep_departed(room_key, before, grace).await {
            Ok(()) => true,
            Err(err) => {
                tracing::warn!(%err, participant = %before.id, "cannot keep a participant to come back");
                false
            }
        }
    }

    /// `participant`, whose connection was lost a moment ago, left after all (its
    /// client closed its media as it left): it will not come back, the others stop
    /// keeping its place, and a room it left empty stops waiting for it.
    pub(crate) async fn left_after_all(&self, participant: &str) -> RoomResult<()> {
        let Some((room_key, before)) = self.0.live.take_departed(participant).await? else {
            return Ok(());
        };
        if !before.permissions.hidden {
            self.notify(
                &room_key,
                Audience::Active,
                RoomEvent::ParticipantLeft {
                    participant: participant.to_owned(),
                    reason: LeaveReason::Left,
                    rejoin_within_ms: 0,
                },
            )
            .await?;
        }
        self.stop_waiting_for(&room_key).await
    }

    /// `room_key`'s session, if it waits empty, waits no longer for a participant who
    /// will not come back: only for its empty timeout and the others still kept.
    async fn stop_waiting_for(&self, room_key: &str) -> RoomResult<()> {
        let kept = self.0.live.kept_for(room_key).await?.unwrap_or_default();
        let (tenant, room) = super::split_room_key(room_key);
        let kept_ms = i64::try_from(kept.as_millis()).unwrap_or(i64::MAX);
        let store = &self.0.store;
        if store
            .shorten_empty_wait(tenant, room, unix_millis_i64(), kept_ms)
            .await?
        {
            self.finish_empty_rooms().await?;
        }
        Ok(())
    }

    async fn take_departed(&self, room_key: &str, id: &str) -> RoomResult<Option<ParticipantInfo>> {
        Ok(match self.0.live.take_departed(id).await? {
            Some((room, before)) => Some(before).filter(|_| room == room_key),
            None => None,
        })
    }

    /// The participant `id`, still listed in `room_key` although its client is back
    /// through another connection (as `identity`, when the join names one): it leaves
    /// now, and its gateway (if it still holds the old connection) closes it. Someone
    /// else's ticket ends no one's connection.
    async fn replace(
        &self,
        room_key: &str,
        id: &str,
        identity: Option<&str>,
    ) -> RoomResult<Option<ParticipantInfo>> {
        let Some((room, before)) = self.0.live.participant(id).await? else {
            return Ok(None);
        };
        let same_person = identity.is_none_or(|identity| identity == before.identity);
        if room != room_key
            || before.state != ParticipantState::Active
            || !same_person
            || !self.depart(id, Departure::Replaced).await?
        {
            return Ok(None);
        }
        let command = crate::api::GatewayCommand::Reconnect {
            participant: id.to_owned(),
        };
        self.0.live.publish(&before.gateway, &command).await?;
        Ok(Some(before))
    }

    fn count_rejoin(&self, outcome: RejoinOutcome) {
        self.0.rejoins.inc(outcome.label());
    }
}
