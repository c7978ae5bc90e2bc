//! The sans-IO forwarding engine.
//!
//! [`Sfu`] takes datagrams, commands and `now`, and yields datagrams to send
//! ([`Sfu::poll_transmit`]), events for the control plane ([`Sfu::poll_event`]) and the
//! next instant it wants to be woken ([`Sfu::poll_timeout`]). It never reads the clock
//! and owns no socket, so tests drive it with a virtual clock.
//!
//! Forwarding model: each peer publishes tracks and exposes receive *slots*. Within a
//! room every published track is placed into one free slot of matching kind at every
//! other peer, in publication order; when a publisher leaves, its slots are freed and
//! refilled from tracks that did not fit. Packets are rewritten per slot (payload
//! type, SSRC, sequence, timestamp) and handed to that peer's WebRTC stack.
//!
//! Architecture invariant: one `Sfu` is driven by one thread; nothing here blocks.

mod codecs;
mod demux;
mod feedback;
mod forward;
mod frame;
mod layers;
mod loss_watch;
mod offer;
mod peer;
mod picture_ids;
mod quality;
mod record;
mod relay;
mod repair_stream;
mod resend_gate;
mod responder;
mod rewrite;
mod round_trip;
mod rtx;
mod rtx_receiver;
mod sent_packets;
mod simulcast;
mod source;
mod speaker;

pub use feedback::{FeedbackTap, TAP_SLOT};
pub(crate) use frame::sps_size as h264_sps_size;
pub use layers::Wanted;
pub use quality::Quality;
pub use relay::{LINK_DOWN_AFTER, LINK_GONE_AFTER, RelayEndpoint, RelayStatus};
pub use source::TrackSource;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rtc::peer_connection::event::{RTCPeerConnectionEvent, RTCTrackEvent};
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::transport::RTCIceCandidateInit;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use tracing::debug;

use crate::control::{SfuError, SfuEvent};
use crate::{ParticipantId, RoomId, SfuStats};
use codecs::Codec;
use demux::Demux;
use layers::Layer;
use peer::{Peer, PeerInit, Published, Source};
use relay::{Link, Remote};
use source::Blocked;

/// Index of a peer inside one [`Sfu`]; never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct PeerKey(pub(crate) u64);

/// Audio or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaKind {
    Audio,
    Video,
}

impl MediaKind {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "audio" => Some(MediaKind::Audio),
            "video" => Some(MediaKind::Video),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MediaKind::Audio => "audio",
            MediaKind::Video => "video",
        }
    }

    fn from_codec_kind(kind: RtpCodecKind) -> Option<Self> {
        match kind {
            RtpCodecKind::Audio => Some(MediaKind::Audio),
            RtpCodecKind::Video => Some(MediaKind::Video),
            _ => None,
        }
    }
}

/// A datagram to send from the media port.
#[derive(Debug)]
pub struct Transmit {
    pub to: SocketAddr,
    pub bytes: BytesMut,
    /// For an RTP packet a peer's stack produced (a forward, a retransmission): the
    /// instant of the input that caused it, from which its forwarding delay counts.
    pub rtp_since: Option<Instant>,
}

/// RTP, not RTCP, STUN or DTLS (RFC 7983 and RFC 5761: version 2, and a payload type
/// outside RTCP's packet types 192–223 once the marker bit is masked).
fn is_rtp(datagram: &[u8]) -> bool {
    datagram.len() >= 12 && datagram[0] >> 6 == 2 && !(64..=95).contains(&(datagram[1] & 0x7f))
}

/// A DTLS record that carries an alert: content type 21 in the record header, which
/// stays in the clear once the handshake is done (RFC 6347 §4.1).
fn is_dtls_alert(datagram: &[u8]) -> bool {
    datagram.len() >= 13 && datagram[0] == 21
}

/// Why a peer whose participant closed its connection was removed.
pub const CLOSED_BY_PARTICIPANT: &str = "closed by the participant";

/// Timeouts for peers that never connect or go silent.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// A peer must complete ICE and DTLS within this long of its creation.
    pub connect: Duration,
    /// A connected peer that sends nothing (browsers send STUN consent checks every
    /// few seconds) for this long is gone.
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(20),
            idle: Duration::from_secs(15),
        }
    }
}

/// Minimum spacing of keyframe requests sent to one publisher track.
const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(300);
/// How often peers are checked against [`Timeouts`].
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_millis(500);

#[derive(Default)]
struct Room {
    members: Vec<PeerKey>,
    /// Published tracks in publication order: this order decides who gets a slot.
    publications: Vec<(PeerKey, String, MediaKind)>,
    /// The loudest publisher at the last check.
    active_speaker: Option<PeerKey>,
    /// Relay links to the room's SFUs in other regions.
    links: Vec<u64>,
}

/// A publication, wherever its publisher is: a local peer or a remote participant.
fn publication<'a>(
    peers: &'a HashMap<PeerKey, Peer>,
    remotes: &'a HashMap<PeerKey, Remote>,
    source: &Source,
) -> Option<&'a Published> {
    match peers.get(&source.publisher) {
        Some(peer) => peer.published.get(&source.track_id),
        None => remotes
            .get(&source.publisher)?
            .published
            .get(&source.track_id),
    }
}

/// What the forwarding path needs of a publisher, local or remote.
struct Publisher<'a> {
    published: &'a mut HashMap<String, Published>,
    blocked: &'a Blocked,
    room: &'a RoomId,
    participant: &'a ParticipantId,
    /// A remote publisher's link; `None` for a local peer.
    link: Option<u64>,
}

fn publisher_mut<'a>(
    peers: &'a mut HashMap<PeerKey, Peer>,
    remotes: &'a mut HashMap<PeerKey, Remote>,
    key: PeerKey,
) -> Option<Publisher<'a>> {
    if let Some(peer) = peers.get_mut(&key) {
        return Some(Publisher {
            published: &mut peer.published,
            blocked: &peer.blocked,
            room: &peer.room,
            participant: &peer.participant,
            link: None,
        });
    }
    let remote = remotes.get_mut(&key)?;
    Some(Publisher {
        published: &mut remote.published,
        blocked: &remote.blocked,
        room: &remote.room,
        participant: &remote.participant,
        link: Some(remote.link),
    })
}

pub struct Sfu {
    media_addr: SocketAddr,
    timeouts: Timeouts,
    stats: SfuStats,
    next_key: u64,
    peers: HashMap<PeerKey, Peer>,
    by_participant: HashMap<ParticipantId, PeerKey>,
    rooms: HashMap<RoomId, Room>,
    demux: Demux,
    /// Every peer's next timer, ordered: the earliest deadline and the due peers are
    /// found without visiting every peer.
    timers: BTreeSet<(Instant, PeerKey)>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<SfuEvent>,
    next_housekeeping: Option<Instant>,
    /// When peers' connection quality is next worked out.
    next_rating: Option<Instant>,
    /// Subscribers whose layer choice must be made again (sources, sizes or layers changed).
    dirty: Vec<PeerKey>,
    /// Relay links by the id this SFU receives them with.
    links: HashMap<u64, Link>,
    /// Participants of other SFUs whose publications arrive over links.
    remotes: HashMap<PeerKey, Remote>,
    /// The number the next local publication is relayed under.
    next_relay_track: u32,
    /// What was relayed lately, to resend what a far side missed.
    relay_cache: relay::SentCache,
    /// Where the relay heartbeat clock starts.
    relay_epoch: Option<Instant>,
    /// The connected peer whose DTLS alert is being read, and, once its stack has
    /// answered it, the peer that closed its connection.
    alert_from: Option<PeerKey>,
    closed_by: Option<PeerKey>,
    /// Where recorded publications go; `None`: this SFU records nothing.
    recorder: Option<crate::record::Recorder>,
}

impl Sfu {
    /// `media_addr` is the address peers send media to: the socket's, or the one
    /// announced in front of it.
    pub fn new(media_addr: SocketAddr, timeouts: Timeouts, stats: SfuStats) -> Self {
        Self {
            media_addr,
            timeouts,
            stats,
            next_key: 0,
            peers: HashMap::new(),
            by_participant: HashMap::new(),
            rooms: HashMap::new(),
            demux: Demux::default(),
            timers: BTreeSet::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            next_housekeeping: None,
            next_rating: None,
            dirty: Vec::new(),
            links: HashMap::new(),
            remotes: HashMap::new(),
            next_relay_track: 0,
            relay_cache: relay::SentCache::default(),
            relay_epoch: None,
            alert_from: None,
            closed_by: None,
            recorder: None,
        }
    }

    /// Records what peers set to be recorded publish, with `recorder`.
    pub fn with_recorder(mut self, recorder: Option<crate::record::Recorder>) -> Self {
        self.set_recorder(recorder);
        self
    }

    /// As [`Self::with_recorder`], on a running core.
    pub fn set_recorder(&mut self, recorder: Option<crate::record::Recorder>) {
        self.recorder = recorder;
    }

    pub fn stats(&self) -> &SfuStats {
        &self.stats
    }

    pub fn n_peers(&self) -> usize {
        self.peers.len()
    }

    pub fn n_rooms(&self) -> usize {
        self.rooms.len()
    }

    /// Creates the participant's peer from its offer and returns the SDP answer. A
    /// participant that already has a peer (a reconnect) gets a fresh one.
    pub fn create_peer(
        &mut self,
        now: Instant,
        room: RoomId,
        participant: ParticipantId,
        offer_sdp: &str,
    ) -> Result<String, SfuError> {
        if let Some(old) = self.by_participant.get(&participant).copied() {
            self.remove_peer_by_key(now, old, None);
        }
        let key = PeerKey(self.next_key);
        self.next_key += 1;
        let (peer, answer) = Peer::answer_offer(
            now,
            PeerInit {
                key,
                room: room.clone(),
                participant: participant.clone(),
                offer_sdp,
                media_addr: self.media_addr,
                stats: self.stats.clone(),
            },
        )?;
        self.demux.add_peer(peer.ufrag.clone(), key);
        if let Some(at) = peer.next_timeout {
            self.timers.insert((at, key));
        }
        self.peers.insert(key, peer);
        self.by_participant.insert(participant, key);
        self.rooms
            .entry(room.clone())
            .or_default()
            .members
            .push(key);
        self.stats.peer_created();
        self.fill_slots(&room);
        self.drive(now, key);
        Ok(answer)
    }

    pub fn add_ice_candidate(
        &mut self,
        participant: &ParticipantId,
        candidate: RTCIceCandidateInit,
    ) -> Result<(), SfuError> {
        let key = self.key_of(participant)?;
        let peer = self.peers.get_mut(&key).ok_or(SfuError::UnknownPeer)?;
        // ICE-lite learns the client's address from its checks; a trickled candidate that
        // the stack cannot parse is the client's mistake, not a reason to drop the peer.
        peer.pc
            .add_remote_candidate(candidate)
            .map_err(|err| SfuError::InvalidCandidate(err.to_string()))
    }

    pub fn remove_peer(
        &mut self,
        now: Instant,
        participant: &ParticipantId,
    ) -> Result<(), SfuError> {
        let key = self.key_of(participant)?;
        self.remove_peer_by_key(now, key, None);
        Ok(())
    }

    /// Stops or resumes forwarding the participant's `source` tracks. Resuming video
    /// asks the publisher for a keyframe so subscribers recover at once.
    pub fn set_blocked(
        &mut self,
        now: Instant,
        participant: &ParticipantId,
        source: TrackSource,
        blocked: bool,
    ) -> Result<(), SfuError> {
        let key = self.key_of(participant)?;
        let peer = self.peers.get_mut(&key).ok_or(SfuError::UnknownPeer)?;
        peer.blocked.set(source, blocked);
        if !blocked && source.kind() == MediaKind::Video {
            let layers: Vec<(Source, u32)> = peer
                .published
                .iter()
                .filter(|(_, p)| p.source == source)
                .flat_map(|(id, p)| {
                    p.layers.iter().map(|layer| {
                        let source = Source {
                            publisher: key,
                            track_id: id.clone(),
                        };
                        (source, layer.ssrc)
                    })
                })
                .collect();
            let mut touched = Vec::new();
            for (source, ssrc) in layers {
                self.request_keyframe(now, &source, ssrc, &mut touched);
            }
            for key in touched {
                self.flush(key);
            }
        }
        Ok(())
    }

    fn key_of(&self, participant: &ParticipantId) -> Result<PeerKey, SfuError> {
        self.by_participant
            .get(participant)
            .copied()
            .ok_or(SfuError::UnknownPeer)
    }

    /// Feeds one datagram received on the media port.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        self.stats.datagram_received();
        if datagram.first() == Some(&relay::seal::RELAY_MARK) {
            self.handle_relay_datagram(now, datagram);
            return;
        }
        let Some(key) = self.demux.route(from, datagram) else {
            self.stats.datagram_unroutable();
            return;
        };
        let Some(peer) = self.peers.get_mut(&key) else {
            self.stats.datagram_unroutable();
            return;
        };
        peer.last_received = now;
        let input = TaggedBytesMut {
            now,
            transport: TransportContext {
                local_addr: self.media_addr,
                peer_addr: from,
                ecn: None,
                transport_protocol: TransportProtocol::UDP,
            },
            message: BytesMut::from(datagram),
        };
        // A connected peer's alert that its stack answers with one of its own is its
        // `close_notify` (or a fatal alert): the participant closed its connection, and
        // it ends here now, not when its silence runs out. The stack drops a record it
        // cannot authenticate without an answer, so a forged alert ends nothing.
        self.alert_from = (peer.connected && is_dtls_alert(datagram)).then_some(key);
        if let Err(err) = peer.pc.handle_read(input) {
            self.stats.datagram_rejected();
            debug!(participant = %peer.participant, %err, "datagram rejected");
        }
        self.drive(now, key);
        self.alert_from = None;
        if let Some(closed) = self.closed_by.take() {
            self.remove_peer_by_key(now, closed, Some(CLOSED_BY_PARTICIPANT));
        }
    }

    /// Runs timers that are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<PeerKey> = self
            .timers
            .range(..=(now, PeerKey(u64::MAX)))
            .map(|(_, key)| *key)
            .collect();
        for key in due {
            if let Some(peer) = self.peers.get_mut(&key) {
                if let Err(err) = peer.pc.handle_timeout(now) {
                    debug!(participant = %peer.participant, %err, "timer failed");
                }
                self.drive(now, key);
            }
        }
        if self.next_housekeeping.is_none_or(|at| at <= now) {
            self.expire_peers(now);
            self.rate_connections(now);
            self.detect_speakers();
            self.retire_idle_screens(now);
            self.tend_relays(now);
            // Layers start and stop and bitrates move: choose again, and ask again for
            // the keyframes pending switches wait for.
            self.dirty.extend(self.peers.keys().copied());
            let mut touched = Vec::new();
            self.settle(now, &mut touched);
            for key in touched {
                self.flush(key);
            }
            self.next_housekeeping = Some(now + HOUSEKEEPING_INTERVAL);
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers
            .first()
            .map(|(at, _)| *at)
            .into_iter()
            .chain(self.next_housekeeping)
            .min()
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<SfuEvent> {
        self.events.pop_front()
    }

    /// Adds an audio packet's level to its publisher's meter (not while blocked: a
    /// host-muted participant is not the speaker).
    fn meter_audio_level(&mut self, publisher: PeerKey, track_id: &str, packet: &rtc::rtp::Packet) {
        let Some(peer) = publisher_mut(&mut self.peers, &mut self.remotes, publisher) else {
            return;
        };
        if peer.blocked.contains(TrackSource::Microphone) {
            return;
        }
        let Some(published) = peer.published.get_mut(track_id) else {
            return;
        };
        let level = published
            .audio_level_ext
            .and_then(|id| packet.header.get_extension(id))
            .and_then(|payload| speaker::parse_audio_level(&payload));
        if let Some(level) = level {
            published.meter.add(level);
        }
    }

    /// Names each room's loudest publisher over the last window; tells the control
    /// plane when that changes.
    fn detect_speakers(&mut self) {
        for (room_id, room) in &mut self.rooms {
            let mut candidates = Vec::new();
            for (publisher, track_id, kind) in &room.publications {
                if *kind != MediaKind::Audio {
                    continue;
                }
                let Some(published) = publisher_mut(&mut self.peers, &mut self.remotes, *publisher)
                    .and_then(|peer| peer.published.get_mut(track_id))
                else {
                    continue;
                };
                candidates.push((*publisher, published.meter.take()));
            }
            let speaker = speaker::loudest(candidates);
            if speaker != room.active_speaker {
                room.active_speaker = speaker;
                let participant = speaker.and_then(|key| {
                    self.peers
                        .get(&key)
                        .map(|peer| peer.participant.clone())
                        .or_else(|| self.remotes.get(&key).map(|r| r.participant.clone()))
                });
                self.events.push_back(SfuEvent::ActiveSpeaker {
                    room: room_id.clone(),
                    participant,
                });
            }
        }
    }

    fn expire_peers(&mut self, now: Instant) {
        let expired: Vec<(PeerKey, &'static str)> = self
            .peers
            .iter()
            .filter_map(|(key, peer)| {
                let reason = if !peer.connected
                    && now.duration_since(peer.created_at) > self.timeouts.connect
                {
                    "connection not established in time"
                } else if peer.connected
                    && now.duration_since(peer.last_received) > self.timeouts.idle
                {
                    "no media or consent checks received"
                } else {
                    return None;
                };
                Some((*key, reason))
            })
            .collect();
        for (key, reason) in expired {
            self.remove_peer_by_key(now, key, Some(reason));
        }
    }

    /// Every [`quality::WINDOW`]: each connected peer's level from what its link
    /// carried; the room is told of changes, the metrics get the count per level.
    fn rate_connections(&mut self, now: Instant) {
        let Some(at) = self.next_rating else {
            self.next_rating = Some(now + quality::WINDOW);
            return;
        };
        if at > now {
            return;
        }
        self.next_rating = Some(now + quality::WINDOW);
        let mut counts = [0u64; Quality::ALL.len()];
        for peer in self.peers.values_mut().filter(|peer| peer.connected) {
            let sample = peer.rating.take_sample();
            let silent = now.duration_since(peer.last_received) > quality::SILENT_FOR;
            let level = quality::Rating::level(&sample, silent);
            let told = peer.rating.file(level);
            if let Some(changed) = told {
                debug!(participant = %peer.participant, quality = changed.as_str(), ?sample, "connection quality");
                self.stats.quality_changed(changed.index());
            }
            if let Some(changed) = told.or_else(|| peer.rating.tell_again()) {
                self.events.push_back(SfuEvent::ConnectionQuality {
                    room: peer.room.clone(),
                    participant: peer.participant.clone(),
                    quality: changed,
                });
            }
            if let Some(told) = peer.rating.reported() {
                counts[told.index()] += 1;
            }
        }
        self.stats.peers_rated(counts);
        self.relay_qualities();
    }

    /// Processes everything the peer's stack has produced, then flushes output.
    fn drive(&mut self, now: Instant, key: PeerKey) {
        let mut touched = vec![key];
        self.drain_peer_events(now, key, &mut touched);
        self.drain_peer_reads(now, key, &mut touched);
        if let Some(bps) = self.peers.get(&key).and_then(|peer| peer.estimates.take()) {
            self.stats.bandwidth_estimate(true);
            self.on_estimate(now, key, bps as f32);
        }
        self.settle(now, &mut touched);
        touched.sort_unstable();
        touched.dedup();
        for touched_key in touched {
            self.flush(touched_key);
        }
    }

    fn flush(&mut self, key: PeerKey) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        while let Some(out) = peer.pc.poll_write() {
            if self.alert_from == Some(key) && is_dtls_alert(&out.message) {
                self.closed_by = Some(key);
            }
            let rtp_since = is_rtp(&out.message).then_some(out.now);
            self.transmits.push_back(Transmit {
                to: out.transport.peer_addr,
                bytes: out.message,
                rtp_since,
            });
        }
        let next = peer.pc.poll_timeout();
        let before = std::mem::replace(&mut peer.next_timeout, next);
        if before != next {
            if let Some(at) = before {
                self.timers.remove(&(at, key));
            }
            if let Some(at) = next {
                self.timers.insert((at, key));
            }
        }
    }

    fn drain_peer_events(&mut self, now: Instant, key: PeerKey, touched: &mut Vec<PeerKey>) {
        loop {
            let Some(peer) = self.peers.get_mut(&key) else {
                return;
            };
            let Some(event) = peer.pc.poll_event() else {
                return;
            };
            match event {
                RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnOpen(init)) => {
                    self.on_track_open(now, key, init, touched);
                }
                RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnClose(track_id)) => {
                    self.on_track_close(key, &track_id);
                }
                RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) => {
                    self.on_connection_state(now, key, state, touched);
                }
                _ => {}
            }
        }
    }

    fn on_connection_state(
        &mut self,
        now: Instant,
        key: PeerKey,
        state: RTCPeerConnectionState,
        touched: &mut Vec<PeerKey>,
    ) {
        match state {
            RTCPeerConnectionState::Connected => {
                let Some(peer) = self.peers.get_mut(&key) else {
                    return;
                };
                peer.connected = true;
                debug!(participant = %peer.participant, "peer connected");
                // A new subscriber needs a keyframe from every video it now receives.
                let pending: Vec<(Source, u32)> = peer
                    .slots
                    .iter()
                    .filter(|slot| slot.kind == MediaKind::Video)
                    .filter_map(|slot| Some((slot.source.clone()?, slot.target?)))
                    .collect();
                for (source, ssrc) in pending {
                    self.request_keyframe(now, &source, ssrc, touched);
                }
            }
            RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => {
                self.remove_peer_by_key(now, key, Some("connection failed"));
            }
            _ => {}
        }
    }

    fn on_track_open(
        &mut self,
        now: Instant,
        key: PeerKey,
        init: rtc::peer_connection::event::RTCTrackEventInit,
        touched: &mut Vec<PeerKey>,
    ) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        let source = Source {
            publisher: key,
            track_id: init.track_id.clone(),
        };
        let rank = init
            .rid
            .as_ref()
            .and_then(|rid| peer.rid_order.iter().position(|r| r == rid))
            .unwrap_or(usize::MAX);
        let layer = Layer::new(init.ssrc, rank);
        let slides = peer
            .pc
            .get_transceivers()
            .collect::<Vec<_>>()
            .into_iter()
            .find_map(|id| {
                let transceiver = peer.pc.rtp_transceiver(id)?;
                (transceiver.receiver() == Some(init.receiver_id))
                    .then(|| transceiver.mid().clone())
                    .flatten()
            })
            .is_some_and(|mid| peer.slides_mids.contains(&mid));
        if let Some(published) = peer.published.get_mut(&init.track_id) {
            // Another simulcast layer of a track already published.
            if published.layers.iter().all(|l| l.ssrc != init.ssrc) {
                published.layers.push(layer);
                layers::sort_layers(&mut published.layers);
            }
            let kind = published.kind;
            let room = peer.room.clone();
            debug!(participant = %peer.participant, rid = ?init.rid, "simulcast layer opened");
            self.mark_room_dirty(&room);
            if kind == MediaKind::Video {
                self.request_keyframe(now, &source, init.ssrc, touched);
            }
            return;
        }
        let Some(mut receiver) = peer.pc.rtp_receiver(init.receiver_id) else {
            return;
        };
        let Some(kind) = MediaKind::from_codec_kind(receiver.track().kind()) else {
            return;
        };
        let parameters = &receiver.get_parameters().rtp_parameters;
        let codecs: Vec<Codec> = parameters
            .codecs
            .iter()
            .map(Codec::from_parameters)
            .collect();
        if kind == MediaKind::Video {
            peer.rtx_types.settle(&codecs);
        }
        let audio_level_ext = parameters
            .header_extensions
            .iter()
            .find(|ext| ext.uri == speaker::AUDIO_LEVEL_URI)
            .and_then(|ext| u8::try_from(ext.id).ok());
        let source_kind = TrackSource::of(kind, slides);
        // A screen m-line opens before anything is shared on it (a browser keeps it
        // ready, and probes the bandwidth through it): it takes no one's slot until a
        // picture arrives on it (`wake_publication`).
        let dormant = source_kind == TrackSource::ScreenShare;
        peer.published.insert(
            init.track_id.clone(),
            Published {
                receiver_id: Some(init.receiver_id),
                relay_track: self.next_relay_track,
                kind,
                source: source_kind,
                dormant,
                layers: vec![layer],
                codecs: codecs.into(),
                audio_level_ext,
                meter: speaker::LevelMeter::default(),
                recording: None,
            },
        );
        self.next_relay_track = self.next_relay_track.wrapping_add(1);
        let room = peer.room.clone();
        debug!(participant = %peer.participant, track = %init.track_id, kind = kind.as_str(), rid = ?init.rid, "track published");
        if dormant {
            self.start_recording(key, &init.track_id);
            return;
        }
        self.events.push_back(SfuEvent::TrackPublished {
            participant: peer.participant.clone(),
            source: source_kind,
        });
        if let Some(room_state) = self.rooms.get_mut(&room) {
            room_state
                .publications
                .push((key, init.track_id.clone(), kind));
        }
        self.fill_slots(&room);
        if kind == MediaKind::Video {
            self.request_keyframe(now, &source, init.ssrc, touched);
        }
        self.start_recording(key, &init.track_id);
    }

    fn on_track_close(&mut self, key: PeerKey, track_id: &str) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        let Some(mut published) = peer.published.remove(track_id) else {
            return;
        };
        if let (Some(recording), Some(recorder)) = (published.recording.take(), &mut self.recorder)
        {
            recorder.stop_track(recording);
        }
        if !published.dormant {
            self.events.push_back(SfuEvent::TrackUnpublished {
                participant: peer.participant.clone(),
                source: published.source,
            });
        }
        let room = peer.room.clone();
        if let Some(room_state) = self.rooms.get_mut(&room) {
            room_state
                .publications
                .retain(|(publisher, id, _)| !(*publisher == key && id == track_id));
        }
        self.release_slots(&room, |source| {
            source.publisher == key && source.track_id == track_id
        });
        self.fill_slots(&room);
    }

    fn drain_peer_reads(&mut self, now: Instant, key: PeerKey, touched: &mut Vec<PeerKey>) {
        loop {
            let Some(peer) = self.peers.get_mut(&key) else {
                return;
            };
            let Some(TaggedRTCMessage { message, .. }) = peer.pc.poll_read() else {
                return;
            };
            match message {
                RTCMessage::RtpPacket(track_id, packet) => {
                    self.forward(now, key, &track_id, packet, touched);
                }
                RTCMessage::RtcpPacket(track_id, packets) => {
                    // Only keyframe requests and estimates get here (see `feedback`).
                    self.on_subscriber_feedback(now, key, &track_id, &packets, touched);
                }
                _ => {}
            }
        }
    }

    /// Places every publication of `room` into a free slot at every other member that
    /// does not receive it yet.
    fn fill_slots(&mut self, room: &RoomId) {
        let Some(room_state) = self.rooms.get(room) else {
            return;
        };
        for subscriber in &room_state.members {
            for (publisher, track_id, kind) in &room_state.publications {
                if publisher == subscriber {
                    continue;
                }
                let Some((publisher_id, track_source)) =
                    publisher_mut(&mut self.peers, &mut self.remotes, *publisher).map(|p| {
                        let source = p.published.get(track_id).map(|t| t.source);
                        (p.participant.clone(), source)
                    })
                else {
                    continue;
                };
                let Some(sub) = self.peers.get_mut(subscriber) else {
                    continue;
                };
                let source = Source {
                    publisher: *publisher,
                    track_id: track_id.clone(),
                };
                if sub.receives(&source) {
                    continue;
                }
                let Some(slot) = sub
                    .slots
                    .iter_mut()
                    .find(|slot| slot.kind == *kind && slot.source.is_none())
                else {
                    continue;
                };
                slot.set_source(Some(source));
                self.dirty.push(*subscriber);
                self.events.push_back(SfuEvent::TrackAssigned {
                    subscriber: sub.participant.clone(),
                    mid: slot.mid.clone(),
                    publisher: publisher_id,
                    kind: *kind,
                    source: track_source.unwrap_or(TrackSource::of(*kind, false)),
                });
            }
        }
    }

    /// Empties the slots of `room` whose source matches.
    fn release_slots(&mut self, room: &RoomId, matches: impl Fn(&Source) -> bool) {
        let Some(room_state) = self.rooms.get(room) else {
            return;
        };
        for member in &room_state.members {
            let Some(peer) = self.peers.get_mut(member) else {
                continue;
            };
            for slot in &mut peer.slots {
                if slot.source.as_ref().is_some_and(&matches) {
                    slot.set_source(None);
                    self.events.push_back(SfuEvent::TrackUnassigned {
                        subscriber: peer.participant.clone(),
                        mid: slot.mid.clone(),
                    });
                }
            }
        }
    }

    fn remove_peer_by_key(&mut self, _now: Instant, key: PeerKey, reason: Option<&str>) {
        // Close while the peer is still indexed, so its last datagrams (DTLS close_notify)
        // go out through the usual flush.
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        if let Err(err) = peer.pc.close() {
            debug!(participant = %peer.participant, %err, "close failed");
        }
        self.flush(key);
        let Some(mut peer) = self.peers.remove(&key) else {
            return;
        };
        if let Some(at) = peer.next_timeout {
            self.timers.remove(&(at, key));
        }
        self.stats.peer_removed();
        self.demux.remove_peer(&peer.ufrag, key);
        if let Some(recorder) = &mut self.recorder {
            for published in peer.published.values_mut() {
                if let Some(recording) = published.recording.take() {
                    recorder.stop_track(recording);
                }
            }
        }
        for published in peer.published.values().filter(|p| !p.dormant) {
            self.events.push_back(SfuEvent::TrackUnpublished {
                participant: peer.participant.clone(),
                source: published.source,
            });
        }
        if self.by_participant.get(&peer.participant) == Some(&key) {
            self.by_participant.remove(&peer.participant);
        }
        let mut ended_links = None;
        if let Some(room) = self.rooms.get_mut(&peer.room) {
            room.members.retain(|member| *member != key);
            room.publications
                .retain(|(publisher, _, _)| *publisher != key);
            if room.members.is_empty() {
                ended_links = Some(std::mem::take(&mut room.links));
            }
        }
        if let Some(links) = ended_links {
            // Nobody here any more: the far sides drop what we relayed at once.
            for link_id in links {
                self.close_link(link_id, true);
            }
            self.rooms.remove(&peer.room);
        }
        self.release_slots(&peer.room, |source| source.publisher == key);
        self.fill_slots(&peer.room);
        debug!(participant = %peer.participant, reason = reason.unwrap_or("removed"), "peer removed");
        if let Some(reason) = reason {
            self.events.push_back(SfuEvent::PeerDisconnected {
                participant: peer.participant,
                reason: reason.to_owned(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_rtp;

    #[test]
    fn only_rtp_counts_as_rtp() {
        let mut rtp = [0u8; 12];
        rtp[0] = 0x80;
        for payload_type in [0u8, 96, 111, 127] {
            rtp[1] = payload_type;
            assert!(is_rtp(&rtp), "payload type {payload_type}");
            rtp[1] = payload_type | 0x80; // the marker bit
            assert!(is_rtp(&rtp), "payload type {payload_type} with the marker");
        }
        // RTCP: sender and receiver reports, SDES, BYE, feedback, XR.
        for packet_type in [200u8, 201, 202, 203, 205, 206, 207] {
            rtp[1] = packet_type;
            assert!(!is_rtp(&rtp), "RTCP packet type {packet_type}");
        }
        rtp[1] = 96;
        assert!(!is_rtp(&rtp[..11]), "shorter than an RTP header");
        for first in [0u8, 1, 20, 23, 64] {
            rtp[0] = first; // STUN, DTLS, TURN channel data
            assert!(!is_rtp(&rtp), "first byte {first}");
        }
    }
}
