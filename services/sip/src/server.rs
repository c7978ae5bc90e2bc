//! The SIP endpoint on one UDP socket: requests in, responses out, and the
//! retransmissions RFC 3261 asks of a user agent server over UDP (final INVITE
//! responses until the ACK, our BYE until its answer). Each call's media runs in its
//! own task (`call`); this loop owns every SIP message.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use crate::call::{self, CallCommand, CallEvent, CallSetup};
use crate::dialog::{self, ALLOW};
use crate::message::{Message, NameAddr, StartLine, uri_user};
use crate::sdp::{AudioOffer, LocalAnswer, SdpError};
use crate::{SipConfig, SipStats};

/// RFC 3261 timers: T1 (round-trip estimate), T2 (longest retransmit interval), and
/// 64 × T1, how long a transaction lives.
const T1: Duration = Duration::from_millis(500);
const T2: Duration = Duration::from_secs(4);
const TRANSACTION: Duration = Duration::from_secs(32);
const TICK: Duration = Duration::from_millis(50);
/// On shutdown, how long BYEs may wait for their answers.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Serves SIP on `socket` until `shutdown`; then hangs up every call (BYE) and returns.
pub async fn serve(
    socket: UdpSocket,
    config: SipConfig,
    stats: SipStats,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let local = socket.local_addr()?;
    let advertised = SocketAddr::new(config.advertise_ip, local.port());
    info!(listen = %local, advertised = %advertised, "SIP bridge ready");
    let (events_tx, mut events) = mpsc::channel(256);
    let mut server = Server {
        socket,
        advertised,
        config,
        stats,
        calls: HashMap::new(),
        events: events_tx,
    };
    let mut buf = vec![0u8; crate::message::MAX_DATAGRAM + 1];
    let mut tick = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            received = server.socket.recv_from(&mut buf) => match received {
                Ok((len, from)) => server.datagram(&buf[..len], from).await,
                Err(err) => debug!(error = %err, "SIP socket receive failed"),
            },
            Some(event) = events.recv() => server.call_event(event).await,
            _ = tick.tick() => server.retransmit(Instant::now()).await,
            _ = shutdown.changed() => break,
        }
    }
    server.hang_up_all().await;
    let until = Instant::now() + SHUTDOWN_GRACE;
    while Instant::now() < until && server.calls.values().any(|c| c.bye.is_some()) {
        tokio::select! {
            received = server.socket.recv_from(&mut buf) => if let Ok((len, from)) = received {
                server.datagram(&buf[..len], from).await;
            },
            Some(event) = events.recv() => server.call_event(event).await,
            _ = tick.tick() => server.retransmit(Instant::now()).await,
        }
    }
    Ok(())
}

struct Server {
    socket: UdpSocket,
    advertised: SocketAddr,
    config: SipConfig,
    stats: SipStats,
    calls: HashMap<String, Call>,
    events: mpsc::Sender<CallEvent>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// INVITE received, no final response yet.
    Proceeding,
    /// 200 OK sent, waiting for the ACK.
    Answered,
    /// ACKed: the call is up.
    Confirmed,
    /// An error response sent, waiting for the ACK.
    Refused,
    /// Over; kept a while to answer retransmissions.
    Terminated,
}

struct Call {
    state: State,
    invite: Message,
    source: SocketAddr,
    local_tag: String,
    started: Instant,
    answered_at: Option<Instant>,
    /// The latest response to the INVITE, re-sent for INVITE retransmissions.
    last_response: Option<Vec<u8>>,
    /// Our SDP answer, for re-INVITEs.
    answer: Option<LocalAnswer>,
    retransmit: Option<Retransmit>,
    bye: Option<Retransmit>,
    commands: mpsc::Sender<CallCommand>,
    local_cseq: u32,
    ended_at: Option<Instant>,
}

/// A message re-sent at T1, 2·T1, ... (at most T2 apart) until answered or expired.
struct Retransmit {
    bytes: Vec<u8>,
    to: SocketAddr,
    next: Instant,
    interval: Duration,
    expires: Instant,
}

impl Retransmit {
    fn new(bytes: Vec<u8>, to: SocketAddr, now: Instant) -> Self {
        Self {
            bytes,
            to,
            next: now + T1,
            interval: T1,
            expires: now + TRANSACTION,
        }
    }
}

impl Server {
    async fn send(&self, message: &Message, to: SocketAddr) -> Vec<u8> {
        let bytes = message.to_bytes();
        if let Err(err) = self.socket.send_to(&bytes, to).await {
            debug!(error = %err, %to, "SIP send failed");
        }
        bytes
    }

    /// 481: a BYE or CANCEL for a call this bridge does not have.
    async fn no_such_call(&self, request: &Message, from: SocketAddr) {
        let status = "Call/Transaction Does Not Exist";
        let response = dialog::response(request, from, 481, status, &dialog::tag(), &[], None);
        self.send(&response, from).await;
    }

    async fn datagram(&mut self, datagram: &[u8], from: SocketAddr) {
        let message = match Message::parse(datagram) {
            Ok(Some(message)) => message,
            Ok(None) => return,
            Err(err) => {
                self.stats.bad_message();
                debug!(%from, error = %err, "not a SIP message");
                return;
            }
        };
        match &message.start {
            StartLine::Request { method, .. } => {
                let method = method.clone();
                self.stats.request(&method);
                if let Some(header) = dialog::missing_header(&message) {
                    self.stats.bad_message();
                    debug!(%from, header, "SIP request without a required header");
                    if message.header("Via").is_some() {
                        let reason = format!("Bad Request (missing {header})");
                        let response = dialog::response(
                            &message,
                            from,
                            400,
                            &reason,
                            &dialog::tag(),
                            &[],
                            None,
                        );
                        self.send(&response, from).await;
                    }
                    return;
                }
                self.request(&method, message, from).await;
            }
            StartLine::Response { status, .. } => self.response(*status, &message),
        }
    }

    async fn request(&mut self, method: &str, request: Message, from: SocketAddr) {
        match method {
            "INVITE" => self.invite(request, from).await,
            "ACK" => self.ack(&request),
            "BYE" => self.bye(&request, from).await,
            "CANCEL" => self.cancel(&request, from).await,
            "OPTIONS" => {
                let extra = [
                    ("Allow", ALLOW.to_owned()),
                    ("Accept", "application/sdp".to_owned()),
                ];
                let response =
                    dialog::response(&request, from, 200, "OK", &dialog::tag(), &extra, None);
                self.send(&response, from).await;
            }
            _ => {
                let extra = [("Allow", ALLOW.to_owned())];
                let response = dialog::response(
                    &request,
                    from,
                    405,
                    "Method Not Allowed",
                    &dialog::tag(),
                    &extra,
                    None,
                );
                self.send(&response, from).await;
            }
        }
    }

    async fn invite(&mut self, invite: Message, from: SocketAddr) {
        let call_id = invite.header("Call-ID").unwrap_or_default().to_owned();
        if let Some(call) = self.calls.get(&call_id) {
            let same = call.invite.cseq().map(|(n, _)| n) == invite.cseq().map(|(n, _)| n);
            if same {
                // A retransmission: the latest response again.
                if let Some(bytes) = &call.last_response {
                    let _ = self.socket.send_to(bytes, from).await;
                }
            } else {
                self.reinvite(&call_id, invite, from).await;
            }
            return;
        }
        let tag = dialog::tag();
        let setup = match self.admit(&invite, from) {
            Ok(setup) => setup,
            Err((status, reason, outcome)) => {
                self.stats.refused(outcome);
                let response = dialog::response(&invite, from, status, &reason, &tag, &[], None);
                let bytes = self.send(&response, from).await;
                self.calls.insert(
                    call_id,
                    Call::refused(invite, from, tag, bytes, Instant::now()),
                );
                return;
            }
        };
        let trying = dialog::response(&invite, from, 100, "Trying", &tag, &[], None);
        let bytes = self.send(&trying, from).await;
        let (commands_tx, commands_rx) = mpsc::channel(8);
        info!(call = %call_id, room = %setup.room, %from, "incoming call");
        tokio::spawn(call::run(
            setup,
            self.config.clone(),
            self.stats.clone(),
            self.events.clone(),
            commands_rx,
        ));
        self.calls.insert(
            call_id,
            Call {
                state: State::Proceeding,
                invite,
                source: from,
                local_tag: tag,
                started: Instant::now(),
                answered_at: None,
                last_response: Some(bytes),
                answer: None,
                retransmit: None,
                bye: None,
                commands: commands_tx,
                local_cseq: 0,
                ended_at: None,
            },
        );
    }

    /// Who may call which room with what media, or the response that says no.
    fn admit(
        &self,
        invite: &Message,
        from: SocketAddr,
    ) -> Result<CallSetup, (u16, String, &'static str)> {
        if !self.config.allow.is_empty() && !self.config.allow.iter().any(|n| n.contains(from.ip()))
        {
            return Err((403, "Forbidden".into(), "forbidden"));
        }
        let active = self
            .calls
            .values()
            .filter(|c| {
                matches!(
                    c.state,
                    State::Proceeding | State::Answered | State::Confirmed
                )
            })
            .count();
        if active >= self.config.max_calls {
            return Err((503, "Service Unavailable".into(), "unavailable"));
        }
        let uri = match &invite.start {
            StartLine::Request { uri, .. } => uri.as_str(),
            StartLine::Response { .. } => "",
        };
        let user = uri_user(uri).unwrap_or_default();
        let (room, password) = user.split_once('*').unwrap_or((&user, ""));
        if !is_room_name(room) {
            return Err((404, "Not Found (no such room)".into(), "not_found"));
        }
        if invite.body.is_empty() {
            return Err((
                488,
                "Not Acceptable Here (an SDP offer is required)".into(),
                "not_acceptable",
            ));
        }
        let offer = AudioOffer::parse(&invite.body).map_err(|err| {
            let reason = match err {
                SdpError::NoOpus => "Not Acceptable Here (Opus required)",
                SdpError::UnsupportedProfile => "Not Acceptable Here (plain RTP required)",
                _ => "Not Acceptable Here",
            };
            (488, reason.to_owned(), "not_acceptable")
        })?;
        let from_header = invite.header("From").and_then(NameAddr::parse);
        let name = caller_name(
            from_header.as_ref().and_then(|f| f.display),
            from_header
                .as_ref()
                .and_then(|f| uri_user(f.uri))
                .as_deref(),
        );
        Ok(CallSetup {
            call_id: invite.header("Call-ID").unwrap_or_default().to_owned(),
            room: room.to_owned(),
            password: password.to_owned(),
            name,
            identity: format!("sip-{:08x}", rand::random::<u32>()),
            offer,
            caller: from.ip(),
        })
    }

    async fn reinvite(&mut self, call_id: &str, invite: Message, from: SocketAddr) {
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        let (status, reason, body) = match (call.state, call.answer.as_mut()) {
            (State::Confirmed, Some(answer)) => match AudioOffer::parse(&invite.body) {
                Ok(offer) => {
                    answer.renegotiate(offer.clone());
                    let _ = call.commands.try_send(CallCommand::Media(offer));
                    (
                        200,
                        "OK",
                        Some(("application/sdp", answer.sdp().into_bytes())),
                    )
                }
                Err(_) if invite.body.is_empty() => (
                    200,
                    "OK",
                    Some(("application/sdp", answer.sdp().into_bytes())),
                ),
                Err(_) => (488, "Not Acceptable Here", None),
            },
            _ => (491, "Request Pending", None),
        };
        let contact = ("Contact", format!("<sip:confer@{}>", self.advertised));
        let response = dialog::response(
            &invite,
            from,
            status,
            reason,
            &call.local_tag,
            &[contact],
            body,
        );
        self.send(&response, from).await;
    }

    fn ack(&mut self, ack: &Message) {
        let Some(call) = ack.header("Call-ID").and_then(|id| self.calls.get_mut(id)) else {
            return;
        };
        call.retransmit = None;
        match call.state {
            State::Answered => call.state = State::Confirmed,
            State::Refused => call.end(Instant::now()),
            _ => {}
        }
    }

    async fn bye(&mut self, bye: &Message, from: SocketAddr) {
        let call_id = bye.header("Call-ID").unwrap_or_default();
        let Some(call) = self.calls.get_mut(call_id) else {
            self.no_such_call(bye, from).await;
            return;
        };
        let tag = call.local_tag.clone();
        if matches!(call.state, State::Answered | State::Confirmed) {
            let _ = call.commands.try_send(CallCommand::Hangup);
            if let Some(at) = call.answered_at {
                self.stats.ended("caller_hangup", at.elapsed());
            }
            call.end(Instant::now());
        }
        let response = dialog::response(bye, from, 200, "OK", &tag, &[], None);
        self.send(&response, from).await;
    }

    async fn cancel(&mut self, cancel: &Message, from: SocketAddr) {
        let call_id = cancel.header("Call-ID").unwrap_or_default().to_owned();
        let Some(call) = self.calls.get_mut(&call_id) else {
            self.no_such_call(cancel, from).await;
            return;
        };
        let tag = call.local_tag.clone();
        let proceeding = call.state == State::Proceeding;
        let invite = call.invite.clone();
        if proceeding {
            let _ = call.commands.try_send(CallCommand::Hangup);
        }
        let ok = dialog::response(cancel, from, 200, "OK", &tag, &[], None);
        self.send(&ok, from).await;
        if proceeding {
            self.stats.refused("cancelled");
            let terminated =
                dialog::response(&invite, from, 487, "Request Terminated", &tag, &[], None);
            let bytes = self.send(&terminated, from).await;
            if let Some(call) = self.calls.get_mut(&call_id) {
                call.refuse(bytes, Instant::now());
            }
        }
    }

    fn response(&mut self, status: u16, response: &Message) {
        if status < 200 || response.cseq().map(|(_, m)| m) != Some("BYE") {
            return;
        }
        if let Some(call) = response
            .header("Call-ID")
            .and_then(|id| self.calls.get_mut(id))
        {
            call.bye = None;
        }
    }

    async fn call_event(&mut self, event: CallEvent) {
        match event {
            CallEvent::Ringing { call_id } => {
                let Some(call) = self.calls.get_mut(&call_id) else {
                    return;
                };
                if call.state != State::Proceeding {
                    return;
                }
                let ringing = dialog::response(
                    &call.invite,
                    call.source,
                    180,
                    "Ringing",
                    &call.local_tag,
                    &[],
                    None,
                );
                let (source, bytes) = (call.source, ringing.to_bytes());
                call.last_response = Some(bytes.clone());
                let _ = self.socket.send_to(&bytes, source).await;
            }
            CallEvent::Answered { call_id, answer } => self.answered(&call_id, answer).await,
            CallEvent::Refused {
                call_id,
                status,
                reason,
                outcome,
            } => {
                let Some(call) = self.calls.get_mut(&call_id) else {
                    return;
                };
                if call.state != State::Proceeding {
                    return;
                }
                self.stats.refused(outcome);
                let response = dialog::response(
                    &call.invite,
                    call.source,
                    status,
                    reason,
                    &call.local_tag,
                    &[],
                    None,
                );
                let (source, bytes) = (call.source, response.to_bytes());
                call.refuse(bytes.clone(), Instant::now());
                let _ = self.socket.send_to(&bytes, source).await;
            }
            CallEvent::Ended { call_id, reason } => self.ended(&call_id, reason).await,
        }
    }

    async fn answered(&mut self, call_id: &str, answer: LocalAnswer) {
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        if call.state != State::Proceeding {
            // Cancelled meanwhile: the task has been told to hang up.
            return;
        }
        let now = Instant::now();
        let extra = [
            ("Contact", format!("<sip:confer@{}>", self.advertised)),
            ("Allow", ALLOW.to_owned()),
        ];
        let ok = dialog::response(
            &call.invite,
            call.source,
            200,
            "OK",
            &call.local_tag,
            &extra,
            Some(("application/sdp", answer.sdp().into_bytes())),
        );
        let bytes = ok.to_bytes();
        call.state = State::Answered;
        call.answered_at = Some(now);
        call.answer = Some(answer);
        call.last_response = Some(bytes.clone());
        call.retransmit = Some(Retransmit::new(bytes.clone(), call.source, now));
        self.stats.answered(now.duration_since(call.started));
        let _ = self.socket.send_to(&bytes, call.source).await;
    }

    /// The room's side ended an answered call: BYE.
    async fn ended(&mut self, call_id: &str, reason: &'static str) {
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        match call.state {
            State::Answered | State::Confirmed => {
                if let Some(at) = call.answered_at {
                    self.stats.ended(reason, at.elapsed());
                }
                info!(call = %call_id, reason, "hanging up");
                self.send_bye(call_id).await;
            }
            State::Proceeding => {
                // The task ended before answering or refusing (it cannot, but be safe).
                self.stats.refused("failed");
                let response = dialog::response(
                    &call.invite,
                    call.source,
                    500,
                    "Server Internal Error",
                    &call.local_tag,
                    &[],
                    None,
                );
                let bytes = response.to_bytes();
                let source = call.source;
                call.refuse(bytes.clone(), Instant::now());
                let _ = self.socket.send_to(&bytes, source).await;
            }
            State::Refused | State::Terminated => {}
        }
    }

    async fn send_bye(&mut self, call_id: &str) {
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        call.local_cseq += 1;
        let bye = dialog::bye(
            &call.invite,
            &call.local_tag,
            call.local_cseq,
            self.advertised,
        );
        let bytes = bye.to_bytes();
        let now = Instant::now();
        call.retransmit = None;
        call.bye = Some(Retransmit::new(bytes.clone(), call.source, now));
        call.end(now);
        let _ = self.socket.send_to(&bytes, call.source).await;
    }

    async fn hang_up_all(&mut self) {
        let up: Vec<String> = self
            .calls
            .iter()
            .filter(|(_, c)| {
                matches!(
                    c.state,
                    State::Answered | State::Confirmed | State::Proceeding
                )
            })
            .map(|(id, _)| id.clone())
            .collect();
        for call_id in up {
            let Some(call) = self.calls.get(&call_id) else {
                continue;
            };
            let _ = call.commands.try_send(CallCommand::Hangup);
            if call.state == State::Proceeding {
                let call = &self.calls[&call_id];
                let response = dialog::response(
                    &call.invite,
                    call.source,
                    503,
                    "Service Unavailable",
                    &call.local_tag,
                    &[],
                    None,
                );
                let source = call.source;
                self.send(&response, source).await;
                self.stats.refused("unavailable");
                if let Some(call) = self.calls.get_mut(&call_id) {
                    call.end(Instant::now());
                }
            } else {
                if let Some(at) = call.answered_at {
                    self.stats.ended("shutdown", at.elapsed());
                }
                self.send_bye(&call_id).await;
            }
        }
    }

    /// Re-sends what is unanswered; gives up on calls whose 200 OK was never ACKed.
    async fn retransmit(&mut self, now: Instant) {
        let mut unacked = Vec::new();
        let mut sends = Vec::new();
        for (call_id, call) in &mut self.calls {
            for slot in [&mut call.retransmit, &mut call.bye] {
                let Some(r) = slot else { continue };
                if now >= r.expires {
                    *slot = None;
                    if call.state == State::Answered {
                        unacked.push(call_id.clone());
                    }
                    continue;
                }
                if now >= r.next {
                    sends.push((r.bytes.clone(), r.to));
                    r.interval = (r.interval * 2).min(T2);
                    r.next = now + r.interval;
                }
            }
        }
        for (bytes, to) in sends {
            let _ = self.socket.send_to(&bytes, to).await;
        }
        for call_id in unacked {
            warn!(call = %call_id, "no ACK for the 200 OK: hanging up");
            if let Some(call) = self.calls.get(&call_id) {
                let _ = call.commands.try_send(CallCommand::Hangup);
                if let Some(at) = call.answered_at {
                    self.stats.ended("no_ack", at.elapsed());
                }
            }
            self.send_bye(&call_id).await;
        }
        self.calls.retain(|_, call| {
            call.ended_at
                .is_none_or(|at| now.duration_since(at) < TRANSACTION || call.bye.is_some())
        });
    }
}

impl Call {
    fn refused(
        invite: Message,
        source: SocketAddr,
        local_tag: String,
        bytes: Vec<u8>,
        now: Instant,
    ) -> Self {
        let (commands, _) = mpsc::channel(1);
        let mut call = Self {
            state: State::Proceeding,
            invite,
            source,
            local_tag,
            started: now,
            answered_at: None,
            last_response: None,
            answer: None,
            retransmit: None,
            bye: None,
            commands,
            local_cseq: 0,
            ended_at: None,
        };
        call.refuse(bytes, now);
        call
    }

    /// A final error response went out: re-send it until the ACK.
    fn refuse(&mut self, bytes: Vec<u8>, now: Instant) {
        self.state = State::Refused;
        self.last_response = Some(bytes.clone());
        self.retransmit = Some(Retransmit::new(bytes, self.source, now));
        self.ended_at = Some(now);
    }

    fn end(&mut self, now: Instant) {
        self.state = State::Terminated;
        self.ended_at = Some(now);
    }
}

/// A room name as signalling accepts it: 1–64 of `A-Za-z0-9._-`.
fn is_room_name(room: &str) -> bool {
    (1..=64).contains(&room.len())
        && room
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The participant name a caller gets: the From display name, else the calling number
/// or user, else "Phone"; printable, at most 64 characters.
fn caller_name(display: Option<&str>, user: Option<&str>) -> String {
    let name: String = display
        .or(user)
        .unwrap_or("Phone")
        .chars()
        .filter(|c| !c.is_control())
        .take(64)
        .collect();
    if name.trim().is_empty() {
        "Phone".to_owned()
    } else {
        name.trim().to_owned()
    }
}
