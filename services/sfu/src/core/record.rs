//! Which packets go to the recorder: a recorded peer's local publications, audio as it
//! comes, video from its best simulcast layer sending, moved to at that layer's
//! keyframe. Tracks of a peer being recorded start and stop with the peer's recording,
//! the track and the peer.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::layers::Layer;
use super::peer::Source;
use super::{MediaKind, PeerKey, Sfu};
use crate::ParticipantId;
use crate::control::SfuError;
use crate::record::{RecordCodec, RtpIn, TrackRecording};

/// What the per-packet path does about a recorded track's packet.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Take {
    /// Hand it to the recorder.
    Record,
    /// Hand it to the recorder, and ask for a keyframe: the writer lost a frame.
    RecordAndAsk,
    Skip,
    /// Skip it, and ask for a keyframe on this layer (to start or move to it).
    AskKeyframe(u32),
}

/// The layer a recording wants: the largest one sending.
fn best_layer(layers: &[Layer], now: Instant) -> Option<u32> {
    let freshest = super::layers::freshest(layers);
    layers
        .iter()
        .rev()
        .find(|layer| layer.rate.active(now) && !layer.behind(freshest))
        .map(|layer| layer.ssrc)
}

pub(super) fn decide(
    recording: &mut TrackRecording,
    kind: MediaKind,
    layers: &[Layer],
    now: Instant,
    ssrc: u32,
    keyframe: bool,
) -> Take {
    if kind == MediaKind::Audio {
        return Take::Record;
    }
    let best = best_layer(layers, now).unwrap_or(ssrc);
    if recording.ssrc != Some(best) {
        if ssrc == best && keyframe {
            recording.ssrc = Some(best);
        } else if ssrc == best {
            return Take::AskKeyframe(best);
        }
    }
    if recording.ssrc != Some(ssrc) {
        return Take::Skip;
    }
    if recording.wants_keyframe.swap(false, Ordering::Relaxed) {
        return Take::RecordAndAsk;
    }
    Take::Record
}

impl Sfu {
    /// Starts or stops recording the participant's tracks (those it publishes now and
    /// any it publishes later, until stopped).
    pub fn set_recording(
        &mut self,
        participant: &ParticipantId,
        recording: bool,
    ) -> Result<(), SfuError> {
        let key = self.key_of(participant)?;
        if recording && self.recorder.is_none() {
            return Err(SfuError::NoRecording(
                "this media server keeps no recordings (no recordings directory)".into(),
            ));
        }
        let peer = self.peers.get_mut(&key).ok_or(SfuError::UnknownPeer)?;
        peer.recording = recording;
        let tracks: Vec<String> = peer.published.keys().cloned().collect();
        for track_id in tracks {
            if recording {
                self.start_recording(key, &track_id);
            } else {
                self.stop_recording(key, &track_id);
            }
        }
        Ok(())
    }

    /// Hands the recorded packets held for a while to the recorder's thread: the
    /// runtime calls it once per pass of its loop.
    pub fn flush_recordings(&mut self, now: Instant) {
        if let Some(recorder) = &mut self.recorder {
            recorder.flush_due(now);
        }
    }

    /// Starts recording one of a recorded peer's tracks (none for a codec that is not
    /// recorded: the first negotiated one of Opus, VP8 and H.264; a packet in another
    /// of them moves the recording to it).
    pub(super) fn start_recording(&mut self, key: PeerKey, track_id: &str) {
        let Some(recorder) = &mut self.recorder else {
            return;
        };
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        if !peer.recording {
            return;
        }
        let Some(published) = peer.published.get_mut(track_id) else {
            return;
        };
        if published.recording.is_some() {
            return;
        }
        let Some(codec) = published
            .codecs
            .iter()
            .find_map(|codec| RecordCodec::of_mime(&codec.mime))
        else {
            tracing::debug!(participant = %peer.participant, source = published.source.as_str(), "not recorded: codec");
            return;
        };
        published.recording =
            Some(recorder.start_track(&peer.room, &peer.participant, published.source, codec));
    }

    pub(super) fn stop_recording(&mut self, key: PeerKey, track_id: &str) {
        let Some(recording) = self
            .peers
            .get_mut(&key)
            .and_then(|peer| peer.published.get_mut(track_id))
            .and_then(|published| published.recording.take())
        else {
            return;
        };
        if let Some(recorder) = &mut self.recorder {
            recorder.stop_track(recording);
        }
    }

    /// The recorded track's part in forwarding one packet in a codec that is
    /// recorded: hands it over, or asks for the keyframe the recording waits for. A
    /// packet in another codec than the one recorded so far (the publisher sends one
    /// negotiated after the first, or changed codec) ends that file and starts one in
    /// the packet's codec.
    pub(super) fn record_packet(
        &mut self,
        now: Instant,
        source: &Source,
        packet: &rtc::rtp::Packet,
        codec: RecordCodec,
        keyframe: bool,
        touched: &mut Vec<PeerKey>,
    ) {
        let (Some(recorder), Some(peer)) =
            (&mut self.recorder, self.peers.get_mut(&source.publisher))
        else {
            return;
        };
        let Some(published) = peer.published.get_mut(&source.track_id) else {
            return;
        };
        if let Some(old) = published
            .recording
            .take_if(|recording| recording.codec != codec)
        {
            recorder.stop_track(old);
            published.recording =
                Some(recorder.start_track(&peer.room, &peer.participant, published.source, codec));
        }
        let Some(recording) = published.recording.as_mut() else {
            return;
        };
        let ssrc = packet.header.ssrc;
        let take = decide(
            recording,
            published.kind,
            &published.layers,
            now,
            ssrc,
            keyframe,
        );
        if matches!(take, Take::Record | Take::RecordAndAsk) {
            recorder.packet(
                recording.id,
                RtpIn {
                    ssrc,
                    seq: packet.header.sequence_number,
                    timestamp: packet.header.timestamp,
                    marker: packet.header.marker,
                    payload: packet.payload.clone(),
                    at: now,
                },
            );
        }
        match take {
            Take::RecordAndAsk => self.request_keyframe(now, source, ssrc, touched),
            Take::AskKeyframe(layer) => self.request_keyframe(now, source, layer, touched),
            Take::Record | Take::Skip => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    use std::time::Duration;

    use super::*;

    fn recording() -> TrackRecording {
        TrackRecording {
            id: 1,
            codec: RecordCodec::Vp8,
            ssrc: None,
            wants_keyframe: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Three layers, lowest first, each sending at `now`.
    fn layers(now: Instant) -> Vec<Layer> {
        (0..3)
            .map(|rank| {
                let mut layer = Layer::new(100 + rank as u32, rank);
                layer.rate.add(now, 1000);
                layer
            })
            .collect()
    }

    #[test]
    fn video_is_recorded_from_the_best_layer_starting_at_its_keyframe() {
        let now = Instant::now();
        let layers = layers(now);
        let mut rec = recording();
        let video = MediaKind::Video;
        assert_eq!(
            decide(&mut rec, video, &layers, now, 102, false),
            Take::AskKeyframe(102)
        );
        assert_eq!(
            decide(&mut rec, video, &layers, now, 100, true),
            Take::Skip,
            "a lower layer"
        );
        assert_eq!(
            decide(&mut rec, video, &layers, now, 102, true),
            Take::Record
        );
        assert_eq!(
            decide(&mut rec, video, &layers, now, 102, false),
            Take::Record
        );
        assert_eq!(
            decide(&mut rec, video, &layers, now, 101, false),
            Take::Skip
        );
        // The writer lost a frame: packets still go, and a keyframe is asked for.
        rec.wants_keyframe.store(true, Ordering::Relaxed);
        assert_eq!(
            decide(&mut rec, video, &layers, now, 102, false),
            Take::RecordAndAsk
        );
        assert_eq!(
            decide(&mut rec, video, &layers, now, 102, false),
            Take::Record
        );
    }

    #[test]
    fn a_best_layer_that_stops_gives_way_to_the_next_at_its_keyframe() {
        let start = Instant::now();
        let mut layers = layers(start);
        let mut rec = recording();
        let video = MediaKind::Video;
        assert_eq!(
            decide(&mut rec, video, &layers, start, 102, true),
            Take::Record
        );
        // The top layer goes quiet (the publisher's bandwidth fell); the others go on.
        let later = start + Duration::from_secs(3);
        layers[0].rate.add(later, 1000);
        layers[1].rate.add(later, 1000);
        assert_eq!(
            decide(&mut rec, video, &layers, later, 101, false),
            Take::AskKeyframe(101)
        );
        assert_eq!(
            decide(&mut rec, video, &layers, later, 101, true),
            Take::Record
        );
        assert_eq!(rec.ssrc, Some(101));
    }

    #[test]
    fn audio_is_always_recorded() {
        let now = Instant::now();
        let mut rec = recording();
        assert_eq!(
            decide(&mut rec, MediaKind::Audio, &[], now, 7, false),
            Take::Record
        );
    }
}
