//! The chat service: every message of a room is stored (PostgreSQL; SQLite in
//! `confer dev`) under the room's monotonic sequence number before it is acknowledged,
//! then published on the room's Redis sharded pub/sub channel to the gateways that hold
//! its members. Sends are idempotent by client id; history pages back to the first
//! message; edits and deletes are entries of their own.
//!
//! - [`api`]: `ChatApi` and its types, shared by the in-process service and the gRPC
//!   client.
//! - [`store`]: the durable history.
//! - [`bus`]: publishing, and the gateway's [`bus::Feed`].
//! - [`ChatStats`]: what the service counts, for its `/metrics`.

pub mod api;
pub mod bus;
pub mod error;
pub mod grpc;
mod pipeline;
mod service;
mod stats;
pub mod store;
mod validate;

pub use api::{
    ChatAction, ChatApi, ChatEntry, EntryKind, HistoryPage, Page, Retention, SendRequest, Sent,
};
pub use bus::{Bus, Delivery, Feed, FeedEvent};
pub use error::{ChatError, ChatResult, ErrorKind};
pub use service::ChatService;
pub use stats::ChatStats;
pub use store::Store;
pub use validate::post as check_post;

/// Connects the store at `database_url` and the bus (`redis_url`, or in-process).
pub async fn connect(database_url: &str, redis_url: Option<&str>) -> anyhow::Result<ChatService> {
    connect_with(database_url, redis_url, store::DEFAULT_CONNECTIONS, None).await
}

/// As [`connect`], with at most `connections` database connections, and the chat of
/// rooms whose tenant set no retention kept for `default_retention` (none: for good).
pub async fn connect_with(
    database_url: &str,
    redis_url: Option<&str>,
    connections: u32,
    default_retention: Option<std::time::Duration>,
) -> anyhow::Result<ChatService> {
    let store = Store::connect_with(database_url, connections)
        .await?
        .with_default_retention(default_retention);
    let bus = match redis_url {
        Some(url) => Bus::redis(url)?,
        None => Bus::memory(),
    };
    Ok(ChatService::new(store, bus))
}
