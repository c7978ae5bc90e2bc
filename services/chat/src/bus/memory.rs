//! The bus inside one process: a broadcast channel of every entry; each feed keeps the
//! rooms it is subscribed to.

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::{broadcast, mpsc};

use super::{FeedCommand, FeedEvent};
use crate::api::ChatEntry;

#[derive(Clone)]
pub struct MemoryBus {
    entries: broadcast::Sender<Arc<ChatEntry>>,
}

impl MemoryBus {
    pub(super) fn new() -> Self {
        Self {
            entries: broadcast::channel(8192).0,
        }
    }

    pub(super) fn publish(&self, entry: &ChatEntry) {
        let _ = self.entries.send(Arc::new(entry.clone()));
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
                Ok(entry) if rooms.contains(&entry.room) => FeedEvent::Entry(entry),
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
