//! Gateways that go away without a word: their participants leave the rooms.
//!
//! A gateway holds its participants' connections; when it leaves a room in the normal
//! way, its sessions say `leave`. A gateway killed or cut off says nothing, so:
//! - while a room service serves a gateway's command watch, it renews the gateway's
//!   **lease** (every third of [`RoomConfig::gateway_lease`]);
//! - every replica **sweeps** every third of a lease: a gateway that holds
//!   participants and whose lease has been gone for half a lease more (seen so by
//!   this replica, so a replica that has just started gives the gateways time to
//!   watch again) is lost. Its participants leave as if they had said so (the room
//!   is told, webhooks go out, an empty room ends), and the gateway is told to let
//!   each go (`Reconnect`): one that was only cut off closes those sessions, and their
//!   clients join again;
//! - a gateway that **starts** says so in its first watch ([`WatchFrom::Start`]); the
//!   participants still listed for it are left over from its last run under the same
//!   id, and leave before its watch begins.
//!
//! [`RoomConfig::gateway_lease`]: super::RoomConfig::gateway_lease

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::stream::{BoxStream, Stream, StreamExt as _};
use tokio::sync::watch;
use tracing::{info, warn};

use super::RoomService;
use crate::api::{GatewayCommand, WatchFrom, Watched};
use crate::error::RoomResult;

/// Participants of a gone gateway let go at once.
const RELEASES_AT_ONCE: usize = 64;

/// Why a gateway's participants were let go, as the metric labels it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Release {
    /// The gateway started again under the same id.
    Restarted,
    /// The gateway's lease ran out.
    Lost,
}

impl Release {
    fn label(self) -> &'static str {
        match self {
            Self::Restarted => "gateway_restarted",
            Self::Lost => "gateway_lost",
        }
    }
}

impl RoomService {
    /// [`crate::RoomApi::watch`]: participants left over from a gateway's last run
    /// leave, then its commands stream, with its lease renewed while they do.
    pub(crate) async fn do_watch(
        &self,
        gateway: &str,
        from: WatchFrom,
    ) -> RoomResult<BoxStream<'static, Watched>> {
        if from == WatchFrom::Start {
            self.release(gateway, Release::Restarted).await?;
        }
        let lease = self.0.config.gateway_lease;
        self.0.live.renew_lease(gateway, lease).await?;
        let commands = self
            .0
            .live
            .subscribe(gateway, from.cursor().map(str::to_owned))
            .await?;
        let renewal = tokio::spawn(renew_while_watched(self.clone(), gateway.to_owned(), lease));
        Ok(Leased {
            commands,
            renewal: renewal.abort_handle(),
        }
        .boxed())
    }

    /// One sweep: gateways whose lease has been gone since `missing` says, for half a
    /// lease or more by `now`, lose their participants. `missing` keeps the gateways
    /// seen without a lease and since when.
    async fn sweep_gateways(
        &self,
        missing: &mut HashMap<String, Instant>,
        now: Instant,
    ) -> RoomResult<()> {
        let unleased = self.0.live.unleased_gateways().await?;
        missing.retain(|gateway, _| unleased.contains(gateway));
        let grace = self.0.config.gateway_lease / 2;
        for gateway in unleased {
            let since = *missing.entry(gateway.clone()).or_insert(now);
            if now.duration_since(since) >= grace {
                self.release(&gateway, Release::Lost).await?;
                missing.remove(&gateway);
            }
        }
        Ok(())
    }

    /// Every participant `gateway` holds leaves; a lost gateway is told to let each
    /// go, in case it was only cut off. One that cannot leave now (the database is
    /// down) stays listed for the gateway, and the next sweep tries again.
    async fn release(&self, gateway: &str, why: Release) -> RoomResult<()> {
        let participants = self.0.live.participants_of(gateway).await?;
        // Several at once, so their leaves share presence commits: a restarted
        // gateway's watch (and the joins waiting on it) starts after them.
        let outcomes: Vec<(String, RoomResult<bool>)> = futures_util::stream::iter(participants)
            .map(|participant| async move {
                let outcome = self.release_one(gateway, &participant, why).await;
                (participant, outcome)
            })
            .buffer_unordered(RELEASES_AT_ONCE)
            .collect()
            .await;
        let mut released = 0;
        for (participant, outcome) in outcomes {
            match outcome {
                Ok(true) => released += 1,
                // Gone already: it left, or another replica let it go first.
                Ok(false) => {}
                Err(err) => {
                    warn!(%gateway, %participant, %err, "a gone gateway's participant could not leave yet");
                }
            }
        }
        if released > 0 {
            info!(
                %gateway,
                participants = released,
                reason = why.label(),
                "a gateway's participants left"
            );
            if why == Release::Lost {
                self.0.gateways_lost.fetch_add(1, Relaxed);
            }
        }
        self.0.live.forget_gateway(gateway).await
    }

    /// `true` when this call let the participant go.
    async fn release_one(
        &self,
        gateway: &str,
        participant: &str,
        why: Release,
    ) -> RoomResult<bool> {
        if !self
            .depart(participant, super::rejoin::Departure::Lost)
            .await?
        {
            return Ok(false);
        }
        self.0.released.inc(why.label());
        if why == Release::Lost {
            let command = GatewayCommand::Reconnect {
                participant: participant.to_owned(),
            };
            self.0.live.publish(gateway, &command).await?;
        }
        Ok(true)
    }
}

/// Renews `gateway`'s lease every third of it, until aborted (its watch ended).
async fn renew_while_watched(service: RoomService, gateway: String, lease: Duration) {
    let mut every = tokio::time::interval(lease / 3);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await;
    loop {
        every.tick().await;
        if let Err(err) = service.0.live.renew_lease(&gateway, lease).await {
            warn!(%gateway, %err, "cannot renew a gateway's lease");
        }
    }
}

/// Sweeps for lost gateways every third of a lease, until `shutdown`.
pub async fn sweep_lost_gateways(service: RoomService, mut shutdown: watch::Receiver<bool>) {
    let mut every = tokio::time::interval(service.0.config.gateway_lease / 3);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut missing = HashMap::new();
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = shutdown.changed() => return,
        }
        if let Err(err) = service.sweep_gateways(&mut missing, Instant::now()).await {
            warn!(%err, "cannot sweep for lost gateways");
        }
    }
}

/// A gateway's commands; renewing its lease stops when they are dropped.
struct Leased {
    commands: BoxStream<'static, Watched>,
    renewal: tokio::task::AbortHandle,
}

impl Stream for Leased {
    type Item = Watched;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Watched>> {
        self.commands.poll_next_unpin(cx)
    }
}

impl Drop for Leased {
    fn drop(&mut self) {
        self.renewal.abort();
    }
}
