//! The audit log: who did what to which room, for the tenant's compliance needs.

use super::Store;
use crate::clock::unix_secs_i64;
use crate::error::RoomResult;

/// One audit entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub actor: String,
    pub action: String,
    pub room: String,
    pub detail: String,
}

impl Store {
    pub async fn audit(&self, tenant: &str, entry: &AuditEntry) -> RoomResult<()> {
        sqlx::query(
            "INSERT INTO audit_log (tenant_id, actor, action, room, detail, at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(tenant)
        .bind(&entry.actor)
        .bind(&entry.action)
        .bind(&entry.room)
        .bind(&entry.detail)
        .bind(unix_secs_i64())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The most recent `limit` entries for a tenant, newest first.
    pub async fn audit_log(&self, tenant: &str, limit: i64) -> RoomResult<Vec<AuditEntry>> {
        let rows: Vec<(String, String, String, String)> = sqlx::query_as(
            "SELECT actor, action, room, detail FROM audit_log WHERE tenant_id = $1 ORDER BY seq DESC LIMIT $2",
        )
        .bind(tenant)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|(actor, action, room, detail)| AuditEntry {
                actor,
                action,
                room,
                detail,
            })
            .collect())
    }
}
