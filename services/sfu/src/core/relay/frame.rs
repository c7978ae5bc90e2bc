//! What two SFUs holding one room say to each other inside the sealed envelope.
//!
//! - `Media`: one RTP packet of a publication, as the publisher sent it.
//! - `Announce`: a publication: whose, what it carries, its codecs and layers. Sent for
//!   every local publication at each housekeeping tick, so a lost one is repaired.
//! - `Roster`: the publications the sender holds in the room now (the receiver drops
//!   the others); also the link's heartbeat, carrying the sender's clock and an echo of
//!   the last clock it heard (with how long it held it), for the round trip.
//! - `KeyframeRequest`: a subscriber on the receiving side needs a keyframe of a layer.
//! - `Close`: the sender's side of the room ended; the link goes.
//! - `Nack`: media packets of one layer the receiver missed (by RTP sequence number);
//!   the sender resends them from its relay cache.
//! - `Quality`: the connection quality of the sender's own participants in the room,
//!   as it rated them (every rating window), so the receiver's gateways hear them too.
//!
//! Every field is length-checked; any bytes decode to a message or an error, never a
//! panic (property-tested).

use crate::core::codecs::Codec;
use crate::core::source::TrackSource;
use crate::core::{MediaKind, Quality};

const MEDIA: u8 = 1;
const ANNOUNCE: u8 = 2;
const ROSTER: u8 = 3;
const KEYFRAME_REQUEST: u8 = 4;
const CLOSE: u8 = 5;
const NACK: u8 = 6;
const QUALITY: u8 = 7;
/// Sequence numbers one `Nack` may name.
pub(crate) const MAX_NACKED: usize = 64;
/// Participants one `Quality` message rates (a room's more go in several).
pub(crate) const MAX_RATED: usize = 32;

/// A publication as announced over a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Announce {
    /// The sender's number for the publication, used by `Media` and `KeyframeRequest`.
    pub(crate) track: u32,
    pub(crate) participant: String,
    pub(crate) track_id: String,
    pub(crate) kind: MediaKind,
    pub(crate) source: TrackSource,
    pub(crate) audio_level_ext: Option<u8>,
    pub(crate) codecs: Vec<Codec>,
    /// Its layers as (SSRC, rank), lowest first.
    pub(crate) layers: Vec<(u32, u8)>,
}

/// A heartbeat's clock fields, in milliseconds of each side's own clock (from 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Clock {
    pub(crate) sent_ms: u32,
    /// The far side's `sent_ms` last heard; 0 when nothing was heard yet.
    pub(crate) echo_ms: u32,
    /// How long ago that was heard.
    pub(crate) held_ms: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Message<'a> {
    Media {
        track: u32,
        rtp: &'a [u8],
    },
    Announce(Announce),
    Roster {
        clock: Clock,
        tracks: Vec<u32>,
    },
    KeyframeRequest {
        track: u32,
        ssrc: u32,
    },
    Close,
    Nack {
        track: u32,
        ssrc: u32,
        seqs: Vec<u16>,
    },
    Quality(Vec<(String, Quality)>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FrameError {
    #[error("truncated relay message")]
    Truncated,
    #[error("unknown relay message type {0}")]
    UnknownType(u8),
    #[error("invalid field in relay message")]
    Invalid,
}

pub(crate) fn encode_media(track: u32, rtp: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + rtp.len());
    out.push(MEDIA);
    out.extend_from_slice(&track.to_be_bytes());
    out.extend_from_slice(rtp);
    out
}

pub(crate) fn encode_roster(clock: Clock, tracks: &[u32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(15 + 4 * tracks.len());
    out.push(ROSTER);
    for field in [clock.sent_ms, clock.echo_ms, clock.held_ms] {
        out.extend_from_slice(&field.to_be_bytes());
    }
    let n = u16::try_from(tracks.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&n.to_be_bytes());
    for track in tracks.iter().take(usize::from(n)) {
        out.extend_from_slice(&track.to_be_bytes());
    }
    out
}

pub(crate) fn encode_nack(track: u32, ssrc: u32, seqs: &[u16]) -> Vec<u8> {
    let seqs = &seqs[..seqs.len().min(MAX_NACKED)];
    let mut out = Vec::with_capacity(10 + 2 * seqs.len());
    out.push(NACK);
    out.extend_from_slice(&track.to_be_bytes());
    out.extend_from_slice(&ssrc.to_be_bytes());
    out.push(seqs.len() as u8);
    for seq in seqs {
        out.extend_from_slice(&seq.to_be_bytes());
    }
    out
}

/// One message per [`MAX_RATED`] participants.
pub(crate) fn encode_quality(rated: &[(String, Quality)]) -> Vec<Vec<u8>> {
    rated
        .chunks(MAX_RATED)
        .map(|chunk| {
            let mut out = vec![QUALITY, chunk.len() as u8];
            for (participant, quality) in chunk {
                put_str(&mut out, participant);
                out.push(quality.index() as u8);
            }
            out
        })
        .collect()
}

pub(crate) fn encode_close() -> Vec<u8> {
    vec![CLOSE]
}

pub(crate) fn encode_keyframe_request(track: u32, ssrc: u32) -> Vec<u8> {
    let mut out = vec![KEYFRAME_REQUEST];
    out.extend_from_slice(&track.to_be_bytes());
    out.extend_from_slice(&ssrc.to_be_bytes());
    out
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Ids and codec parameters are short; longer ones are cut at a character boundary.
    let mut end = s.len().min(255);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    out.push(end as u8);
    out.extend_from_slice(&s.as_bytes()[..end]);
}

pub(crate) fn encode_announce(announce: &Announce) -> Vec<u8> {
    let mut out = vec![ANNOUNCE];
    out.extend_from_slice(&announce.track.to_be_bytes());
    put_str(&mut out, &announce.participant);
    put_str(&mut out, &announce.track_id);
    out.push(match announce.kind {
        MediaKind::Audio => 0,
        MediaKind::Video => 1,
    });
    out.push(match announce.source {
        TrackSource::Microphone => 0,
        TrackSource::Camera => 1,
        TrackSource::ScreenShare => 2,
    });
    out.push(announce.audio_level_ext.unwrap_or(0));
    out.push(announce.codecs.len().min(16) as u8);
    for codec in announce.codecs.iter().take(16) {
        out.push(codec.payload_type);
        put_str(&mut out, &codec.mime);
        put_str(&mut out, &codec.fmtp);
    }
    out.push(announce.layers.len().min(8) as u8);
    for (ssrc, rank) in announce.layers.iter().take(8) {
        out.extend_from_slice(&ssrc.to_be_bytes());
        out.push(*rank);
    }
    out
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        if self.0.len() < n {
            return Err(FrameError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, FrameError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, FrameError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, FrameError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn string(&mut self) -> Result<String, FrameError> {
        let n = self.u8()?;
        let bytes = self.take(usize::from(n))?;
        String::from_utf8(bytes.to_vec()).map_err(|_| FrameError::Invalid)
    }
}

pub(crate) fn decode(bytes: &[u8]) -> Result<Message<'_>, FrameError> {
    let mut r = Reader(bytes);
    match r.u8()? {
        MEDIA => {
            let track = r.u32()?;
            Ok(Message::Media { track, rtp: r.0 })
        }
        ANNOUNCE => decode_announce(&mut r).map(Message::Announce),
        ROSTER => {
            let clock = Clock {
                sent_ms: r.u32()?,
                echo_ms: r.u32()?,
                held_ms: r.u32()?,
            };
            let n = r.u16()?;
            let tracks = (0..n).map(|_| r.u32()).collect::<Result<_, _>>()?;
            Ok(Message::Roster { clock, tracks })
        }
        KEYFRAME_REQUEST => Ok(Message::KeyframeRequest {
            track: r.u32()?,
            ssrc: r.u32()?,
        }),
        CLOSE => Ok(Message::Close),
        NACK => {
            let (track, ssrc) = (r.u32()?, r.u32()?);
            let n = r.u8()?;
            if usize::from(n) > MAX_NACKED {
                return Err(FrameError::Invalid);
            }
            let seqs = (0..n).map(|_| r.u16()).collect::<Result<_, _>>()?;
            Ok(Message::Nack { track, ssrc, seqs })
        }
        QUALITY => {
            let n = r.u8()?;
            if usize::from(n) > MAX_RATED {
                return Err(FrameError::Invalid);
            }
            let rated = (0..n)
                .map(|_| {
                    let participant = r.string()?;
                    let quality = Quality::ALL
                        .get(usize::from(r.u8()?))
                        .copied()
                        .ok_or(FrameError::Invalid)?;
                    if participant.is_empty() {
                        return Err(FrameError::Invalid);
                    }
                    Ok((participant, quality))
                })
                .collect::<Result<_, _>>()?;
            Ok(Message::Quality(rated))
        }
        other => Err(FrameError::UnknownType(other)),
    }
}

fn decode_announce(r: &mut Reader<'_>) -> Result<Announce, FrameError> {
    let track = r.u32()?;
    let participant = r.string()?;
    let track_id = r.string()?;
    let kind = match r.u8()? {
        0 => MediaKind::Audio,
        1 => MediaKind::Video,
        _ => return Err(FrameError::Invalid),
    };
    let source = match r.u8()? {
        0 => TrackSource::Microphone,
        1 => TrackSource::Camera,
        2 => TrackSource::ScreenShare,
        _ => return Err(FrameError::Invalid),
    };
    if source.kind() != kind || participant.is_empty() || track_id.is_empty() {
        return Err(FrameError::Invalid);
    }
    let audio_level_ext = Some(r.u8()?).filter(|id| *id != 0);
    let n_codecs = r.u8()?;
    let mut codecs = Vec::with_capacity(usize::from(n_codecs));
    for _ in 0..n_codecs {
        codecs.push(Codec {
            payload_type: r.u8()?,
            mime: r.string()?,
            fmtp: r.string()?,
        });
    }
    let n_layers = r.u8()?;
    if n_layers == 0 {
        return Err(FrameError::Invalid);
    }
    let mut layers = Vec::with_capacity(usize::from(n_layers));
    for _ in 0..n_layers {
        layers.push((r.u32()?, r.u8()?));
    }
    Ok(Announce {
        track,
        participant,
        track_id,
        kind,
        source,
        audio_level_ext,
        codecs,
        layers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn announce() -> Announce {
        Announce {
            track: 7,
            participant: "p-1".into(),
            track_id: "cam".into(),
            kind: MediaKind::Video,
            source: TrackSource::Camera,
            audio_level_ext: None,
            codecs: vec![Codec {
                payload_type: 96,
                mime: "video/vp8".into(),
                fmtp: String::new(),
            }],
            layers: vec![(11, 0), (12, 1), (13, 2)],
        }
    }

    #[test]
    fn messages_round_trip() {
        let a = announce();
        assert_eq!(
            decode(&encode_announce(&a)),
            Ok(Message::Announce(a.clone()))
        );
        assert_eq!(
            decode(&encode_media(3, &[1, 2, 3])),
            Ok(Message::Media {
                track: 3,
                rtp: &[1, 2, 3]
            })
        );
        let clock = Clock {
            sent_ms: 5,
            echo_ms: 3,
            held_ms: 1,
        };
        assert_eq!(
            decode(&encode_roster(clock, &[1, 9])),
            Ok(Message::Roster {
                clock,
                tracks: vec![1, 9]
            })
        );
        assert_eq!(decode(&encode_close()), Ok(Message::Close));
        assert_eq!(
            decode(&encode_nack(2, 3, &[7, 9])),
            Ok(Message::Nack {
                track: 2,
                ssrc: 3,
                seqs: vec![7, 9]
            })
        );
        assert_eq!(
            decode(&encode_keyframe_request(4, 5)),
            Ok(Message::KeyframeRequest { track: 4, ssrc: 5 })
        );
        let rated: Vec<(String, Quality)> = (0..40)
            .map(|i| (format!("p-{i}"), Quality::ALL[i % 4]))
            .collect();
        let messages = encode_quality(&rated);
        assert_eq!(messages.len(), 2, "32 a message");
        let decoded: Vec<(String, Quality)> = messages
            .iter()
            .flat_map(|bytes| match decode(bytes) {
                Ok(Message::Quality(some)) => some,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(decoded, rated);
    }

    #[test]
    fn bad_messages_get_specific_errors() {
        assert_eq!(decode(&[]), Err(FrameError::Truncated));
        assert_eq!(decode(&[9]), Err(FrameError::UnknownType(9)));
        let mut bytes = encode_announce(&announce());
        bytes.truncate(bytes.len() - 1);
        assert_eq!(decode(&bytes), Err(FrameError::Truncated));
        let audio_camera = Announce {
            kind: MediaKind::Audio,
            ..announce()
        };
        assert_eq!(
            decode(&encode_announce(&audio_camera)),
            Err(FrameError::Invalid)
        );
        let mut unknown_level = encode_quality(&[("p".into(), Quality::Good)]).remove(0);
        *unknown_level.last_mut().unwrap() = 4;
        assert_eq!(decode(&unknown_level), Err(FrameError::Invalid));
        assert_eq!(decode(&[QUALITY, 33]), Err(FrameError::Invalid), "too many");
        assert_eq!(
            decode(&[QUALITY, 1, 0, 0]),
            Err(FrameError::Invalid),
            "no one"
        );
    }

    proptest! {
        #[test]
        fn any_bytes_decode_or_fail_cleanly(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn truncated_announces_never_decode(cut in 0usize..40) {
            let bytes = encode_announce(&announce());
            let cut = cut.min(bytes.len() - 1);
            prop_assert!(decode(&bytes[..cut]).is_err());
        }
    }
}
