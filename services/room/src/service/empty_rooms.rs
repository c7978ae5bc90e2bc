//! Rooms whose session waits, empty, before it finishes: for the room's
//! `empty_timeout_secs`, or while a participant whose connection was lost may come
//! back (someone entering meanwhile continues the session: no `room_finished`, no
//! second `room_started`, the same placement). Every replica looks once a second; the
//! store hands each room whose wait is over to one of them, which queues its
//! `room_finished` and lets its placement go.

use std::time::Duration;

use tokio::sync::watch;
use tracing::warn;

use super::notify::room_finished;
use super::{RoomService, room_key};
use crate::clock::unix_millis_i64;
use crate::error::RoomResult;

/// How often a replica looks for rooms whose empty wait is over.
const EVERY: Duration = Duration::from_secs(1);

impl RoomService {
    /// Finishes the sessions of the rooms whose empty wait is over: how many.
    pub async fn finish_empty_rooms(&self) -> RoomResult<usize> {
        let rooms = self
            .0
            .store
            .finish_empty_rooms(unix_millis_i64(), room_finished)
            .await?;
        if !rooms.is_empty() {
            self.0.outbox_wake.notify_one();
        }
        for (tenant, room) in &rooms {
            self.end_session(&room_key(tenant, room)).await?;
        }
        Ok(rooms.len())
    }
}

/// Finishes rooms whose empty wait is over, until `shutdown`.
pub async fn finish_empty_rooms(service: RoomService, mut shutdown: watch::Receiver<bool>) {
    let mut every = tokio::time::interval(EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = shutdown.changed() => return,
        }
        if let Err(err) = service.finish_empty_rooms().await {
            warn!(%err, "cannot finish the rooms that stayed empty");
        }
    }
}
