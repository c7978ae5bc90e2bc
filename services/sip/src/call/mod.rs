//! One call's bridge: joins the room as a participant (signalling, then a WebRTC peer
//! on the room's SFU), and carries audio both ways between the caller's plain RTP and
//! the room. The SIP side (responses, BYE) stays with the server; this task tells it
//! what happened with [`CallEvent`]s and hears of hang-ups by [`CallCommand`]s.

mod media;
mod room;

use std::net::SocketAddr;

use anyhow::Context as _;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::{Instrument as _, info};

use crate::SipConfig;
use crate::sdp::{AudioOffer, LocalAnswer};
use crate::stats::SipStats;
use media::{Media, MediaEnd};

/// Who calls which room.
#[derive(Debug, Clone)]
pub struct CallSetup {
    pub call_id: String,
    pub room: String,
    pub password: String,
    pub name: String,
    pub identity: String,
    pub offer: AudioOffer,
    /// Where the INVITE came from (the trunk, or the caller itself).
    pub caller: std::net::IpAddr,
}

/// From a call's task to the SIP server.
#[derive(Debug)]
pub enum CallEvent {
    /// Waiting for a host to admit the caller: 180 Ringing.
    Ringing { call_id: String },
    /// In the room: 200 OK with this answer.
    Answered {
        call_id: String,
        answer: LocalAnswer,
    },
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
            | "removed" | "permission_denied" | "dial_in_disabled" => {
                (403, "Forbidden", "forbidden")
            }
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

/// Joins and bridges; `Ok(reason)` once an answered call ends. When the room moves to
/// another SFU (a drain), the bridge joins again and the call goes on.
async fn bridge(
    setup: &CallSetup,
    config: &SipConfig,
    stats: &SipStats,
    events: &mpsc::Sender<CallEvent>,
    commands: &mut mpsc::Receiver<CallCommand>,
) -> Result<&'static str, Refusal> {
    let caller = bind_rtp(config).await.map_err(Refusal::failed)?;
    // The INVITE's span covers joining: the gateway's join (and the room service's and
    // SFU's spans after it) are its children.
    let invite = tracing::info_span!(
        "sip.invite",
        otel.kind = "server",
        network.transport = "udp",
        room = %setup.room,
    );
    let room = room::enter(setup, config, events, commands, true)
        .instrument(invite)
        .await?;
    let local = caller.local_addr().map_err(|e| Refusal::failed(e.into()))?;
    let advertised = SocketAddr::new(config.advertise_ip, local.port());
    let _ = events
        .send(CallEvent::Answered {
            call_id: setup.call_id.clone(),
            answer: LocalAnswer::new(advertised, setup.offer.clone()),
        })
        .await;
    info!(call = %setup.call_id, room = %setup.room, rtp = %advertised, "call answered");
    let mut room = room;
    let mut media = Media::new(caller, &setup.offer, stats.clone(), config);
    loop {
        match media.run(&mut room, commands).await {
            MediaEnd::Moved => {
                info!(call = %setup.call_id, "the room moved to another media server: joining again");
                room.leave().await;
                let rejoin = tracing::info_span!(parent: None, "sip.rejoin", room = %setup.room);
                let entered = room::enter(setup, config, events, commands, false)
                    .instrument(rejoin)
                    .await;
                room = match entered {
                    Ok(room) => room,
                    Err(refusal) if refusal.outcome == "cancelled" => return Ok("caller_hangup"),
                    Err(refusal) => {
                        info!(call = %setup.call_id, detail = %refusal.detail, "could not join again");
                        return Ok("room_closed");
                    }
                };
            }
            MediaEnd::Ended { reason, left } => {
                if !left {
                    room.leave().await;
                }
                return Ok(reason);
            }
        }
    }
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
