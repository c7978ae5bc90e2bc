//! The control API over gRPC: [`serve`] exposes an [`SfuHandle`]; [`GrpcSfu`] is the
//! gateway's client, implementing the same [`SfuApi`].

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use confer_proto::sfu as pb;
use confer_proto::sfu::sfu_control_client::SfuControlClient;
use confer_proto::sfu::sfu_control_server::{SfuControl, SfuControlServer};
use confer_proto::tls::GrpcTls;
use confer_telemetry::propagate::{Traced, traced};
use tokio::sync::{broadcast, watch};
use tokio_stream::{Stream, StreamExt as _, wrappers::BroadcastStream};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};
use tracing::warn;

use crate::control::{
    BoxFuture, IceCandidate, RelayAddress, SfuApi, SfuError, SfuEvent, SfuHandle,
};
use crate::core::{MediaKind, Quality, TrackSource, Wanted};
use crate::{ParticipantId, RoomId};

/// Serves the control API for `sfu` on `listener` until `shutdown` fires; over mutual
/// TLS with `tls`.
pub async fn serve(
    sfu: SfuHandle,
    listener: tokio::net::TcpListener,
    tls: Option<GrpcTls>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let incoming = confer_proto::tls::incoming(listener, tls.as_ref());
    tonic::transport::Server::builder()
        .trace_fn(confer_telemetry::propagate::server_span)
        .add_service(SfuControlServer::new(ControlService { sfu }))
        .serve_with_incoming_shutdown(incoming, async move {
            let _ = shutdown.changed().await;
        })
        .await?;
    Ok(())
}

struct ControlService {
    sfu: SfuHandle,
}

fn status(err: SfuError) -> Status {
    match err {
        SfuError::InvalidOffer(_) | SfuError::InvalidCandidate(_) => {
            Status::invalid_argument(err.to_string())
        }
        SfuError::UnknownSlot(_) => Status::failed_precondition(err.to_string()),
        SfuError::UnknownPeer => Status::not_found(err.to_string()),
        SfuError::Unavailable(_) => Status::unavailable(err.to_string()),
        SfuError::NoRecording(_) => Status::unimplemented(err.to_string()),
        SfuError::Internal(_) => Status::internal(err.to_string()),
    }
}

fn from_status(status: Status) -> SfuError {
    match status.code() {
        tonic::Code::InvalidArgument => SfuError::InvalidOffer(status.message().to_owned()),
        tonic::Code::NotFound => SfuError::UnknownPeer,
        tonic::Code::FailedPrecondition => SfuError::UnknownSlot(status.message().to_owned()),
        // Also what an SFU of a release before recording answers.
        tonic::Code::Unimplemented => SfuError::NoRecording(status.message().to_owned()),
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded => {
            SfuError::Unavailable(status.message().to_owned())
        }
        _ => SfuError::Internal(status.message().to_owned()),
    }
}

fn event_to_pb(event: SfuEvent) -> pb::SfuEvent {
    use pb::sfu_event::Event;
    let event = match event {
        SfuEvent::TrackAssigned {
            subscriber,
            mid,
            publisher,
            kind,
            source,
        } => Event::TrackAssigned(pb::TrackAssigned {
            subscriber_id: subscriber.to_string(),
            mid,
            publisher_id: publisher.to_string(),
            kind: kind.as_str().to_owned(),
            source: source.as_str().to_owned(),
        }),
        SfuEvent::TrackUnassigned { subscriber, mid } => {
            Event::TrackUnassigned(pb::TrackUnassigned {
                subscriber_id: subscriber.to_string(),
                mid,
            })
        }
        SfuEvent::PeerDisconnected {
            participant,
            reason,
        } => Event::PeerDisconnected(pb::PeerDisconnected {
            participant_id: participant.to_string(),
            reason,
        }),
        SfuEvent::ConnectionQuality {
            room,
            participant,
            quality,
        } => Event::ConnectionQuality(pb::ConnectionQuality {
            room_id: room.to_string(),
            participant_id: participant.to_string(),
            quality: quality.as_str().to_owned(),
        }),
        SfuEvent::ActiveSpeaker { room, participant } => Event::ActiveSpeaker(pb::ActiveSpeaker {
            room_id: room.to_string(),
            participant_id: participant.map(|p| p.to_string()).unwrap_or_default(),
        }),
        SfuEvent::TrackPublished {
            participant,
            source,
        } => Event::TrackPublished(pb::TrackPublished {
            participant_id: participant.to_string(),
            kind: source.kind().as_str().to_owned(),
            source: source.as_str().to_owned(),
        }),
        SfuEvent::TrackUnpublished {
            participant,
            source,
        } => Event::TrackUnpublished(pb::TrackUnpublished {
            participant_id: participant.to_string(),
            kind: source.kind().as_str().to_owned(),
            source: source.as_str().to_owned(),
        }),
    };
    pb::SfuEvent { event: Some(event) }
}

fn event_from_pb(event: pb::SfuEvent) -> Option<SfuEvent> {
    use pb::sfu_event::Event;
    Some(match event.event? {
        Event::TrackAssigned(assigned) => SfuEvent::TrackAssigned {
            subscriber: ParticipantId::new(assigned.subscriber_id),
            mid: assigned.mid,
            publisher: ParticipantId::new(assigned.publisher_id),
            kind: MediaKind::parse(&assigned.kind)?,
            source: TrackSource::parse(&assigned.source)?,
        },
        Event::ConnectionQuality(rated) => SfuEvent::ConnectionQuality {
            quality: Quality::parse(&rated.quality)?,
            room: RoomId::new(rated.room_id),
            participant: ParticipantId::new(rated.participant_id),
        },
        Event::ActiveSpeaker(speaker) => SfuEvent::ActiveSpeaker {
            room: RoomId::new(speaker.room_id),
            participant: Some(speaker.participant_id)
                .filter(|id| !id.is_empty())
                .map(ParticipantId::new),
        },
        Event::TrackPublished(track) => SfuEvent::TrackPublished {
            source: track_source(&track.kind, &track.source)?,
            participant: ParticipantId::new(track.participant_id),
        },
        Event::TrackUnpublished(track) => SfuEvent::TrackUnpublished {
            source: track_source(&track.kind, &track.source)?,
            participant: ParticipantId::new(track.participant_id),
        },
        Event::TrackUnassigned(unassigned) => SfuEvent::TrackUnassigned {
            subscriber: ParticipantId::new(unassigned.subscriber_id),
            mid: unassigned.mid,
        },
        Event::PeerDisconnected(gone) => SfuEvent::PeerDisconnected {
            participant: ParticipantId::new(gone.participant_id),
            reason: gone.reason,
        },
    })
}

/// A track event's source; an SFU from before sources names the kind alone (its
/// microphone or camera).
fn track_source(kind: &str, source: &str) -> Option<TrackSource> {
    if source.is_empty() {
        return Some(match MediaKind::parse(kind)? {
            MediaKind::Audio => TrackSource::Microphone,
            MediaKind::Video => TrackSource::Camera,
        });
    }
    TrackSource::parse(source)
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::SfuEvent, Status>> + Send>>;

#[tonic::async_trait]
impl SfuControl for ControlService {
    async fn create_peer(
        &self,
        request: Request<pb::CreatePeerRequest>,
    ) -> Result<Response<pb::CreatePeerResponse>, Status> {
        let request = request.into_inner();
        let answer_sdp = self
            .sfu
            .create_peer(
                RoomId::new(request.room_id),
                ParticipantId::new(request.participant_id),
                request.offer_sdp,
            )
            .await
            .map_err(status)?;
        Ok(Response::new(pb::CreatePeerResponse { answer_sdp }))
    }

    async fn add_ice_candidate(
        &self,
        request: Request<pb::AddIceCandidateRequest>,
    ) -> Result<Response<pb::AddIceCandidateResponse>, Status> {
        let request = request.into_inner();
        let candidate = IceCandidate {
            candidate: request.candidate,
            sdp_mid: Some(request.sdp_mid).filter(|mid| !mid.is_empty()),
            sdp_mline_index: u16::try_from(request.sdp_mline_index).ok(),
        };
        self.sfu
            .add_ice_candidate(ParticipantId::new(request.participant_id), candidate)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::AddIceCandidateResponse {}))
    }

    async fn remove_peer(
        &self,
        request: Request<pb::RemovePeerRequest>,
    ) -> Result<Response<pb::RemovePeerResponse>, Status> {
        let participant = ParticipantId::new(request.into_inner().participant_id);
        self.sfu.remove_peer(participant).await.map_err(status)?;
        Ok(Response::new(pb::RemovePeerResponse {}))
    }

    async fn set_blocked(
        &self,
        request: Request<pb::SetBlockedRequest>,
    ) -> Result<Response<pb::SetBlockedResponse>, Status> {
        let request = request.into_inner();
        let source = TrackSource::parse(&request.source).ok_or_else(|| {
            Status::invalid_argument("source is `microphone`, `camera` or `screen_share`")
        })?;
        self.sfu
            .set_blocked(
                ParticipantId::new(request.participant_id),
                source,
                request.blocked,
            )
            .await
            .map_err(status)?;
        Ok(Response::new(pb::SetBlockedResponse {}))
    }

    async fn set_recording(
        &self,
        request: Request<pb::SetRecordingRequest>,
    ) -> Result<Response<pb::SetRecordingResponse>, Status> {
        let request = request.into_inner();
        self.sfu
            .set_recording(
                ParticipantId::new(request.participant_id),
                request.recording,
            )
            .await
            .map_err(status)?;
        Ok(Response::new(pb::SetRecordingResponse {}))
    }

    async fn set_track_settings(
        &self,
        request: Request<pb::SetTrackSettingsRequest>,
    ) -> Result<Response<pb::SetTrackSettingsResponse>, Status> {
        let request = request.into_inner();
        let wanted = Wanted::from_report(request.width, request.height, request.hidden);
        self.sfu
            .set_track_settings(
                ParticipantId::new(request.participant_id),
                request.mid,
                wanted,
            )
            .await
            .map_err(status)?;
        Ok(Response::new(pb::SetTrackSettingsResponse {}))
    }

    async fn set_draining(
        &self,
        request: Request<pb::SetDrainingRequest>,
    ) -> Result<Response<pb::SetDrainingResponse>, Status> {
        self.sfu.set_draining(request.into_inner().draining);
        let held = self.sfu.occupancy().await.map_err(status)?;
        Ok(Response::new(pb::SetDrainingResponse {
            rooms: u32::try_from(held.rooms).unwrap_or(u32::MAX),
            peers: u32::try_from(held.peers).unwrap_or(u32::MAX),
        }))
    }

    async fn relay_endpoint(
        &self,
        request: Request<pb::RelayEndpointRequest>,
    ) -> Result<Response<pb::RelayAddress>, Status> {
        let request = request.into_inner();
        if request.room_id.is_empty() || request.remote_node.is_empty() {
            return Err(Status::invalid_argument(
                "room_id and remote_node are required",
            ));
        }
        let address = self
            .sfu
            .relay_endpoint(RoomId::new(request.room_id), request.remote_node)
            .await
            .map_err(status)?;
        Ok(Response::new(address_to_pb(&address)))
    }

    async fn connect_relay(
        &self,
        request: Request<pb::ConnectRelayRequest>,
    ) -> Result<Response<pb::ConnectRelayResponse>, Status> {
        let request = request.into_inner();
        if request.room_id.is_empty() || request.remote_node.is_empty() {
            return Err(Status::invalid_argument(
                "room_id and remote_node are required",
            ));
        }
        let remote = request
            .remote
            .ok_or_else(|| Status::invalid_argument("remote is required"))
            .and_then(|remote| address_from_pb(remote).map_err(Status::invalid_argument))?;
        self.sfu
            .connect_relay(RoomId::new(request.room_id), request.remote_node, remote)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ConnectRelayResponse {}))
    }

    type WatchEventsStream = EventStream;

    async fn watch_events(
        &self,
        _request: Request<pb::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        let stream = BroadcastStream::new(self.sfu.subscribe()).filter_map(|event| match event {
            Ok(event) => Some(Ok(event_to_pb(event))),
            // A watcher that fell behind misses events; tell it rather than silently skip.
            Err(_) => Some(Err(Status::data_loss("event stream lagged"))),
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

fn address_to_pb(address: &RelayAddress) -> pb::RelayAddress {
    pb::RelayAddress {
        addr: address.addr.to_string(),
        link_id: address.link_id,
        key: address.key.to_vec(),
    }
}

fn address_from_pb(address: pb::RelayAddress) -> Result<RelayAddress, String> {
    Ok(RelayAddress {
        addr: address
            .addr
            .parse()
            .map_err(|_| format!("relay address `{}` is not host:port", address.addr))?,
        link_id: address.link_id,
        key: address
            .key
            .as_slice()
            .try_into()
            .map_err(|_| "relay key must be 16 bytes".to_owned())?,
    })
}

/// Client for a remote SFU's control API.
pub struct GrpcSfu {
    client: SfuControlClient<Traced<Channel>>,
    events: broadcast::Sender<SfuEvent>,
    /// The task relaying the SFU's events; it ends with this client.
    relay: tokio::task::AbortHandle,
    /// Since when the relay has failed to watch the SFU's events, while it fails.
    unreachable: Arc<Mutex<Option<Instant>>>,
}

impl Drop for GrpcSfu {
    fn drop(&mut self) {
        self.relay.abort();
    }
}

impl GrpcSfu {
    /// Connects lazily to `addr`, over mutual TLS with `tls`, and starts relaying its
    /// event stream, reconnecting when it breaks, for as long as this client lives.
    pub fn connect(addr: SocketAddr, tls: Option<&GrpcTls>) -> anyhow::Result<Self> {
        let endpoint = confer_proto::tls::endpoint(&addr.to_string())?
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(10));
        let client = SfuControlClient::new(traced(confer_proto::tls::lazy_channel(&endpoint, tls)));
        let (events, _) = broadcast::channel(1024);
        let unreachable = Arc::new(Mutex::new(None));
        let relay = tokio::spawn(relay_events(
            client.clone(),
            events.clone(),
            unreachable.clone(),
        ))
        .abort_handle();
        Ok(Self {
            client,
            events,
            relay,
            unreachable,
        })
    }

    /// How long the SFU's events have not been watched, while the relay cannot
    /// reach it.
    pub fn unreachable_for(&self) -> Option<Duration> {
        self.unreachable
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .map(|since| since.elapsed())
    }
}

/// After a broken event stream, or a first failure to open one, the relay tries again
/// this soon; each further failure doubles the wait, up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(10);

/// Relays the SFU's events. An SFU that cannot be reached is tried again less and
/// less often, and logged at the 1st, 2nd, 4th, 8th… failure in a row, so an SFU
/// gone for good costs a few log lines, not one every half second.
async fn relay_events(
    mut client: SfuControlClient<Traced<Channel>>,
    events: broadcast::Sender<SfuEvent>,
    unreachable: Arc<Mutex<Option<Instant>>>,
) {
    let since = |at: Option<Instant>| {
        *unreachable
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = at;
    };
    let mut failures: u64 = 0;
    let mut retry = RETRY_FIRST;
    loop {
        match client.watch_events(pb::WatchEventsRequest {}).await {
            Ok(response) => {
                if failures > 0 {
                    tracing::info!(failures, "sfu event stream open again");
                }
                failures = 0;
                retry = RETRY_FIRST;
                since(None);
                let mut stream = response.into_inner();
                while let Some(item) = stream.next().await {
                    match item {
                        Ok(event) => {
                            if let Some(event) = event_from_pb(event) {
                                let _ = events.send(event);
                            }
                        }
                        Err(err) => {
                            warn!(%err, "sfu event stream broke");
                            break;
                        }
                    }
                }
            }
            Err(err) => {
                if failures == 0 {
                    since(Some(Instant::now()));
                }
                failures += 1;
                if failures.is_power_of_two() {
                    warn!(%err, failures, "cannot watch sfu events");
                }
            }
        }
        tokio::time::sleep(retry).await;
        if failures > 0 {
            retry = (retry * 2).min(RETRY_MAX);
        }
    }
}

impl SfuApi for GrpcSfu {
    fn create_peer(
        &self,
        room: RoomId,
        participant: ParticipantId,
        offer_sdp: String,
    ) -> BoxFuture<'_, Result<String, SfuError>> {
        let mut client = self.client.clone();
        Box::pin(async move {
            let response = client
                .create_peer(pb::CreatePeerRequest {
                    room_id: room.to_string(),
                    participant_id: participant.to_string(),
                    offer_sdp,
                })
                .await
                .map_err(from_status)?;
            Ok(response.into_inner().answer_sdp)
        })
    }

    fn add_ice_candidate(
        &self,
        participant: ParticipantId,
        candidate: IceCandidate,
    ) -> BoxFuture<'_, Result<(), SfuError>> {
        let mut client = self.client.clone();
        Box::pin(async move {
            client
                .add_ice_candidate(pb::AddIceCandidateRequest {
                    participant_id: participant.to_string(),
                    candidate: candidate.candidate,
                    sdp_mid: candidate.sdp_mid.unwrap_or_default(),
                    sdp_mline_index: candidate.sdp_mline_index.map_or(0, u32::from),
                })
                .await
                .map_err(from_status)?;
            Ok(())
        })
    }

    fn remove_peer(&self, participant: ParticipantId) -> BoxFuture<'_, Result<(), SfuError>> {
        let mut client = self.client.clone();
        Box::pin(async move {
            client
                .remove_peer(pb::RemovePeerRequest {
                    participant_id: participant.to_string(),
                })
                .await
                .map_err(from_status)?;
            Ok(())
        })
    }

    fn set_blocked(
        &self,
        participant: ParticipantId,
        source: TrackSource,
        blocked: bool,
    ) -> BoxFuture<'_, Result<(), SfuError>> {
        let mut client = self.client.clone();
        Box::pin(async move {
            client
                .set_blocked(pb::SetBlockedRequest {
                    participant_id: participant.to_string(),
                    source: source.as_str().to_owned(),
                    blocked,
                })
                .await
                .map_err(from_status)?;
            Ok(())
        })
    }

    fn set_recording(
        &self,
        participant: ParticipantId,
        recording: bool,
    ) -> BoxFuture<'_, Result<(), SfuError>> {
        let mut client = self.client.clone();
        Box::pin(async move {
            client
                .set_recording(pb::SetRecordingRequest {
                    participant_id: participant.to_string(),
                    recording,
                })
                .await
                .map_err(from_status)?;
            Ok(())
        })
    }

    fn set_track_settings(
        &self,
        participant: ParticipantId,
        mid: String,
        wanted: Wanted,
    ) -> BoxFuture<'_, Result<(), SfuError>> {
        let mut client = self.client.clone();
        let (width, height, hidden) = match wanted {
            Wanted::Best => (0, 0, false),
            Wanted::Size { width, height } => (width, height, false),
            Wanted::Paused => (0, 0, true),
        };
        Box::pin(async move {
            client
                .set_track_settings(pb::SetTrackSettingsRequest {
                    participant_id: participant.to_string(),
                    mid,
                    width,
                    height,
                    hidden,
                })
                .await
                .map_err(from_status)?;
            Ok(())
        })
    }

    fn relay_endpoint(
        &self,
        room: RoomId,
        remote_node: String,
    ) -> BoxFuture<'_, Result<RelayAddress, SfuError>> {
        let mut client = self.client.clone();
        Box::pin(async move {
            let response = client
                .relay_endpoint(pb::RelayEndpointRequest {
                    room_id: room.to_string(),
                    remote_node,
                })
                .await
                .map_err(from_status)?;
            address_from_pb(response.into_inner()).map_err(SfuError::Internal)
        })
    }

    fn connect_relay(
        &self,
        room: RoomId,
        remote_node: String,
        remote: RelayAddress,
    ) -> BoxFuture<'_, Result<(), SfuError>> {
        let mut client = self.client.clone();
        Box::pin(async move {
            client
                .connect_relay(pb::ConnectRelayRequest {
                    room_id: room.to_string(),
                    remote_node,
                    remote: Some(address_to_pb(&remote)),
                })
                .await
                .map_err(from_status)?;
            Ok(())
        })
    }

    fn subscribe(&self) -> broadcast::Receiver<SfuEvent> {
        self.events.subscribe()
    }
}

#[cfg(test)]
mod relay_tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A listener that counts the connections made to it and never answers.
    async fn counting_listener() -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let count = Arc::new(AtomicUsize::new(0));
        let counted = count.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                drop(tcp);
            }
        });
        (addr, count)
    }

    #[tokio::test]
    async fn an_sfu_that_cannot_be_reached_is_tried_less_and_less_often() {
        let (addr, count) = counting_listener().await;
        let _sfu = GrpcSfu::connect(addr, None).expect("client");
        // Tries at 0, 0.5, 1.5 and 3.5 s; every 0.5 s would be 8 by now.
        tokio::time::sleep(Duration::from_millis(3_300)).await;
        let tries = count.load(Ordering::SeqCst);
        assert!((2..=4).contains(&tries), "tries in 3.3 s: {tries}");
    }

    #[tokio::test]
    async fn a_dropped_client_stops_watching_its_sfu() {
        let (addr, count) = counting_listener().await;
        let sfu = GrpcSfu::connect(addr, None).expect("client");
        // The relay keeps trying an SFU that does not answer.
        tokio::time::sleep(Duration::from_millis(1_300)).await;
        let while_alive = count.load(Ordering::SeqCst);
        assert!(while_alive >= 2, "the relay retries: {while_alive}");
        drop(sfu);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let at_drop = count.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(1_300)).await;
        assert_eq!(
            count.load(Ordering::SeqCst),
            at_drop,
            "no connection after the client is gone"
        );
    }
}

#[cfg(test)]
mod event_tests {
    use super::*;

    #[test]
    fn connection_quality_crosses_the_wire_and_an_unknown_level_is_dropped() {
        for quality in Quality::ALL {
            let event = SfuEvent::ConnectionQuality {
                room: RoomId::new("standup"),
                participant: ParticipantId::new("p1"),
                quality,
            };
            assert_eq!(event_from_pb(event_to_pb(event.clone())), Some(event));
        }
        let unknown = pb::SfuEvent {
            event: Some(pb::sfu_event::Event::ConnectionQuality(
                pb::ConnectionQuality {
                    room_id: "standup".into(),
                    participant_id: "p1".into(),
                    quality: "splendid".into(),
                },
            )),
        };
        assert_eq!(event_from_pb(unknown), None);
    }
}
