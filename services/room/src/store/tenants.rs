//! Tenants and their API keys.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::Store;
use crate::api::TenantCreated;
use crate::clock::unix_secs_i64;
use crate::error::{RoomError, RoomResult};

impl Store {
    /// Creates a tenant with a fresh API key and secret.
    pub async fn create_tenant(&self, name: &str) -> RoomResult<TenantCreated> {
        let tenant = format!("t_{}", random_token(9));
        let created = TenantCreated {
            tenant,
            api_key: format!("AK{}", random_token(12)),
            api_secret: random_token(32),
        };
        self.insert_tenant(&created, name).await?;
        Ok(created)
    }

    /// Creates a tenant with the given id, key and secret unless that key exists;
    /// `confer dev` uses it for its built-in tenant.
    pub async fn ensure_tenant(&self, created: &TenantCreated, name: &str) -> RoomResult<()> {
        if self.api_key(&created.api_key).await?.is_some() {
            return Ok(());
        }
        self.insert_tenant(created, name).await
    }

    /// Makes sure a tenant row exists (the anonymous tenant of `confer dev` has no key).
    pub async fn ensure_tenant_row(&self, id: &str, name: &str) -> RoomResult<()> {
        sqlx::query(
            "INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(name)
        .bind(unix_secs_i64())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn insert_tenant(&self, created: &TenantCreated, name: &str) -> RoomResult<()> {
        let now = unix_secs_i64();
        let mut tx = self.pool().begin().await?;
        sqlx::query("INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING")
            .bind(&created.tenant)
            .bind(name)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO api_keys (key, tenant_id, secret_sealed, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&created.api_key)
        .bind(&created.tenant)
        .bind(self.key.seal(&created.api_secret))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The tenant and secret of an API key.
    pub async fn api_key(&self, key: &str) -> RoomResult<Option<(String, String)>> {
        let row: Option<(String, String)> =
            sqlx::query_as("SELECT tenant_id, secret_sealed FROM api_keys WHERE key = $1")
                .bind(key)
                .fetch_optional(self.pool())
                .await?;
        let Some((tenant, sealed)) = row else {
            return Ok(None);
        };
        let secret = self.key.open(&sealed).ok_or_else(|| {
            RoomError::internal("an API secret does not open with this master key")
        })?;
        Ok(Some((tenant, secret)))
    }
}

/// `bytes` random bytes, base64url.
pub fn random_token(bytes: usize) -> String {
    let raw: Vec<u8> = (0..bytes).map(|_| rand::random::<u8>()).collect();
    URL_SAFE_NO_PAD.encode(raw)
}
