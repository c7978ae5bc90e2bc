//! What forwarding needs to know about a video payload: does this packet start a
//! keyframe, and what size is the picture it starts.
//!
//! Layer switches happen only where the new layer starts a keyframe, or the
//! subscriber's decoder would get frames that reference pictures it never saw. The size
//! of a VP8 keyframe (RFC 6386 §9.1) ranks simulcast layers by what they really carry,
//! whatever their rids are called.
//!
//! Payloads come from the network: every function here takes any byte string and
//! answers `None` or `false` for what it cannot read; nothing panics.

mod sps;

pub(crate) use sps::sps_size;

use super::codecs::Codec;

/// The first packet of a keyframe, and the picture size when the codec says it there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KeyframeStart {
    /// Width and height in pixels: from the VP8 frame header, or from an H.264 SPS
    /// carried with the keyframe.
    pub(crate) size: Option<(u16, u16)>,
}

/// The codec families whose payload format this module reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PayloadFormat {
    Vp8,
    H264,
    Other,
}

impl PayloadFormat {
    pub(crate) fn of(codec: &Codec) -> Self {
        match codec.mime.as_str() {
            "video/vp8" => PayloadFormat::Vp8,
            "video/h264" => PayloadFormat::H264,
            _ => PayloadFormat::Other,
        }
    }
}

/// `Some` when `payload` is the first packet of a keyframe.
pub(crate) fn keyframe_start(format: PayloadFormat, payload: &[u8]) -> Option<KeyframeStart> {
    match format {
        PayloadFormat::Vp8 => vp8_keyframe_start(payload),
        PayloadFormat::H264 => h264_starts_keyframe(payload).then(|| KeyframeStart {
            size: h264_sps(payload).and_then(sps::sps_size),
        }),
        PayloadFormat::Other => None,
    }
}

/// RFC 7741 §4.2 payload descriptor, then the VP8 frame header (RFC 6386 §9.1).
fn vp8_keyframe_start(payload: &[u8]) -> Option<KeyframeStart> {
    let first = *payload.first()?;
    let extended = first & 0x80 != 0;
    let start_of_partition = first & 0x10 != 0;
    let partition_index = first & 0x07;
    if !start_of_partition || partition_index != 0 {
        return None;
    }
    let mut offset = 1;
    if extended {
        let flags = *payload.get(offset)?;
        offset += 1;
        if flags & 0x80 != 0 {
            // PictureID: 7 bits, or 15 when its first bit (M) is set.
            let picture_id = *payload.get(offset)?;
            offset += if picture_id & 0x80 != 0 { 2 } else { 1 };
        }
        if flags & 0x40 != 0 {
            offset += 1; // TL0PICIDX
        }
        if flags & 0x30 != 0 {
            offset += 1; // TID / Y / KEYIDX
        }
    }
    let frame = payload.get(offset..)?;
    let tag = *frame.first()?;
    // Frame tag bit 0: 0 is a key frame.
    if tag & 0x01 != 0 {
        return None;
    }
    // Key frames carry a start code and the size after the 3-byte frame tag.
    let size = match frame.get(3..10) {
        Some([0x9d, 0x01, 0x2a, w0, w1, h0, h1]) => Some((
            u16::from_le_bytes([*w0, *w1]) & 0x3fff,
            u16::from_le_bytes([*h0, *h1]) & 0x3fff,
        )),
        _ => None,
    };
    Some(KeyframeStart { size })
}

/// Where a VP8 packet sits among the pictures of its stream (RFC 7741 §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Vp8Position {
    /// 7- or 15-bit PictureID, when the publisher sends one.
    pub(crate) picture_id: Option<u16>,
    /// Temporal layer index, when the publisher uses temporal layers.
    pub(crate) temporal_id: Option<u8>,
    /// The packet starts a picture (S bit on partition 0).
    pub(crate) starts_picture: bool,
}

pub(crate) fn vp8_position(payload: &[u8]) -> Option<Vp8Position> {
    let first = *payload.first()?;
    let mut position = Vp8Position {
        picture_id: None,
        temporal_id: None,
        starts_picture: first & 0x10 != 0 && first & 0x07 == 0,
    };
    if first & 0x80 == 0 {
        return Some(position);
    }
    let flags = *payload.get(1)?;
    let mut offset = 2;
    if flags & 0x80 != 0 {
        let high = *payload.get(offset)?;
        position.picture_id = Some(if high & 0x80 != 0 {
            let low = *payload.get(offset + 1)?;
            offset += 2;
            (u16::from(high & 0x7f) << 8) | u16::from(low)
        } else {
            offset += 1;
            u16::from(high)
        });
    }
    if flags & 0x40 != 0 {
        offset += 1;
    }
    if flags & 0x20 != 0 {
        position.temporal_id = Some(*payload.get(offset)? >> 6);
    }
    Some(position)
}

/// RFC 6184: an IDR slice or a sequence parameter set, alone, aggregated (STAP-A) or
/// at the start of a fragment (FU-A).
fn h264_starts_keyframe(payload: &[u8]) -> bool {
    const IDR: u8 = 5;
    const SPS: u8 = 7;
    const STAP_A: u8 = 24;
    const FU_A: u8 = 28;
    let Some(&header) = payload.first() else {
        return false;
    };
    match header & 0x1f {
        IDR | SPS => true,
        STAP_A => {
            let mut rest = &payload[1..];
            while let [hi, lo, body @ ..] = rest {
                let len = usize::from(u16::from_be_bytes([*hi, *lo]));
                let Some(nal) = body.get(..len) else {
                    return false;
                };
                if nal.first().is_some_and(|h| matches!(h & 0x1f, IDR | SPS)) {
                    return true;
                }
                rest = &body[len..];
            }
            false
        }
        FU_A => payload
            .get(1)
            .is_some_and(|fu| fu & 0x80 != 0 && fu & 0x1f == IDR),
        _ => false,
    }
}

/// The SPS in an H.264 payload: a single NAL unit or one inside a STAP-A.
fn h264_sps(payload: &[u8]) -> Option<&[u8]> {
    const SPS: u8 = 7;
    const STAP_A: u8 = 24;
    match payload.first()? & 0x1f {
        SPS => Some(payload),
        STAP_A => {
            let mut rest = &payload[1..];
            while let [hi, lo, body @ ..] = rest {
                let len = usize::from(u16::from_be_bytes([*hi, *lo]));
                let nal = body.get(..len)?;
                if nal.first().is_some_and(|h| h & 0x1f == SPS) {
                    return Some(nal);
                }
                rest = &body[len..];
            }
            None
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A VP8 key frame's first packet: descriptor with a 15-bit PictureID, then the
    /// frame tag, start code and a 1280×720 size.
    fn vp8_keyframe() -> Vec<u8> {
        let mut p = vec![0x90, 0x80, 0x81, 0x23];
        p.extend_from_slice(&[0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a]);
        p.extend_from_slice(&1280u16.to_le_bytes());
        p.extend_from_slice(&720u16.to_le_bytes());
        p
    }

    #[test]
    fn reads_a_vp8_keyframe_and_its_size() {
        let start = vp8_keyframe_start(&vp8_keyframe());
        assert_eq!(
            start,
            Some(KeyframeStart {
                size: Some((1280, 720))
            })
        );
    }

    #[test]
    fn vp8_delta_frames_and_continuations_are_not_keyframe_starts() {
        let mut delta = vp8_keyframe();
        delta[4] |= 0x01;
        assert_eq!(vp8_keyframe_start(&delta), None);
        let mut continuation = vp8_keyframe();
        continuation[0] &= !0x10;
        assert_eq!(vp8_keyframe_start(&continuation), None);
    }

    #[test]
    fn reads_h264_idr_in_every_packetization() {
        assert!(h264_starts_keyframe(&[0x65, 0x88]));
        // STAP-A holding an SPS.
        assert!(h264_starts_keyframe(&[0x78, 0x00, 0x02, 0x67, 0x42]));
        // FU-A start of an IDR, and its continuation.
        assert!(h264_starts_keyframe(&[0x7c, 0x85, 0x00]));
        assert!(!h264_starts_keyframe(&[0x7c, 0x05, 0x00]));
        // A non-IDR slice, and a STAP-A whose length runs past the end.
        assert!(!h264_starts_keyframe(&[0x41, 0x9a]));
        assert!(!h264_starts_keyframe(&[0x78, 0x00, 0x09, 0x67]));
    }

    #[test]
    fn reads_where_a_vp8_packet_sits() {
        // X, S, partition 0; I, L, T; 15-bit PictureID 0x0123; TL0PICIDX; TID 2.
        let packet = [0x90, 0xe0, 0x81, 0x23, 0x07, 0x80, 0x00];
        assert_eq!(
            vp8_position(&packet),
            Some(Vp8Position {
                picture_id: Some(0x0123),
                temporal_id: Some(2),
                starts_picture: true,
            })
        );
        // A continuation with a 7-bit PictureID and no temporal layers.
        assert_eq!(
            vp8_position(&[0x80, 0x80, 0x05, 0x00]),
            Some(Vp8Position {
                picture_id: Some(5),
                temporal_id: None,
                starts_picture: false,
            })
        );
        assert_eq!(vp8_position(&[0x90, 0xe0, 0x81, 0x23, 0x07]), None);
    }

    proptest! {
        #[test]
        fn any_payload_is_read_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = vp8_position(&bytes);
            let _ = keyframe_start(PayloadFormat::Vp8, &bytes);
            let _ = keyframe_start(PayloadFormat::H264, &bytes);
        }

        #[test]
        fn truncated_keyframes_never_panic(cut in 0usize..14) {
            let packet = vp8_keyframe();
            let _ = vp8_keyframe_start(&packet[..cut.min(packet.len())]);
        }
    }
}
