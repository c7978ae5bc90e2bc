//! Webhook delivery from the durable outbox: at least once, in order per room, signed,
//! with exponential backoff and a dead-letter state after the last attempt.
//!
//! Each request carries `Confer-Webhook-Id` (the event id, for idempotency) and
//! `Confer-Signature: t=<unix secs>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use futures_util::future::join_all;
use ring::hmac;
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::RoomService;
use crate::clock::{unix_millis_i64, unix_secs};
use crate::store::Delivery;

#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Delay before the second attempt; doubles each time.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Attempts before an event is dead-lettered.
    pub max_attempts: u32,
    pub request_timeout: Duration,
    /// How often the outbox is checked for retries that came due.
    pub poll_interval: Duration,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            backoff_base: Duration::from_secs(2),
            backoff_max: Duration::from_secs(600),
            max_attempts: 12,
            request_timeout: Duration::from_secs(10),
            poll_interval: Duration::from_millis(500),
        }
    }
}

impl WebhookConfig {
    /// Delay after `attempts` failed attempts, with up to 10 % jitter.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let exp = self
            .backoff_base
            .saturating_mul(1u32 << attempts.saturating_sub(1).min(20));
        let capped = exp.min(self.backoff_max);
        let jitter = capped.mul_f64(rand::random::<f64>() * 0.1);
        capped + jitter
    }
}

/// `Confer-Signature` for `body` at `timestamp`.
pub fn signature(secret: &str, timestamp: u64, body: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let tag = hmac::sign(&key, format!("{timestamp}.{body}").as_bytes());
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("t={timestamp},v1={hex}")
}

/// What the deliverer has done since start, for `/metrics`.
#[derive(Debug, Default)]
pub struct WebhookStats {
    delivered: AtomicU64,
    failed_attempts: AtomicU64,
    dead_lettered: AtomicU64,
}

/// [`WebhookStats`] read at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WebhookCounts {
    /// Events the receiver accepted.
    pub delivered: u64,
    /// Attempts that failed (each retry counts).
    pub failed_attempts: u64,
    /// Events given up on after the last attempt.
    pub dead_lettered: u64,
}

impl WebhookStats {
    pub fn counts(&self) -> WebhookCounts {
        WebhookCounts {
            delivered: self.delivered.load(Relaxed),
            failed_attempts: self.failed_attempts.load(Relaxed),
            dead_lettered: self.dead_lettered.load(Relaxed),
        }
    }
}

impl WebhookCounts {
    /// The webhook families on a `/metrics` page.
    pub fn render(&self, out: &mut confer_metrics::Exposition) {
        out.counter(
            "confer_room_webhook_deliveries",
            "Webhook delivery attempts, by outcome.",
            &[
                (&[("outcome", "delivered")], self.delivered),
                (&[("outcome", "failed")], self.failed_attempts),
            ],
        );
        out.counter1(
            "confer_room_webhook_dead_letters",
            "Webhook events given up on after the last attempt (listed under /v1/webhooks/dead-letters).",
            self.dead_lettered,
        );
    }
}

/// The client deliveries go through: HTTPS (rustls, the system's roots) or HTTP.
fn http_client(config: &WebhookConfig) -> reqwest::Result<reqwest::Client> {
    confer_http::builder()
        .timeout(config.request_timeout)
        .user_agent("confer-webhooks/1")
        .https_only(false)
        .build()
}

/// Delivers queued events until `shutdown` fires.
pub async fn run_deliverer(
    service: RoomService,
    config: WebhookConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    let client = match http_client(&config) {
        Ok(client) => client,
        Err(err) => {
            warn!(%err, "webhook delivery disabled: no HTTP client");
            return;
        }
    };
    let wake = service.outbox_wake();
    loop {
        match service.store().due_deliveries(64).await {
            Ok(due) => {
                let attempts = due
                    .into_iter()
                    .map(|delivery| deliver_one(&service, &client, &config, delivery));
                join_all(attempts).await;
            }
            Err(err) => warn!(%err, "webhook outbox unreadable"),
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(config.poll_interval) => {}
            _ = shutdown.changed() => return,
        }
    }
}

async fn deliver_one(
    service: &RoomService,
    client: &reqwest::Client,
    config: &WebhookConfig,
    delivery: Delivery,
) {
    let store = service.store();
    let lease = i64::try_from(config.request_timeout.as_millis()).unwrap_or(i64::MAX) * 2;
    match store.claim_delivery(&delivery, lease).await {
        Ok(true) => {}
        Ok(false) => return,
        Err(err) => {
            warn!(%err, "webhook outbox unwritable");
            return;
        }
    }
    let attempts = delivery.attempts + 1;
    let outcome = post(client, &delivery).await;
    let result = match outcome {
        Ok(()) => {
            service.webhook_stats().delivered.fetch_add(1, Relaxed);
            debug!(event = %delivery.event_id, attempts, "webhook delivered");
            store.delivered(delivery.seq, attempts).await
        }
        Err(error) => {
            let retry_at = (attempts < config.max_attempts).then(|| {
                unix_millis_i64()
                    + i64::try_from(config.backoff(attempts).as_millis()).unwrap_or(i64::MAX)
            });
            let stats = service.webhook_stats();
            stats.failed_attempts.fetch_add(1, Relaxed);
            if retry_at.is_none() {
                stats.dead_lettered.fetch_add(1, Relaxed);
            }
            debug!(event = %delivery.event_id, attempts, %error, dead = retry_at.is_none(), "webhook delivery failed");
            store
                .delivery_failed(delivery.seq, attempts, &error, retry_at)
                .await
        }
    };
    if let Err(err) = result {
        warn!(%err, "webhook outbox unwritable");
    }
}

async fn post(client: &reqwest::Client, delivery: &Delivery) -> Result<(), String> {
    let response = client
        .post(&delivery.url)
        .header("content-type", "application/json")
        .header("confer-webhook-id", &delivery.event_id)
        .header(
            "confer-signature",
            signature(&delivery.secret, unix_secs(), &delivery.body),
        )
        .body(delivery.body.clone())
        .send()
        .await
        .map_err(|err| format!("request failed: {err}"))?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!("endpoint answered {}", response.status()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_hmac_sha256_over_timestamp_and_body() {
        // Reference: printf '1700000000.{}' | openssl dgst -sha256 -hmac whsec_test
        assert_eq!(
            signature("whsec_test", 1_700_000_000, "{}"),
            "t=1700000000,v1=35495024f4ef3f94e5a93e22221544c4b75e9a42300cd965ab81cb85cd994e91"
        );
    }

    #[tokio::test]
    async fn https_endpoints_are_reached_over_tls() {
        let client = http_client(&WebhookConfig::default()).expect("client builds");
        // Nothing listens on port 1: an HTTPS-capable client fails to connect, where
        // one without TLS would refuse the URL before touching the network.
        let err = client
            .post("https://127.0.0.1:1/hook")
            .body("{}")
            .send()
            .await
            .expect_err("nothing listens there");
        assert!(err.is_connect(), "{err:?}");
        assert!(!err.is_builder(), "{err:?}");
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let config = WebhookConfig {
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(10),
            ..WebhookConfig::default()
        };
        let within = |d: Duration, lo: u64| {
            d >= Duration::from_secs(lo) && d <= Duration::from_secs(lo).mul_f64(1.1)
        };
        assert!(within(config.backoff(1), 1));
        assert!(within(config.backoff(2), 2));
        assert!(within(config.backoff(3), 4));
        assert!(within(config.backoff(30), 10));
    }
}
