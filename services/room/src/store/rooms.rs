//! Rooms and their settings.

use super::Store;
use crate::clock::unix_secs_i64;
use crate::error::{RoomError, RoomResult};
use crate::model::RoomSettings;

/// A room's durable record.
#[derive(Debug, Clone)]
pub struct RoomRecord {
    pub name: String,
    pub settings: RoomSettings,
    pub password_hash: Option<String>,
    pub created_at: u64,
}

type Row = (String, String, Option<String>, i64);

fn record(row: Row) -> RoomResult<RoomRecord> {
    let (name, settings, password_hash, created_at) = row;
    let settings = serde_json::from_str(&settings).map_err(RoomError::internal)?;
    Ok(RoomRecord {
        name,
        settings,
        password_hash,
        created_at: u64::try_from(created_at).unwrap_or_default(),
    })
}

impl Store {
    /// Inserts a room; `false` when one of that name exists.
    pub async fn insert_room(
        &self,
        tenant: &str,
        name: &str,
        settings: &RoomSettings,
        password_hash: Option<&str>,
    ) -> RoomResult<bool> {
        let settings = serde_json::to_string(settings).map_err(RoomError::internal)?;
        let result = sqlx::query(
            "INSERT INTO rooms (tenant_id, name, settings, password_hash, created_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id, name) DO NOTHING",
        )
        .bind(tenant)
        .bind(name)
        .bind(settings)
        .bind(password_hash)
        .bind(unix_secs_i64())
        .execute(self.pool())
        .await?;
        Ok(result.rows_affected() == 1)
    }

    pub async fn room(&self, tenant: &str, name: &str) -> RoomResult<Option<RoomRecord>> {
        let row: Option<Row> = sqlx::query_as(
            "SELECT name, settings, password_hash, created_at FROM rooms WHERE tenant_id = $1 AND name = $2",
        )
        .bind(tenant)
        .bind(name)
        .fetch_optional(self.pool())
        .await?;
        row.map(record).transpose()
    }

    pub async fn rooms(&self, tenant: &str) -> RoomResult<Vec<RoomRecord>> {
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT name, settings, password_hash, created_at FROM rooms WHERE tenant_id = $1 ORDER BY name",
        )
        .bind(tenant)
        .fetch_all(self.pool())
        .await?;
        rows.into_iter().map(record).collect()
    }

    pub async fn update_room(
        &self,
        tenant: &str,
        name: &str,
        settings: &RoomSettings,
        password_hash: Option<&str>,
    ) -> RoomResult<()> {
        let settings = serde_json::to_string(settings).map_err(RoomError::internal)?;
        sqlx::query(
            "UPDATE rooms SET settings = $1, password_hash = $2 WHERE tenant_id = $3 AND name = $4",
        )
        .bind(settings)
        .bind(password_hash)
        .bind(tenant)
        .bind(name)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Deletes a room; `false` when there was none.
    pub async fn delete_room(&self, tenant: &str, name: &str) -> RoomResult<bool> {
        let result = sqlx::query("DELETE FROM rooms WHERE tenant_id = $1 AND name = $2")
            .bind(tenant)
            .bind(name)
            .execute(self.pool())
            .await?;
        Ok(result.rows_affected() == 1)
    }
}
