//! Relays: one room held by SFUs in several regions.
//!
//! Participants join the SFU of their own region; the SFUs holding the room are linked
//! pairwise, and each sends the other every RTP packet of its local publications (all
//! simulcast layers, so the far side chooses per subscriber as it does for its own).
//! On the receiving side a relayed publication belongs to a *remote participant*: it
//! fills slots, is metered for the active speaker and forwards like a local one, but
//! its keyframe requests travel back over the link to the publisher's SFU. Media is
//! never relayed twice: SFUs form a full mesh per room.
//!
//! A link is set up by the control plane in two calls per side (see `SfuApi`):
//! [`Sfu::relay_endpoint`] on each SFU returns the id and key that SFU *receives* with
//! (idempotent, so concurrent set-ups agree), and [`Sfu::connect_relay`] tells each
//! side where to send and with which key. Frames are sealed (`seal`) and carry the
//! messages of `frame`. Publications are announced again at every housekeeping tick
//! together with a roster, which is also the link's heartbeat. A link silent for
//! [`LINK_DOWN_AFTER`] is down; after [`LINK_GONE_AFTER`] its remote publications
//! leave the subscribers' slots, but the link stays and comes back by itself when the
//! far side is heard again (a partition between regions heals without anyone joining).
//! A link closes when its room ends on either side (the far side is told: `Close`), or
//! when it was never connected within [`LINK_GONE_AFTER`]. Each side also tells the
//! other how it rates its own participants' connections (`quality`), so a gateway
//! that watches only one of the room's SFUs hears about everyone.

mod cache;
pub(crate) mod frame;
mod quality;
pub(crate) mod seal;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::RngExt as _;
use rtc::shared::marshal::{Marshal as _, Unmarshal as _};
use tracing::debug;

use super::layers::{self, Layer};
use super::peer::{Published, Source};
use super::source::Blocked;
use super::{MediaKind, PeerKey, Sfu, Transmit, speaker};
use crate::{ParticipantId, RoomId};
pub(crate) use cache::SentCache;
use frame::{Announce, Message};
use seal::{KEY_LEN, Opener, Sealer};

/// A link that has heard nothing for this long is reported down.
pub const LINK_DOWN_AFTER: Duration = Duration::from_secs(3);
/// A link that has heard nothing for this long loses its remote publications; one never
/// connected for this long is closed.
pub const LINK_GONE_AFTER: Duration = Duration::from_secs(15);

/// What an SFU gives the other end of a link so it can send there: the link id and
/// the key this SFU opens the link's datagrams with. The media address is the
/// worker's, added by the runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayEndpoint {
    pub link_id: u64,
    pub key: [u8; KEY_LEN],
}

/// A relay link's state, as `/metrics` and the control plane see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayStatus {
    pub room: RoomId,
    pub remote_node: String,
    pub up: bool,
    /// The latest round trip to the far SFU, once one was measured.
    pub rtt: Option<Duration>,
}

pub(crate) struct Link {
    room: RoomId,
    remote_node: String,
    endpoint: RelayEndpoint,
    opener: Opener,
    sender: Option<(SocketAddr, Sealer)>,
    created_at: Instant,
    last_received: Option<Instant>,
    /// Their publication number → the remote participant and track id.
    tracks: HashMap<u32, (PeerKey, String)>,
    /// Remote participants by id.
    participants: HashMap<String, PeerKey>,
    /// The highest RTP sequence number received per relayed layer (SSRC), to find gaps.
    highest: HashMap<u32, u16>,
    /// The far side's heartbeat clock last heard, and when.
    heard_clock: Option<(u32, Instant)>,
    /// The latest round trip measured over the link.
    rtt: Option<Duration>,
    /// The far side's participants' connection quality, as last told.
    qualities: HashMap<String, super::Quality>,
    /// `Quality` messages heard, to tell the levels below excellent again now and then.
    quality_heard: u32,
}

/// A gap in a relayed layer's sequence numbers wider than this is a restart or a long
/// outage, not loss to repair.
const MAX_GAP: u16 = frame::MAX_NACKED as u16;

impl Link {
    fn up(&self, now: Instant) -> bool {
        self.sender.is_some()
            && self
                .last_received
                .is_some_and(|at| now.saturating_duration_since(at) < LINK_DOWN_AFTER)
    }

    fn silent_for(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.last_received.unwrap_or(self.created_at))
    }
}

/// A participant of another SFU whose publications arrive over a link.
pub(crate) struct Remote {
    pub(crate) participant: ParticipantId,
    pub(crate) room: RoomId,
    pub(crate) link: u64,
    pub(crate) published: HashMap<String, Published>,
    /// Always empty: host blocks are applied where the publisher is.
    pub(crate) blocked: Blocked,
}

impl Sfu {
    /// The id and key this SFU receives `room`'s relay from `remote_node` with; the
    /// same answer until the link closes.
    pub fn relay_endpoint(
        &mut self,
        now: Instant,
        room: &RoomId,
        remote_node: &str,
    ) -> RelayEndpoint {
        if let Some(link) = self
            .links
            .values()
            .find(|link| link.room == *room && link.remote_node == remote_node)
        {
            return link.endpoint.clone();
        }
        let mut rng = rand::rng();
        let mut link_id: u64 = rng.random();
        while self.links.contains_key(&link_id) {
            link_id = rng.random();
        }
        let endpoint = RelayEndpoint {
            link_id,
            key: rng.random(),
        };
        self.links.insert(
            link_id,
            Link {
                room: room.clone(),
                remote_node: remote_node.to_owned(),
                endpoint: endpoint.clone(),
                opener: Opener::new(&endpoint.key),
                sender: None,
                created_at: now,
                last_received: None,
                tracks: HashMap::new(),
                participants: HashMap::new(),
                highest: HashMap::new(),
                heard_clock: None,
                rtt: None,
                qualities: HashMap::new(),
                quality_heard: 0,
            },
        );
        self.rooms
            .entry(room.clone())
            .or_default()
            .links
            .push(link_id);
        self.stats.relay_opened();
        debug!(%room, remote_node, "relay link opened");
        endpoint
    }

    /// Starts (or redirects) sending `room`'s local publications to `remote_node`,
    /// which receives at `to` with `remote`.
    pub fn connect_relay(
        &mut self,
        now: Instant,
        room: &RoomId,
        remote_node: &str,
        to: SocketAddr,
        remote: &RelayEndpoint,
    ) {
        let local = self.relay_endpoint(now, room, remote_node);
        let Some(link) = self.links.get_mut(&local.link_id) else {
            return;
        };
        let unchanged = link.sender.as_ref().is_some_and(|(addr, sealer)| {
            *addr == to && sealer.matches(&remote.key, remote.link_id)
        });
        if !unchanged {
            let salt: u32 = rand::rng().random();
            link.sender = Some((to, Sealer::new(&remote.key, remote.link_id, salt)));
            self.announce_on(now, local.link_id);
        }
    }

    /// The relay links this SFU holds.
    pub fn relays(&self, now: Instant) -> Vec<RelayStatus> {
        self.links
            .values()
            .map(|link| RelayStatus {
                room: link.room.clone(),
                remote_node: link.remote_node.clone(),
                up: link.up(now),
                rtt: link.rtt,
            })
            .collect()
    }

    /// A datagram that starts with the relay mark.
    pub(super) fn handle_relay_datagram(&mut self, now: Instant, datagram: &[u8]) {
        let Some(link_id) = seal::link_id(datagram) else {
            self.stats.relay_rejected();
            return;
        };
        let Some(link) = self.links.get_mut(&link_id) else {
            self.stats.relay_rejected();
            return;
        };
        let plaintext = match link.opener.open(datagram) {
            Ok(plaintext) => plaintext,
            Err(err) => {
                self.stats.relay_rejected();
                debug!(%err, "relay datagram refused");
                return;
            }
        };
        link.last_received = Some(now);
        self.stats.relay_received();
        let message = match frame::decode(&plaintext) {
            Ok(message) => message,
            Err(err) => {
                self.stats.relay_rejected();
                debug!(%err, "relay message refused");
                return;
            }
        };
        let mut touched = Vec::new();
        match message {
            Message::Media { track, rtp } => {
                self.relayed_media(now, link_id, track, rtp, &mut touched)
            }
            Message::Announce(announce) => {
                self.relayed_announce(now, link_id, announce, &mut touched)
            }
            Message::Roster { clock, tracks } => {
                self.heartbeat(now, link_id, clock);
                self.relayed_roster(link_id, &tracks);
            }
            Message::KeyframeRequest { track, ssrc } => {
                self.relayed_keyframe_request(now, track, ssrc, &mut touched);
            }
            Message::Close => self.close_link(link_id, false),
            Message::Nack { track, ssrc, seqs } => self.resend(link_id, track, ssrc, &seqs),
            Message::Quality(rated) => self.relayed_quality(link_id, rated),
        }
        self.settle(now, &mut touched);
        touched.sort_unstable();
        touched.dedup();
        for key in touched {
            self.flush(key);
        }
    }

    fn relayed_media(
        &mut self,
        now: Instant,
        link_id: u64,
        track: u32,
        mut rtp: &[u8],
        touched: &mut Vec<PeerKey>,
    ) {
        let Some((key, track_id)) = self
            .links
            .get(&link_id)
            .and_then(|link| link.tracks.get(&track))
            .cloned()
        else {
            return;
        };
        let packet = match rtc::rtp::Packet::unmarshal(&mut rtp) {
            Ok(packet) => packet,
            Err(_) => {
                self.stats.relay_rejected();
                return;
            }
        };
        self.ask_for_missing(link_id, track, &packet.header);
        self.forward(now, key, &track_id, packet, touched);
    }

    /// Packets of the layer skipped between the highest seen and this one are asked
    /// for again, once (a resend fills the gap; what still misses it is the loss
    /// watch's to repair with a keyframe).
    fn ask_for_missing(&mut self, link_id: u64, track: u32, header: &rtc::rtp::header::Header) {
        let Some(link) = self.links.get_mut(&link_id) else {
            return;
        };
        let seq = header.sequence_number;
        let Some(highest) = link.highest.get(&header.ssrc).copied() else {
            link.highest.insert(header.ssrc, seq);
            return;
        };
        let ahead = seq.wrapping_sub(highest);
        if ahead == 0 || ahead >= 0x8000 {
            return; // a late or repeated packet: a resend, or reordering
        }
        link.highest.insert(header.ssrc, seq);
        if ahead == 1 || ahead > MAX_GAP {
            return;
        }
        let missing: Vec<u16> = (1..ahead).map(|i| highest.wrapping_add(i)).collect();
        self.stats.relay_lost(missing.len() as u64);
        self.send_on(link_id, &frame::encode_nack(track, header.ssrc, &missing));
    }

    /// The far side missed these packets of one of our layers: sent again from the
    /// relay cache, as far as it still holds them.
    fn resend(&mut self, link_id: u64, track: u32, ssrc: u32, seqs: &[u16]) {
        let again: Vec<Vec<u8>> = seqs
            .iter()
            .filter_map(|seq| self.relay_cache.get(track, ssrc, *seq).map(<[u8]>::to_vec))
            .collect();
        for plaintext in again {
            self.stats.relay_resent();
            self.send_on(link_id, &plaintext);
        }
    }

    fn relayed_announce(
        &mut self,
        now: Instant,
        link_id: u64,
        announce: Announce,
        touched: &mut Vec<PeerKey>,
    ) {
        let Some(link) = self.links.get_mut(&link_id) else {
            return;
        };
        let room = link.room.clone();
        let key = match link.participants.get(&announce.participant) {
            Some(key) => *key,
            None => {
                let key = PeerKey(self.next_key);
                self.next_key += 1;
                link.participants.insert(announce.participant.clone(), key);
                self.remotes.insert(
                    key,
                    Remote {
                        participant: ParticipantId::new(announce.participant.clone()),
                        room: room.clone(),
                        link: link_id,
                        published: HashMap::new(),
                        blocked: Blocked::default(),
                    },
                );
                key
            }
        };
        link.tracks
            .insert(announce.track, (key, announce.track_id.clone()));
        let Some(remote) = self.remotes.get_mut(&key) else {
            return;
        };
        if let Some(published) = remote.published.get_mut(&announce.track_id) {
            // Simulcast layers the publisher opened since.
            let mut added = false;
            for (ssrc, rank) in &announce.layers {
                if published.layers.iter().all(|l| l.ssrc != *ssrc) {
                    published.layers.push(Layer::new(*ssrc, usize::from(*rank)));
                    added = true;
                }
            }
            if added {
                layers::sort_layers(&mut published.layers);
                self.mark_room_dirty(&room);
            }
            return;
        }
        let mut layers: Vec<Layer> = announce
            .layers
            .iter()
            .map(|(ssrc, rank)| Layer::new(*ssrc, usize::from(*rank)))
            .collect();
        layers::sort_layers(&mut layers);
        let first_ssrc = layers.first().map(|l| l.ssrc);
        remote.published.insert(
            announce.track_id.clone(),
            Published {
                receiver_id: None,
                relay_track: announce.track,
                kind: announce.kind,
                source: announce.source,
                dormant: false,
                layers,
                codecs: announce.codecs.into(),
                audio_level_ext: announce.audio_level_ext,
                meter: speaker::LevelMeter::default(),
                recording: None,
            },
        );
        debug!(%room, participant = %announce.participant, track = %announce.track_id, "relayed track published");
        if let Some(room_state) = self.rooms.get_mut(&room) {
            room_state
                .publications
                .push((key, announce.track_id.clone(), announce.kind));
        }
        self.fill_slots(&room);
        if let (MediaKind::Video, Some(ssrc)) = (announce.kind, first_ssrc) {
            let source = Source {
                publisher: key,
                track_id: announce.track_id,
            };
            self.request_keyframe(now, &source, ssrc, touched);
        }
    }

    /// This side's heartbeat clock: milliseconds since the first heartbeat, from 1 (0
    /// means "nothing heard" in an echo).
    fn clock_ms(&mut self, now: Instant) -> u32 {
        let epoch = *self.relay_epoch.get_or_insert(now);
        (now.saturating_duration_since(epoch).as_millis() as u32).wrapping_add(1)
    }

    /// A heartbeat: remember the far side's clock for our echo, and take the round trip
    /// from its echo of ours.
    fn heartbeat(&mut self, now: Instant, link_id: u64, clock: frame::Clock) {
        let mine = self.clock_ms(now);
        let Some(link) = self.links.get_mut(&link_id) else {
            return;
        };
        link.heard_clock = Some((clock.sent_ms, now));
        if clock.echo_ms == 0 {
            return;
        }
        let rtt_ms = mine
            .wrapping_sub(clock.echo_ms)
            .saturating_sub(clock.held_ms);
        // An echo from a far side's previous session, or from long ago, measures nothing.
        if rtt_ms < 60_000 {
            let rtt = Duration::from_millis(u64::from(rtt_ms));
            link.rtt = Some(rtt);
            self.stats.relay_rtt(rtt);
        }
    }

    /// The far side's publications now: the ones it no longer lists leave the room.
    fn relayed_roster(&mut self, link_id: u64, tracks: &[u32]) {
        let Some(link) = self.links.get_mut(&link_id) else {
            return;
        };
        let gone: Vec<(u32, PeerKey, String)> = link
            .tracks
            .iter()
            .filter(|(track, _)| !tracks.contains(track))
            .map(|(track, (key, id))| (*track, *key, id.clone()))
            .collect();
        let room = link.room.clone();
        for (track, key, track_id) in gone {
            if let Some(link) = self.links.get_mut(&link_id) {
                link.tracks.remove(&track);
            }
            self.unpublish_remote(&room, key, &track_id);
        }
    }

    fn unpublish_remote(&mut self, room: &RoomId, key: PeerKey, track_id: &str) {
        if let Some(remote) = self.remotes.get_mut(&key) {
            remote.published.remove(track_id);
        }
        if let Some(room_state) = self.rooms.get_mut(room) {
            room_state
                .publications
                .retain(|(publisher, id, _)| !(*publisher == key && id == track_id));
        }
        self.release_slots(room, |source| {
            source.publisher == key && source.track_id == track_id
        });
        self.fill_slots(room);
    }

    /// A subscriber on the far side needs a keyframe of one of our publications.
    fn relayed_keyframe_request(
        &mut self,
        now: Instant,
        track: u32,
        ssrc: u32,
        touched: &mut Vec<PeerKey>,
    ) {
        let found = self.peers.iter().find_map(|(key, peer)| {
            peer.published
                .iter()
                .find(|(_, published)| published.relay_track == track)
                .map(|(track_id, _)| Source {
                    publisher: *key,
                    track_id: track_id.clone(),
                })
        });
        if let Some(source) = found {
            self.request_keyframe(now, &source, ssrc, touched);
        }
    }

    /// Asks the SFU a remote publication comes from for a keyframe of layer `ssrc`.
    pub(super) fn request_remote_keyframe(&mut self, link_id: u64, track: u32, ssrc: u32) {
        self.send_on(link_id, &frame::encode_keyframe_request(track, ssrc));
    }

    /// Sends a local publication's packet over every link of its room (before the
    /// header extensions are stripped: the far side reads the audio level from them).
    pub(super) fn relay_out(&mut self, room: &RoomId, track: u32, packet: &rtc::rtp::Packet) {
        let Some(room_state) = self.rooms.get(room) else {
            return;
        };
        if room_state.links.is_empty() {
            return;
        }
        let Ok(rtp) = packet.marshal() else {
            return;
        };
        let plaintext = frame::encode_media(track, &rtp);
        self.relay_cache.store(
            track,
            packet.header.ssrc,
            packet.header.sequence_number,
            &plaintext,
        );
        let links = room_state.links.clone();
        for link_id in links {
            self.send_on(link_id, &plaintext);
        }
    }

    fn send_on(&mut self, link_id: u64, plaintext: &[u8]) {
        let Some((to, sealer)) = self.links.get_mut(&link_id).and_then(|l| l.sender.as_mut())
        else {
            return;
        };
        let sealed = sealer.seal(plaintext);
        if sealed.is_empty() {
            return;
        }
        self.stats.relay_sent();
        self.transmits.push_back(Transmit {
            to: *to,
            bytes: sealed,
            rtp_since: None,
        });
    }

    /// Announces every local publication of the link's room, then the roster.
    fn announce_on(&mut self, now: Instant, link_id: u64) {
        let sent_ms = self.clock_ms(now);
        let clock = match self.links.get(&link_id).and_then(|link| link.heard_clock) {
            Some((echo_ms, heard)) => frame::Clock {
                sent_ms,
                echo_ms,
                held_ms: now.saturating_duration_since(heard).as_millis() as u32,
            },
            None => frame::Clock {
                sent_ms,
                ..frame::Clock::default()
            },
        };
        let Some(room) = self.links.get(&link_id).map(|link| link.room.clone()) else {
            return;
        };
        let Some(room_state) = self.rooms.get(&room) else {
            return;
        };
        let mut announces = Vec::new();
        for (publisher, track_id, _) in &room_state.publications {
            let Some(peer) = self.peers.get(publisher) else {
                continue;
            };
            let Some(published) = peer.published.get(track_id) else {
                continue;
            };
            announces.push(frame::encode_announce(&Announce {
                track: published.relay_track,
                participant: peer.participant.as_str().to_owned(),
                track_id: track_id.clone(),
                kind: published.kind,
                source: published.source,
                audio_level_ext: published.audio_level_ext,
                codecs: published.codecs.to_vec(),
                layers: published
                    .layers
                    .iter()
                    .map(|l| (l.ssrc, u8::try_from(l.rank).unwrap_or(u8::MAX)))
                    .collect(),
            }));
        }
        let tracks: Vec<u32> = room_state
            .publications
            .iter()
            .filter_map(|(publisher, track_id, _)| {
                Some(
                    self.peers
                        .get(publisher)?
                        .published
                        .get(track_id)?
                        .relay_track,
                )
            })
            .collect();
        for announce in announces {
            self.send_on(link_id, &announce);
        }
        self.send_on(link_id, &frame::encode_roster(clock, &tracks));
    }

    /// Housekeeping: announce on every link and count the ones down; a link silent
    /// too long loses its remote publications; links never connected, or of rooms
    /// nobody here is in, close after [`LINK_GONE_AFTER`].
    pub(super) fn tend_relays(&mut self, now: Instant) {
        if self.links.is_empty() {
            // No room here spans regions: nothing to tend, and nothing to keep for resends.
            self.relay_cache = SentCache::default();
            self.stats.set_relays_down(0);
            return;
        }
        let relayed: HashSet<u32> = self
            .peers
            .values()
            .filter(|peer| {
                self.rooms
                    .get(&peer.room)
                    .is_some_and(|room| !room.links.is_empty())
            })
            .flat_map(|peer| peer.published.values().map(|p| p.relay_track))
            .collect();
        self.relay_cache.retain_tracks(&relayed);
        let ids: Vec<u64> = self.links.keys().copied().collect();
        let mut down = 0;
        for link_id in ids {
            let Some(link) = self.links.get(&link_id) else {
                continue;
            };
            let old = now.saturating_duration_since(link.created_at) > LINK_GONE_AFTER;
            let unused = self
                .rooms
                .get(&link.room)
                .is_none_or(|room| room.members.is_empty());
            if old && (unused || link.sender.is_none()) {
                self.close_link(link_id, true);
                continue;
            }
            if link.sender.is_some() && !link.up(now) {
                down += 1;
            }
            if link.silent_for(now) > LINK_GONE_AFTER && !link.tracks.is_empty() {
                self.forget_remote_tracks(link_id);
            }
            self.announce_on(now, link_id);
        }
        self.stats.set_relays_down(down);
    }

    /// The far side went silent: its publications leave the subscribers' slots until
    /// it announces them again.
    fn forget_remote_tracks(&mut self, link_id: u64) {
        let Some(link) = self.links.get_mut(&link_id) else {
            return;
        };
        let room = link.room.clone();
        let gone: Vec<(PeerKey, String)> = link.tracks.drain().map(|(_, track)| track).collect();
        debug!(%room, remote_node = %link.remote_node, "relay silent: remote tracks dropped");
        for (key, track_id) in gone {
            self.unpublish_remote(&room, key, &track_id);
        }
    }

    /// Closes a link (telling the far side when `tell`): its remote participants leave
    /// the room.
    pub(super) fn close_link(&mut self, link_id: u64, tell: bool) {
        if tell {
            self.send_on(link_id, &frame::encode_close());
        }
        let Some(link) = self.links.remove(&link_id) else {
            return;
        };
        self.stats.relay_closed();
        debug!(room = %link.room, remote_node = %link.remote_node, "relay link closed");
        for key in link.participants.values() {
            let Some(remote) = self.remotes.remove(key) else {
                continue;
            };
            if let Some(room_state) = self.rooms.get_mut(&remote.room) {
                room_state
                    .publications
                    .retain(|(publisher, _, _)| publisher != key);
            }
            self.release_slots(&link.room, |source| source.publisher == *key);
        }
        if let Some(room_state) = self.rooms.get_mut(&link.room) {
            room_state.links.retain(|id| *id != link_id);
            if room_state.members.is_empty() && room_state.links.is_empty() {
                self.rooms.remove(&link.room);
                return;
            }
        }
        self.fill_slots(&link.room);
    }
}
