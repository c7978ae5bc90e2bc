//! The call's side in the room: a signalling session and a WebRTC peer on the room's
//! SFU, brought up by [`enter`]: join (perhaps through a waiting room), offer, answer.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::{CallCommand, CallEvent, CallSetup, Refusal};
use crate::SipConfig;
use crate::peer::RoomPeer;
use crate::signal::{Signal, SignalEvent};
use crate::speaker::Speaker;

/// How long joining (and the SFU's answer) may take, outside a waiting room.
const JOIN_TIMEOUT: Duration = Duration::from_secs(15);

/// In the room: the session, the peer and its socket, who is on which slot.
pub(super) struct RoomSide {
    pub signal: Signal,
    pub peer: RoomPeer,
    pub socket: UdpSocket,
    pub speaker: Speaker,
    /// ICE and DTLS are done: media can go into the room.
    pub connected: bool,
    /// The caller's participant id in the room.
    pub you: String,
    /// The room had the caller muted when it joined.
    pub joined_muted: bool,
    /// The room is being recorded, as it last said.
    pub recording: bool,
}

impl RoomSide {
    /// Leaves the room (the peer closed, the session told).
    pub async fn leave(mut self) {
        self.peer.close();
        self.signal.leave().await;
    }
}

/// Joins `setup`'s room and negotiates the peer. `first`: the call's first join (a
/// waiting room rings the caller); later ones follow the room to another SFU.
pub(super) async fn enter(
    setup: &CallSetup,
    config: &SipConfig,
    events: &mpsc::Sender<CallEvent>,
    commands: &mut mpsc::Receiver<CallCommand>,
    first: bool,
) -> Result<RoomSide, Refusal> {
    let socket = UdpSocket::bind((config.media_ip, 0))
        .await
        .context("failed to bind the room-side media socket")
        .map_err(Refusal::failed)?;
    let port = socket
        .local_addr()
        .map_err(|e| Refusal::failed(e.into()))?
        .port();
    let peer = RoomPeer::new(SocketAddr::new(config.media_ip, port), Instant::now())
        .map_err(Refusal::failed)?;
    let mut signal = Signal::connect(&config.signal_url, setup.caller)
        .await
        .map_err(Refusal::failed)?;
    let token = config.token(&setup.room, &setup.identity, &setup.name);
    signal
        .join(
            &setup.room,
            &setup.name,
            &token,
            &setup.password,
            confer_telemetry::TraceContext::traceparent(&tracing::Span::current()).as_deref(),
        )
        .await
        .map_err(Refusal::failed)?;
    let mut side = RoomSide {
        signal,
        peer,
        socket,
        speaker: Speaker::default(),
        connected: false,
        you: String::new(),
        joined_muted: false,
        recording: false,
    };
    match negotiate(&mut side, setup, events, commands, first).await {
        Ok(()) => Ok(side),
        Err(refusal) => {
            side.leave().await;
            Err(refusal)
        }
    }
}

async fn negotiate(
    side: &mut RoomSide,
    setup: &CallSetup,
    events: &mpsc::Sender<CallEvent>,
    commands: &mut mpsc::Receiver<CallCommand>,
    first: bool,
) -> Result<(), Refusal> {
    let mut deadline = Instant::now() + JOIN_TIMEOUT;
    let mut offered = false;
    loop {
        let event = tokio::select! {
            event = side.signal.next() => event,
            command = commands.recv() => match command {
                Some(CallCommand::Media(_)) => continue,
                _ => return Err(Refusal::cancelled()),
            },
            _ = tokio::time::sleep_until(deadline.into()) => {
                return Err(Refusal::failed(anyhow::anyhow!("the room did not answer in {JOIN_TIMEOUT:?}")));
            }
        };
        match event {
            SignalEvent::Waiting => {
                // A host decides; a new caller hears ringing meanwhile.
                deadline = Instant::now() + Duration::from_secs(24 * 60 * 60);
                if first {
                    let _ = events
                        .send(CallEvent::Ringing {
                            call_id: setup.call_id.clone(),
                        })
                        .await;
                }
            }
            SignalEvent::Joined {
                you,
                muted,
                recording,
            } if !offered => {
                offered = true;
                side.you = you;
                side.joined_muted = muted;
                side.recording = recording;
                deadline = Instant::now() + JOIN_TIMEOUT;
                let sdp = side.peer.offer(Instant::now()).map_err(Refusal::failed)?;
                side.signal.offer(&sdp).await.map_err(Refusal::failed)?;
            }
            SignalEvent::Answer { sdp } => {
                return side
                    .peer
                    .accept_answer(sdp, Instant::now())
                    .map_err(Refusal::failed);
            }
            SignalEvent::TrackAssigned {
                mid,
                participant,
                kind,
            } if kind == "audio" => side.speaker.assigned(&mid, &participant),
            SignalEvent::RoomState { recording } => side.recording = recording,
            SignalEvent::Error { code, message, .. } => {
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
}
