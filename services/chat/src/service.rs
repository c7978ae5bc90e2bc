//! The chat service: validate, then store and publish ([`Pipeline`]).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tracing::Instrument as _;

use crate::api::{BoxFuture, ChatApi, HistoryPage, Page, Retention, SendRequest, Sent};
use crate::bus::Bus;
use crate::error::{ChatError, ChatResult};
use crate::pipeline::Pipeline;
use crate::stats::ChatStats;
use crate::store::{Store, Stored};
use crate::validate;

/// How often entries past their room's retention are deleted.
const EXPIRE_EVERY: Duration = Duration::from_secs(60);

/// The most files one removal call lists or acknowledges.
const MAX_FILES_PER_CALL: u32 = 500;

#[derive(Clone)]
pub struct ChatService {
    store: Store,
    bus: Bus,
    pipeline: Pipeline,
    stats: ChatStats,
}

impl ChatService {
    /// A service storing and publishing through its own task on the current tokio
    /// runtime ([`Pipeline`]).
    pub fn new(store: Store, bus: Bus) -> Self {
        let stats = ChatStats::default();
        Self {
            pipeline: Pipeline::start(store.clone(), bus.clone(), stats.clone()),
            store,
            bus,
            stats,
        }
    }

    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    /// How the history's connection pool is used now, for `/metrics`.
    pub fn pool_use(&self) -> confer_metrics::PoolUse {
        self.store.pool_use()
    }

    pub fn stats(&self) -> &ChatStats {
        &self.stats
    }

    /// Deletes the entries older than their room's retention; returns how many.
    pub async fn expire(&self) -> ChatResult<u64> {
        let expired = self
            .store
            .expire(now_ms())
            .await
            .inspect_err(|_| self.stats.expiry_failed())?;
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

    fn retention(&self, room: String) -> BoxFuture<'_, ChatResult<Retention>> {
        Box::pin(async move { self.store.retention(&room).await })
    }

    fn clear_retention(&self, room: String) -> BoxFuture<'_, ChatResult<()>> {
        Box::pin(async move { self.store.clear_retention(&room).await })
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
    /// Validates, then stores (a `chat.persist` span) and publishes (the bus's producer
    /// span) through the pipeline.
    async fn store_and_publish(&self, req: SendRequest) -> ChatResult<Sent> {
        validate::action(&req.action)?;
        validate::client_id(&req.client_id)?;
        if req.room.is_empty() || req.sender_id.is_empty() {
            return Err(ChatError::invalid(
                "invalid_request",
                "room and sender are required",
            ));
        }
        match self.pipeline.submit(req, now_ms()).await? {
            Stored::New(entry) => Ok(Sent {
                entry,
                duplicate: false,
            }),
            Stored::Duplicate(entry) => Ok(Sent {
                entry,
                duplicate: true,
            }),
        }
    }
}
