//! The chat service: validate, store, then publish.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tracing::Instrument as _;

use crate::api::{BoxFuture, ChatApi, ChatEntry, HistoryPage, Page, SendRequest, Sent};
use crate::bus::Bus;
use crate::error::{ChatError, ChatResult};
use crate::stats::ChatStats;
use crate::store::{Store, Stored};
use crate::validate;

/// How long a failed publish is retried; gateways that miss it read it from history
/// at the next entry or resync anyway.
const REPUBLISH_FOR: Duration = Duration::from_secs(30);
/// How often entries past their room's retention are deleted.
const EXPIRE_EVERY: Duration = Duration::from_secs(60);

/// The most files one removal call lists or acknowledges.
const MAX_FILES_PER_CALL: u32 = 500;

/// Locks that order a room's store-then-publish within this replica; rooms share
/// them by hash.
const STRIPES: usize = 256;

fn stripe(room: &str) -> usize {
    use std::hash::{BuildHasher as _, BuildHasherDefault, DefaultHasher};
    BuildHasherDefault::<DefaultHasher>::default().hash_one(room) as usize % STRIPES
}

#[derive(Clone)]
pub struct ChatService {
    store: Store,
    bus: Bus,
    stripes: Arc<[tokio::sync::Mutex<()>]>,
    stats: ChatStats,
}

impl ChatService {
    pub fn new(store: Store, bus: Bus) -> Self {
        Self {
            store,
            bus,
            stripes: (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
            stats: ChatStats::default(),
        }
    }

    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    pub fn stats(&self) -> &ChatStats {
        &self.stats
    }

    /// Deletes the entries older than their room's retention; returns how many.
    pub async fn expire(&self) -> ChatResult<u64> {
        let expired = self.store.expire(now_ms()).await?;
        self.stats.expired(expired);
        Ok(expired)
    }

    /// Deletes expired entries every minute until `shutdown` fires.
    pub fn spawn_expiry(&self, mut shutdown: watch::Receiver<bool>) {
        let service = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(EXPIRE_EVERY);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = shutdown.changed() => return,
                }
                match service.expire().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(entries = n, "expired chat entries"),
                    Err(err) => tracing::warn!(error = %err, "chat expiry failed"),
                }
            }
        });
    }

    async fn publish(&self, entry: ChatEntry) {
        if let Err(err) = self.bus.publish(&entry).await {
            self.stats.publish_failed();
            tracing::warn!(error = %err, room = %entry.room, seq = entry.seq, "chat publish failed; retrying");
            let bus = self.bus.clone();
            tokio::spawn(async move {
                let started = tokio::time::Instant::now();
                let mut wait = Duration::from_millis(100);
                while started.elapsed() < REPUBLISH_FOR {
                    tokio::time::sleep(wait).await;
                    if bus.publish(&entry).await.is_ok() {
                        return;
                    }
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
            });
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

impl ChatApi for ChatService {
    fn send(&self, req: SendRequest) -> BoxFuture<'_, ChatResult<Sent>> {
        let span = tracing::info_span!("chat.send", room = %req.room, seq = tracing::field::Empty);
        Box::pin(
            async move {
                let started = std::time::Instant::now();
                let result = self.store_and_publish(req).await;
                match &result {
                    Ok(sent) if sent.duplicate => self.stats.duplicate(),
                    Ok(_) => self.stats.stored(started.elapsed()),
                    Err(err) => self.stats.refused(&err.code),
                }
                result
            }
            .instrument(span),
        )
    }

    fn history(&self, room: String, page: Page) -> BoxFuture<'_, ChatResult<HistoryPage>> {
        Box::pin(async move { self.store.history(&room, validate::page(page)).await })
    }

    fn set_retention(&self, room: String, secs: u64) -> BoxFuture<'_, ChatResult<()>> {
        Box::pin(async move { self.store.set_retention(&room, secs).await })
    }

    fn delete_room(&self, room: String) -> BoxFuture<'_, ChatResult<()>> {
        Box::pin(async move { self.store.delete_room(&room, now_ms()).await })
    }

    fn files_to_remove(&self, limit: u32) -> BoxFuture<'_, ChatResult<Vec<String>>> {
        Box::pin(async move {
            self.store
                .files_to_remove(limit.min(MAX_FILES_PER_CALL))
                .await
        })
    }

    fn files_removed(&self, files: Vec<String>) -> BoxFuture<'_, ChatResult<()>> {
        Box::pin(async move {
            if files.len() > MAX_FILES_PER_CALL as usize {
                return Err(ChatError::invalid(
                    "invalid_request",
                    format!("at most {MAX_FILES_PER_CALL} files per call"),
                ));
            }
            self.store.files_removed(&files).await
        })
    }
}

impl ChatService {
    /// Validates, stores (a `chat.persist` span), publishes (the bus's producer span).
    async fn store_and_publish(&self, req: SendRequest) -> ChatResult<Sent> {
        validate::action(&req.action)?;
        validate::client_id(&req.client_id)?;
        if req.room.is_empty() || req.sender_id.is_empty() {
            return Err(ChatError::invalid(
                "invalid_request",
                "room and sender are required",
            ));
        }
        // Store and publish under the room's stripe lock: this replica publishes a
        // room's entries in the order they were numbered, so gateways rarely see
        // a gap they must read from history.
        let _ordered = self.stripes[stripe(&req.room)].lock().await;
        let persist = tracing::info_span!(
            "chat.persist",
            otel.kind = "client",
            db.system.name = self.store.system(),
            db.operation.name = "INSERT",
        );
        match self
            .store
            .append(&req, now_ms())
            .instrument(persist)
            .await?
        {
            Stored::New(entry) => {
                tracing::Span::current().record("seq", entry.seq);
                self.publish(entry.clone()).await;
                Ok(Sent {
                    entry,
                    duplicate: false,
                })
            }
            Stored::Duplicate(entry) => Ok(Sent {
                entry,
                duplicate: true,
            }),
        }
    }
}
