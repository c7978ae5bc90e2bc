//! Fan-out of stored entries to the gateways that hold members of a room: Redis sharded
//! pub/sub (one channel per room, `SPUBLISH` / `SSUBSCRIBE`) across processes, a
//! broadcast channel inside `confer dev`.
//!
//! A gateway runs one [`Feed`]: it subscribes to the rooms it has members in and gets
//! their entries as they are published, plus [`FeedEvent::Resync`] whenever entries may
//! have been missed (the feed reconnected, or fell behind). Delivery through the bus is
//! best effort; the history store is the truth, and a gateway that sees a gap or a
//! resync reads the missing entries from it.
//!
//! Tracing: each publish is a producer span (OpenTelemetry messaging conventions), and
//! its W3C `traceparent` travels with the entry (a `traceparent` key next to the
//! entry's fields on Redis), so the gateway's consumer span continues the send's trace.

mod memory;
mod redis;

use std::sync::Arc;

use crate::api::ChatEntry;
use tokio::sync::mpsc;

pub use self::redis::channel_for;

/// A published entry, with the trace context of the publish.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub entry: Arc<ChatEntry>,
    /// W3C `traceparent` of the producer span, when the send was traced.
    pub traceparent: Option<String>,
}

#[derive(Debug, Clone)]
pub enum FeedEvent {
    Entry(Delivery),
    /// Entries of any subscribed room may have been missed: read what follows the last
    /// one seen from history.
    Resync,
}

#[derive(Debug)]
pub(crate) enum FeedCommand {
    Subscribe(String),
    Unsubscribe(String),
}

/// Where entries are published.
#[derive(Clone)]
pub enum Bus {
    Memory(memory::MemoryBus),
    Redis(Arc<redis::RedisBus>),
}

impl Bus {
    /// The in-process bus of `confer dev`.
    pub fn memory() -> Self {
        Bus::Memory(memory::MemoryBus::new())
    }

    /// Redis at `url` (`redis://…`); connects lazily and reconnects on its own.
    pub fn redis(url: &str) -> anyhow::Result<Self> {
        Self::redis_with_backlog(url, redis::FEED_BACKLOG)
    }

    /// Redis, with each feed holding at most `feed_backlog` entries it has not handed
    /// on yet (past that, entries are dropped and the feed resyncs).
    pub fn redis_with_backlog(url: &str, feed_backlog: usize) -> anyhow::Result<Self> {
        Ok(Bus::Redis(Arc::new(redis::RedisBus::new(
            url,
            feed_backlog,
        )?)))
    }

    pub async fn publish(&self, entry: &ChatEntry) -> anyhow::Result<()> {
        self.publish_all(&[(entry, &tracing::Span::current())])
            .await
    }

    /// Publishes `entries` in their order, each under a producer span that is the child
    /// of the span beside it (the send it belongs to); on Redis as one pipeline, so a
    /// batch costs one round trip. An error means some may not have been published.
    pub async fn publish_all(
        &self,
        entries: &[(&ChatEntry, &tracing::Span)],
    ) -> anyhow::Result<()> {
        let mut spans = Vec::with_capacity(entries.len());
        let mut messages = Vec::with_capacity(entries.len());
        for (entry, parent) in entries {
            let channel = channel_for(&entry.room);
            let span = tracing::info_span!(
                parent: *parent,
                "chat.publish",
                otel.name = "publish chat",
                otel.kind = "producer",
                messaging.system = self.system(),
                messaging.operation.type = "send",
                messaging.destination.name = %channel,
            );
            let traceparent = confer_telemetry::TraceContext::traceparent(&span);
            messages.push((channel, *entry, traceparent));
            spans.push(span);
        }
        let result = match self {
            Bus::Memory(bus) => {
                for (_, entry, traceparent) in messages {
                    bus.publish(entry, traceparent);
                }
                Ok(())
            }
            Bus::Redis(bus) => bus.publish_all(messages).await,
        };
        // The spans cover the publish; they end here.
        drop(spans);
        result
    }

    /// `messaging.system` of this bus.
    pub fn system(&self) -> &'static str {
        match self {
            Bus::Memory(_) => "in_process",
            Bus::Redis(_) => "redis",
        }
    }

    /// Starts a feed (one per gateway); it runs until the returned receiver is dropped.
    pub fn feed(&self) -> (Feed, mpsc::Receiver<FeedEvent>) {
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (events, event_rx) = mpsc::channel(4096);
        match self {
            Bus::Memory(bus) => {
                tokio::spawn(memory::run_feed(bus.clone(), command_rx, events));
            }
            Bus::Redis(bus) => {
                tokio::spawn(redis::run_feed(Arc::clone(bus), command_rx, events));
            }
        }
        (Feed { commands }, event_rx)
    }
}

/// A gateway's subscriptions.
#[derive(Clone)]
pub struct Feed {
    commands: mpsc::UnboundedSender<FeedCommand>,
}

impl Feed {
    pub fn subscribe(&self, room: &str) {
        let _ = self.commands.send(FeedCommand::Subscribe(room.to_owned()));
    }

    pub fn unsubscribe(&self, room: &str) {
        let _ = self
            .commands
            .send(FeedCommand::Unsubscribe(room.to_owned()));
    }
}
