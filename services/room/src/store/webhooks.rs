//! Webhook endpoints and the delivery outbox. An event is written here for every
//! endpoint of the tenant before anything is sent; the deliverer works through it in
//! order per (endpoint, room).

use super::Store;
use super::tenants::random_token;
use crate::api::{DeadLetter, Webhook};
use crate::clock::{unix_millis_i64, unix_secs_i64};
use crate::error::{RoomError, RoomResult};

/// One pending delivery.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub seq: i64,
    pub event_id: String,
    pub webhook_id: String,
    pub url: String,
    pub secret: String,
    pub body: String,
    pub attempts: u32,
}

type WebhookRow = (String, String, i64);

/// A webhook event ready to queue.
#[derive(Debug, Clone)]
pub struct OutboxEvent {
    pub name: &'static str,
    pub id: String,
    pub body: String,
}

fn webhook((id, url, created_at): WebhookRow) -> Webhook {
    Webhook {
        id,
        url,
        created_at: u64::try_from(created_at).unwrap_or_default(),
        secret: None,
    }
}

impl Store {
    pub async fn create_webhook(&self, tenant: &str, url: &str) -> RoomResult<Webhook> {
        let id = format!("wh_{}", random_token(9));
        let secret = format!("whsec_{}", random_token(24));
        let now = unix_secs_i64();
        sqlx::query(
            "INSERT INTO webhooks (id, tenant_id, url, secret_sealed, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&id)
        .bind(tenant)
        .bind(url)
        .bind(self.key.seal(&secret))
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(Webhook {
            secret: Some(secret),
            ..webhook((id, url.to_owned(), now))
        })
    }

    pub async fn webhooks(&self, tenant: &str) -> RoomResult<Vec<Webhook>> {
        let rows: Vec<WebhookRow> = sqlx::query_as(
            "SELECT id, url, created_at FROM webhooks WHERE tenant_id = $1 AND deleted_at IS NULL ORDER BY created_at, id",
        )
        .bind(tenant)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(webhook).collect())
    }

    /// Stops deliveries to an endpoint; `false` when the tenant has no such endpoint.
    pub async fn delete_webhook(&self, tenant: &str, id: &str) -> RoomResult<bool> {
        let result = sqlx::query(
            "UPDATE webhooks SET deleted_at = $1 WHERE tenant_id = $2 AND id = $3 AND deleted_at IS NULL",
        )
        .bind(unix_secs_i64())
        .bind(tenant)
        .bind(id)
        .execute(self.pool())
        .await?;
        sqlx::query("UPDATE webhook_outbox SET state = 'cancelled' WHERE webhook_id = $1 AND state = 'pending'")
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Queues one event for every endpoint of the tenant.
    pub async fn enqueue(&self, tenant: &str, room: &str, event: &OutboxEvent) -> RoomResult<()> {
        let mut conn = self.pool().acquire().await?;
        Ok(insert_event(&mut conn, tenant, room, event).await?)
    }

    /// Deliveries that are due: the oldest pending one per (endpoint, room), so that a
    /// failing delivery holds back the later events of its room and order is kept.
    pub async fn due_deliveries(&self, limit: i64) -> RoomResult<Vec<Delivery>> {
        let rows: Vec<(i64, String, String, String, String, String, i32)> = sqlx::query_as(
            "SELECT o.seq, o.event_id, o.webhook_id, w.url, w.secret_sealed, o.body, o.attempts \
             FROM webhook_outbox o JOIN webhooks w ON w.id = o.webhook_id \
             WHERE o.seq IN (SELECT MIN(seq) FROM webhook_outbox WHERE state = 'pending' GROUP BY webhook_id, room) \
             AND o.next_attempt_at <= $1 ORDER BY o.seq LIMIT $2",
        )
        .bind(unix_millis_i64())
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.into_iter()
            .map(|(seq, event_id, webhook_id, url, sealed, body, attempts)| {
                let secret = self.key.open(&sealed).ok_or_else(|| {
                    RoomError::internal("a webhook secret does not open with this master key")
                })?;
                Ok(Delivery {
                    seq,
                    event_id,
                    webhook_id,
                    url,
                    secret,
                    body,
                    attempts: u32::try_from(attempts).unwrap_or_default(),
                })
            })
            .collect()
    }

    /// Takes a delivery for `lease_ms`, so another replica does not send it at the same
    /// time; `false` when someone else has it.
    pub async fn claim_delivery(&self, delivery: &Delivery, lease_ms: i64) -> RoomResult<bool> {
        let now = unix_millis_i64();
        let result = sqlx::query(
            "UPDATE webhook_outbox SET next_attempt_at = $1 WHERE seq = $2 AND state = 'pending' AND next_attempt_at <= $3",
        )
        .bind(now + lease_ms)
        .bind(delivery.seq)
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(result.rows_affected() == 1)
    }

    pub async fn delivered(&self, seq: i64, attempts: u32) -> RoomResult<()> {
        sqlx::query("UPDATE webhook_outbox SET state = 'delivered', attempts = $1 WHERE seq = $2")
            .bind(i32::try_from(attempts).unwrap_or(i32::MAX))
            .bind(seq)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Records a failed attempt: retry at `retry_at_ms`, or dead-letter when `None`.
    pub async fn delivery_failed(
        &self,
        seq: i64,
        attempts: u32,
        error: &str,
        retry_at_ms: Option<i64>,
    ) -> RoomResult<()> {
        let (state, next) = match retry_at_ms {
            Some(at) => ("pending", at),
            None => ("dead", unix_millis_i64()),
        };
        sqlx::query(
            "UPDATE webhook_outbox SET state = $1, attempts = $2, next_attempt_at = $3, last_error = $4 WHERE seq = $5",
        )
        .bind(state)
        .bind(i32::try_from(attempts).unwrap_or(i32::MAX))
        .bind(next)
        .bind(error)
        .bind(seq)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn dead_letters(&self, tenant: &str) -> RoomResult<Vec<DeadLetter>> {
        let rows: Vec<(String, String, String, String, i32, String, i64)> = sqlx::query_as(
            "SELECT event_id, webhook_id, event, room, attempts, last_error, created_at FROM webhook_outbox \
             WHERE tenant_id = $1 AND state = 'dead' ORDER BY seq",
        )
        .bind(tenant)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(event_id, webhook_id, event, room, attempts, last_error, created_at)| {
                    DeadLetter {
                        event_id,
                        webhook_id,
                        event,
                        room,
                        attempts: u32::try_from(attempts).unwrap_or_default(),
                        last_error,
                        created_at: u64::try_from(created_at / 1000).unwrap_or_default(),
                    }
                },
            )
            .collect())
    }
}

pub(super) async fn insert_event(
    conn: &mut sqlx::AnyConnection,
    tenant: &str,
    room: &str,
    event: &OutboxEvent,
) -> Result<(), sqlx::Error> {
    let now = unix_millis_i64();
    sqlx::query(
        "INSERT INTO webhook_outbox (event_id, webhook_id, tenant_id, room, event, body, created_at, next_attempt_at) \
         SELECT $1, id, tenant_id, $2, $3, $4, $5, $5 FROM webhooks WHERE tenant_id = $6 AND deleted_at IS NULL",
    )
    .bind(&event.id)
    .bind(room)
    .bind(event.name)
    .bind(&event.body)
    .bind(now)
    .bind(tenant)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
