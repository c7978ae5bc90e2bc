//! Resends in their own stream (RTX, RFC 4588), toward subscribers.
//!
//! A subscriber's video slot is negotiated with an RTX stream (`a=ssrc-group:FID` in the
//! answer). A resend then travels on the slot's RTX SSRC with its own sequence numbers,
//! under the RTX payload type bound (`apt=`) to the original's, the original sequence
//! number in its first two bytes. The receiver tells resends from late packets, and its
//! loss and jitter figures, and the reports it sends back, are not skewed by them.
//!
//! A slot may carry any negotiated codec, so the RTX payload type is chosen per packet
//! from what the answer bound ([`RtxTypes`]), not per stream. Publishers resend (and
//! probe bandwidth) in RTX streams of their own; `rtx_receiver.rs` turns those resends
//! back into the packets they repair.

use std::sync::{Arc, OnceLock};

use rtc::rtp::Packet;

use super::codecs::Codec;

/// The RTX codec's MIME type (lower case, as [`Codec`] holds MIME types).
pub(crate) use rtc::peer_connection::configuration::media_engine::MIME_TYPE_RTX as RTX_MIME;

/// One peer's negotiated RTX payload types, by the payload type they repair. Set once
/// its answer is made; shared with the interceptor that resends, built before that.
#[derive(Debug, Clone, Default)]
pub(crate) struct RtxTypes(Arc<OnceLock<Vec<(u8, u8)>>>);

impl RtxTypes {
    /// Records the RTX payload types among a negotiated codec list (the first call
    /// wins: every slot of a peer shares one answer's payload types).
    pub(crate) fn settle(&self, codecs: &[Codec]) {
        let pairs = codecs
            .iter()
            .filter(|codec| codec.mime == RTX_MIME)
            .filter_map(|codec| Some((associated_payload_type(&codec.fmtp)?, codec.payload_type)))
            .collect();
        let _ = self.0.set(pairs);
    }

    /// The payload type an RTX payload type repairs, if it is one.
    pub(crate) fn original(&self, rtx_payload_type: u8) -> Option<u8> {
        self.0
            .get()?
            .iter()
            .find(|(_, rtx)| *rtx == rtx_payload_type)
            .map(|&(original, _)| original)
    }

    /// The RTX payload type that repairs `payload_type`, if one was negotiated.
    pub(crate) fn repairing(&self, payload_type: u8) -> Option<u8> {
        self.0
            .get()?
            .iter()
            .find(|(original, _)| *original == payload_type)
            .map(|&(_, rtx)| rtx)
    }
}

/// `apt` of an RTX codec's fmtp line (`apt=96`, `apt=96;rtx-time=3000`).
fn associated_payload_type(fmtp: &str) -> Option<u8> {
    fmtp.split(';')
        .find_map(|parameter| parameter.trim().strip_prefix("apt="))
        .and_then(|value| value.trim().parse().ok())
}

/// `original` as an RTX packet: same timestamp, marker and extensions, on `ssrc` under
/// `payload_type` as number `sequence`, its payload led by the original sequence number.
pub(crate) fn encapsulate(original: &Packet, ssrc: u32, payload_type: u8, sequence: u16) -> Packet {
    let mut payload = Vec::with_capacity(2 + original.payload.len());
    payload.extend_from_slice(&original.header.sequence_number.to_be_bytes());
    payload.extend_from_slice(&original.payload);
    let mut header = original.header.clone();
    header.ssrc = ssrc;
    header.payload_type = payload_type;
    header.sequence_number = sequence;
    Packet {
        header,
        payload: payload.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::codecs::codec;
    use rtc::rtp::header::Header;
    use rtc::shared::marshal::{Marshal as _, Unmarshal as _};

    #[test]
    fn reads_the_negotiated_pairs() {
        let types = RtxTypes::default();
        assert_eq!(types.repairing(96), None, "nothing before the answer");
        types.settle(&[
            codec(96, "video/vp8", ""),
            codec(97, RTX_MIME, "apt=96"),
            codec(102, "video/h264", "profile-level-id=42001f"),
            codec(103, RTX_MIME, "apt=102;rtx-time=3000"),
            codec(108, "video/h264", "profile-level-id=42e01f"),
            codec(125, RTX_MIME, "rtx-time=3000"),
        ]);
        assert_eq!(types.repairing(96), Some(97));
        assert_eq!(types.repairing(102), Some(103));
        assert_eq!(types.repairing(108), None, "no RTX bound to it");
        assert_eq!(types.original(103), Some(102));
        assert_eq!(types.original(125), None, "no apt");
        assert_eq!(types.original(96), None, "not RTX");
        types.settle(&[codec(98, RTX_MIME, "apt=108")]);
        assert_eq!(types.repairing(108), None, "the first answer holds");
    }

    #[test]
    fn an_rtx_packet_carries_the_original() {
        let original = Packet {
            header: Header {
                version: 2,
                marker: true,
                payload_type: 96,
                sequence_number: 0xABCD,
                timestamp: 90_000,
                ssrc: 1,
                ..Header::default()
            },
            payload: vec![7, 8, 9].into(),
        };
        let rtx = encapsulate(&original, 2, 97, 5);
        let bytes = rtx.marshal().expect("marshals");
        let parsed = Packet::unmarshal(&mut &bytes[..]).expect("parses");
        assert_eq!((parsed.header.ssrc, parsed.header.payload_type), (2, 97));
        assert_eq!(parsed.header.sequence_number, 5);
        assert_eq!(parsed.header.timestamp, 90_000);
        assert!(parsed.header.marker);
        assert_eq!(&parsed.payload[..], &[0xAB, 0xCD, 7, 8, 9]);
    }
}
