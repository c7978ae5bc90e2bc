//! The bus across processes: Redis sharded pub/sub. Publishing goes through a
//! reconnecting connection manager; each feed holds one RESP3 connection whose pushes
//! carry its rooms' entries, and re-subscribes everything (then asks for a resync)
//! after Redis comes back. A feed holds at most [`FEED_BACKLOG`] entries its gateway
//! has not taken yet; it drops the rest and asks for a resync.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use anyhow::Context as _;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{AsyncConnectionConfig, PushInfo, PushKind, Value};
use tokio::sync::{OnceCell, mpsc};

use super::{Delivery, FeedCommand, FeedEvent};
use crate::api::ChatEntry;

/// A client whose connections set TCP_NODELAY: publishes from concurrent sends share
/// one connection, and Nagle's algorithm would hold each until the previous is
/// acknowledged.
fn nodelay_client(url: &str) -> anyhow::Result<redis::Client> {
    let info = redis::IntoConnectionInfo::into_connection_info(url)
        .context("invalid Redis URL")?
        .set_tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true));
    Ok(redis::Client::open(info)?)
}

/// The sharded channel of a room's chat.
pub fn channel_for(room: &str) -> String {
    format!("confer:chat:{room}")
}

/// Entries a feed's connection holds while the feed is still handing earlier ones to
/// its gateway. A gateway that falls further behind than this (a burst its hub cannot
/// keep up with) has the rest dropped and is told to resync, so it reads them from
/// history: its memory stays bounded, and nothing is lost.
pub(super) const FEED_BACKLOG: usize = 16_384;

#[derive(Clone)]
pub struct RedisBus {
    client: redis::Client,
    push_client: redis::Client,
    publisher: Arc<OnceCell<ConnectionManager>>,
    feed_backlog: usize,
}

/// What a feed connection hands its feed, in the order it came.
enum Pushed {
    Push(PushInfo),
    /// This many pushes were dropped here: the feed was [`FEED_BACKLOG`] behind.
    Gap(u64),
}

/// A feed connection's pushes, and how many were dropped since the last gap marked
/// among them.
struct Pushes {
    received: mpsc::Receiver<Pushed>,
    unmarked: Arc<AtomicU64>,
}

impl RedisBus {
    /// A feed holds at most `feed_backlog` entries it has not handed on.
    pub(super) fn new(url: &str, feed_backlog: usize) -> anyhow::Result<Self> {
        let client = nodelay_client(url)?;
        let separator = if url.contains('?') { '&' } else { '?' };
        let push_client = nodelay_client(&format!("{url}{separator}protocol=resp3"))?;
        Ok(Self {
            client,
            push_client,
            publisher: Arc::new(OnceCell::new()),
            feed_backlog: feed_backlog.max(1),
        })
    }

    async fn publisher(&self) -> anyhow::Result<ConnectionManager> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)));
        let manager = self
            .publisher
            .get_or_try_init(|| ConnectionManager::new_with_config(self.client.clone(), config))
            .await
            .context("cannot reach Redis")?;
        Ok(manager.clone())
    }

    /// One pipeline of `SPUBLISH`es, in order.
    pub(super) async fn publish_all(
        &self,
        messages: Vec<(String, &ChatEntry, Option<String>)>,
    ) -> anyhow::Result<()> {
        let mut pipeline = redis::pipe();
        for (channel, entry, traceparent) in messages {
            pipeline
                .cmd("SPUBLISH")
                .arg(channel)
                .arg(encode(entry, traceparent)?);
        }
        let mut conn = self.publisher().await?;
        pipeline
            .exec_async(&mut conn)
            .await
            .context("SPUBLISH failed")?;
        Ok(())
    }

    async fn connect_feed(&self) -> anyhow::Result<(MultiplexedConnection, Pushes)> {
        let (pushes, received) = mpsc::channel(self.feed_backlog);
        let unmarked = Arc::new(AtomicU64::new(0));
        let feed_unmarked = Arc::clone(&unmarked);
        // The connection hands each push over without waiting: one that finds the
        // backlog full is dropped and counted, and the gap goes into the queue ahead of
        // the next push that fits, where the entries are missing, so the feed asks for
        // a resync right there (not before entries still queued ahead of the gap).
        let send = move |push: PushInfo| {
            let dropped = unmarked.load(Relaxed);
            if dropped > 0 {
                match pushes.try_send(Pushed::Gap(dropped)) {
                    Ok(()) => unmarked.store(0, Relaxed),
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        unmarked.fetch_add(1, Relaxed);
                        return Ok(());
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => return Err(()),
                }
            }
            match pushes.try_send(Pushed::Push(push)) {
                Ok(()) => Ok(()),
                Err(mpsc::error::TrySendError::Full(_)) => {
                    unmarked.fetch_add(1, Relaxed);
                    Ok(())
                }
                Err(mpsc::error::TrySendError::Closed(_)) => Err(()),
            }
        };
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_push_sender(send);
        let conn = self
            .push_client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .context("cannot reach Redis")?;
        Ok((
            conn,
            Pushes {
                received,
                unmarked: feed_unmarked,
            },
        ))
    }
}

/// One `SSUBSCRIBE`/`SUNSUBSCRIBE` per room: the server confirms each channel with one
/// push, which the connection takes as the command's reply.
async fn shard_command(
    conn: &mut MultiplexedConnection,
    command: &str,
    room: &str,
) -> redis::RedisResult<()> {
    redis::cmd(command)
        .arg(channel_for(room))
        .exec_async(conn)
        .await
}

pub(super) async fn run_feed(
    bus: Arc<RedisBus>,
    mut commands: mpsc::UnboundedReceiver<FeedCommand>,
    events: mpsc::Sender<FeedEvent>,
) {
    let mut rooms: HashSet<String> = HashSet::new();
    let mut backoff = Duration::from_millis(50);
    loop {
        let connected = async {
            let (mut conn, pushes) = bus.connect_feed().await?;
            for room in &rooms {
                shard_command(&mut conn, "SSUBSCRIBE", room).await?;
            }
            anyhow::Ok((conn, pushes))
        }
        .await;
        let (mut conn, mut pushes) = match connected {
            Ok(connected) => connected,
            Err(err) => {
                tracing::warn!(error = %err, "chat feed cannot subscribe; retrying");
                // Keep taking commands while Redis is away, so none are lost.
                let deadline = tokio::time::sleep(backoff);
                tokio::pin!(deadline);
                loop {
                    tokio::select! {
                        () = &mut deadline => break,
                        command = commands.recv() => match command {
                            Some(command) => apply(&mut rooms, &command),
                            None => return,
                        },
                    }
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        backoff = Duration::from_millis(50);
        if events.send(FeedEvent::Resync).await.is_err() {
            return;
        }
        loop {
            tokio::select! {
                command = commands.recv() => {
                    let Some(command) = command else { return };
                    apply(&mut rooms, &command);
                    let result = match &command {
                        FeedCommand::Subscribe(room) => shard_command(&mut conn, "SSUBSCRIBE", room).await,
                        FeedCommand::Unsubscribe(room) => shard_command(&mut conn, "SUNSUBSCRIBE", room).await,
                    };
                    if let Err(err) = result {
                        tracing::warn!(error = %err, "chat feed lost Redis; reconnecting");
                        break;
                    }
                }
                pushed = pushes.received.recv() => {
                    let push = match pushed {
                        None => break,
                        Some(Pushed::Gap(dropped)) => {
                            if !resync(&pushes, dropped, &events).await {
                                return;
                            }
                            continue;
                        }
                        Some(Pushed::Push(push)) => push,
                    };
                    match push.kind {
                        PushKind::SMessage => {
                            if let Some(delivery) = decode(&push.data)
                                && rooms.contains(&delivery.entry.room)
                                && events.send(FeedEvent::Entry(delivery)).await.is_err()
                            {
                                return;
                            }
                        }
                        PushKind::Disconnection => {
                            tracing::warn!("chat feed lost Redis; reconnecting");
                            break;
                        }
                        _ => {}
                    }
                    // Everything queued ahead of a gap no later push has marked yet
                    // (the burst that overflowed ended) is handed on: the gap is here.
                    if pushes.received.is_empty() {
                        let dropped = pushes.unmarked.swap(0, Relaxed);
                        if dropped > 0 && !resync(&pushes, dropped, &events).await {
                            return;
                        }
                    }
                }
            }
        }
    }
}

/// Asks for a resync where `dropped` pushes are missing (the feed fell
/// [`FEED_BACKLOG`] behind); false once the gateway no longer listens.
async fn resync(pushes: &Pushes, dropped: u64, events: &mpsc::Sender<FeedEvent>) -> bool {
    tracing::warn!(
        dropped,
        backlog = pushes.received.max_capacity(),
        "chat feed fell behind; reading the entries it dropped from history"
    );
    events.send(FeedEvent::Resync).await.is_ok()
}

fn apply(rooms: &mut HashSet<String>, command: &FeedCommand) {
    match command {
        FeedCommand::Subscribe(room) => {
            rooms.insert(room.clone());
        }
        FeedCommand::Unsubscribe(room) => {
            rooms.remove(room);
        }
    }
}

/// The entry's JSON, with the publish's `traceparent` beside its fields (readers that
/// do not know the key ignore it).
fn encode(entry: &ChatEntry, traceparent: Option<String>) -> anyhow::Result<String> {
    let mut value = serde_json::to_value(entry)?;
    if let (Some(traceparent), Some(object)) = (traceparent, value.as_object_mut()) {
        object.insert("traceparent".into(), traceparent.into());
    }
    Ok(value.to_string())
}

/// `smessage` pushes are `[channel, payload]`; anything else is ignored. A
/// `traceparent` that is not valid W3C trace context is dropped.
fn decode(data: &[Value]) -> Option<Delivery> {
    let payload = match data.get(1)? {
        Value::BulkString(bytes) => bytes.as_slice(),
        _ => return None,
    };
    let parsed = serde_json::from_slice::<serde_json::Value>(payload).and_then(|mut value| {
        let traceparent = value
            .as_object_mut()
            .and_then(|object| object.remove("traceparent"))
            .and_then(|tp| tp.as_str().map(str::to_owned))
            .filter(|tp| confer_proto::signal::is_traceparent(tp));
        let entry = serde_json::from_value(value)?;
        Ok(Delivery {
            entry: Arc::new(entry),
            traceparent,
        })
    });
    match parsed {
        Ok(delivery) => Some(delivery),
        Err(err) => {
            tracing::warn!(error = %err, "undecodable chat entry on the bus");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::api::EntryKind;

    fn push(payload: Vec<u8>) -> Vec<Value> {
        vec![
            Value::BulkString(b"confer:chat:t/r".to_vec()),
            Value::BulkString(payload),
        ]
    }

    proptest! {
        /// Whatever arrives on a channel, the feed reads an entry or skips it.
        #[test]
        fn any_payload_decodes_or_is_skipped(payload in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&push(payload));
        }

        #[test]
        fn published_entries_read_back(seq in 1u64.., text in ".{0,200}", reply_to in any::<u64>()) {
            let entry = ChatEntry {
                room: "t/r".into(),
                seq,
                kind: EntryKind::Text,
                sender_id: "PA_1".into(),
                sender_name: "Ada".into(),
                sender_identity: "ada".into(),
                text,
                client_id: "c-1".into(),
                reply_to,
                target_seq: 0,
                sent_at_ms: 1,
                edited: false,
                deleted: false,
                file_type: String::new(),
                file_size: 0,
            };
            let traced = Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned());
            for traceparent in [None, traced] {
                let payload = encode(&entry, traceparent.clone())
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                let delivery = decode(&push(payload.into_bytes())).expect("decodes");
                prop_assert_eq!(&*delivery.entry, &entry);
                prop_assert_eq!(delivery.traceparent, traceparent);
            }
        }
    }

    #[test]
    fn other_shapes_are_skipped() {
        assert!(decode(&[]).is_none());
        assert!(decode(&[Value::Int(1), Value::Int(2)]).is_none());
        assert!(decode(&push(b"{\"room\": 1}".to_vec())).is_none());
    }

    #[test]
    fn a_forged_traceparent_is_dropped_and_the_entry_kept() {
        let payload = br#"{"room":"t/r","seq":3,"kind":"text","sender_id":"PA_1","sender_name":"Ada","text":"hi","client_id":"","reply_to":0,"target_seq":0,"sent_at_ms":1,"edited":false,"deleted":false,"file_type":"","file_size":0,"traceparent":"not a trace"}"#;
        let delivery = decode(&push(payload.to_vec())).expect("the entry decodes");
        assert_eq!(delivery.entry.seq, 3);
        assert_eq!(delivery.traceparent, None);
    }
}
