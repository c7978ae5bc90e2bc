//! The event loop that drives [`crate::core::Sfu`]: one UDP socket shared by every
//! peer, a timer, and the command channel from [`SfuHandle`].

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rtc::peer_connection::transport::RTCIceCandidateInit;
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc, watch};
use tracing::{debug, info};

use crate::SfuStats;
use crate::control::{Command, Occupancy, SfuHandle};
use crate::core::{Sfu, Timeouts};
use crate::impair::{Impairer, Impairment};

/// Configuration of the `sfu` role.
#[derive(Debug, Clone)]
pub struct SfuConfig {
    /// Where the media socket binds; port 0 picks a free port.
    pub media_bind: SocketAddr,
    /// The address put in ICE candidates when it differs from the bound one
    /// (a wildcard bind, NAT, a load balancer).
    pub announce_ip: Option<IpAddr>,
    pub timeouts: Timeouts,
    /// Drops a share of RTP datagrams (fault injection for tests and experiments).
    pub impairment: Impairment,
}

impl Default for SfuConfig {
    fn default() -> Self {
        Self {
            media_bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            announce_ip: None,
            timeouts: Timeouts::default(),
            impairment: Impairment::default(),
        }
    }
}

const MAX_DATAGRAM: usize = 2048;
const IDLE_WAKEUP: Duration = Duration::from_secs(1);

/// Binds the media socket and starts the media loop on the current runtime.
pub async fn start(
    config: SfuConfig,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<SfuHandle> {
    let socket = UdpSocket::bind(config.media_bind)
        .await
        .with_context(|| format!("failed to bind media port {}", config.media_bind))?;
    let bound = socket.local_addr().context("media socket has no address")?;
    let announce_ip = match config.announce_ip {
        Some(ip) => ip,
        None if bound.ip().is_unspecified() => {
            anyhow::bail!("media port bound to {bound}: set an announce address for ICE candidates")
        }
        None => bound.ip(),
    };
    let media_addr = SocketAddr::new(announce_ip, bound.port());
    let stats = SfuStats::default();
    let (commands, command_rx) = mpsc::channel(256);
    let (events, _) = broadcast::channel(1024);
    let sfu = Sfu::new(media_addr, config.timeouts, stats.clone());
    if config.impairment.is_active() {
        tracing::warn!(impairment = ?config.impairment, "media impairment on: RTP is dropped on purpose");
    }
    let impairer = Impairer::new(config.impairment);
    tokio::spawn(run(
        sfu,
        socket,
        impairer,
        command_rx,
        events.clone(),
        shutdown,
    ));
    info!(%bound, %media_addr, "media port listening");
    Ok(SfuHandle {
        draining: Default::default(),
        commands,
        events,
        stats,
        media_addr,
    })
}

async fn run(
    mut sfu: Sfu,
    socket: UdpSocket,
    mut impairer: Impairer,
    mut commands: mpsc::Receiver<Command>,
    events: broadcast::Sender<crate::SfuEvent>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        while let Some(transmit) = sfu.poll_transmit() {
            if impairer.drop_outbound(&transmit.bytes) {
                sfu.stats().impaired_drop();
                continue;
            }
            if let Err(err) = socket.send_to(&transmit.bytes, transmit.to).await {
                debug!(to = %transmit.to, %err, "send failed");
            }
        }
        while let Some(event) = sfu.poll_event() {
            // No subscriber is fine: nobody is listening yet.
            let _ = events.send(event);
        }
        let now = Instant::now();
        let deadline = sfu.poll_timeout().unwrap_or(now + IDLE_WAKEUP);
        if deadline <= now {
            sfu.handle_timeout(now);
            continue;
        }
        tokio::select! {
            _ = shutdown.changed() => break,
            command = commands.recv() => match command {
                Some(command) => handle_command(&mut sfu, command),
                None => break,
            },
            received = socket.recv_from(&mut buf) => match received {
                Ok((len, _)) if impairer.drop_inbound(&buf[..len]) => sfu.stats().impaired_drop(),
                Ok((len, from)) => sfu.handle_datagram(Instant::now(), from, &buf[..len]),
                // ICMP errors from earlier sends surface here on Linux; they concern one peer.
                Err(err) => debug!(%err, "receive failed"),
            },
            _ = tokio::time::sleep_until(deadline.into()) => sfu.handle_timeout(Instant::now()),
        }
    }
    info!("media loop stopped");
}

fn handle_command(sfu: &mut Sfu, command: Command) {
    let now = Instant::now();
    match command {
        Command::CreatePeer {
            room,
            participant,
            offer_sdp,
            reply,
        } => {
            let _ = reply.send(sfu.create_peer(now, room, participant, &offer_sdp));
        }
        Command::AddIceCandidate {
            participant,
            candidate,
            reply,
        } => {
            let init = RTCIceCandidateInit {
                candidate: candidate.candidate,
                sdp_mid: candidate.sdp_mid,
                sdp_mline_index: candidate.sdp_mline_index,
                ..Default::default()
            };
            let _ = reply.send(sfu.add_ice_candidate(&participant, init));
        }
        Command::RemovePeer { participant, reply } => {
            let _ = reply.send(sfu.remove_peer(now, &participant));
        }
        Command::SetBlocked {
            participant,
            source,
            blocked,
            reply,
        } => {
            let _ = reply.send(sfu.set_blocked(now, &participant, source, blocked));
        }
        Command::SetTrackSettings {
            participant,
            mid,
            wanted,
            reply,
        } => {
            let _ = reply.send(sfu.set_track_settings(now, &participant, &mid, wanted));
        }
        Command::Inspect { reply } => {
            let _ = reply.send(Occupancy {
                peers: sfu.n_peers(),
                rooms: sfu.n_rooms(),
            });
        }
    }
}
