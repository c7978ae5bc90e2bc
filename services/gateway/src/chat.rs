//! The gateway's side of chat: one bus subscription per room this gateway has members
//! in, fanned out in-process to the room's sessions, in sequence order with nothing
//! missing. The bus may drop, duplicate or reorder entries (Redis restarts, concurrent
//! batches or chat replicas); the history store never does. So the hub keeps each
//! room's order ([`RoomOrder`]): it drops what it has delivered, holds an entry that
//! skips ahead until the missing ones arrive, and reads them from history only when
//! they do not come within the reorder wait, or after a [`FeedEvent::Resync`]. A
//! reordering never makes the hub wait on the chat service.
//!
//! Sessions filter once more (`Session::on_event`): a joiner's history page and the
//! live stream may overlap by a few entries.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use confer_chat::{Bus, ChatApi, ChatEntry, ChatResult, Delivery, Feed, FeedEvent, Page};
use confer_proto::signal::{
    ChatMessage, ServerMessage, chat_text, encode_chat_entry, server_message::Msg,
};
use futures_util::StreamExt as _;
use tokio::sync::mpsc;

use crate::AppState;
use crate::chat_order::{Released, RoomOrder};
use crate::chat_pace::{HandOff, RoomPacer};
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
    /// Its live entries, in order.
    order: RoomOrder,
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

/// Rooms whose history a resync reads at once.
const CATCH_UP_READS: usize = 16;

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
                order: RoomOrder::default(),
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
            && chat.order.last().is_none()
        {
            // Entries published before the read are in the page (stored before
            // published); the ones published since were dropped and are read next.
            chat.order.start(newest);
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

    /// Takes a live `entry` into its room's order.
    fn admit(&self, entry: &ChatEntry) -> Released {
        match self.lock().get_mut(&entry.room) {
            Some(chat) => chat.order.admit(entry, Instant::now()),
            None => Released::default(),
        }
    }

    /// Reads `room`'s gap from history if it is still open and its wait is over;
    /// returns whether it read.
    async fn fill_gap(&self, room: &str) -> (Released, bool) {
        let gap = self
            .lock()
            .get(room)
            .and_then(|chat| chat.order.gap(Instant::now()));
        let Some((after, until)) = gap else {
            return (Released::default(), false);
        };
        let entries = self.read_after(room, after, until).await;
        (self.fill(room, entries), true)
    }

    /// Entries read from `room`'s history, into its order.
    fn fill(&self, room: &str, entries: Vec<ChatEntry>) -> Released {
        match self.lock().get_mut(room) {
            Some(chat) => chat.order.fill(entries, Instant::now()),
            None => Released::default(),
        }
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

    /// After a resync: every room's entries after its last seq (or only `room`'s),
    /// [`CATCH_UP_READS`] rooms' histories read at once: live entries wait while the
    /// hub catches up, and a gateway in many rooms should not read them one by one.
    async fn catch_up(&self, only: Option<&str>) -> Vec<(String, Released)> {
        let rooms: Vec<(String, u64)> = self
            .lock()
            .iter()
            .filter(|(room, _)| only.is_none_or(|only| only == room.as_str()))
            .filter_map(|(room, chat)| Some((room.clone(), chat.order.last()?)))
            .collect();
        futures_util::stream::iter(rooms)
            .map(|(room, last)| async move {
                let entries = self.read_after(&room, last, u64::MAX).await;
                let released = self.fill(&room, entries);
                (room, released)
            })
            .buffered(CATCH_UP_READS)
            .collect()
            .await
    }
}

/// What wakes the hub.
enum HubInput {
    Bus(FeedEvent),
    /// A room's first member has its page: read what was published meanwhile.
    CatchUp(String),
    /// A room's gap may have outlasted its wait.
    Gap(String),
}

/// Bus events the hub takes in one pass at most. Entries published together (a
/// batch's pipeline) then reach each member in one write.
const PASS: usize = 64;

/// The hub's loop: bus events in, ordered deliveries to local sessions out.
pub(crate) async fn run_hub(state: Weak<AppState>, mut inputs: HubInputs) {
    let mut wakeups = Wakeups::new();
    let mut pacer = RoomPacer::default();
    let (written_tx, mut written) = mpsc::unbounded_channel();
    loop {
        let next_wakeup = wakeups.peek().map(|Reverse((at, _))| *at);
        let next_due = pacer.next_due();
        let input = tokio::select! {
            event = inputs.events.recv() => event.map(HubInput::Bus),
            room = inputs.catch_up.recv() => room.map(HubInput::CatchUp),
            () = sleep_until(next_wakeup) => wakeups.pop().map(|Reverse((_, room))| HubInput::Gap(room)),
            () = sleep_until(next_due) => {
                let Some(state) = state.upgrade() else { return };
                for due in pacer.take_due(Instant::now()) {
                    hand_off(&state, due, &written_tx);
                }
                continue;
            }
            Some(done) = written.recv() => {
                let Some(state) = state.upgrade() else { return };
                state.metrics.chat_write.observe(done.took);
                let turns = pacer.written(&done.room, done.id, Instant::now());
                state.metrics.chat_rests.store(pacer.rests(), Relaxed);
                for turn in turns {
                    hand_off(&state, turn, &written_tx);
                }
                continue;
            }
        };
        let Some(input) = input else { return };
        let Some(state) = state.upgrade() else { return };
        let mut pass = Pass::default();
        let mut next = Some(input);
        let mut taken = 0;
        while let Some(input) = next.take() {
            take(
                &state,
                input,
                inputs.messaging_system,
                &mut pass,
                &mut wakeups,
            )
            .await;
            taken += 1;
            if taken < PASS {
                next = inputs.events.try_recv().ok().map(HubInput::Bus);
            }
        }
        pass.push(&state, &mut pacer, &written_tx);
    }
}

/// Rooms whose gap is to be looked at, by when.
type Wakeups = BinaryHeap<Reverse<(Instant, String)>>;

/// Takes one input into the pass: what it releases is delivered with the pass, and a
/// gap it leaves open is looked at again when its wait is over.
async fn take(
    state: &AppState,
    input: HubInput,
    messaging_system: &'static str,
    pass: &mut Pass,
    wakeups: &mut Wakeups,
) {
    // Entries read from history (a gap, a resync, a catch-up) are not fan-out latency.
    let mut settle = |room: &str, released: Released, live: bool| {
        if let Some(at) = released.wake_at {
            wakeups.push(Reverse((at, room.to_owned())));
        }
        pass.add(state, released, live);
    };
    match input {
        HubInput::Bus(FeedEvent::Entry(delivery)) => {
            let span = consumer_span(&delivery, messaging_system);
            let released = span.in_scope(|| state.chat.admit(&delivery.entry));
            settle(&delivery.entry.room, released, true);
        }
        HubInput::Bus(FeedEvent::Resync) => {
            state.metrics.chat_resyncs.fetch_add(1, Relaxed);
            for (room, released) in state.chat.catch_up(None).await {
                settle(&room, released, false);
            }
        }
        HubInput::CatchUp(room) => {
            for (room, released) in state.chat.catch_up(Some(&room)).await {
                settle(&room, released, false);
            }
        }
        HubInput::Gap(room) => {
            let (released, read) = state.chat.fill_gap(&room).await;
            if read {
                state.metrics.chat_gap_fills.fetch_add(1, Relaxed);
            }
            settle(&room, released, false);
        }
    }
}

/// The entries one pass of the hub delivers, per room in order.
#[derive(Default)]
struct Pass {
    rooms: Vec<(String, Vec<Arc<ChatPush>>)>,
    index: HashMap<String, usize>,
}

impl Pass {
    fn add(&mut self, state: &AppState, released: Released, live: bool) {
        state
            .metrics
            .chat_reordered
            .fetch_add(released.reordered as u64, Relaxed);
        for entry in released.deliver {
            state.metrics.chat_delivered.fetch_add(1, Relaxed);
            let at = match self.index.get(&entry.room) {
                Some(&at) => at,
                None => {
                    self.index.insert(entry.room.clone(), self.rooms.len());
                    self.rooms.push((entry.room.clone(), Vec::new()));
                    self.rooms.len() - 1
                }
            };
            self.rooms[at]
                .1
                .push(Arc::new(ChatPush::new(to_message(entry), live)));
        }
    }

    /// Hands each room's entries to its local sessions, now or when the room's last
    /// hand-off is written.
    fn push(
        self,
        state: &AppState,
        pacer: &mut RoomPacer<Arc<ChatPush>>,
        written: &mpsc::UnboundedSender<Written>,
    ) {
        let now = Instant::now();
        for (room, pushes) in self.rooms {
            let lanes = state.rooms.lanes(&room);
            for ready in pacer.offer(&room, lanes, pushes, now) {
                hand_off(state, ready, written);
            }
        }
    }
}

/// Hands a room's entries to its local sessions in one lane (every local session of a
/// room of up to 64); a live entry's time from stored to here is the gateway's fan-out
/// latency. The lane's writers report when they have written them all.
fn hand_off(
    state: &AppState,
    ready: HandOff<Arc<ChatPush>>,
    written: &mpsc::UnboundedSender<Written>,
) {
    let now_ms = unix_ms();
    for push in ready.entries.iter().filter(|push| push.live) {
        state.metrics.chat_fanout.observe(Duration::from_millis(
            now_ms.saturating_sub(push.sent_at_ms()),
        ));
    }
    let writes = Arc::new(HandOffWrites::new(ready.room, ready.id, written.clone()));
    state
        .rooms
        .push_chat(&writes.room, ready.lane, &ready.entries, &writes);
}

/// A hand-off's writes: each member's writer holds a clone until it has written the
/// hand-off's entries, and the last one dropped tells the hub.
pub(crate) struct HandOffWrites {
    room: String,
    id: u64,
    at: Instant,
    report: mpsc::UnboundedSender<Written>,
}

impl HandOffWrites {
    /// Hand-off `id` of `room`, from now; `report` hears when it is written.
    pub(crate) fn new(room: String, id: u64, report: mpsc::UnboundedSender<Written>) -> Self {
        Self {
            room,
            id,
            at: Instant::now(),
            report,
        }
    }
}

impl Drop for HandOffWrites {
    fn drop(&mut self) {
        let _ = self.report.send(Written {
            room: std::mem::take(&mut self.room),
            id: self.id,
            took: self.at.elapsed(),
        });
    }
}

/// A hand-off written by all its lane's writers.
pub(crate) struct Written {
    room: String,
    id: u64,
    /// From the hand-off to its last write.
    took: Duration,
}

/// Sleeps until `at`; forever without one.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
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
    /// The entry's JSON object (for a `chat_batch`, the objects of the entries that
    /// go out together), and its `chat` message as a WebSocket frame.
    encoded: Option<(String, Bytes)>,
    /// Published on the bus (not read from history to fill a gap or catch up).
    live: bool,
}

impl ChatPush {
    pub(crate) fn new(entry: ChatMessage, live: bool) -> Self {
        let personal = !entry.file_type.is_empty();
        let encoded = (!personal).then(|| {
            let object = encode_chat_entry(&entry);
            let frame = crate::socket::text_frames([chat_text(&object).as_str()]);
            (object, frame)
        });
        Self {
            message: message(Msg::Chat(entry)),
            encoded,
            live,
        }
    }

    fn entry(&self) -> Option<&ChatMessage> {
        match &self.message.msg {
            Some(Msg::Chat(entry)) => Some(entry),
            _ => None,
        }
    }

    pub(crate) fn seq(&self) -> u64 {
        self.entry().map_or(0, |entry| entry.seq)
    }

    fn sent_at_ms(&self) -> u64 {
        self.entry().map_or(0, |entry| entry.sent_at_ms)
    }

    pub(crate) fn message(&self) -> &ServerMessage {
        &self.message
    }

    /// Its `chat` message as a WebSocket frame, when encoded once for every member.
    pub(crate) fn framed(&self) -> Option<&Bytes> {
        self.encoded.as_ref().map(|(_, frame)| frame)
    }

    /// Its JSON object, when encoded once for every member.
    pub(crate) fn encoded_entry(&self) -> Option<&str> {
        self.encoded.as_ref().map(|(object, _)| object.as_str())
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

    use confer_chat::api::BoxFuture;
    use confer_chat::{ChatAction, ChatService, HistoryPage, Retention, SendRequest, Sent};

    use super::*;

    /// The chat service, with each history read after a seq held a moment, and the
    /// most such reads at once counted.
    struct SlowHistory {
        inner: ChatService,
        reading: AtomicUsize,
        most: AtomicUsize,
    }

    impl ChatApi for SlowHistory {
        fn send(&self, req: SendRequest) -> BoxFuture<'_, ChatResult<Sent>> {
            self.inner.send(req)
        }
        fn history(&self, room: String, page: Page) -> BoxFuture<'_, ChatResult<HistoryPage>> {
            Box::pin(async move {
                if !matches!(page, Page::After { .. }) {
                    return self.inner.history(room, page).await;
                }
                let now = self.reading.fetch_add(1, SeqCst) + 1;
                self.most.fetch_max(now, SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                let page = self.inner.history(room, page).await;
                self.reading.fetch_sub(1, SeqCst);
                page
            })
        }
        fn set_retention(&self, room: String, secs: u64) -> BoxFuture<'_, ChatResult<()>> {
            self.inner.set_retention(room, secs)
        }
        fn retention(&self, room: String) -> BoxFuture<'_, ChatResult<Retention>> {
            self.inner.retention(room)
        }
        fn clear_retention(&self, room: String) -> BoxFuture<'_, ChatResult<()>> {
            self.inner.clear_retention(room)
        }
        fn delete_room(&self, room: String) -> BoxFuture<'_, ChatResult<()>> {
            self.inner.delete_room(room)
        }
        fn files_to_remove(&self, limit: u32) -> BoxFuture<'_, ChatResult<Vec<String>>> {
            self.inner.files_to_remove(limit)
        }
        fn files_removed(&self, files: Vec<String>) -> BoxFuture<'_, ChatResult<()>> {
            self.inner.files_removed(files)
        }
    }

    #[tokio::test]
    async fn a_resync_reads_its_rooms_histories_several_at_once_and_misses_none()
    -> anyhow::Result<()> {
        let api = Arc::new(SlowHistory {
            inner: confer_chat::connect("sqlite::memory:", None).await?,
            reading: AtomicUsize::new(0),
            most: AtomicUsize::new(0),
        });
        let (hub, _inputs) = ChatHub::start(ChatLink {
            api: api.clone(),
            bus: Bus::memory(),
            stats: None,
        });
        let rooms: Vec<String> = (0..40).map(|r| format!("t/r{r}")).collect();
        for room in &rooms {
            hub.enter(room, 10).await?;
            // Stored after the member's page, and not heard from the bus.
            for n in 0..2 {
                api.send(SendRequest {
                    room: room.clone(),
                    sender_id: "ada".into(),
                    sender_name: "Ada".into(),
                    sender_identity: "ada".into(),
                    sender_is_host: false,
                    client_id: format!("m{n}"),
                    action: ChatAction::Text {
                        text: format!("#{n}"),
                        reply_to: 0,
                    },
                })
                .await?;
            }
        }

        let caught = hub.catch_up(None).await;

        let mut caught_rooms: Vec<&str> = caught.iter().map(|(room, _)| room.as_str()).collect();
        caught_rooms.sort_unstable();
        let mut expected: Vec<&str> = rooms.iter().map(String::as_str).collect();
        expected.sort_unstable();
        assert_eq!(caught_rooms, expected);
        for (room, released) in &caught {
            let seqs: Vec<u64> = released.deliver.iter().map(|e| e.seq).collect();
            assert_eq!(seqs, [1, 2], "{room}");
        }
        let most = api.most.load(SeqCst);
        assert!(
            (2..=CATCH_UP_READS).contains(&most),
            "{most} history reads at once"
        );
        Ok(())
    }
}
