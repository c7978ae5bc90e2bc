//! One signalling connection: decode, act, answer. A bad message gets an `error`
//! reply with a code and the connection carries on.
//!
//! The session asks the room service to admit it ([`confer_room::RoomApi::join`]),
//! waits in the waiting room if told to, then creates its peer on the SFU the room is
//! placed on. Commands from the room service (admitted, host mute, removal) arrive as
//! [`SessionEvent`]s on the same task, so a session's state has one owner.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, State};
use axum::response::Response;
use confer_chat::{ChatAction, ChatError, Page, SendRequest};
use confer_proto::signal::{
    self, ClientMessage, Join, ServerMessage, client_message, server_message::Msg,
};
use confer_proto::signal::{MAX_MESSAGE_BYTES, decode_client_message};
use confer_room::api::{Admission, HostAction, JoinRequest, Removal, SelfUpdate};
use confer_room::model::{ParticipantInfo, Role, Source, TrackKind};
use confer_room::{RoomError, validate_name, validate_room};
use confer_sfu::core::TrackSource;
use confer_sfu::core::Wanted;
use confer_sfu::{ParticipantId, RoomId, SfuApi, SfuError};
use futures_util::StreamExt as _;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tracing::{Instrument as _, debug, info};

use crate::AppState;
use crate::chat;
use crate::chat_cursor::ChatCursor;
use crate::chat_rate::{ChatAllowance, OverLimit};
use crate::convert;
use crate::file_sweep;
use crate::files;
use crate::group::GroupUpdate;
use crate::socket::{Condition, MAX_WAITING, Outbound, Socket, Upgrade};

mod data;

/// Chat entries sent with `joined`.
const JOIN_HISTORY: u32 = 50;

pub(crate) async fn upgrade(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: axum::http::HeaderMap,
    ws: Upgrade,
) -> Response {
    let client = if crate::whip::is_own(&state, peer.ip(), &headers) {
        // The gateway's own session for a WHIP publisher: it names the publisher.
        crate::client_addr::forwarded(&headers).unwrap_or(peer.ip())
    } else {
        crate::client_addr::client_addr(peer.ip(), &headers, &state.config.trusted_proxies)
    };
    // Frames up to 4x the limit reach the decoder, which answers `message_too_large`;
    // larger ones close the connection at the protocol level.
    let config = WebSocketConfig::default()
        .max_message_size(Some(4 * MAX_MESSAGE_BYTES))
        .max_frame_size(Some(4 * MAX_MESSAGE_BYTES))
        .read_buffer_size(READ_BUFFER_BYTES);
    ws.on_upgrade(config, move |socket| serve(state, socket, client))
}

/// Bytes read from a client's socket per read. The WebSocket library zero-fills this
/// much before every read, so its 128 KiB default cost a 128 KiB memset per frame (a
/// tenth of the gateway's CPU under chat load) and 128 KiB per connection; signalling
/// messages are a few hundred bytes (an SDP offer a few KiB, read in a few reads).
const READ_BUFFER_BYTES: usize = 4096;

/// What reaches a session besides its client's messages.
pub(crate) enum SessionEvent {
    /// A message for the client.
    Push(Box<ServerMessage>),
    /// A chat entry of the room, shared by its local members.
    Chat(Arc<chat::ChatPush>),
    /// A host let this participant in.
    Admitted(Box<Admission>),
    /// A host turned this participant away.
    Denied,
    /// A host or the tenant removed this participant, or its identity joined again
    /// elsewhere: why, and in words.
    Removed(Removal, String),
    /// The SFU is draining: leave, and tell the client to join again.
    Moved,
    /// The room service let this participant go while this gateway was out of its
    /// reach: end the session without a word, so the client joins again.
    Reconnect,
    /// Stop or resume forwarding one of this participant's tracks.
    Block(TrackKind, bool),
    /// One change to many participants of the room, shared by its local members.
    Group(Arc<GroupUpdate>),
    /// The SFU dropped this participant's media connection.
    MediaLost(String),
}

/// How long a join waits for a gateway that has just started to watch the room
/// service's commands.
const COMMANDS_WATCHED_WAIT: Duration = Duration::from_secs(5);

/// An error reply: a code and a message.
pub(crate) struct Reject {
    code: String,
    message: String,
    /// When the request may be sent again (`chat_rate_limited`); 0 otherwise.
    retry_after_ms: u32,
}

impl Reject {
    fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_owned(),
            message: message.into(),
            retry_after_ms: 0,
        }
    }
}

impl From<OverLimit> for Reject {
    fn from(over: OverLimit) -> Self {
        Reject {
            retry_after_ms: over.retry_after_ms(),
            ..Reject::new("chat_rate_limited", over.to_string())
        }
    }
}

impl From<SfuError> for Reject {
    fn from(err: SfuError) -> Self {
        Reject::new(err.code(), err.to_string())
    }
}

impl From<ChatError> for Reject {
    fn from(err: ChatError) -> Self {
        Reject {
            code: err.code,
            message: err.message,
            retry_after_ms: 0,
        }
    }
}

impl From<RoomError> for Reject {
    fn from(err: RoomError) -> Self {
        Reject {
            code: err.code,
            message: err.message,
            retry_after_ms: 0,
        }
    }
}

/// A participant this session holds, from the room service's answer on.
struct Member {
    id: String,
    /// `tenant/room`: the SFU's room id and the chat key.
    key: String,
    room: String,
    info: ParticipantInfo,
    /// The room service's rejoin ticket, for the client (in `joined`).
    rejoin: String,
    ice_servers: Vec<signal::IceServer>,
    /// The join's request id, answered with `joined` once admitted.
    join_request: String,
    /// The client reads `chat_batch`.
    chat_batches: bool,
    /// An offer that came with the join, used once admitted.
    offer: Option<String>,
    sfu: Option<Arc<dyn SfuApi>>,
    /// Where the room's SFU for this participant is, and its SFUs in other regions.
    placement: Option<confer_room::model::Placement>,
    relays: Vec<confer_room::model::Placement>,
    has_peer: bool,
    /// The room's setting; hosts may share regardless.
    allow_screen_share: bool,
    /// The room's setting: others than hosts may post in the chat.
    allow_chat: bool,
    /// The room is being recorded: so is what this member publishes.
    recording: bool,
    /// The room's slow mode: seconds between this member's chat messages (0: off).
    chat_slow_mode: u32,
    /// When this member last posted a message, and its client id (a resend of it
    /// after a lost answer is no new message).
    last_message: Option<(Instant, String)>,
    /// Receiving the room's chat through the gateway's hub.
    in_chat: bool,
    /// Its chat posts against the gateway's chat rate.
    chat_allowance: ChatAllowance,
    /// Its data messages against [`data::DATA_RATE`].
    data_allowance: ChatAllowance,
}

impl Member {
    /// Whether the SFU must not forward this participant's screen: no right to publish
    /// it, video stopped by a host, or sharing denied in the room (hosts may anyway).
    fn screen_share_blocked(&self) -> bool {
        let info = &self.info;
        info.role == Role::Viewer
            || !info.permissions.may_publish(Source::ScreenShare)
            || info.video_blocked
            || !(self.allow_screen_share || info.role == Role::Host)
    }

    /// Whether the room's chat is open to this member now (`what`: "send messages",
    /// "share files"): to hosts always, to everyone else while the room allows it.
    fn chat_open(&self, what: &str) -> Result<(), Reject> {
        if self.allow_chat || self.info.role == Role::Host {
            return Ok(());
        }
        Err(Reject::new(
            "chat_restricted",
            format!("only hosts may {what} in this room now"),
        ))
    }

    /// Whether slow mode holds this member's new messages (it is on, and they are no
    /// host).
    fn held_by_slow_mode(&self) -> bool {
        self.chat_slow_mode > 0 && self.info.role != Role::Host
    }

    /// Slow mode: whether this member may post the message `client_id` now (hosts
    /// always; anyone the message it posted last again, as a resend).
    fn slow_mode_allows(&self, client_id: &str, now: Instant) -> Result<(), Reject> {
        if !self.held_by_slow_mode() {
            return Ok(());
        }
        let wait = Duration::from_secs(u64::from(self.chat_slow_mode));
        let Some((at, last)) = &self.last_message else {
            return Ok(());
        };
        let since = now.saturating_duration_since(*at);
        // Without a client id a message cannot be told from a new one.
        if since >= wait || (!client_id.is_empty() && last == client_id) {
            return Ok(());
        }
        Err(self.slow_mode_wait(wait - since))
    }

    /// Slow mode's refusal: the turn is free in `left`.
    fn slow_mode_wait(&self, left: Duration) -> Reject {
        Reject {
            retry_after_ms: u32::try_from(left.as_millis().max(1)).unwrap_or(u32::MAX),
            ..Reject::new(
                "chat_slow_mode",
                format!(
                    "slow mode: one message every {} s; wait {} s",
                    self.chat_slow_mode,
                    left.as_secs().max(1)
                ),
            )
        }
    }
}

struct Session {
    state: Arc<AppState>,
    /// The way to the client.
    out: Arc<Outbound>,
    events_tx: mpsc::UnboundedSender<SessionEvent>,
    client_addr: IpAddr,
    member: Option<Member>,
    /// The participant this connection held until its media was lost: a `leave` that
    /// comes after makes that departure final.
    lost: Option<String>,
    /// The last chat seq sent to the client, shared with the hub: every entry goes out
    /// once, in order.
    chat: Arc<ChatCursor>,
    /// The join's trace: the offer that follows continues it.
    join_trace: Option<confer_telemetry::TraceContext>,
    /// The client reads `participants_changed` (it joined with `participant_batches`).
    participant_batches: bool,
}

async fn serve(state: Arc<AppState>, socket: Socket, client_addr: IpAddr) {
    let Socket { mut inbound, out } = socket;
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let mut session = Session {
        state,
        out: out.clone(),
        events_tx,
        client_addr,
        member: None,
        lost: None,
        chat: Arc::default(),
        join_trace: None,
        participant_batches: false,
    };
    let mut peer_closed = false;
    let liveness = session.state.config.liveness;
    let mut pings = tokio::time::interval_at(
        tokio::time::Instant::now() + liveness.ping_every(),
        liveness.ping_every(),
    );
    pings.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut heard_at = Instant::now();
    let mut silent = false;
    loop {
        let flow = tokio::select! {
            frame = inbound.next() => {
                heard_at = Instant::now();
                let bytes = match frame {
                    Some(Ok(Message::Text(text))) => text.as_bytes().to_vec(),
                    Some(Ok(Message::Binary(bytes))) => bytes.to_vec(),
                    Some(Ok(Message::Close(_))) => {
                        peer_closed = true;
                        break;
                    }
                    Some(Err(_)) | None => break,
                    Some(Ok(_)) => continue,
                };
                match decode_client_message(&bytes) {
                    Ok(message) => session.handle(message).await,
                    Err(err) => {
                        let request_id = request_id_of(&bytes);
                        session.reply_error(request_id, Reject::new(err.code(), err.to_string()));
                        ControlFlow::Continue(())
                    }
                }
            }
            Some(event) = events.recv() => session.on_event(event).await,
            () = out.broken() => break,
            _ = pings.tick() => {
                if heard_at.elapsed() >= liveness.silent_for {
                    silent = true;
                    break;
                }
                out.ping();
                ControlFlow::Continue(())
            }
        };
        if flow.is_break() {
            break;
        }
    }
    // Without a `leave`, the connection was lost: the client may come back as it was.
    session.leave(Departure::Lost).await;
    match out.condition() {
        Condition::TooSlow => {
            session.state.metrics.clients_too_slow.fetch_add(1, Relaxed);
            info!("client cut off: {MAX_WAITING} bytes waited for it");
        }
        _ if silent => {
            session.state.metrics.clients_silent.fetch_add(1, Relaxed);
            info!(silent_for = ?liveness.silent_for, "client let go: it sent nothing, not even a pong");
            out.close();
        }
        _ if peer_closed => out.closed_by_peer(),
        _ => out.close(),
    }
}

impl Session {
    fn send(&self, request_id: String, msg: Msg) {
        self.out.message(&ServerMessage {
            request_id,
            msg: Some(msg),
        });
    }

    fn reply_error(&self, request_id: String, reject: Reject) {
        self.state.metrics.signal_errors.fetch_add(1, Relaxed);
        debug!(code = %reject.code, message = %reject.message, "signalling error");
        self.send(
            request_id,
            Msg::Error(signal::Error {
                code: reject.code,
                message: reject.message,
                retry_after_ms: reject.retry_after_ms,
            }),
        );
    }

    async fn handle(&mut self, message: ClientMessage) -> ControlFlow<()> {
        use client_message::Msg as In;
        let request_id = message.request_id;
        let client_trace = confer_telemetry::TraceContext::from_traceparent(&message.traceparent);
        let Some(msg) = message.msg else {
            return ControlFlow::Continue(());
        };
        let result = match msg {
            In::Join(join) => self.join(&request_id, join, client_trace).await,
            In::Offer(offer) => self.offer(&request_id, offer.sdp, client_trace).await,
            In::Trickle(trickle) => self.trickle(trickle).await,
            In::Chat(chat) => {
                let action = ChatAction::Text {
                    text: chat.text,
                    reply_to: chat.reply_to,
                };
                self.send_chat(&request_id, chat.client_id, action, client_trace)
                    .await
            }
            In::ChatEdit(edit) => {
                let action = ChatAction::Edit {
                    seq: edit.seq,
                    text: edit.text,
                };
                self.send_chat(&request_id, String::new(), action, client_trace)
                    .await
            }
            In::ChatDelete(delete) => {
                let action = ChatAction::Delete { seq: delete.seq };
                self.send_chat(&request_id, String::new(), action, client_trace)
                    .await
            }
            In::ChatHistory(page) => self.chat_history(&request_id, page).await,
            In::FileUpload(file) => self.file_upload(&request_id, &file).await,
            In::Mute(mute) => self.mute(&mute.kind, mute.muted).await,
            In::SetName(set) => {
                self.self_update(&request_id, SelfUpdate::Name { name: set.name })
                    .await
            }
            In::RaiseHand(hand) => {
                let update = SelfUpdate::Hand {
                    raised: hand.raised,
                };
                self.self_update(&request_id, update).await
            }
            In::SendData(data) => self.send_data(&request_id, data).await,
            In::Host(control) => self.host(&request_id, control).await,
            In::TrackSettings(settings) => self.track_settings(settings).await,
            In::Ping(_) => {
                self.send(request_id.clone(), Msg::Pong(signal::Pong {}));
                Ok(())
            }
            In::Leave(_) => {
                self.leave(Departure::Left).await;
                return ControlFlow::Break(());
            }
        };
        if let Err(reject) = result {
            self.reply_error(request_id, reject);
        }
        ControlFlow::Continue(())
    }

    async fn on_event(&mut self, event: SessionEvent) -> ControlFlow<()> {
        match event {
            SessionEvent::Push(msg) => {
                if let Some(Msg::RoomState(state)) = &msg.msg {
                    if let Some(member) = self.member.as_mut() {
                        member.allow_chat = state.allow_chat;
                        member.chat_slow_mode = state.chat_slow_mode_secs;
                    }
                    self.apply_screen_share_setting(state.allow_screen_share)
                        .await;
                    self.apply_recording_setting(state.recording).await;
                }
                if let Some(Msg::ParticipantUpdated(update)) = &msg.msg {
                    self.note_self_update(update);
                }
                self.out.message(&msg);
            }
            SessionEvent::Group(update) => {
                if self.participant_batches {
                    self.out.message(&update.batch);
                } else {
                    for msg in &update.each {
                        self.out.message(msg);
                    }
                }
            }
            SessionEvent::Chat(push) => {
                let seq = push.seq();
                self.deliver_chat(seq).await;
                let chat = self.chat.clone();
                chat.next(seq, false, || match push.framed() {
                    Some(framed) => {
                        self.out.frames(framed, None);
                    }
                    None => {
                        let mut msg = push.message().clone();
                        if let Some(Msg::Chat(entry)) = &mut msg.msg {
                            self.link_file(entry);
                        }
                        self.out.message(&msg);
                    }
                });
            }
            SessionEvent::Admitted(admission) => {
                let request = self
                    .member
                    .as_ref()
                    .map(|m| m.join_request.clone())
                    .unwrap_or_default();
                if let Err(reject) = self.enter(*admission).await {
                    self.reply_error(request, reject);
                }
            }
            SessionEvent::Denied => {
                let request = self.member.take().map(|m| {
                    self.state.rooms.unregister(&m.id);
                    m.join_request
                });
                self.reply_error(
                    request.unwrap_or_default(),
                    Reject::new("admission_denied", "a host did not let you in"),
                );
            }
            SessionEvent::Moved => {
                // Out of the room first, so the client's new join finds it gone.
                self.leave(Departure::Lost).await;
                self.reply_error(
                    String::new(),
                    Reject::new(
                        "node_draining",
                        "the media server of this call is shutting down; join again",
                    ),
                );
                return ControlFlow::Break(());
            }
            SessionEvent::Reconnect => {
                // The room no longer lists this participant; its media goes too.
                self.leave(Departure::Lost).await;
                tracing::warn!(
                    "the room service let this participant go; closing so it joins again"
                );
                return ControlFlow::Break(());
            }
            SessionEvent::Removed(code, reason) => {
                self.reply_error(String::new(), Reject::new(code.code(), reason));
                self.leave(Departure::Left).await;
                return ControlFlow::Break(());
            }
            SessionEvent::Block(kind, blocked) => {
                if let Some(member) = &self.member
                    && let Some(sfu) = member.sfu.as_ref().filter(|_| member.has_peer)
                {
                    for &source in blocked_sources(kind) {
                        if let Err(err) = sfu
                            .set_blocked(ParticipantId::new(member.id.clone()), source, blocked)
                            .await
                        {
                            debug!(%err, "could not change forwarding");
                        }
                    }
                }
            }
            SessionEvent::MediaLost(reason) => {
                self.reply_error(
                    String::new(),
                    Reject::new(
                        "media_disconnected",
                        format!("media connection lost: {reason}"),
                    ),
                );
                self.leave(Departure::Lost).await;
            }
        }
        ControlFlow::Continue(())
    }

    /// The room started or stopped being recorded: so does this member's peer.
    async fn apply_recording_setting(&mut self, recording: bool) {
        let Some(member) = self.member.as_mut() else {
            return;
        };
        if member.recording == recording {
            return;
        }
        member.recording = recording;
        if let Some(sfu) = member.sfu.as_ref().filter(|_| member.has_peer) {
            record(
                sfu.as_ref(),
                &ParticipantId::new(member.id.clone()),
                recording,
            )
            .await;
        }
    }

    /// A host allowed or denied screen sharing: the SFU starts or stops forwarding the
    /// screens of everyone but hosts.
    async fn apply_screen_share_setting(&mut self, allowed: bool) {
        let Some(member) = self.member.as_mut() else {
            return;
        };
        if member.allow_screen_share == allowed {
            return;
        }
        member.allow_screen_share = allowed;
        let blocked = member.screen_share_blocked();
        if let Some(sfu) = member.sfu.as_ref().filter(|_| member.has_peer)
            && let Err(err) = sfu
                .set_blocked(
                    ParticipantId::new(member.id.clone()),
                    TrackSource::ScreenShare,
                    blocked,
                )
                .await
        {
            debug!(%err, "could not change screen share forwarding");
        }
    }

    fn member(&self) -> Result<&Member, Reject> {
        self.member
            .as_ref()
            .ok_or_else(|| Reject::new("not_joined", "join a room first"))
    }

    /// The member, if it is in its room's chat and may post there (`what`: "send
    /// messages", "share files").
    fn chat_poster(&self, what: &str) -> Result<&Member, Reject> {
        let member = self.member()?;
        if !member.in_chat {
            return Err(Reject::new("not_joined", "join a room first"));
        }
        if !member.info.permissions.can_publish_data {
            return Err(Reject::new(
                "permission_denied",
                format!("you may not {what} here"),
            ));
        }
        Ok(member)
    }

    /// Slow mode: whether this member may post the message `client_id` now. The room
    /// service keeps one turn per identity, so a reload or a second tab posts no
    /// sooner; when it cannot answer (unreachable, or older than the turn), this
    /// session's own last message decides.
    async fn slow_mode_turn(&self, client_id: &str) -> Result<(), Reject> {
        let member = self.member()?;
        if !member.held_by_slow_mode() {
            return Ok(());
        }
        let turn = self
            .state
            .room
            .chat_slow_mode_turn(
                member.id.clone(),
                client_id.to_owned(),
                member.chat_slow_mode,
            )
            .await;
        match turn {
            Ok(0) => Ok(()),
            Ok(left_ms) => Err(member.slow_mode_wait(Duration::from_millis(left_ms))),
            Err(err) if err.code == "not_a_member" => Err(err.into()),
            Err(err) => {
                tracing::debug!(%err, "slow mode decided by this session alone");
                member.slow_mode_allows(client_id, Instant::now())
            }
        }
    }

    /// Whether this member may post in the room's chat now (`what`: "send messages",
    /// …). The session's view comes from the room's `room_state` pushes; when it says
    /// closed, the room service has the last word: a host who has just opened the
    /// chat was answered before the push reached this session, and a member just
    /// made a host posts at once.
    async fn chat_open(&self, what: &str) -> Result<(), Reject> {
        let member = self.member()?;
        let Err(closed) = member.chat_open(what) else {
            return Ok(());
        };
        match self
            .state
            .room
            .check_chat_poster(member.key.clone(), member.id.clone())
            .await
        {
            Ok(()) => Ok(()),
            Err(err) if err.code == "not_a_member" => Err(err.into()),
            Err(_) => Err(closed),
        }
    }

    /// `client_trace`: the client's own trace, when its request carried one.
    async fn join(
        &mut self,
        request_id: &str,
        join: Join,
        client_trace: Option<confer_telemetry::TraceContext>,
    ) -> Result<(), Reject> {
        let started = Instant::now();
        let span = tracing::info_span!(
            "signal.join",
            otel.kind = "server",
            room = %join.room,
            outcome = tracing::field::Empty,
        );
        if let Some(parent) = &client_trace {
            parent.adopt(&span);
        }
        self.join_trace = Some(confer_telemetry::TraceContext::of(&span));
        let result = self
            .try_join(request_id, join)
            .instrument(span.clone())
            .await;
        span.record(
            "outcome",
            match &result {
                Ok(()) => "joined",
                Err(reject) => reject.code.as_str(),
            },
        );
        let metrics = &self.state.metrics;
        match &result {
            Ok(()) => {
                metrics.joins.fetch_add(1, Relaxed);
                metrics.join_duration.observe(started.elapsed());
            }
            Err(reject) => metrics.join_failures.inc(&reject.code),
        }
        result
    }

    /// Waits until this gateway watches the room service's commands: one made for a
    /// participant before the gateway's first watch would reach nobody (a watch that
    /// breaks later is taken up after its last cursor, and loses nothing).
    async fn commands_watched(&self) -> Result<(), Reject> {
        let mut watched = self.state.commands_watched.subscribe();
        match tokio::time::timeout(COMMANDS_WATCHED_WAIT, watched.wait_for(|w| *w)).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(Reject::new(
                "room_service_unavailable",
                "this gateway cannot hear from the room service yet; try again",
            )),
        }
    }

    async fn try_join(&mut self, request_id: &str, join: Join) -> Result<(), Reject> {
        if self.member.is_some() {
            return Err(Reject::new(
                "already_joined",
                "this connection is already in a room",
            ));
        }
        validate_room(&join.room)?;
        if join.token.is_empty() {
            validate_name(&join.name)?;
        }
        let offer = match join.offer {
            None => None,
            Some(offer) if offer.r#type == "offer" && !offer.sdp.is_empty() => Some(offer.sdp),
            Some(_) => return Err(Reject::new("invalid_sdp", "the offer is not an SDP offer")),
        };
        self.commands_watched().await?;
        self.participant_batches = join.participant_batches;
        let id = new_participant_id();
        self.state.rooms.register(
            &id,
            self.events_tx.clone(),
            self.out.clone(),
            self.chat.clone(),
        );
        let request = JoinRequest {
            gateway: self.state.config.gateway_id.clone(),
            participant_id: id.clone(),
            room: join.room.clone(),
            tenant: Some(join.tenant).filter(|t| !t.is_empty()),
            token: Some(join.token).filter(|t| !t.is_empty()),
            name: join.name,
            password: Some(join.password).filter(|p| !p.is_empty()),
            client_addr: self.client_addr,
            region: self.state.config.region.clone(),
            rejoin: Some(join.rejoin).filter(|t| !t.is_empty()),
        };
        let decision = match self.state.room.join(request).await {
            Ok(decision) => decision,
            Err(err) => {
                self.state.rooms.unregister(&id);
                return Err(err.into());
            }
        };
        self.member = Some(Member {
            key: format!("{}/{}", decision.tenant, join.room),
            room: join.room,
            info: decision.participant.clone(),
            rejoin: decision.rejoin,
            ice_servers: convert::ice_servers(&decision.ice_servers),
            join_request: request_id.to_owned(),
            chat_batches: join.chat_batches,
            offer,
            sfu: None,
            placement: None,
            relays: Vec::new(),
            has_peer: false,
            allow_screen_share: true,
            allow_chat: true,
            recording: false,
            chat_slow_mode: 0,
            last_message: None,
            in_chat: false,
            chat_allowance: ChatAllowance::new(self.state.config.chat_rate, Instant::now()),
            data_allowance: ChatAllowance::new(data::DATA_RATE, Instant::now()),
            id,
        });
        match decision.admission {
            Some(admission) => self.enter(admission).await,
            None => {
                let member = self.member()?;
                info!(participant = %member.id, room = %member.key, "waiting to be admitted");
                self.send(
                    request_id.to_owned(),
                    Msg::Waiting(signal::Waiting {
                        you: Some(convert::participant(&member.info)),
                        ice_servers: member.ice_servers.clone(),
                    }),
                );
                Ok(())
            }
        }
    }

    /// In the room: find its SFU, answer the offer if there is one, reply `joined`.
    async fn enter(&mut self, admission: Admission) -> Result<(), Reject> {
        let sfu = self
            .state
            .sfus
            .get(&admission.placement, &self.state)
            .await?;
        let member = self
            .member
            .as_mut()
            .ok_or_else(|| Reject::new("not_joined", "join a room first"))?;
        member.sfu = Some(sfu);
        member.placement = Some(admission.placement.clone());
        member.relays = admission.relays.clone();
        member.allow_screen_share = admission.settings.allow_screen_share;
        member.allow_chat = admission.settings.allow_chat;
        member.recording = admission.settings.recording;
        member.chat_slow_mode = admission.settings.chat_slow_mode_secs;
        member.info.state = confer_room::model::ParticipantState::Active;
        let offer = member.offer.take();
        let answer = match offer {
            Some(sdp) => Some(self.create_peer(sdp).await?),
            None => None,
        };
        let member = self.member()?;
        let (id, key) = (member.id.clone(), member.key.clone());
        // Registered for the room's pushes before its history is read: nothing falls
        // between the two (`on_event` drops the overlap).
        self.state.rooms.enter(&id, &key);
        let (chat_history, chat_history_more) =
            match self.state.chat.enter(&key, JOIN_HISTORY).await {
                Ok(page) => page,
                Err(err) => {
                    // Media works without chat; the client pages history in later.
                    tracing::warn!(room = %key, error = %err, "chat history unavailable at join");
                    (Vec::new(), false)
                }
            };
        let seen = chat_history.last().map_or(0, |e| e.seq);
        // The speaker and connection quality are announced when they change; someone
        // entering now hears them as they are.
        let speaker = self.state.rooms.speaker(&key);
        let present: HashSet<&str> = admission.others.iter().map(|p| p.id.as_str()).collect();
        let qualities = self.state.rooms.qualities(&key, &present);
        if let Some(member) = self.member.as_mut() {
            member.in_chat = true;
        }
        let member = self.member()?;
        info!(participant = %member.id, room = %member.key, sfu = %admission.placement.sfu, "joined");
        let joined = Msg::Joined(signal::Joined {
            room: member.room.clone(),
            you: Some(convert::participant(&member.info)),
            answer: answer.map(|sdp| signal::SessionDescription {
                r#type: "answer".into(),
                sdp,
            }),
            participants: admission.others.iter().map(convert::participant).collect(),
            chat_history: chat_history
                .into_iter()
                .map(|entry| self.present(entry))
                .collect(),
            chat_history_more,
            ice_servers: member.ice_servers.clone(),
            room_state: Some(convert::room_state(&admission.settings)),
            chat_limit: convert::chat_limit(self.state.config.chat_rate),
            rejoin: member.rejoin.clone(),
        });
        // The hub delivers from here on, after the join page.
        let chat = self.chat.clone();
        chat.open(seen, member.chat_batches, || {
            self.send(member.join_request.clone(), joined);
        });
        if let Some(participant_id) = speaker {
            self.send(
                String::new(),
                Msg::ActiveSpeaker(signal::ActiveSpeaker { participant_id }),
            );
        }
        if !qualities.is_empty() {
            self.send(
                String::new(),
                Msg::ConnectionQuality(crate::relay::connection_quality(qualities)),
            );
        }
        Ok(())
    }

    /// Creates (or replaces) the peer on the room's SFU and applies the participant's
    /// forwarding restrictions before any media can flow.
    async fn create_peer(&mut self, offer_sdp: String) -> Result<String, Reject> {
        let member = self.member()?;
        let sfu = member
            .sfu
            .clone()
            .ok_or_else(|| Reject::new("not_admitted", "wait until a host admits you"))?;
        let id = ParticipantId::new(member.id.clone());
        let answer = sfu
            .create_peer(RoomId::new(member.key.clone()), id.clone(), offer_sdp)
            .await?;
        let info = &member.info;
        let may = |source| info.role != Role::Viewer && info.permissions.may_publish(source);
        for (source, blocked) in [
            (
                TrackSource::Microphone,
                !may(Source::Microphone) || info.audio_blocked,
            ),
            (
                TrackSource::Camera,
                !may(Source::Camera) || info.video_blocked,
            ),
            (TrackSource::ScreenShare, member.screen_share_blocked()),
        ] {
            if blocked {
                sfu.set_blocked(id.clone(), source, true).await?;
            }
        }
        if member.recording {
            record(sfu.as_ref(), &id, true).await;
        }
        if let Some(member) = self.member.as_mut() {
            member.has_peer = true;
            if let Some(here) = member.placement.clone()
                && !member.relays.is_empty()
            {
                tokio::spawn(crate::links::link_regions(
                    self.state.clone(),
                    RoomId::new(member.key.clone()),
                    here,
                    member.relays.clone(),
                ));
            }
        }
        Ok(answer)
    }

    /// The offer continues the client's trace when it names one, else the join's.
    async fn offer(
        &mut self,
        request_id: &str,
        sdp: String,
        client_trace: Option<confer_telemetry::TraceContext>,
    ) -> Result<(), Reject> {
        if sdp.is_empty() {
            return Err(Reject::new("invalid_sdp", "the offer is empty"));
        }
        let span = tracing::info_span!("signal.offer", otel.kind = "server");
        if let Some(trace) = client_trace.as_ref().or(self.join_trace.as_ref()) {
            trace.adopt(&span);
        }
        let answer = self.create_peer(sdp).instrument(span).await?;
        self.send(
            request_id.to_owned(),
            Msg::Answer(signal::Answer { sdp: answer }),
        );
        Ok(())
    }

    async fn trickle(&self, trickle: signal::Trickle) -> Result<(), Reject> {
        let member = self.member()?;
        if trickle.candidate.is_empty() {
            // End-of-candidates: nothing to do for an ICE-lite server.
            return Ok(());
        }
        let Some(sfu) = member.sfu.as_ref().filter(|_| member.has_peer) else {
            return Err(Reject::new("not_joined", "send an offer first"));
        };
        let candidate = confer_sfu::control::IceCandidate {
            candidate: trickle.candidate,
            sdp_mid: Some(trickle.sdp_mid).filter(|mid| !mid.is_empty()),
            sdp_mline_index: u16::try_from(trickle.sdp_mline_index).ok(),
        };
        sfu.add_ice_candidate(ParticipantId::new(member.id.clone()), candidate)
            .await
            .map_err(Reject::from)
    }

    async fn track_settings(&self, settings: signal::TrackSettings) -> Result<(), Reject> {
        let member = self.member()?;
        let Some(sfu) = member.sfu.as_ref().filter(|_| member.has_peer) else {
            return Err(Reject::new("not_joined", "send an offer first"));
        };
        if settings.mid.is_empty() || settings.mid.len() > 32 {
            return Err(Reject::new("invalid_message", "`mid` names a receive slot"));
        }
        let wanted = Wanted::from_report(settings.width, settings.height, settings.hidden);
        sfu.set_track_settings(ParticipantId::new(member.id.clone()), settings.mid, wanted)
            .await
            .map_err(Reject::from)
    }

    /// The room service renamed this participant or changed its role (a host, the
    /// tenant API): what it sends from now on carries the new name and rights.
    fn note_self_update(&mut self, update: &signal::ParticipantUpdated) {
        let (Some(member), Some(p)) = (self.member.as_mut(), update.participant.as_ref()) else {
            return;
        };
        if p.id != member.id {
            return;
        }
        member.info.name.clone_from(&p.name);
        if let Some(role) = [Role::Host, Role::Participant, Role::Viewer]
            .into_iter()
            .find(|role| role.as_str() == p.role)
        {
            member.info.role = role;
        }
    }

    /// Stores a chat action through the chat service; answers `chat_sent` once durable.
    /// The entry itself reaches the other members through the hub, and the sender with
    /// the answer, or through the hub when entries before it are still on their way.
    async fn send_chat(
        &mut self,
        request_id: &str,
        client_id: String,
        action: ChatAction,
        client_trace: Option<confer_telemetry::TraceContext>,
    ) -> Result<(), Reject> {
        let span = tracing::info_span!("signal.chat", otel.kind = "server");
        if let Some(parent) = &client_trace {
            parent.adopt(&span);
        }
        self.post_chat(request_id, client_id, action)
            .instrument(span)
            .await
    }

    async fn post_chat(
        &mut self,
        request_id: &str,
        client_id: String,
        action: ChatAction,
    ) -> Result<(), Reject> {
        self.chat_poster("send messages")?;
        match action {
            // Taking back one's own words is never closed, nor held.
            ChatAction::Delete { .. } => {}
            ChatAction::Edit { .. } => self.chat_open("edit messages").await?,
            _ => self.chat_open("send messages").await?,
        }
        let new_message = !matches!(action, ChatAction::Delete { .. } | ChatAction::Edit { .. });
        if !new_message {
            return self.store_post(request_id, client_id, action).await;
        }
        // Refused for what it is before it takes a slow-mode turn, and the turn given
        // back if the post fails further on: only a message posted spends it. (Without
        // slow mode the chat service's own checks refuse it the same way.)
        if self.member()?.held_by_slow_mode() {
            confer_chat::check_post(&action, &client_id)?;
        }
        self.slow_mode_turn(&client_id).await?;
        let posted = self.store_post(request_id, client_id.clone(), action).await;
        match posted {
            Ok(()) => self.took_slow_mode_turn(&client_id),
            Err(_) => self.give_back_slow_mode_turn(&client_id).await,
        }
        posted
    }

    /// Counts a post against the member's chat rate (a delete is never limited),
    /// stores it through the chat service and answers.
    async fn store_post(
        &mut self,
        request_id: &str,
        client_id: String,
        action: ChatAction,
    ) -> Result<(), Reject> {
        if !matches!(action, ChatAction::Delete { .. }) {
            self.count_chat_post()?;
        }
        let member = self.member()?;
        let deleting = match action {
            ChatAction::Delete { seq } => Some(seq),
            _ => None,
        };
        let request = SendRequest {
            room: member.key.clone(),
            sender_id: member.id.clone(),
            sender_name: member.info.name.clone(),
            sender_identity: member.info.identity.clone(),
            sender_is_host: member.info.role == Role::Host,
            client_id,
            action,
        };
        let sent = self.state.chat.api.send(request).await?;
        if !sent.duplicate {
            self.state.metrics.chat_messages.fetch_add(1, Relaxed);
        }
        if deleting.is_some() {
            // A shared file's bytes go with its message, before the answer.
            if let Err(err) = file_sweep::sweep(&self.state).await {
                tracing::warn!(error = %err, "cannot remove a deleted message's file yet");
                self.state.sweep_files.wake();
            }
        }
        self.send(
            request_id.to_owned(),
            Msg::ChatSent(signal::ChatSent {
                client_id: sent.entry.client_id.clone(),
                seq: sent.entry.seq,
            }),
        );
        // The sender's own entry goes with the answer (one write) when it is the next
        // one this client is owed; the hub's copy then finds it sent. Otherwise the hub
        // delivers it, in order.
        if !sent.duplicate {
            let chat = self.chat.clone();
            chat.next(sent.entry.seq, false, || {
                let message = self.present(sent.entry);
                self.send(String::new(), Msg::Chat(message));
            });
        }
        Ok(())
    }

    async fn chat_history(
        &self,
        request_id: &str,
        request: signal::ChatHistoryRequest,
    ) -> Result<(), Reject> {
        let member = self.member()?;
        if !member.in_chat {
            return Err(Reject::new("not_joined", "join a room first"));
        }
        let page = if request.after_seq > 0 {
            Page::After {
                after: request.after_seq,
                limit: request.limit,
            }
        } else {
            Page::Before {
                before: request.before_seq,
                limit: request.limit,
            }
        };
        let page = self
            .state
            .chat
            .api
            .history(member.key.clone(), page)
            .await?;
        self.send(
            request_id.to_owned(),
            Msg::ChatHistory(signal::ChatHistory {
                messages: page
                    .entries
                    .into_iter()
                    .map(|entry| self.present(entry))
                    .collect(),
                more: page.more,
            }),
        );
        Ok(())
    }

    /// A chat entry as this member sees it: a shared file gets a download link signed
    /// for this member.
    fn present(&self, entry: confer_chat::ChatEntry) -> signal::ChatMessage {
        let mut message = chat::to_message(entry);
        self.link_file(&mut message);
        message
    }

    fn link_file(&self, message: &mut signal::ChatMessage) {
        let Some(member) = self.member.as_ref() else {
            return;
        };
        if message.kind == "file" && !message.deleted {
            message.download_url =
                files::download_url(&self.state.config.files, &member.key, &member.id, message);
        }
    }

    /// A member asks to share a file: where to upload it.
    async fn file_upload(
        &mut self,
        request_id: &str,
        file: &signal::FileUploadRequest,
    ) -> Result<(), Reject> {
        self.chat_poster("share files")?;
        self.chat_open("share files").await?;
        let share = format!("file {request_id}");
        self.slow_mode_turn(&share).await?;
        let granted = self.grant_upload(request_id, file);
        match granted {
            Ok(()) => self.took_slow_mode_turn(&share),
            Err(_) => self.give_back_slow_mode_turn(&share).await,
        }
        granted
    }

    /// Counts a file share against the member's chat rate and answers where to upload.
    fn grant_upload(
        &mut self,
        request_id: &str,
        file: &signal::FileUploadRequest,
    ) -> Result<(), Reject> {
        self.count_chat_post()?;
        let member = self.member()?;
        let url = files::upload_url(
            &self.state.config.files,
            files::Declared {
                room: &member.key,
                participant: &member.id,
                sender_name: &member.info.name,
                sender_identity: &member.info.identity,
                name: &file.name,
                content_type: &file.content_type,
                size: file.size,
            },
        )
        .map_err(|err| Reject::new(err.code, err.message))?;
        self.send(
            request_id.to_owned(),
            Msg::FileUpload(signal::FileUpload { url }),
        );
        Ok(())
    }

    /// A new message (a send, a file share) that took the member's slow-mode turn was
    /// not posted after all: the turn is given back (one that cannot be given back
    /// runs out by itself).
    async fn give_back_slow_mode_turn(&self, client_id: &str) {
        let Ok(member) = self.member() else {
            return;
        };
        if !member.held_by_slow_mode() {
            return;
        }
        if let Err(err) = self
            .state
            .room
            .chat_slow_mode_give_back(member.id.clone(), client_id.to_owned())
            .await
        {
            tracing::debug!(%err, "a slow-mode turn left to run out");
        }
    }

    /// A new message (a send, a file share) was taken: the member's slow-mode turn
    /// starts again from now.
    fn took_slow_mode_turn(&mut self, client_id: &str) {
        if let Some(member) = self.member.as_mut() {
            member.last_message = Some((Instant::now(), client_id.to_owned()));
        }
    }

    /// Counts a post (a send, an edit, a file share) against the member's chat rate.
    fn count_chat_post(&mut self) -> Result<(), Reject> {
        let member = self
            .member
            .as_mut()
            .ok_or_else(|| Reject::new("not_joined", "join a room first"))?;
        member.chat_allowance.take(Instant::now()).map_err(|over| {
            self.state.metrics.chat_rate_limited.fetch_add(1, Relaxed);
            Reject::from(over)
        })
    }

    /// Before entry `seq` goes out: the entries between the last one sent and it, read
    /// from history (rare: the hub delivers in order; this covers a join's overlap).
    async fn deliver_chat(&mut self, seq: u64) {
        if seq <= self.chat.seen() + 1 {
            return;
        }
        let Some(key) = self
            .member
            .as_ref()
            .filter(|m| m.in_chat)
            .map(|m| m.key.clone())
        else {
            return;
        };
        let chat = self.chat.clone();
        while chat.seen() + 1 < seq {
            let before = chat.seen();
            let page = Page::After {
                after: before,
                limit: confer_chat::api::MAX_PAGE,
            };
            let Ok(page) = self.state.chat.api.history(key.clone(), page).await else {
                return;
            };
            for entry in page.entries.into_iter().take_while(|e| e.seq < seq) {
                chat.next(entry.seq, false, || {
                    let message = self.present(entry);
                    self.send(String::new(), Msg::Chat(message));
                });
            }
            if chat.seen() == before {
                return;
            }
        }
    }

    async fn mute(&mut self, kind: &str, muted: bool) -> Result<(), Reject> {
        let kind = TrackKind::parse(kind).ok_or_else(|| {
            Reject::new("invalid_message", format!("unknown track kind `{kind}`"))
        })?;
        self.self_update("", SelfUpdate::Muted { kind, muted })
            .await
    }

    async fn self_update(&mut self, request_id: &str, update: SelfUpdate) -> Result<(), Reject> {
        let id = self.member()?.id.clone();
        let info = self.state.room.self_update(id, update).await?;
        if let Some(member) = self.member.as_mut() {
            member.info = info;
        }
        if !request_id.is_empty() {
            self.send(request_id.to_owned(), Msg::Ack(signal::Ack {}));
        }
        Ok(())
    }

    async fn host(&self, request_id: &str, control: signal::HostControl) -> Result<(), Reject> {
        let id = self.member()?.id.clone();
        let action = host_action(control)?;
        // A deployment that keeps no recordings says so, rather than the room showing
        // a recording nothing writes.
        // (Only for a host: anyone else is told `not_host` by the room service.)
        if matches!(action, HostAction::Record { recording: true })
            && self.member()?.info.role == Role::Host
            && self.state.config.recordings.is_none()
        {
            return Err(Reject::new(
                "recording_unavailable",
                "this deployment keeps no recordings",
            ));
        }
        self.state.room.host_action(id, action).await?;
        self.send(request_id.to_owned(), Msg::Ack(signal::Ack {}));
        Ok(())
    }

    async fn leave(&mut self, why: Departure) {
        let Some(member) = self.member.take() else {
            // The client leaves just after its media was lost (it closed its peer
            // connection as it left): that was its leave, not a lost connection.
            if let (Departure::Left, Some(lost)) = (why, self.lost.take())
                && let Err(err) = record_leave(&self.state, &lost, why).await
            {
                debug!(%err, participant = %lost, "leave not recorded");
            }
            return;
        };
        if why == Departure::Lost {
            self.lost = Some(member.id.clone());
        }
        self.state.rooms.unregister(&member.id);
        self.chat.close();
        if member.in_chat {
            self.state.chat.leave(&member.key);
        }
        if let Some(sfu) = member.sfu.as_ref().filter(|_| member.has_peer) {
            // The peer may already be gone (its connection died first).
            let _ = sfu.remove_peer(ParticipantId::new(member.id.clone())).await;
        }
        if let Err(err) = record_leave(&self.state, &member.id, why).await {
            if err.kind == confer_room::ErrorKind::Unavailable {
                // The room service is restarting: keep trying, so the room does not
                // keep a ghost and its webhooks (participant_left, room_finished) fire.
                tokio::spawn(retry_leave(self.state.clone(), member.id.clone(), why));
            } else {
                debug!(%err, participant = %member.id, "leave not recorded");
            }
        }
        info!(participant = %member.id, "left");
    }
}

/// How long a leave is retried while the room service is unreachable.
const LEAVE_RETRY_FOR: std::time::Duration = std::time::Duration::from_secs(120);

/// Why a session's participant leaves the room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Departure {
    /// The client left, or a host removed it.
    Left,
    /// The connection (or the media) was lost, the gateway let it go, or its SFU is
    /// draining: the client may come back as it was with its rejoin ticket.
    Lost,
}

/// Tells the room service that `participant` left, and why.
async fn record_leave(
    state: &AppState,
    participant: &str,
    why: Departure,
) -> Result<(), confer_room::RoomError> {
    match why {
        Departure::Left => state.room.leave(participant.to_owned()).await,
        Departure::Lost => match state.room.disconnected(participant.to_owned()).await {
            // A room service from before rejoins knows no `disconnected`.
            Err(err) if err.code == "invalid_request" => {
                state.room.leave(participant.to_owned()).await
            }
            other => other,
        },
    }
}

async fn retry_leave(state: Arc<AppState>, participant: String, why: Departure) {
    let deadline = tokio::time::Instant::now() + LEAVE_RETRY_FOR;
    let mut delay = std::time::Duration::from_millis(200);
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(delay).await;
        match record_leave(&state, &participant, why).await {
            Err(err) if err.kind == confer_room::ErrorKind::Unavailable => {
                delay = (delay * 2).min(std::time::Duration::from_secs(5));
            }
            Err(err) => {
                debug!(%err, participant, "leave not recorded");
                return;
            }
            Ok(()) => return,
        }
    }
    tracing::warn!(
        participant,
        "gave up recording a leave: room service unreachable"
    );
}

/// What a host's mute of `kind` stops: the microphone, or every video (camera and
/// shared screen).
fn blocked_sources(kind: TrackKind) -> &'static [TrackSource] {
    match kind {
        TrackKind::Audio => &[TrackSource::Microphone],
        TrackKind::Video => &[TrackSource::Camera, TrackSource::ScreenShare],
    }
}

/// A signalling host control as the room service's [`HostAction`].
fn host_action(control: signal::HostControl) -> Result<HostAction, Reject> {
    let participant = control.participant_id;
    let needs_participant = || {
        if participant.is_empty() {
            Err(Reject::new(
                "invalid_message",
                "this action needs participant_id",
            ))
        } else {
            Ok(participant.clone())
        }
    };
    let kind = || {
        TrackKind::parse(&control.kind)
            .ok_or_else(|| Reject::new("invalid_message", "kind is `audio` or `video`"))
    };
    Ok(match control.action.as_str() {
        "admit" | "deny" => HostAction::Admit {
            participant: needs_participant()?,
            allow: control.action == "admit",
        },
        "mute" | "unmute" => HostAction::MuteTrack {
            participant: needs_participant()?,
            kind: kind()?,
            muted: control.action == "mute",
        },
        "remove" => HostAction::Remove {
            participant: needs_participant()?,
        },
        "set_role" => HostAction::SetRole {
            participant: needs_participant()?,
            role: match control.role.as_str() {
                "host" => Role::Host,
                "participant" => Role::Participant,
                "viewer" => Role::Viewer,
                _ => {
                    return Err(Reject::new(
                        "invalid_message",
                        "role is `host`, `participant` or `viewer`",
                    ));
                }
            },
        },
        "lock" | "unlock" => HostAction::LockRoom {
            locked: control.action == "lock",
        },
        "allow_screen_share" | "deny_screen_share" => HostAction::AllowScreenShare {
            allowed: control.action == "allow_screen_share",
        },
        "allow_chat" | "deny_chat" => HostAction::AllowChat {
            allowed: control.action == "allow_chat",
        },
        "approve_name" | "reject_name" => HostAction::ResolveNameChange {
            participant: needs_participant()?,
            approve: control.action == "approve_name",
        },
        "lower_hand" => HostAction::LowerHand {
            participant: needs_participant()?,
        },
        "mute_all" => HostAction::MuteAll { kind: kind()? },
        "lower_all_hands" => HostAction::LowerAllHands,
        "start_recording" | "stop_recording" => HostAction::Record {
            recording: control.action == "start_recording",
        },
        "slow_mode" => HostAction::ChatSlowMode {
            seconds: control.seconds,
        },
        other => {
            return Err(Reject::new(
                "invalid_message",
                format!("unknown host action `{other}`"),
            ));
        }
    })
}

/// Starts or stops recording a participant on its SFU. An SFU that cannot record
/// costs the recording of this participant, not its call: that is logged.
async fn record(sfu: &dyn SfuApi, participant: &ParticipantId, recording: bool) {
    if let Err(err) = sfu.set_recording(participant.clone(), recording).await {
        tracing::warn!(%participant, recording, error = %err, "the SFU did not change this participant's recording");
    }
}

/// The `request_id` of a frame the decoder refused, when it has a readable one, so the
/// client can match the error to its request.
fn request_id_of(frame: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Envelope {
        request_id: String,
    }
    serde_json::from_slice::<Envelope>(frame)
        .map(|e| e.request_id)
        .ok()
        .filter(|id| id.len() <= 64)
        .unwrap_or_default()
}

fn new_participant_id() -> String {
    format!("PA_{:016x}", rand::random::<u64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn control(action: &str, participant: &str, kind: &str) -> signal::HostControl {
        signal::HostControl {
            action: action.into(),
            participant_id: participant.into(),
            kind: kind.into(),
            role: String::new(),
            seconds: 0,
        }
    }

    #[test]
    fn host_controls_map_to_actions() {
        assert!(matches!(
            host_action(control("mute", "PA_1", "audio")),
            Ok(HostAction::MuteTrack {
                kind: TrackKind::Audio,
                muted: true,
                ..
            })
        ));
        assert!(matches!(
            host_action(control("lock", "", "")),
            Ok(HostAction::LockRoom { locked: true })
        ));
        assert!(host_action(control("mute", "", "audio")).is_err());
        assert!(host_action(control("mute", "PA_1", "smell")).is_err());
        assert!(host_action(control("explode", "PA_1", "")).is_err());
    }
}
