//! The bus inside one process: a broadcast channel of every entry; each feed keeps the
//! rooms it is subscribed to.

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::{broadcast, mpsc};

use super::{Delivery, FeedCommand, FeedEvent};
use crate::api::ChatEntry;

#[derive(Clone)]
pub struct MemoryBus {
    entries: broadcast::Sender<Delivery>,
}

impl MemoryBus {
    pub(super) fn new() -> Self {
        Self {
            entries: broadcast::channel(8192).0,
        }
    }

    pub(super) fn publish(&self, entry: &ChatEntry, traceparent: Option<String>) {
        let _ = self.entries.send(Delivery {
            entry: Arc::new(entry.clone()),
            traceparent,
        });
    }
}

pub(super) async fn run_feed(
    bus: MemoryBus,
    mut commands: mpsc::UnboundedReceiver<FeedCommand>,
    events: mpsc::Sender<FeedEvent>,
) {
    let mut entries = bus.entries.subscribe();
    let mut rooms = HashSet::new();
    loop {
        let event = tokio::select! {
            command = commands.recv() => {
                match command {
                    Some(FeedCommand::Subscribe(room)) => { rooms.insert(room); }
                    Some(FeedCommand::Unsubscribe(room)) => { rooms.remove(&room); }
                    None => return,
                }
                continue;
            }
            entry = entries.recv() => match entry {
                Ok(delivery) if rooms.contains(&delivery.entry.room) => FeedEvent::Entry(delivery),
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(_)) => FeedEvent::Resync,
                Err(broadcast::error::RecvError::Closed) => return,
            },
        };
        if events.send(event).await.is_err() {
            return;
        }
    }
}
