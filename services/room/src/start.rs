//! Putting a room service together: connect its stores, start webhook delivery.

use tokio::sync::watch;

use crate::live::{Live, MemoryLive, RedisLive};
use crate::registry::SfuRegistry;
use crate::store::{MasterKey, Store};
use crate::webhook::{WebhookConfig, run_deliverer};
use crate::{RoomConfig, RoomService, finish_empty_rooms, sweep_lost_gateways};

/// Where the room service keeps its data.
#[derive(Clone, Debug)]
pub struct Backends {
    /// `postgres://…` or `sqlite:…`.
    pub database_url: String,
    /// Shared live state; `None` keeps it in this process (`confer dev`, one replica).
    pub redis_url: Option<String>,
    pub master_key: MasterKey,
    /// Most PostgreSQL connections to open (SQLite always has one).
    pub database_connections: u32,
}

impl Backends {
    /// An in-memory SQLite database and in-process live state.
    pub fn in_memory() -> Self {
        Self {
            database_url: "sqlite::memory:".into(),
            redis_url: None,
            master_key: MasterKey::random(),
            database_connections: crate::store::DEFAULT_CONNECTIONS,
        }
    }
}

/// Connects to the backends and starts webhook delivery, which stops with `shutdown`.
pub async fn start(
    config: RoomConfig,
    backends: Backends,
    registry: SfuRegistry,
    webhooks: WebhookConfig,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<RoomService> {
    let store = Store::connect_with(
        &backends.database_url,
        backends.master_key,
        backends.database_connections,
    )
    .await?;
    if let Some(tenant) = &config.anonymous_tenant {
        store.ensure_tenant_row(tenant, "Anonymous").await?;
    }
    let live = match &backends.redis_url {
        Some(url) => Live::Redis(RedisLive::connect(url).await?),
        None => Live::Memory(MemoryLive::default()),
    };
    let service = RoomService::new(config, store, live, registry);
    tokio::spawn(sweep_lost_gateways(service.clone(), shutdown.clone()));
    tokio::spawn(finish_empty_rooms(service.clone(), shutdown.clone()));
    tokio::spawn(run_deliverer(service.clone(), webhooks, shutdown));
    Ok(service)
}
