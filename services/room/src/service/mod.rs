//! [`RoomService`]: the room service's logic over its durable [`Store`] and shared
//! [`Live`] state. Every replica runs the same code; nothing here lives only in one
//! process's memory except rate-limit counters.

mod admission;
mod api_impl;
mod chat_rights;
mod data;
mod empty_rooms;
mod gateways;
mod host;
mod notify;
mod rejoin;
mod takeover;
mod tenant_api;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use crate::live::Live;
use crate::ratelimit::RateLimiter;
use crate::registry::SfuRegistry;
use crate::store::{PresenceLog, PresenceStats, Store};
use crate::turn::TurnConfig;

pub use admission::{validate_name, validate_room};
pub use empty_rooms::finish_empty_rooms;
pub use gateways::sweep_lost_gateways;

/// How a room-service replica is set up.
#[derive(Clone, Debug)]
pub struct RoomConfig {
    /// Region rooms go to when their settings name none.
    pub default_region: String,
    pub turn: Option<TurnConfig>,
    /// Joins without a token land in this tenant (only `confer dev`).
    pub anonymous_tenant: Option<String>,
    pub limits: Limits,
    /// How long a gateway counts as alive after its command watch was last served:
    /// one that stops watching for longer (and half as long again) loses its
    /// participants.
    pub gateway_lease: Duration,
    /// How long a participant whose connection was lost may come back as it was
    /// (with its rejoin ticket).
    pub rejoin_grace: Duration,
}

/// [`RoomConfig::gateway_lease`] by default.
pub const GATEWAY_LEASE: Duration = Duration::from_secs(15);

/// [`RoomConfig::rejoin_grace`] by default: as long as the JS SDK tries to come back.
pub const REJOIN_GRACE: Duration = Duration::from_secs(120);

/// Rate limits: `(burst, period)`.
#[derive(Clone, Debug)]
pub struct Limits {
    pub joins_per_address: (u32, Duration),
    pub joins_per_tenant: (u32, Duration),
    pub passwords_per_address: (u32, Duration),
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            joins_per_address: (30, Duration::from_secs(2)),
            joins_per_tenant: (500, Duration::from_millis(10)),
            passwords_per_address: (5, Duration::from_secs(12)),
        }
    }
}

impl Default for RoomConfig {
    fn default() -> Self {
        Self {
            default_region: "local".into(),
            turn: None,
            anonymous_tenant: None,
            limits: Limits::default(),
            gateway_lease: GATEWAY_LEASE,
            rejoin_grace: REJOIN_GRACE,
        }
    }
}

struct Limiters {
    joins_per_address: RateLimiter,
    joins_per_tenant: RateLimiter,
    passwords_per_address: RateLimiter,
}

pub(crate) struct Inner {
    config: RoomConfig,
    store: Store,
    live: Live,
    registry: SfuRegistry,
    limiters: Limiters,
    /// Wakes the webhook deliverer when an event is queued.
    outbox_wake: Arc<tokio::sync::Notify>,
    webhook_stats: crate::webhook::WebhookStats,
    /// Placement decisions by outcome: `existing`, `placed`, or the error code.
    placements: confer_metrics::LabeledCounter,
    /// Joins and leaves, committed in groups; started with the first.
    presence_log: std::sync::OnceLock<PresenceLog>,
    presence_stats: PresenceStats,
    /// Participants let go because their gateway went away, by reason.
    released: confer_metrics::LabeledCounter,
    /// Gateways found lost (their lease ran out while they held participants).
    gateways_lost: AtomicU64,
    /// Joins with a rejoin ticket, by outcome.
    rejoins: confer_metrics::LabeledCounter,
    /// Room member lists read from live state to tell members of a change.
    member_list_reads: AtomicU64,
    /// Room events published to gateways: one per gateway per event.
    notifications: AtomicU64,
    /// Joins that took their identity's place in the room.
    takeovers: AtomicU64,
    /// Times a join waited for another join of its identity to the same room.
    identity_waits: AtomicU64,
}

/// The room service. Cheap to clone.
#[derive(Clone)]
pub struct RoomService(Arc<Inner>);

impl RoomService {
    pub fn new(config: RoomConfig, store: Store, live: Live, registry: SfuRegistry) -> Self {
        let limits = &config.limits;
        let limiters = Limiters {
            joins_per_address: RateLimiter::new(
                limits.joins_per_address.0,
                limits.joins_per_address.1,
            ),
            joins_per_tenant: RateLimiter::new(
                limits.joins_per_tenant.0,
                limits.joins_per_tenant.1,
            ),
            passwords_per_address: RateLimiter::new(
                limits.passwords_per_address.0,
                limits.passwords_per_address.1,
            ),
        };
        Self(Arc::new(Inner {
            config,
            store,
            live,
            registry,
            limiters,
            outbox_wake: Arc::new(tokio::sync::Notify::new()),
            webhook_stats: crate::webhook::WebhookStats::default(),
            placements: confer_metrics::LabeledCounter::default(),
            presence_log: std::sync::OnceLock::new(),
            presence_stats: PresenceStats::default(),
            released: confer_metrics::LabeledCounter::default(),
            gateways_lost: AtomicU64::new(0),
            rejoins: confer_metrics::LabeledCounter::default(),
            member_list_reads: AtomicU64::new(0),
            notifications: AtomicU64::new(0),
            takeovers: AtomicU64::new(0),
            identity_waits: AtomicU64::new(0),
        }))
    }

    pub fn store(&self) -> &Store {
        &self.0.store
    }

    /// What webhook delivery has done since start.
    pub fn webhook_stats(&self) -> &crate::webhook::WebhookStats {
        &self.0.webhook_stats
    }

    /// Placement decisions so far, by outcome: `existing` (the room already had its
    /// SFU in the region), `placed` (a new choice), or the error code (such as
    /// `no_media_server`).
    pub fn placements(&self) -> Vec<(String, u64)> {
        self.0.placements.snapshot()
    }

    /// Participants let go because their gateway went away: `gateway_restarted` (it
    /// started again under the same id) or `gateway_lost` (its lease ran out).
    pub fn released(&self) -> Vec<(String, u64)> {
        self.0.released.snapshot()
    }

    /// Joins that showed a rejoin ticket, by outcome: `returned` (the participant came
    /// back as it was) or `plain` (it joined as anyone would).
    pub fn rejoins(&self) -> Vec<(String, u64)> {
        self.0.rejoins.snapshot()
    }

    /// Room member lists read from live state to tell members of a change: one per
    /// change, or per batch of changes (a host's mute of everyone).
    pub fn member_list_reads(&self) -> u64 {
        self.0.member_list_reads.load(Relaxed)
    }

    /// Room events published to gateways: one per gateway holding members the event
    /// is for, per event (a change to many participants at once is one event).
    pub fn notifications(&self) -> u64 {
        self.0.notifications.load(Relaxed)
    }

    /// Joins that took the place their token's identity had in the room (another
    /// tab or device; a page reloaded without leaving).
    pub fn takeovers(&self) -> u64 {
        self.0.takeovers.load(Relaxed)
    }

    /// Times a join waited (a short retry) for another join of its identity to the
    /// same room to finish.
    pub fn identity_waits(&self) -> u64 {
        self.0.identity_waits.load(Relaxed)
    }

    /// Gateways found lost while they held participants.
    pub fn gateways_lost(&self) -> u64 {
        self.0.gateways_lost.load(Relaxed)
    }

    /// How joins and leaves have been committed: groups and the changes in them.
    pub fn presence_stats(&self) -> &PresenceStats {
        &self.0.presence_stats
    }

    /// Where joins and leaves are recorded (its task starts on the current runtime
    /// with the first).
    pub(crate) fn presence_log(&self) -> &PresenceLog {
        self.0
            .presence_log
            .get_or_init(|| PresenceLog::start(self.0.store.clone(), self.0.presence_stats.clone()))
    }

    pub(crate) fn outbox_wake(&self) -> Arc<tokio::sync::Notify> {
        self.0.outbox_wake.clone()
    }
}

/// `tenant/name`: the key of a room in live state.
pub(crate) fn room_key(tenant: &str, room: &str) -> String {
    format!("{tenant}/{room}")
}

/// The tenant and room name of a room key.
pub(crate) fn split_room_key(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or(("", key))
}
