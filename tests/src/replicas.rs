//! Room-service replicas in this process, as `confer room` runs them: on a database
//! and a Redis they may share, with an SFU list that placement only records.

use confer_room::store::MasterKey;
use confer_room::{Backends, RoomConfig, RoomService};

use crate::backing::{RedisServer, fresh_postgres};

/// A room service on `backends`; its tasks stop when the runtime does, with the test.
pub async fn room_service(config: RoomConfig, backends: Backends) -> anyhow::Result<RoomService> {
    // Placement only records the choice; nothing dials this SFU.
    let registry = confer_room::registry::SfuRegistry::new(vec![
        confer_room::registry::SfuNode::parse("sfu-1@local=127.0.0.1:9")
            .map_err(anyhow::Error::msg)?,
    ]);
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    std::mem::forget(stop);
    confer_room::start(
        config,
        backends,
        registry,
        confer_room::webhook::WebhookConfig::default(),
        shutdown,
    )
    .await
}

/// A fresh PostgreSQL database and a redis-server of the test's own, for replicas to
/// share (the server stops when the returned handle is dropped).
pub async fn shared_backends() -> anyhow::Result<(RedisServer, Backends)> {
    let redis = RedisServer::start().await?;
    let backends = Backends {
        database_url: fresh_postgres().await?,
        redis_url: Some(redis.url()),
        master_key: MasterKey::random(),
        database_connections: 4,
    };
    Ok((redis, backends))
}
