//! One media worker: a thread running its own single-threaded runtime, with one UDP
//! socket, a timer and the command channel from [`crate::SfuHandle`], driving one
//! [`Sfu`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rtc::peer_connection::transport::RTCIceCandidateInit;
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc, watch};
use tracing::{debug, error, info};

use super::{Router, WorkerIndex, lock};
use crate::control::{Command, Occupancy};
use crate::core::Sfu;
use crate::impair::Impairer;
use crate::{ParticipantId, SfuEvent};

const MAX_DATAGRAM: usize = 2048;
const IDLE_WAKEUP: Duration = Duration::from_secs(1);
/// Datagrams read in one go once the socket is readable, before what they caused is
/// sent: one pass of the loop (timer, select) per batch instead of per datagram.
const RECEIVE_BATCH: usize = 32;

pub(super) struct Worker {
    pub(super) index: WorkerIndex,
    pub(super) sfu: Sfu,
    pub(super) impairer: Impairer,
    pub(super) commands: mpsc::Receiver<Command>,
    pub(super) events: broadcast::Sender<SfuEvent>,
    pub(super) router: Arc<Mutex<Router>>,
    pub(super) shutdown: watch::Receiver<bool>,
}

impl Worker {
    /// Runs the worker to its end on the calling thread.
    pub(super) fn run_on_own_runtime(self, socket: std::net::UdpSocket) {
        let index = self.index;
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(err) => {
                error!(worker = index, %err, "media worker could not start its runtime");
                return;
            }
        };
        runtime.block_on(async move {
            match UdpSocket::from_std(socket) {
                Ok(socket) => self.run(socket).await,
                Err(err) => error!(worker = index, %err, "media worker could not use its socket"),
            }
        });
    }

    async fn run(mut self, socket: UdpSocket) {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        // The router's generation of each peer here, to report its end.
        let mut generations = HashMap::new();
        loop {
            self.send_all(&socket).await;
            self.publish_events(&mut generations);
            let now = Instant::now();
            let deadline = self.sfu.poll_timeout().unwrap_or(now + IDLE_WAKEUP);
            if deadline <= now {
                self.sfu.handle_timeout(now);
                continue;
            }
            tokio::select! {
                _ = self.shutdown.changed() => break,
                command = self.commands.recv() => match command {
                    Some(command) => handle_command(&mut self.sfu, &mut generations, command),
                    None => break,
                },
                readable = socket.readable() => match readable {
                    Ok(()) => self.receive_batch(&socket, &mut buf),
                    Err(err) => debug!(%err, "media socket not readable"),
                },
                _ = tokio::time::sleep_until(deadline.into()) => self.sfu.handle_timeout(Instant::now()),
            }
        }
        info!(worker = self.index, "media worker stopped");
    }

    fn receive_batch(&mut self, socket: &UdpSocket, buf: &mut [u8]) {
        for _ in 0..RECEIVE_BATCH {
            match socket.try_recv_from(buf) {
                Ok((len, _)) if self.impairer.drop_inbound(&buf[..len]) => {
                    self.sfu.stats().impaired_drop()
                }
                Ok((len, from)) => self.sfu.handle_datagram(Instant::now(), from, &buf[..len]),
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => return,
                // ICMP errors from earlier sends surface here on Linux; they concern one peer.
                Err(err) => debug!(%err, "receive failed"),
            }
        }
    }

    async fn send_all(&mut self, socket: &UdpSocket) {
        while let Some(transmit) = self.sfu.poll_transmit() {
            if self.impairer.drop_outbound(&transmit.bytes) {
                self.sfu.stats().impaired_drop();
                continue;
            }
            if let Err(err) = socket.send_to(&transmit.bytes, transmit.to).await {
                debug!(to = %transmit.to, %err, "send failed");
            }
        }
    }

    fn publish_events(&mut self, generations: &mut HashMap<ParticipantId, u64>) {
        while let Some(event) = self.sfu.poll_event() {
            if let SfuEvent::PeerDisconnected { participant, .. } = &event
                && let Some(generation) = generations.remove(participant)
            {
                lock(&self.router).forget_generation(participant, generation);
            }
            // No subscriber is fine: nobody is listening yet.
            let _ = self.events.send(event);
        }
    }
}

fn handle_command(sfu: &mut Sfu, generations: &mut HashMap<ParticipantId, u64>, command: Command) {
    let now = Instant::now();
    match command {
        Command::CreatePeer {
            room,
            participant,
            offer_sdp,
            generation,
            reply,
        } => {
            let answer = sfu.create_peer(now, room, participant.clone(), &offer_sdp);
            if answer.is_ok() {
                generations.insert(participant, generation);
            }
            let _ = reply.send(answer);
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
            generations.remove(&participant);
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
        Command::RelayEndpoint {
            room,
            remote_node,
            reply,
        } => {
            let _ = reply.send(sfu.relay_endpoint(now, &room, &remote_node));
        }
        Command::ConnectRelay {
            room,
            remote_node,
            remote,
            reply,
        } => {
            let endpoint = crate::core::RelayEndpoint {
                link_id: remote.link_id,
                key: remote.key,
            };
            sfu.connect_relay(now, &room, &remote_node, remote.addr, &endpoint);
            let _ = reply.send(());
        }
        Command::Relays { reply } => {
            let _ = reply.send(sfu.relays(now));
        }
    }
}
