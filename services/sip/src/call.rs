//! One call's bridge: joins the room as a participant (signalling, then a WebRTC peer
//! on the room's SFU), and carries audio both ways between the caller's plain RTP and
//! the room. The SIP side (responses, BYE) stays with the server; this task tells it
//! what happened with [`CallEvent`]s and hears of hang-ups by [`CallCommand`]s.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::SipConfig;
use crate::peer::{PeerOutput, RoomPeer};
use crate::rtp::{RtpView, Splicer, write_packet};
use crate::sdp::AudioOffer;
use crate::signal::{Signal, SignalEvent};
use crate::speaker::Speaker;
use crate::stats::SipStats;

/// How long joining (and the SFU's answer) may take, outside a waiting room.
const JOIN_TIMEOUT: Duration = Duration::from_secs(15);
/// Signalling keep-alive.
const PING_EVERY: Duration = Duration::from_secs(15);
const IDLE_WAKEUP: Duration = Duration::from_millis(200);

/// Who calls which room.
#[derive(Debug, Clone)]
pub struct CallSetup {
    pub call_id: String,
    pub room: String,
    pub password: String,
    pub name: String,
    pub identity: String,
    pub offer: AudioOffer,
}

/// From a call's task to the SIP server.
#[derive(Debug)]
pub enum CallEvent {
    /// Waiting for a host to admit the caller: 180 Ringing.
    Ringing { call_id: String },
    /// In the room: 200 OK with this SDP.
    Answered { call_id: String, sdp: String },
    /// Not let in: a final error response.
    Refused {
        call_id: String,
        status: u16,
        reason: &'static str,
        outcome: &'static str,
    },
    /// The call is over on the room's side (after `Answered`: the server sends BYE).
    Ended {
        call_id: String,
        reason: &'static str,
    },
}

/// From the SIP server to a call's task.
#[derive(Debug)]
pub enum CallCommand {
    /// The caller hung up (BYE or CANCEL), or the server is stopping.
    Hangup,
    /// A re-INVITE moved or re-directed the caller's media.
    Media(AudioOffer),
}

/// Runs one call to its end.
pub async fn run(
    setup: CallSetup,
    config: SipConfig,
    stats: SipStats,
    events: mpsc::Sender<CallEvent>,
    mut commands: mpsc::Receiver<CallCommand>,
) {
    let call_id = setup.call_id.clone();
    let outcome = bridge(&setup, &config, &stats, &events, &mut commands).await;
    let event = match outcome {
        Ok(reason) => CallEvent::Ended { call_id, reason },
        Err(Refusal {
            status,
            reason,
            outcome,
            detail,
        }) => {
            info!(call = %setup.call_id, room = %setup.room, status, %detail, "call not connected");
            CallEvent::Refused {
                call_id,
                status,
                reason,
                outcome,
            }
        }
    };
    // The server may be gone (shutting down); nothing is left to tell then.
    let _ = events.send(event).await;
}

/// Why a call did not reach the room, as a SIP response.
#[derive(Debug)]
struct Refusal {
    status: u16,
    reason: &'static str,
    outcome: &'static str,
    detail: String,
}

impl Refusal {
    fn failed(err: anyhow::Error) -> Self {
        Self {
            status: 503,
            reason: "Service Unavailable",
            outcome: "failed",
            detail: format!("{err:#}"),
        }
    }

    /// A signalling error code (docs/signalling.md) as a SIP response.
    fn from_code(code: &str, message: &str) -> Self {
        let (status, reason, outcome) = match code {
            "invalid_room" => (404, "Not Found", "not_found"),
            "room_full" => (486, "Busy Here", "busy"),
            "password_required" | "password_invalid" | "room_locked" | "admission_denied"
            | "removed" | "permission_denied" => (403, "Forbidden", "forbidden"),
            code if code.starts_with("token_") => (403, "Forbidden", "forbidden"),
            "invalid_name" => (400, "Bad Request", "bad_request"),
            "invalid_sdp" => (488, "Not Acceptable Here", "not_acceptable"),
            _ => (503, "Service Unavailable", "unavailable"),
        };
        Self {
            status,
            reason,
            outcome,
            detail: format!("{code}: {message}"),
        }
    }

    fn cancelled() -> Self {
        Self {
            status: 487,
            reason: "Request Terminated",
            outcome: "cancelled",
            detail: "the caller cancelled".into(),
        }
    }
}

/// Joins and bridges; `Ok(reason)` once an answered call ends.
async fn bridge(
    setup: &CallSetup,
    config: &SipConfig,
    stats: &SipStats,
    events: &mpsc::Sender<CallEvent>,
    commands: &mut mpsc::Receiver<CallCommand>,
) -> Result<&'static str, Refusal> {
    let caller_socket = bind_rtp(config).await.map_err(Refusal::failed)?;
    let peer_socket = UdpSocket::bind((config.media_ip, 0))
        .await
        .context("failed to bind the room-side media socket")
        .map_err(Refusal::failed)?;
    let peer_local = SocketAddr::new(
        config.media_ip,
        peer_socket
            .local_addr()
            .map_err(|e| Refusal::failed(e.into()))?
            .port(),
    );
    let mut peer = RoomPeer::new(peer_local, Instant::now()).map_err(Refusal::failed)?;
    let mut signal = Signal::connect(&config.signal_url)
        .await
        .map_err(Refusal::failed)?;
    let token = config.token(&setup.room, &setup.identity, &setup.name);
    signal
        .join(&setup.room, &setup.name, &token, &setup.password)
        .await
        .map_err(Refusal::failed)?;
    let mut speaker = Speaker::default();
    // Joined (perhaps after a waiting room), then offer → answer.
    let mut deadline = Instant::now() + JOIN_TIMEOUT;
    let mut offered = false;
    loop {
        let event = tokio::select! {
            event = signal.next() => event,
            command = commands.recv() => match command {
                Some(CallCommand::Media(_)) => continue,
                _ => {
                    signal.leave().await;
                    return Err(Refusal::cancelled());
                }
            },
            _ = tokio::time::sleep_until(deadline.into()) => {
                signal.leave().await;
                return Err(Refusal::failed(anyhow::anyhow!("the room did not answer in {JOIN_TIMEOUT:?}")));
            }
        };
        match event {
            SignalEvent::Waiting => {
                // A host decides; the caller hears ringing meanwhile.
                deadline = Instant::now() + Duration::from_secs(24 * 60 * 60);
                let _ = events
                    .send(CallEvent::Ringing {
                        call_id: setup.call_id.clone(),
                    })
                    .await;
            }
            SignalEvent::Joined { .. } if !offered => {
                offered = true;
                deadline = Instant::now() + JOIN_TIMEOUT;
                let sdp = peer.offer(Instant::now()).map_err(Refusal::failed)?;
                signal.offer(&sdp).await.map_err(Refusal::failed)?;
            }
            SignalEvent::Answer { sdp } => {
                peer.accept_answer(sdp, Instant::now())
                    .map_err(Refusal::failed)?;
                break;
            }
            SignalEvent::TrackAssigned {
                mid,
                participant,
                kind,
            } if kind == "audio" => {
                speaker.assigned(&mid, &participant);
            }
            SignalEvent::Error { code, message, .. } => {
                signal.leave().await;
                return Err(Refusal::from_code(&code, &message));
            }
            SignalEvent::Closed => {
                return Err(Refusal::failed(anyhow::anyhow!(
                    "the gateway closed the signalling connection"
                )));
            }
            _ => {}
        }
    }
    let local = caller_socket
        .local_addr()
        .map_err(|e| Refusal::failed(e.into()))?;
    let advertised = SocketAddr::new(config.advertise_ip, local.port());
    let session = rand::random::<u32>().into();
    let _ = events
        .send(CallEvent::Answered {
            call_id: setup.call_id.clone(),
            sdp: setup.offer.answer(advertised, session, session),
        })
        .await;
    info!(call = %setup.call_id, room = %setup.room, rtp = %advertised, "call answered");
    let mut media = Media {
        caller: caller_socket,
        peer_socket,
        peer,
        speaker,
        offer: setup.offer.clone(),
        remote: setup.offer.remote,
        latched: false,
        from_caller: Splicer::new(0, 0),
        to_caller: Splicer::new(rand::random::<u32>() | 1, setup.offer.opus_pt),
        last_from_caller: Instant::now(),
        out: Vec::with_capacity(1500),
        stats: stats.clone(),
        media_timeout: config.media_timeout,
    };
    let reason = media.run(&mut signal, commands).await;
    media.peer.close();
    if reason != "room_closed" {
        signal.leave().await;
    }
    Ok(reason)
}

/// Binds the caller-side RTP socket, in the configured port range when there is one.
async fn bind_rtp(config: &SipConfig) -> anyhow::Result<UdpSocket> {
    let Some((low, high)) = config.rtp_ports else {
        return UdpSocket::bind((config.media_ip, 0))
            .await
            .context("failed to bind an RTP socket");
    };
    let span = u32::from(high - low) + 1;
    let start = rand::random::<u32>() % span;
    for i in 0..span {
        let port = low + ((start + i) % span) as u16;
        if let Ok(socket) = UdpSocket::bind((config.media_ip, port)).await {
            return Ok(socket);
        }
    }
    anyhow::bail!("no free RTP port in {low}-{high}")
}

/// The media of an answered call.
struct Media {
    caller: UdpSocket,
    peer_socket: UdpSocket,
    peer: RoomPeer,
    speaker: Speaker,
    offer: AudioOffer,
    /// Where the caller's RTP goes: the offer's address until the caller's first packet
    /// shows where it really comes from (symmetric RTP, through NATs).
    remote: SocketAddr,
    latched: bool,
    from_caller: Splicer,
    to_caller: Splicer,
    last_from_caller: Instant,
    out: Vec<u8>,
    stats: SipStats,
    media_timeout: Duration,
}

impl Media {
    async fn run(
        &mut self,
        signal: &mut Signal,
        commands: &mut mpsc::Receiver<CallCommand>,
    ) -> &'static str {
        let mut caller_buf = vec![0u8; 2048];
        let mut peer_buf = vec![0u8; 2048];
        let mut next_ping = Instant::now() + PING_EVERY;
        loop {
            self.flush_peer().await;
            let now = Instant::now();
            if self.offer.direction.caller_sends()
                && now.saturating_duration_since(self.last_from_caller) > self.media_timeout
            {
                warn!(remote = %self.remote, "no RTP from the caller: hanging up");
                return "media_timeout";
            }
            if next_ping <= now {
                next_ping = now + PING_EVERY;
                if signal.ping().await.is_err() {
                    return "room_closed";
                }
            }
            let deadline = self
                .peer
                .poll_timeout()
                .unwrap_or(now + IDLE_WAKEUP)
                .min(now + IDLE_WAKEUP);
            tokio::select! {
                command = commands.recv() => match command {
                    Some(CallCommand::Media(offer)) => self.redirect(offer),
                    _ => return "caller_hangup",
                },
                received = self.caller.recv_from(&mut caller_buf) => {
                    if let Ok((len, from)) = received {
                        self.caller_datagram(&caller_buf[..len], from);
                    }
                }
                received = self.peer_socket.recv_from(&mut peer_buf) => {
                    if let Ok((len, from)) = received {
                        self.peer.handle_datagram(&peer_buf[..len], from, Instant::now());
                    }
                }
                event = signal.next() => match event {
                    SignalEvent::TrackAssigned { mid, participant, kind } if kind == "audio" => {
                        self.speaker.assigned(&mid, &participant);
                    }
                    SignalEvent::TrackUnassigned { mid } => self.speaker.unassigned(&mid),
                    SignalEvent::ActiveSpeaker { participant } => {
                        self.speaker.active_speaker(&participant);
                    }
                    SignalEvent::Error { request_id, code, .. } if request_id.is_empty() => {
                        info!(%code, "the room ended the call");
                        return "room_closed";
                    }
                    SignalEvent::Closed => return "room_closed",
                    _ => {}
                },
                _ = tokio::time::sleep_until(deadline.into()) => {
                    if let Err(err) = self.peer.handle_timeout(Instant::now()) {
                        debug!(error = %err, "room peer timeout handling failed");
                    }
                }
            }
            if let Some(reason) = self.drain_peer() {
                return reason;
            }
        }
    }

    fn redirect(&mut self, offer: AudioOffer) {
        if offer.remote != self.offer.remote {
            self.remote = offer.remote;
            self.latched = false;
        }
        self.to_caller = Splicer::new(rand::random::<u32>() | 1, offer.opus_pt);
        self.offer = offer;
    }

    /// One datagram from the caller: Opus goes to the room, the rest is counted.
    fn caller_datagram(&mut self, datagram: &[u8], from: SocketAddr) {
        let view = match RtpView::parse(datagram) {
            Ok(view) => view,
            Err(_) => {
                self.stats.rtp_dropped("malformed");
                return;
            }
        };
        if !self.latched {
            // Symmetric RTP: answer where the caller's media really comes from.
            self.remote = from;
            self.latched = true;
        }
        self.last_from_caller = Instant::now();
        if Some(view.payload_type) == self.offer.dtmf_pt {
            self.stats.rtp_dropped("dtmf");
            return;
        }
        if view.payload_type != self.offer.opus_pt {
            self.stats.rtp_dropped("payload_type");
            return;
        }
        let now = Instant::now();
        let Some(header) = self
            .from_caller
            .header(view.ssrc, view.sequence, view.timestamp, now)
        else {
            return;
        };
        let payload = &datagram[view.payload.0..view.payload.1];
        if self.peer.send_audio(
            now,
            header.sequence,
            header.timestamp,
            view.marker || header.marker,
            payload,
        ) {
            self.stats.rtp_from_caller();
        }
    }

    /// Acts on what the peer connection produced; `Some(reason)` ends the call.
    fn drain_peer(&mut self) -> Option<&'static str> {
        while let Some(output) = self.peer.poll_output() {
            match output {
                PeerOutput::Connected => debug!("room peer connected"),
                PeerOutput::Failed => return Some("media_failed"),
                PeerOutput::Audio { mid, ssrc, packet } => {
                    let now = Instant::now();
                    if !self.offer.direction.caller_receives() || !self.speaker.forward(&mid, now) {
                        continue;
                    }
                    let Some(header) = self.to_caller.header(
                        ssrc,
                        packet.header.sequence_number,
                        packet.header.timestamp,
                        now,
                    ) else {
                        continue;
                    };
                    write_packet(&mut self.out, &header, &packet.payload);
                    if self.caller.try_send_to(&self.out, self.remote).is_ok() {
                        self.stats.rtp_to_caller();
                    }
                }
            }
        }
        None
    }

    async fn flush_peer(&mut self) {
        while let Some((datagram, to)) = self.peer.poll_transmit() {
            // One lost datagram is repaired by the media stack (NACK, retransmits).
            let _ = self.peer_socket.send_to(&datagram, to).await;
        }
    }
}
