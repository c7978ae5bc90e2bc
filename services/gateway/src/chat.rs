//! The gateway's side of chat: one bus subscription per room this gateway has members
//! in, fanned out in-process to the room's sessions, in sequence order with nothing
//! missing. The bus may drop, duplicate or reorder entries (Redis restarts, concurrent
//! senders on different chat replicas); the history store never does. So the hub keeps
//! the last seq it delivered per room, drops what it has seen, and when an entry skips
//! ahead, or after a [`FeedEvent::Resync`], reads the missing ones from history first.
//!
//! Sessions filter once more (`Session::on_event`): a joiner's history page and the
//! live stream may overlap by a few entries.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use axum::extract::ws::Utf8Bytes;
use confer_chat::{Bus, ChatApi, ChatEntry, ChatResult, Delivery, Feed, FeedEvent, Page};
use confer_proto::signal::{
    ChatMessage, ServerMessage, encode_server_message, server_message::Msg,
};
use tokio::sync::mpsc;
use tracing::Instrument as _;

use crate::AppState;
use crate::rooms::message;

/// What the gateway talks to for chat: the chat service's API, and the bus its entries
/// are published on.
#[derive(Clone)]
pub struct ChatLink {
    pub api: Arc<dyn ChatApi>,
    pub bus: Bus,
    /// The chat service's counters, when it runs in this process (shown on the
    /// gateway's `/metrics`).
    pub stats: Option<confer_chat::ChatStats>,
}

impl ChatLink {
    /// A chat service in this process (`confer dev`, tests).
    pub fn local(service: confer_chat::ChatService) -> Self {
        Self {
            bus: service.bus().clone(),
            stats: Some(service.stats().clone()),
            api: Arc::new(service),
        }
    }
}

struct RoomChat {
    /// Local sessions in the room.
    members: usize,
    /// The last seq delivered to them.
    last_seq: u64,
}

pub(crate) struct ChatHub {
    pub(crate) api: Arc<dyn ChatApi>,
    pub(crate) stats: Option<confer_chat::ChatStats>,
    feed: Feed,
    rooms: Mutex<HashMap<String, RoomChat>>,
    /// Rooms whose entries after their last seq the hub loop should read: a room's
    /// first member drops what is published while its first page is being read.
    catch_up: mpsc::UnboundedSender<String>,
}

/// What the hub loop reads: bus events, and rooms to catch up.
pub(crate) struct HubInputs {
    events: mpsc::Receiver<FeedEvent>,
    catch_up: mpsc::UnboundedReceiver<String>,
    /// `messaging.system` of the bus, for consumer spans.
    messaging_system: &'static str,
}

/// Entries read per history call while filling a gap.
const FILL_PAGE: u32 = 200;

impl ChatHub {
    pub(crate) fn start(link: ChatLink) -> (Self, HubInputs) {
        let (feed, events) = link.bus.feed();
        let messaging_system = link.bus.system();
        let (catch_up, catch_up_rx) = mpsc::unbounded_channel();
        let hub = Self {
            api: link.api,
            stats: link.stats,
            feed,
            rooms: Mutex::new(HashMap::new()),
            catch_up,
        };
        (
            hub,
            HubInputs {
                events,
                catch_up: catch_up_rx,
                messaging_system,
            },
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, RoomChat>> {
        self.rooms
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A local session entered `room` (already registered to receive its pushes);
    /// returns the room's newest entries for the session's `joined`.
    pub(crate) async fn enter(&self, room: &str, limit: u32) -> ChatResult<(Vec<ChatEntry>, bool)> {
        let first = {
            let mut rooms = self.lock();
            let chat = rooms.entry(room.to_owned()).or_insert(RoomChat {
                members: 0,
                last_seq: u64::MAX,
            });
            chat.members += 1;
            chat.members == 1
        };
        if first {
            self.feed.subscribe(room);
        }
        let page = self
            .api
            .history(room.to_owned(), Page::Before { before: 0, limit })
            .await?;
        let newest = page.entries.last().map_or(0, |e| e.seq);
        if let Some(chat) = self.lock().get_mut(room)
            && chat.last_seq == u64::MAX
        {
            // Entries published before the read are in the page (stored before
            // published); the ones published since were dropped and are read next.
            chat.last_seq = newest;
            let _ = self.catch_up.send(room.to_owned());
        }
        Ok((page.entries, page.more))
    }

    /// A local session left `room`.
    pub(crate) fn leave(&self, room: &str) {
        let mut rooms = self.lock();
        let Some(chat) = rooms.get_mut(room) else {
            return;
        };
        chat.members = chat.members.saturating_sub(1);
        if chat.members == 0 {
            rooms.remove(room);
            self.feed.unsubscribe(room);
        }
    }

    /// Takes `entry` into the room's order: the entries to deliver now, in order.
    async fn admit(&self, entry: Arc<ChatEntry>) -> Vec<ChatEntry> {
        let last = match self.lock().get(&entry.room) {
            Some(chat) if chat.last_seq != u64::MAX => chat.last_seq,
            // Not here, or its first history read is under way and will include it.
            _ => return Vec::new(),
        };
        if entry.seq <= last {
            return Vec::new();
        }
        let batch = if entry.seq == last + 1 {
            vec![(*entry).clone()]
        } else {
            self.read_after(&entry.room, last, entry.seq).await
        };
        self.advance(&entry.room, batch)
    }

    /// Entries after `last` from history, up to `until` if given.
    async fn read_after(&self, room: &str, mut last: u64, until: u64) -> Vec<ChatEntry> {
        let mut out = Vec::new();
        loop {
            let page = match self
                .api
                .history(
                    room.to_owned(),
                    Page::After {
                        after: last,
                        limit: FILL_PAGE,
                    },
                )
                .await
            {
                Ok(page) => page,
                Err(err) => {
                    tracing::warn!(room, error = %err, "cannot read chat history to fill a gap");
                    return out;
                }
            };
            let Some(newest) = page.entries.last().map(|e| e.seq) else {
                return out;
            };
            out.extend(page.entries);
            last = newest;
            if !page.more || last >= until {
                return out;
            }
        }
    }

    /// Moves the room's last seq over `batch` (dropping what was delivered meanwhile).
    fn advance(&self, room: &str, batch: Vec<ChatEntry>) -> Vec<ChatEntry> {
        let mut rooms = self.lock();
        let Some(chat) = rooms.get_mut(room) else {
            return Vec::new();
        };
        let mut fresh = Vec::with_capacity(batch.len());
        for entry in batch {
            if chat.last_seq != u64::MAX && entry.seq == chat.last_seq + 1 {
                chat.last_seq = entry.seq;
                fresh.push(entry);
            }
        }
        fresh
    }

    /// After a resync: every room's entries after its last seq (or only `room`'s).
    async fn catch_up(&self, only: Option<&str>) -> Vec<ChatEntry> {
        let rooms: Vec<(String, u64)> = self
            .lock()
            .iter()
            .filter(|(room, chat)| {
                chat.last_seq != u64::MAX && only.is_none_or(|only| only == room.as_str())
            })
            .map(|(room, chat)| (room.clone(), chat.last_seq))
            .collect();
        let mut out = Vec::new();
        for (room, last) in rooms {
            let batch = self.read_after(&room, last, u64::MAX).await;
            out.extend(self.advance(&room, batch));
        }
        out
    }
}

/// The hub's loop: bus events in, ordered deliveries to local sessions out.
pub(crate) async fn run_hub(state: Weak<AppState>, mut inputs: HubInputs) {
    loop {
        let input = tokio::select! {
            event = inputs.events.recv() => event.map(Ok),
            room = inputs.catch_up.recv() => room.map(Err),
        };
        let Some(input) = input else { return };
        let Some(state) = state.upgrade() else { return };
        // Catch-up after a resync or a gap delivers history: not fan-out latency.
        let (deliveries, span, live) = match input {
            Ok(FeedEvent::Entry(delivery)) => {
                let span = consumer_span(&delivery, inputs.messaging_system);
                let entries = state
                    .chat
                    .admit(delivery.entry)
                    .instrument(span.clone())
                    .await;
                (entries, span, true)
            }
            Ok(FeedEvent::Resync) => (
                state.chat.catch_up(None).await,
                tracing::Span::none(),
                false,
            ),
            Err(room) => (
                state.chat.catch_up(Some(&room)).await,
                tracing::Span::none(),
                false,
            ),
        };
        let _entered = span.enter();
        let now_ms = unix_ms();
        for entry in deliveries {
            state
                .metrics
                .chat_delivered
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if live {
                state
                    .metrics
                    .chat_fanout
                    .observe(std::time::Duration::from_millis(
                        now_ms.saturating_sub(entry.sent_at_ms),
                    ));
            }
            let key = entry.room.clone();
            state
                .rooms
                .push_chat(&key, &Arc::new(ChatPush::new(to_message(entry))));
        }
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// The span of handing one published entry to this gateway's members: a consumer span
/// (OpenTelemetry messaging conventions) in the trace of the send that published it.
fn consumer_span(delivery: &Delivery, messaging_system: &'static str) -> tracing::Span {
    let span = tracing::info_span!(
        "chat.process",
        otel.name = "process chat",
        otel.kind = "consumer",
        messaging.system = messaging_system,
        messaging.operation.type = "process",
        messaging.destination.name = %confer_chat::bus::channel_for(&delivery.entry.room),
        seq = delivery.entry.seq,
    );
    if let Some(parent) = delivery
        .traceparent
        .as_deref()
        .and_then(confer_telemetry::TraceContext::from_traceparent)
    {
        parent.adopt(&span);
    }
    span
}

/// A chat entry on its way to a room's local members. Encoded once for all of them,
/// unless it shares a file (each member's download link is signed for that member).
pub(crate) struct ChatPush {
    message: ServerMessage,
    encoded: Option<Utf8Bytes>,
}

impl ChatPush {
    fn new(entry: ChatMessage) -> Self {
        let personal = !entry.file_type.is_empty();
        let message = message(Msg::Chat(entry));
        let encoded = (!personal).then(|| encode_server_message(&message).into());
        Self { message, encoded }
    }

    pub(crate) fn seq(&self) -> u64 {
        match &self.message.msg {
            Some(Msg::Chat(entry)) => entry.seq,
            _ => 0,
        }
    }

    pub(crate) fn message(&self) -> &ServerMessage {
        &self.message
    }

    pub(crate) fn encoded(&self) -> Option<&Utf8Bytes> {
        self.encoded.as_ref()
    }
}

pub(crate) fn to_message(entry: ChatEntry) -> ChatMessage {
    ChatMessage {
        seq: entry.seq,
        participant_id: entry.sender_id,
        name: entry.sender_name,
        text: entry.text,
        sent_at_ms: entry.sent_at_ms,
        kind: entry.kind.as_str().to_owned(),
        client_id: entry.client_id,
        reply_to: entry.reply_to,
        target_seq: entry.target_seq,
        edited: entry.edited,
        deleted: entry.deleted,
        file_type: entry.file_type,
        file_size: entry.file_size,
        download_url: String::new(),
    }
}
