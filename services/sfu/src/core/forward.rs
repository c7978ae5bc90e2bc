//! The per-packet path: a publisher's RTP packet to every slot that carries it, and
//! the feedback that comes back (keyframe requests, bandwidth estimates).
//!
//! A video slot forwards only the layer it is on; it moves to the layer chosen for it
//! (see [`super::simulcast`]) at the first packet of that layer's next keyframe, and
//! the rewriter keeps sequence numbers and timestamps continuous across the move.

use std::time::Instant;

use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::payload_feedbacks::receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate;
use tracing::debug;

use super::codecs::map_payload_type;
use super::frame::{self, PayloadFormat};
use super::layers;
use super::loss_watch::Around;
use super::peer::Source;
use super::picture_ids;
use super::{KEYFRAME_REQUEST_INTERVAL, MediaKind, PeerKey, Sfu, publisher_mut};
use crate::record::RecordCodec;

/// RTP header bytes counted into layer bitrates (fixed header; extensions vary).
const RTP_HEADER_BYTES: usize = 12;

impl Sfu {
    pub(super) fn forward(
        &mut self,
        now: Instant,
        publisher: PeerKey,
        track_id: &str,
        mut packet: rtc::rtp::Packet,
        touched: &mut Vec<PeerKey>,
    ) {
        self.meter_audio_level(publisher, track_id, &packet);
        // Before the loss watch records this packet below: its duplicate check would
        // then count the packet itself as seen.
        self.relay_local(publisher, track_id, &packet);
        // Extension ids are per session; each subscriber's stack adds its own. Dropped
        // once here, so the copies below carry none (and allocate none for them).
        packet.header.extension = false;
        packet.header.extension_profile = 0;
        packet.header.extensions = Vec::new();
        packet.header.extensions_padding = 0;
        let Some(peer) = publisher_mut(&mut self.peers, &mut self.remotes, publisher) else {
            return;
        };
        let Some(published) = peer.published.get_mut(track_id) else {
            return;
        };
        // A blocked screen stays dormant: waking it would put a picture that never
        // moves back into everyone's slots.
        if published.dormant
            && !packet.payload.is_empty()
            && !peer.blocked.contains(published.source)
        {
            published.dormant = false;
            self.wake_publication(publisher, track_id);
        }
        let Some(peer) = publisher_mut(&mut self.peers, &mut self.remotes, publisher) else {
            return;
        };
        let Some(published) = peer.published.get_mut(track_id) else {
            return;
        };
        if peer.blocked.contains(published.source) {
            self.stats.packet_blocked();
            return;
        }
        let codecs = std::sync::Arc::clone(&published.codecs);
        let Some(codec) = codecs
            .iter()
            .find(|codec| codec.payload_type == packet.header.payload_type)
        else {
            return;
        };
        let kind = published.kind;
        // A recorded track's packet goes to the recorder when it is in a codec that
        // is recorded (the codec was looked up above; the recorder does not again).
        let recorded = published
            .recording
            .as_ref()
            .and_then(|_| RecordCodec::of_mime(&codec.mime));
        let ssrc = packet.header.ssrc;
        let format = PayloadFormat::of(codec);
        let vp8_fields = (format == PayloadFormat::Vp8)
            .then(|| picture_ids::locate(&packet.payload))
            .flatten();
        let keyframe = match kind {
            MediaKind::Video => frame::keyframe_start(format, &packet.payload),
            MediaKind::Audio => None,
        };
        // Padding-only packets (bandwidth probes) keep coming on a layer the publisher
        // has stopped encoding; they must not make it look alive.
        let carries_media = !packet.payload.is_empty();
        let mut unrepaired = false;
        let mut lost_padding = 0;
        if let Some(layer) = published.layers.iter_mut().find(|l| l.ssrc == ssrc) {
            if kind == MediaKind::Video {
                let around = Around {
                    timestamp: packet.header.timestamp,
                    marker: packet.header.marker,
                    padding: !carries_media,
                    vp8: (format == PayloadFormat::Vp8)
                        .then(|| frame::vp8_position(&packet.payload))
                        .flatten(),
                };
                let seen = layer
                    .losses
                    .on_packet(now, packet.header.sequence_number, Some(around));
                if seen.duplicate {
                    return;
                }
                unrepaired = seen.broken;
                lost_padding = seen.lost_padding;
                if lost_padding > 0 {
                    self.stats.padding_lost(lost_padding);
                }
            }
            if carries_media {
                layer.rate.add(now, packet.payload.len() + RTP_HEADER_BYTES);
                if let Some(size) = keyframe.and_then(|k| k.size)
                    && layer.size != Some(size)
                {
                    layer.size = Some(size);
                    layers::sort_layers(&mut published.layers);
                }
            }
        }
        // Layers that stopped while this one goes on: subscribers still on one of them
        // are chosen for again now, not at the next housekeeping tick.
        let mut stopped = [0u32; 4];
        let mut n_stopped = 0;
        if carries_media {
            for layer in &published.layers {
                if n_stopped < stopped.len() && layer.behind(Some(now)) {
                    stopped[n_stopped] = layer.ssrc;
                    n_stopped += 1;
                }
            }
        }
        let stopped = &stopped[..n_stopped];
        let ts_gap = match kind {
            MediaKind::Audio => 960,
            MediaKind::Video => 3000,
        };
        let Some(room) = self.rooms.get(peer.room) else {
            return;
        };
        let mut forwarded_layer = false;
        for subscriber in &room.members {
            if *subscriber == publisher {
                continue;
            }
            let Some(sub) = self.peers.get_mut(subscriber) else {
                continue;
            };
            if !sub.connected {
                continue;
            }
            for slot in &mut sub.slots {
                let carries = slot.source.as_ref().is_some_and(|source| {
                    source.publisher == publisher && source.track_id == track_id
                });
                if !carries {
                    continue;
                }
                if kind == MediaKind::Video && slot.current != Some(ssrc) {
                    if slot.target.is_some_and(|target| stopped.contains(&target)) {
                        self.dirty.push(*subscriber);
                    }
                    // Join the chosen layer only where a keyframe starts.
                    if slot.target != Some(ssrc) || keyframe.is_none() {
                        continue;
                    }
                    if slot.current.is_some() {
                        self.stats.layer_switched();
                    }
                    slot.current = Some(ssrc);
                    sub.congestion.rate_changed(now);
                }
                forwarded_layer = true;
                let Some(payload_type) = map_payload_type(codec, &slot.codecs) else {
                    continue;
                };
                slot.rewriter
                    .take_out(ssrc, packet.header.sequence_number, lost_padding);
                let Some((sequence_number, timestamp)) = slot.rewriter.rewrite(
                    ssrc,
                    packet.header.sequence_number,
                    packet.header.timestamp,
                    ts_gap,
                ) else {
                    continue;
                };
                let mut out = packet.clone();
                if format == PayloadFormat::Vp8 {
                    out.payload = slot.picture_ids.rewrite(ssrc, &packet.payload, vp8_fields);
                }
                out.header.sequence_number = sequence_number;
                out.header.timestamp = timestamp;
                out.header.ssrc = slot.ssrc;
                out.header.payload_type = payload_type;
                let Some(mut sender) = sub.pc.rtp_sender(slot.sender_id) else {
                    continue;
                };
                let bytes = out.payload.len() + RTP_HEADER_BYTES;
                match sender.write_rtp(now, out) {
                    Ok(()) => self.stats.rtp_forwarded(bytes),
                    Err(err) => debug!(participant = %sub.participant, %err, "forward failed"),
                }
                touched.push(*subscriber);
            }
        }
        if let Some(codec) = recorded {
            let source = Source {
                publisher,
                track_id: track_id.to_owned(),
            };
            self.record_packet(now, &source, &packet, codec, keyframe.is_some(), touched);
        }
        // A packet the publisher did not resend in time leaves every subscriber of this
        // layer with a frame it cannot decode: a keyframe repairs that now, where the
        // subscriber's own request would come only after seconds of frozen video.
        if unrepaired && forwarded_layer {
            self.stats.loss_unrepaired();
            let source = Source {
                publisher,
                track_id: track_id.to_owned(),
            };
            self.request_keyframe(now, &source, ssrc, touched);
        }
    }

    /// A local publisher's packet to the room's SFUs in other regions, if the room
    /// has any and the track is not blocked.
    fn relay_local(&mut self, publisher: PeerKey, track_id: &str, packet: &rtc::rtp::Packet) {
        // The usual case, one check per packet: no room on this SFU spans regions.
        if self.links.is_empty() {
            return;
        }
        let Some(peer) = self.peers.get(&publisher) else {
            return;
        };
        let linked = self
            .rooms
            .get(&peer.room)
            .is_some_and(|room| !room.links.is_empty());
        if !linked {
            return;
        }
        let Some(published) = peer.published.get(track_id) else {
            return;
        };
        if peer.blocked.contains(published.source) {
            return;
        }
        // Video that came before (a probe repeating a packet) would be dropped there.
        let seen_before = published.kind == MediaKind::Video
            && published
                .layers
                .iter()
                .find(|layer| layer.ssrc == packet.header.ssrc)
                .is_some_and(|layer| layer.losses.already_seen(packet.header.sequence_number));
        if seen_before {
            return;
        }
        let (room, track) = (peer.room.clone(), published.relay_track);
        self.relay_out(&room, track, packet);
    }

    /// Asks `source`'s publisher for a keyframe on the layer `ssrc`, at most once per
    /// [`KEYFRAME_REQUEST_INTERVAL`] per layer: a local publisher by PLI, a remote one
    /// through its SFU.
    pub(super) fn request_keyframe(
        &mut self,
        now: Instant,
        source: &Source,
        ssrc: u32,
        touched: &mut Vec<PeerKey>,
    ) {
        let Some(publisher) = publisher_mut(&mut self.peers, &mut self.remotes, source.publisher)
        else {
            return;
        };
        let link = publisher.link;
        let Some(published) = publisher.published.get_mut(&source.track_id) else {
            return;
        };
        let Some(layer) = published.layers.iter_mut().find(|l| l.ssrc == ssrc) else {
            return;
        };
        if layer
            .last_keyframe_request
            .is_some_and(|at| now.saturating_duration_since(at) < KEYFRAME_REQUEST_INTERVAL)
        {
            return;
        }
        layer.last_keyframe_request = Some(now);
        let (relay_track, receiver_id) = (published.relay_track, published.receiver_id);
        if let Some(link_id) = link {
            self.stats.keyframe_requested();
            self.request_remote_keyframe(link_id, relay_track, ssrc);
            return;
        }
        let Some(peer) = self.peers.get_mut(&source.publisher) else {
            return;
        };
        let Some(mut receiver) = receiver_id.and_then(|id| peer.pc.rtp_receiver(id)) else {
            return;
        };
        let pli = PictureLossIndication {
            sender_ssrc: 0,
            media_ssrc: ssrc,
        };
        if receiver.write_rtcp(now, vec![Box::new(pli)]).is_ok() {
            self.stats.keyframe_requested();
            touched.push(source.publisher);
        }
    }

    /// RTCP a subscriber sent about its slot track `track_id`: keyframe requests go to
    /// the publisher of the layer the slot is on; bandwidth estimates feed layer choice.
    pub(super) fn on_subscriber_feedback(
        &mut self,
        now: Instant,
        key: PeerKey,
        track_id: &str,
        packets: &[Box<dyn rtc::rtcp::Packet>],
        touched: &mut Vec<PeerKey>,
    ) {
        for packet in packets {
            let any = packet.as_any();
            if let Some(remb) = any.downcast_ref::<ReceiverEstimatedMaximumBitrate>() {
                self.stats.bandwidth_estimate(false);
                self.on_estimate(now, key, remb.bitrate);
            } else if any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>() {
                let Some(peer) = self.peers.get(&key) else {
                    return;
                };
                let request = peer
                    .slots
                    .iter()
                    .find(|slot| slot.track_id == track_id)
                    .and_then(|slot| Some((slot.source.clone()?, slot.current.or(slot.target)?)));
                if let Some((source, ssrc)) = request {
                    self.request_keyframe(now, &source, ssrc, touched);
                }
            }
        }
    }
}
