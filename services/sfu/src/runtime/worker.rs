//! One media worker: a thread running its own single-threaded runtime, with one UDP
//! socket, a timer and the command channel from [`crate::SfuHandle`], driving one
//! [`Sfu`].

use std::collections::HashMap;
use std::io::IoSlice;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use confer_metrics::Tally;
use rtc::peer_connection::transport::RTCIceCandidateInit;
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc, watch};
use tracing::{debug, error, info, warn};

use super::outbox::{Group, MAX_SEGMENTS, Outbox};
use super::{Router, WorkerIndex, lock, receive};
use crate::control::{Command, Occupancy};
use crate::core::Sfu;
use crate::impair::Impairer;
use crate::{ParticipantId, SfuEvent};

const MAX_DATAGRAM: usize = 2048;
const IDLE_WAKEUP: Duration = Duration::from_secs(1);
/// Datagrams read in one go once the socket is readable, before what they caused is
/// sent: one pass of the loop (timer, select) per batch instead of per datagram, and
/// a publisher's burst of packets reaches each subscriber as one GSO send.
const RECEIVE_BATCH: usize = 32;

pub(super) struct Worker {
    pub(super) index: WorkerIndex,
    pub(super) sfu: Sfu,
    pub(super) impairer: Impairer,
    pub(super) commands: mpsc::Receiver<Command>,
    pub(super) events: broadcast::Sender<SfuEvent>,
    pub(super) router: Arc<Mutex<Router>>,
    pub(super) shutdown: watch::Receiver<bool>,
    /// Forwarding delays since the last loop pass, added to the stats once per pass.
    pub(super) delays: Tally,
    /// What this pass sends, grouped per destination.
    pub(super) outbox: Outbox,
    /// Whether groups go out as one GSO send (off once the kernel refuses it).
    pub(super) gso: bool,
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
        let mut control = receive::control_buffer();
        // The router's generation of each peer here, to report its end.
        let mut generations = HashMap::new();
        loop {
            self.send_all(&socket).await;
            self.sfu.flush_recordings(Instant::now());
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
                    Ok(()) => self.receive_batch(&socket, &mut buf, &mut control),
                    Err(err) => debug!(%err, "media socket not readable"),
                },
                _ = tokio::time::sleep_until(deadline.into()) => self.sfu.handle_timeout(Instant::now()),
            }
        }
        info!(worker = self.index, "media worker stopped");
    }

    fn receive_batch(&mut self, socket: &UdpSocket, buf: &mut [u8], control: &mut [u8]) {
        for _ in 0..RECEIVE_BATCH {
            match receive::try_receive(socket, buf, control) {
                Ok(datagram) if self.impairer.drop_inbound(&buf[..datagram.len]) => {
                    self.sfu.stats().impaired_drop()
                }
                Ok(datagram) => {
                    let now = Instant::now();
                    self.sfu
                        .handle_datagram(now, datagram.from, &buf[..datagram.len]);
                    self.queue_output(datagram.waited);
                }
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => return,
                // ICMP errors from earlier sends surface here on Linux; they concern one peer.
                Err(err) => debug!(%err, "receive failed"),
            }
        }
    }

    /// Moves what the core has queued into the outbox. Everything queued since the
    /// last call was caused by one input; `waited` is how long that input sat in the
    /// socket's queue, which its packets' forwarding delay includes.
    fn queue_output(&mut self, waited: Duration) {
        while let Some(mut transmit) = self.sfu.poll_transmit() {
            if self.impairer.drop_outbound(&transmit.bytes) {
                self.sfu.stats().impaired_drop();
                continue;
            }
            transmit.rtp_since = transmit
                .rtp_since
                .map(|since| since.checked_sub(waited).unwrap_or(since));
            self.outbox.push(transmit, self.gso);
        }
    }

    async fn send_all(&mut self, socket: &UdpSocket) {
        self.queue_output(Duration::ZERO);
        if self.outbox.is_empty() {
            return;
        }
        for group in self.outbox.groups() {
            let sent = if group.count > 1 {
                match send_segments(socket, &self.outbox, group).await {
                    Ok(()) => true,
                    Err(err) => {
                        // Sent one by one instead; if that works, it was GSO that failed.
                        let fallback = send_each(socket, &self.outbox, group).await;
                        if fallback && self.gso {
                            warn!(worker = self.index, %err, "UDP GSO refused: one datagram per system call from now on");
                            self.gso = false;
                        }
                        fallback
                    }
                }
            } else {
                send_each(socket, &self.outbox, group).await
            };
            if sent {
                let now = Instant::now();
                for since in self.outbox.members(group).filter_map(|t| t.rtp_since) {
                    self.delays.observe(now.saturating_duration_since(since));
                }
            }
        }
        self.outbox.clear();
        self.sfu.stats().absorb_forward_delays(&mut self.delays);
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

/// Sends a group as one `sendmsg` with `UDP_SEGMENT`: the kernel cuts it into the
/// group's packets.
async fn send_segments(socket: &UdpSocket, outbox: &Outbox, group: &Group) -> std::io::Result<()> {
    use nix::sys::socket::{ControlMessage, MsgFlags, SockaddrStorage, sendmsg};
    use std::os::fd::AsRawFd as _;

    let mut slices = [IoSlice::new(&[]); MAX_SEGMENTS];
    for (slice, transmit) in slices.iter_mut().zip(outbox.members(group)) {
        *slice = IoSlice::new(&transmit.bytes);
    }
    let slices = &slices[..group.count.min(MAX_SEGMENTS)];
    let segment = u16::try_from(group.segment).map_err(std::io::Error::other)?;
    let to = SockaddrStorage::from(group.to);
    socket
        .async_io(Interest::WRITABLE, || {
            sendmsg(
                socket.as_raw_fd(),
                slices,
                &[ControlMessage::UdpGsoSegments(&segment)],
                MsgFlags::empty(),
                Some(&to),
            )
            .map(drop)
            .map_err(std::io::Error::from)
        })
        .await
}

/// Sends a group's packets one datagram per call; true when every one went.
async fn send_each(socket: &UdpSocket, outbox: &Outbox, group: &Group) -> bool {
    let mut all = true;
    for transmit in outbox.members(group) {
        if let Err(err) = socket.send_to(&transmit.bytes, transmit.to).await {
            debug!(to = %transmit.to, %err, "send failed");
            all = false;
        }
    }
    all
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
        Command::SetRecording {
            participant,
            recording,
            reply,
        } => {
            let _ = reply.send(sfu.set_recording(&participant, recording));
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
