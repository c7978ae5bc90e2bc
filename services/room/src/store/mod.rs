//! Durable data: tenants, API keys, rooms and their settings, webhook endpoints, the
//! webhook outbox and the audit log. PostgreSQL in production, SQLite in `confer dev`;
//! one set of queries (`$n` placeholders work on both) over sqlx's `Any` driver, and
//! one migration directory per dialect.

mod audit;
mod presence;
mod rooms;
mod seal;
mod tenants;
mod webhooks;

use std::time::Duration;

use anyhow::Context as _;
use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;

pub use audit::AuditEntry;
pub use presence::{MAX_GROUP, Presence, PresenceChange, PresenceLog, PresenceStats};
pub use rooms::RoomRecord;
pub use seal::MasterKey;
pub use tenants::random_token as tenants_random_token;
pub use webhooks::{Delivery, OutboxEvent};

/// Migrations per dialect, in order: (version, SQL).
const POSTGRES_MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../migrations/postgres/0001_init.sql")),
    (
        2,
        include_str!("../../migrations/postgres/0002_room_presence.sql"),
    ),
    (
        3,
        include_str!("../../migrations/postgres/0003_empty_rooms.sql"),
    ),
];
const SQLITE_MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../migrations/sqlite/0001_init.sql")),
    (
        2,
        include_str!("../../migrations/sqlite/0002_room_presence.sql"),
    ),
    (
        3,
        include_str!("../../migrations/sqlite/0003_empty_rooms.sql"),
    ),
];

/// Which versions are applied, with when.
const LEDGER: confer_migrate::Ledger = confer_migrate::Ledger {
    table: "confer_migrations",
    service: "room",
    timed: true,
};

/// PostgreSQL connections a room service replica opens unless told otherwise. Joins
/// and leaves share one for each group of presence changes ([`PresenceLog`]).
pub const DEFAULT_CONNECTIONS: u32 = 8;

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    key: MasterKey,
    sqlite: bool,
}

impl Store {
    /// Connects to `url` (`postgres://…` or `sqlite:…`) and applies pending migrations.
    pub async fn connect(url: &str, key: MasterKey) -> anyhow::Result<Self> {
        Self::connect_with(url, key, DEFAULT_CONNECTIONS).await
    }

    /// As [`Store::connect`], with at most `connections` to PostgreSQL (SQLite: one).
    pub async fn connect_with(url: &str, key: MasterKey, connections: u32) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        let sqlite = url.starts_with("sqlite:");
        // SQLite has one writer; one connection also keeps an in-memory database whole.
        let max = if sqlite { 1 } else { connections.max(1) };
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await
            .with_context(|| format!("failed to connect to the database at {}", redact(url)))?;
        let store = Self { pool, key, sqlite };
        let migrations = if sqlite {
            SQLITE_MIGRATIONS
        } else {
            POSTGRES_MIGRATIONS
        };
        store.migrate(migrations).await?;
        Ok(store)
    }

    /// The master key: what the service seals for its clients (rejoin tickets) is
    /// sealed under the same key, each use with its own purpose.
    pub fn master_key(&self) -> &MasterKey {
        &self.key
    }

    /// How the connection pool is used now, for `/metrics`.
    pub fn pool_use(&self) -> confer_metrics::PoolUse {
        confer_metrics::PoolUse {
            open: self.pool.size(),
            idle: u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX),
            max: self.pool.options().get_max_connections(),
        }
    }

    async fn migrate(&self, migrations: confer_migrate::Migrations) -> anyhow::Result<()> {
        confer_migrate::apply(&self.pool, LEDGER, migrations).await
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }
}

/// `url` without its password, for error messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://…@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests;
