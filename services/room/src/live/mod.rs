//! Live state shared by every room-service replica: who is in which room, where each
//! room is placed, and the command bus to the gateways. Redis in production, process
//! memory in `confer dev`.
//!
//! Placement is atomic: the first replica to place a room in a region wins
//! (`SET NX`), every later one reads the winner, so two gateways racing never split a
//! room across two SFUs of one region.

mod memory;
mod redis;

use std::time::Duration;

use futures_util::stream::BoxStream;

use crate::api::{GatewayCommand, Watched};
use crate::error::RoomResult;
use crate::model::{ParticipantInfo, Placement};

pub use memory::MemoryLive;
pub use redis::RedisLive;

pub enum Live {
    Memory(MemoryLive),
    Redis(RedisLive),
}

macro_rules! dispatch {
    ($self:ident, $live:ident => $body:expr) => {
        match $self {
            Live::Memory($live) => $body,
            Live::Redis($live) => $body,
        }
    };
}

impl Live {
    /// Places `room_key` in `region` on `candidate` unless it is placed already;
    /// returns the placement that holds.
    pub async fn place(&self, room_key: &str, candidate: Placement) -> RoomResult<Placement> {
        dispatch!(self, live => live.place(room_key, candidate).await)
    }

    pub async fn placement(&self, room_key: &str, region: &str) -> RoomResult<Option<Placement>> {
        dispatch!(self, live => live.placement(room_key, region).await)
    }

    /// Forgets a room's placement in `region` (its last participant left).
    pub async fn clear_placement(&self, room_key: &str, region: &str) -> RoomResult<()> {
        dispatch!(self, live => live.clear_placement(room_key, region).await)
    }

    /// The rooms (key, region) placed on `sfu`.
    pub async fn rooms_placed_on(&self, sfu: &str) -> RoomResult<Vec<(String, String)>> {
        dispatch!(self, live => live.rooms_placed_on(sfu).await)
    }

    /// Rooms placed on each of `sfus`, in order.
    pub async fn rooms_on(&self, sfus: &[String]) -> RoomResult<Vec<u64>> {
        dispatch!(self, live => live.rooms_on(sfus).await)
    }

    pub async fn put_participant(&self, room_key: &str, info: &ParticipantInfo) -> RoomResult<()> {
        dispatch!(self, live => live.put_participant(room_key, info).await)
    }

    /// A participant and the room it is in.
    pub async fn participant(&self, id: &str) -> RoomResult<Option<(String, ParticipantInfo)>> {
        dispatch!(self, live => live.participant(id).await)
    }

    pub async fn participants(&self, room_key: &str) -> RoomResult<Vec<ParticipantInfo>> {
        dispatch!(self, live => live.participants(room_key).await)
    }

    /// Removes a participant; `false` when it was not there.
    pub async fn remove_participant(
        &self,
        room_key: &str,
        participant: &ParticipantInfo,
    ) -> RoomResult<bool> {
        dispatch!(self, live => live.remove_participant(room_key, participant).await)
    }

    /// Keeps what `participant` was in `room_key` for `ttl`, for it to come back as
    /// it was (see `service::rejoin`).
    pub async fn keep_departed(
        &self,
        room_key: &str,
        participant: &ParticipantInfo,
        ttl: Duration,
    ) -> RoomResult<()> {
        dispatch!(self, live => live.keep_departed(room_key, participant, ttl).await)
    }

    /// Takes what was kept of the participant `id` and its room: once only, and
    /// nothing after its time ran out.
    pub async fn take_departed(&self, id: &str) -> RoomResult<Option<(String, ParticipantInfo)>> {
        dispatch!(self, live => live.take_departed(id).await)
    }

    /// The participants kept for `room_key` to come back, as they were (left kept:
    /// [`Live::take_departed`] takes one).
    pub async fn departed_in(&self, room_key: &str) -> RoomResult<Vec<ParticipantInfo>> {
        dispatch!(self, live => live.departed_in(room_key).await)
    }

    /// How much longer the participants kept for `room_key` may come back: the
    /// longest of their times left (`None` when no one is kept).
    pub async fn kept_for(&self, room_key: &str) -> RoomResult<Option<Duration>> {
        dispatch!(self, live => live.kept_for(room_key).await)
    }

    /// The participants whose connections `gateway` holds, in any room.
    pub async fn participants_of(&self, gateway: &str) -> RoomResult<Vec<String>> {
        dispatch!(self, live => live.participants_of(gateway).await)
    }

    /// Holds the joins of `identity` to `room_key` for this join alone, for up to
    /// `ttl`: `Some(token)` when held (give it back with [`Live::release_identity`]),
    /// `None` while another join of the identity holds them.
    pub async fn hold_identity(
        &self,
        room_key: &str,
        identity: &str,
        ttl: Duration,
    ) -> RoomResult<Option<String>> {
        dispatch!(self, live => live.hold_identity(room_key, identity, ttl).await)
    }

    /// Gives back a hold `token` from [`Live::hold_identity`]; one that ran out (and
    /// may be another join's now) is left alone.
    pub async fn release_identity(
        &self,
        room_key: &str,
        identity: &str,
        token: &str,
    ) -> RoomResult<()> {
        dispatch!(self, live => live.release_identity(room_key, identity, token).await)
    }

    /// Slow mode: takes `identity`'s turn to post in `room_key` for `message` (its
    /// client id), for `wait` from now, across every gateway and connection of the
    /// identity. `ZERO` when taken, or when `message` took it (a resend); otherwise
    /// how long until the turn is free.
    pub async fn take_slow_mode_turn(
        &self,
        room_key: &str,
        identity: &str,
        message: &str,
        wait: Duration,
    ) -> RoomResult<Duration> {
        dispatch!(self, live => live.take_slow_mode_turn(room_key, identity, message, wait).await)
    }

    /// Slow mode: gives `identity`'s turn in `room_key` back if `message` holds it (the
    /// message was not posted after all), so the identity's next message need not
    /// wait; a turn another message took since stays.
    pub async fn give_back_slow_mode_turn(
        &self,
        room_key: &str,
        identity: &str,
        message: &str,
    ) -> RoomResult<()> {
        dispatch!(self, live => live.give_back_slow_mode_turn(room_key, identity, message).await)
    }

    /// `gateway` is alive for `ttl` from now (a room service serves its watch).
    pub async fn renew_lease(&self, gateway: &str, ttl: Duration) -> RoomResult<()> {
        dispatch!(self, live => live.renew_lease(gateway, ttl).await)
    }

    /// Gateways that hold participants and whose lease has run out.
    pub async fn unleased_gateways(&self) -> RoomResult<Vec<String>> {
        dispatch!(self, live => live.unleased_gateways().await)
    }

    /// Stops tracking `gateway` if it holds no participants.
    pub async fn forget_gateway(&self, gateway: &str) -> RoomResult<()> {
        dispatch!(self, live => live.forget_gateway(gateway).await)
    }

    /// Marks a room active; `true` when it was not (the room just started).
    pub async fn activate(&self, room_key: &str) -> RoomResult<bool> {
        dispatch!(self, live => live.activate(room_key).await)
    }

    /// Marks a room inactive; `true` when it was active (the room just finished).
    pub async fn deactivate(&self, room_key: &str) -> RoomResult<bool> {
        dispatch!(self, live => live.deactivate(room_key).await)
    }

    pub async fn is_active(&self, room_key: &str) -> RoomResult<bool> {
        dispatch!(self, live => live.is_active(room_key).await)
    }

    pub async fn publish(&self, gateway: &str, command: &GatewayCommand) -> RoomResult<()> {
        dispatch!(self, live => live.publish(gateway, command).await)
    }

    /// `gateway`'s commands after `after`, or from now (see [`crate::RoomApi::watch`]).
    pub async fn subscribe(
        &self,
        gateway: &str,
        after: Option<String>,
    ) -> RoomResult<BoxStream<'static, Watched>> {
        dispatch!(self, live => live.subscribe(gateway, after).await)
    }
}

#[cfg(test)]
mod tests;
