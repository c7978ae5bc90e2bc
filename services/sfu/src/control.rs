//! The SFU's control API, as the gateway sees it.
//!
//! [`SfuApi`] is implemented in-process by [`SfuHandle`] (in `confer dev` and in tests)
//! and across the network by [`crate::grpc::GrpcSfu`]. The gateway holds an
//! `Arc<dyn SfuApi>` and cannot tell the two apart.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, mpsc, oneshot};
use tracing::debug;

use crate::core::{MediaKind, Quality, TrackSource, Wanted};
use crate::runtime::{Router, WorkerIndex, lock};
use crate::{ParticipantId, RoomId, SfuStats};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SfuError {
    #[error("invalid SDP offer: {0}")]
    InvalidOffer(String),
    #[error("invalid ICE candidate: {0}")]
    InvalidCandidate(String),
    #[error("no such peer")]
    UnknownPeer,
    #[error("no receive slot with mid {0:?}")]
    UnknownSlot(String),
    #[error("media server unavailable: {0}")]
    Unavailable(String),
    #[error("recording unavailable: {0}")]
    NoRecording(String),
    #[error("media server error: {0}")]
    Internal(String),
}

impl SfuError {
    pub(crate) fn internal(err: impl std::fmt::Display) -> Self {
        SfuError::Internal(err.to_string())
    }

    /// Stable code for clients and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            SfuError::InvalidOffer(_) => "invalid_sdp",
            SfuError::InvalidCandidate(_) => "invalid_candidate",
            SfuError::UnknownPeer => "not_joined",
            SfuError::UnknownSlot(_) => "unknown_slot",
            SfuError::Unavailable(_) => "media_unavailable",
            SfuError::NoRecording(_) => "recording_unavailable",
            SfuError::Internal(_) => "internal",
        }
    }
}

/// What the SFU tells the control plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SfuEvent {
    /// `publisher`'s `kind` track now flows to `subscriber` on its m-line `mid`.
    TrackAssigned {
        subscriber: ParticipantId,
        mid: String,
        publisher: ParticipantId,
        kind: MediaKind,
        source: TrackSource,
    },
    /// Nothing flows on `subscriber`'s m-line `mid` any more.
    TrackUnassigned {
        subscriber: ParticipantId,
        mid: String,
    },
    /// The participant started sending from `source` (a screen: when its first
    /// picture arrives, or the first after a pause).
    TrackPublished {
        participant: ParticipantId,
        source: TrackSource,
    },
    /// The participant stopped sending from `source`: the track ended, its peer went
    /// away, or a shared screen stopped arriving.
    TrackUnpublished {
        participant: ParticipantId,
        source: TrackSource,
    },
    /// The room's loudest participant changed (`None`: nobody is speaking).
    ActiveSpeaker {
        room: RoomId,
        participant: Option<ParticipantId>,
    },
    /// How well the participant's connection carries media now (told when it changes,
    /// and for the first time once anything was measured).
    ConnectionQuality {
        room: RoomId,
        participant: ParticipantId,
        quality: Quality,
    },
    /// The peer's connection failed, went silent or was closed by its participant, and
    /// the peer has been removed.
    PeerDisconnected {
        participant: ParticipantId,
        reason: String,
    },
}

/// A trickled ICE candidate from a client.
#[derive(Debug, Clone, Default)]
pub struct IceCandidate {
    pub candidate: String,
    pub sdp_mid: Option<String>,
    pub sdp_mline_index: Option<u16>,
}

/// Where and how an SFU receives one room's relay from another SFU: its media worker's
/// address, the link id and the key (see `core::relay`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayAddress {
    pub addr: SocketAddr,
    pub link_id: u64,
    pub key: [u8; 16],
}

/// Control operations on one SFU.
pub trait SfuApi: Send + Sync {
    fn create_peer(
        &self,
        room: RoomId,
        participant: ParticipantId,
        offer_sdp: String,
    ) -> BoxFuture<'_, Result<String, SfuError>>;
    fn add_ice_candidate(
        &self,
        participant: ParticipantId,
        candidate: IceCandidate,
    ) -> BoxFuture<'_, Result<(), SfuError>>;
    fn remove_peer(&self, participant: ParticipantId) -> BoxFuture<'_, Result<(), SfuError>>;
    /// Stops (`blocked`) or resumes forwarding the participant's `source` tracks.
    fn set_blocked(
        &self,
        participant: ParticipantId,
        source: TrackSource,
        blocked: bool,
    ) -> BoxFuture<'_, Result<(), SfuError>>;
    /// Starts or stops recording what the participant publishes, now and later.
    fn set_recording(
        &self,
        participant: ParticipantId,
        recording: bool,
    ) -> BoxFuture<'_, Result<(), SfuError>>;
    /// What the subscriber renders its slot `mid` at; chooses the simulcast layer.
    fn set_track_settings(
        &self,
        participant: ParticipantId,
        mid: String,
        wanted: Wanted,
    ) -> BoxFuture<'_, Result<(), SfuError>>;
    /// Where this SFU receives `room`'s relay from the SFU `remote_node` (the same
    /// answer until the link closes, so concurrent set-ups agree).
    fn relay_endpoint(
        &self,
        room: RoomId,
        remote_node: String,
    ) -> BoxFuture<'_, Result<RelayAddress, SfuError>>;
    /// Sends `room`'s local publications to `remote_node`, which receives at `remote`.
    fn connect_relay(
        &self,
        room: RoomId,
        remote_node: String,
        remote: RelayAddress,
    ) -> BoxFuture<'_, Result<(), SfuError>>;
    fn subscribe(&self) -> broadcast::Receiver<SfuEvent>;
}

pub(crate) enum Command {
    CreatePeer {
        room: RoomId,
        participant: ParticipantId,
        offer_sdp: String,
        /// The router's registration this peer belongs to.
        generation: u64,
        reply: oneshot::Sender<Result<String, SfuError>>,
    },
    AddIceCandidate {
        participant: ParticipantId,
        candidate: IceCandidate,
        reply: oneshot::Sender<Result<(), SfuError>>,
    },
    RemovePeer {
        participant: ParticipantId,
        reply: oneshot::Sender<Result<(), SfuError>>,
    },
    SetBlocked {
        participant: ParticipantId,
        source: TrackSource,
        blocked: bool,
        reply: oneshot::Sender<Result<(), SfuError>>,
    },
    SetRecording {
        participant: ParticipantId,
        recording: bool,
        reply: oneshot::Sender<Result<(), SfuError>>,
    },
    SetTrackSettings {
        participant: ParticipantId,
        mid: String,
        wanted: Wanted,
        reply: oneshot::Sender<Result<(), SfuError>>,
    },
    Inspect {
        reply: oneshot::Sender<Occupancy>,
    },
    RelayEndpoint {
        room: RoomId,
        remote_node: String,
        reply: oneshot::Sender<crate::core::RelayEndpoint>,
    },
    ConnectRelay {
        room: RoomId,
        remote_node: String,
        remote: RelayAddress,
        reply: oneshot::Sender<()>,
    },
    Relays {
        reply: oneshot::Sender<Vec<crate::core::RelayStatus>>,
    },
}

/// How much the SFU holds right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Occupancy {
    pub peers: usize,
    pub rooms: usize,
}

/// In-process handle to a running SFU; cheap to clone. The SFU stops when the last
/// handle is dropped or its shutdown signal fires.
///
/// Commands about a participant go to the media worker holding its room, as
/// [`Router`] recorded when the peer was created.
#[derive(Clone)]
pub struct SfuHandle {
    pub(crate) workers: Arc<[WorkerHandle]>,
    pub(crate) router: Arc<Mutex<Router>>,
    pub(crate) events: broadcast::Sender<SfuEvent>,
    pub(crate) stats: SfuStats,
    pub(crate) draining: Arc<AtomicBool>,
}

/// One media worker, as the handle reaches it.
pub(crate) struct WorkerHandle {
    pub(crate) commands: mpsc::Sender<Command>,
    pub(crate) media_addr: SocketAddr,
}

impl SfuHandle {
    /// The UDP address peers send media to (the first worker's; see [`Self::media_addrs`]).
    pub fn media_addr(&self) -> SocketAddr {
        self.workers[0].media_addr
    }

    /// Every media worker's UDP address, in worker order.
    pub fn media_addrs(&self) -> Vec<SocketAddr> {
        self.workers.iter().map(|w| w.media_addr).collect()
    }

    pub fn stats(&self) -> &SfuStats {
        &self.stats
    }

    /// Draining: keep the rooms held, report to discovery that no new ones should come.
    pub fn set_draining(&self, draining: bool) {
        self.draining.store(draining, Ordering::Relaxed);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Peers and rooms the core holds, asked of every media worker itself.
    pub async fn occupancy(&self) -> Result<Occupancy, SfuError> {
        let mut total = Occupancy::default();
        for worker in 0..self.workers.len() {
            let one = self
                .call(worker, |reply| Command::Inspect { reply })
                .await?;
            total.peers += one.peers;
            total.rooms += one.rooms;
        }
        Ok(total)
    }

    /// Every relay link the media workers hold, and whether each hears its far side.
    pub async fn relays(&self) -> Result<Vec<crate::core::RelayStatus>, SfuError> {
        let mut all = Vec::new();
        for worker in 0..self.workers.len() {
            all.extend(self.call(worker, |reply| Command::Relays { reply }).await?);
        }
        Ok(all)
    }

    async fn endpoint(&self, room: RoomId, remote_node: String) -> Result<RelayAddress, SfuError> {
        let worker = lock(&self.router).worker_for_room(&room);
        let endpoint = self
            .call(worker, |reply| Command::RelayEndpoint {
                room,
                remote_node,
                reply,
            })
            .await?;
        Ok(RelayAddress {
            addr: self.workers[worker].media_addr,
            link_id: endpoint.link_id,
            key: endpoint.key,
        })
    }

    async fn create(
        &self,
        room: RoomId,
        participant: ParticipantId,
        offer_sdp: String,
    ) -> Result<String, SfuError> {
        let assignment = lock(&self.router).register(&room, &participant);
        if let Some(previous) = assignment.previous {
            // The participant moves to a room on another worker: its old peer goes first.
            let removed = self
                .call(previous, |reply| Command::RemovePeer {
                    participant: participant.clone(),
                    reply,
                })
                .await;
            if let Ok(Err(err)) = removed {
                debug!(%participant, %err, "previous peer was already gone");
            }
        }
        let generation = assignment.generation;
        let answer = self
            .call(assignment.worker, |reply| Command::CreatePeer {
                room,
                participant: participant.clone(),
                offer_sdp,
                generation,
                reply,
            })
            .await
            .and_then(|answer| answer);
        if answer.is_err() {
            lock(&self.router).forget_generation(&participant, generation);
        }
        answer
    }

    /// Sends a command about `participant` to the worker holding its peer.
    async fn call_for<T>(
        &self,
        participant: &ParticipantId,
        command: impl FnOnce(oneshot::Sender<Result<T, SfuError>>) -> Command,
    ) -> Result<T, SfuError> {
        let worker = lock(&self.router)
            .worker_of(participant)
            .ok_or(SfuError::UnknownPeer)?;
        self.call(worker, command).await?
    }

    async fn call<T>(
        &self,
        worker: WorkerIndex,
        command: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, SfuError> {
        let (reply, response) = oneshot::channel();
        self.workers[worker]
            .commands
            .send(command(reply))
            .await
            .map_err(|_| SfuError::Unavailable("media loop stopped".into()))?;
        response
            .await
            .map_err(|_| SfuError::Unavailable("media loop stopped".into()))
    }
}

impl SfuApi for SfuHandle {
    fn create_peer(
        &self,
        room: RoomId,
        participant: ParticipantId,
        offer_sdp: String,
    ) -> BoxFuture<'_, Result<String, SfuError>> {
        let span = tracing::info_span!("sfu.create_peer", room = %room);
        Box::pin(tracing::Instrument::instrument(
            self.create(room, participant, offer_sdp),
            span,
        ))
    }

    fn add_ice_candidate(
        &self,
        participant: ParticipantId,
        candidate: IceCandidate,
    ) -> BoxFuture<'_, Result<(), SfuError>> {
        Box::pin(async move {
            self.call_for(&participant.clone(), |reply| Command::AddIceCandidate {
                participant,
                candidate,
                reply,
            })
            .await
        })
    }

    fn remove_peer(&self, participant: ParticipantId) -> BoxFuture<'_, Result<(), SfuError>> {
        Box::pin(async move {
            let registered = lock(&self.router).registration(&participant);
            let Some((worker, generation)) = registered else {
                return Err(SfuError::UnknownPeer);
            };
            let removed = self
                .call(worker, |reply| Command::RemovePeer {
                    participant: participant.clone(),
                    reply,
                })
                .await;
            lock(&self.router).forget_generation(&participant, generation);
            removed?
        })
    }

    fn set_blocked(
        &self,
        participant: ParticipantId,
        source: TrackSource,
        blocked: bool,
    ) -> BoxFuture<'_, Result<(), SfuError>> {
        Box::pin(async move {
            self.call_for(&participant.clone(), |reply| Command::SetBlocked {
                participant,
                source,
                blocked,
                reply,
            })
            .await
        })
    }

    fn set_recording(
        &self,
        participant: ParticipantId,
        recording: bool,
    ) -> BoxFuture<'_, Result<(), SfuError>> {
        Box::pin(async move {
            self.call_for(&participant.clone(), |reply| Command::SetRecording {
                participant,
                recording,
                reply,
            })
            .await
        })
    }

    fn set_track_settings(
        &self,
        participant: ParticipantId,
        mid: String,
        wanted: Wanted,
    ) -> BoxFuture<'_, Result<(), SfuError>> {
        Box::pin(async move {
            self.call_for(&participant.clone(), |reply| Command::SetTrackSettings {
                participant,
                mid,
                wanted,
                reply,
            })
            .await
        })
    }

    fn relay_endpoint(
        &self,
        room: RoomId,
        remote_node: String,
    ) -> BoxFuture<'_, Result<RelayAddress, SfuError>> {
        Box::pin(self.endpoint(room, remote_node))
    }

    fn connect_relay(
        &self,
        room: RoomId,
        remote_node: String,
        remote: RelayAddress,
    ) -> BoxFuture<'_, Result<(), SfuError>> {
        Box::pin(async move {
            let worker = lock(&self.router).worker_for_room(&room);
            self.call(worker, |reply| Command::ConnectRelay {
                room,
                remote_node,
                remote,
                reply,
            })
            .await
        })
    }

    fn subscribe(&self) -> broadcast::Receiver<SfuEvent> {
        self.events.subscribe()
    }
}
