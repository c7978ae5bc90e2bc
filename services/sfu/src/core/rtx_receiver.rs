//! Resends from publishers in their own stream (RTX, RFC 4588), turned back into the
//! packets they repair before anything else in the stack or the core sees them.
//!
//! The stack ties an RTX stream to its original only through `a=ssrc-group:FID`. A
//! simulcast layer's RTX stream is named instead by the `repaired-rtp-stream-id` header
//! extension (RFC 8852), carrying the `rid` of the layer it repairs, and the stack drops
//! such packets. [`RtxReceiver`] learns each layer's SSRC from its `mid` and `rid`
//! extensions, ties RTX streams to layers by theirs (or by the FID group the stack
//! bound), and gives each resend back its original SSRC, payload type and sequence
//! number. It runs inside the SFU's NACK responder (`responder.rs`), which reads
//! packets nearer the wire than the NACK generator, so the generator sees a resend as
//! the packet it asked for; one interceptor rather than two also spares every packet
//! written to the peer a hop.
//!
//! Answering publishers with RTX also moves their bandwidth probes out of the media
//! stream: padding in an RTX stream passes through untouched (transport-wide feedback
//! still counts it) and ends at the stack, where no stream claims it.

use std::collections::HashMap;

use bytes::Bytes;
use rtc::interceptor::StreamInfo;
use rtc::rtp::header::Header;
use rtc::sdp::extmap::{SDES_MID_URI, SDES_REPAIR_RTP_STREAM_ID_URI, SDES_RTP_STREAM_ID_URI};

use super::rtx::RtxTypes;
use crate::stats::SfuStats;

/// Header extension IDs of the stream names, as negotiated.
#[derive(Debug, Default, Clone, Copy)]
struct NameIds {
    mid: Option<u8>,
    rid: Option<u8>,
    rrid: Option<u8>,
}

pub(crate) struct RtxReceiver {
    stats: SfuStats,
    types: RtxTypes,
    ids: NameIds,
    /// Each simulcast layer's SSRC, by the `mid` and `rid` its packets carry.
    layers: Vec<(Bytes, Bytes, u32)>,
    /// The stream each RTX stream repairs, by SSRC.
    repairs: HashMap<u32, u32>,
}

impl RtxReceiver {
    pub(crate) fn new(stats: SfuStats, types: RtxTypes) -> Self {
        Self {
            stats,
            types,
            ids: NameIds::default(),
            layers: Vec::new(),
            repairs: HashMap::new(),
        }
    }

    /// `packet` as the packet it repairs, if it is a resend in a known RTX stream;
    /// anything else unchanged.
    pub(crate) fn unwrap(&mut self, packet: &mut rtc::rtp::Packet) {
        let Some(payload_type) = self.types.original(packet.header.payload_type) else {
            self.learn_layer(&packet.header);
            return;
        };
        let Some(original) = self.repaired_stream(&packet.header) else {
            return;
        };
        // Padding alone (a bandwidth probe) has no original sequence number.
        let [high, low, ..] = packet.payload[..] else {
            return;
        };
        packet.header.ssrc = original;
        packet.header.payload_type = payload_type;
        packet.header.sequence_number = u16::from_be_bytes([high, low]);
        packet.payload = packet.payload.slice(2..);
        self.stats.rtx_received();
    }

    /// Remembers which SSRC a simulcast layer (`mid`, `rid`) is sent on.
    fn learn_layer(&mut self, header: &Header) {
        let (Some(mid), Some(rid)) = (
            extension(header, self.ids.mid),
            extension(header, self.ids.rid),
        ) else {
            return;
        };
        let known = self
            .layers
            .iter_mut()
            .find(|(m, r, _)| **m == *mid && **r == *rid);
        match known {
            Some((_, _, ssrc)) => *ssrc = header.ssrc,
            None => self.layers.push((mid, rid, header.ssrc)),
        }
    }

    /// The SSRC an RTX packet repairs: known from its stream's FID group or an earlier
    /// packet, or named by its `mid` and `repaired-rtp-stream-id`.
    fn repaired_stream(&mut self, header: &Header) -> Option<u32> {
        if let Some(&original) = self.repairs.get(&header.ssrc) {
            return Some(original);
        }
        let mid = extension(header, self.ids.mid)?;
        let rrid = extension(header, self.ids.rrid)?;
        let original = self
            .layers
            .iter()
            .find(|(m, r, _)| **m == *mid && **r == *rrid)
            .map(|&(_, _, ssrc)| ssrc)?;
        self.repairs.insert(header.ssrc, original);
        Some(original)
    }
}

fn extension(header: &Header, id: Option<u8>) -> Option<Bytes> {
    header.get_extension(id?).filter(|value| !value.is_empty())
}

impl RtxReceiver {
    /// The stack bound a stream the peer sends.
    pub(crate) fn bind_remote_stream(&mut self, info: &StreamInfo) {
        for extension in &info.rtp_header_extensions {
            let id = u8::try_from(extension.id).ok();
            match extension.uri.as_str() {
                SDES_MID_URI => self.ids.mid = id,
                SDES_RTP_STREAM_ID_URI => self.ids.rid = id,
                SDES_REPAIR_RTP_STREAM_ID_URI => self.ids.rrid = id,
                _ => {}
            }
        }
        if let Some(rtx) = info.ssrc_rtx {
            self.repairs.insert(rtx, info.ssrc);
        }
    }

    pub(crate) fn unbind_remote_stream(&mut self, info: &StreamInfo) {
        self.repairs
            .retain(|rtx, original| *original != info.ssrc && *rtx != info.ssrc);
        self.layers.retain(|&(_, _, ssrc)| ssrc != info.ssrc);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::codecs::codec;
    use crate::core::rtx::RTX_MIME;
    use proptest::prelude::*;
    use rtc::interceptor::RTPHeaderExtension;

    const LAYER: u32 = 1_000;
    const LAYER_RTX: u32 = 2_000;
    const MID: u8 = 1;
    const RID: u8 = 2;
    const RRID: u8 = 3;

    fn receiver() -> RtxReceiver {
        let types = RtxTypes::default();
        types.settle(&[codec(96, "video/vp8", ""), codec(97, RTX_MIME, "apt=96")]);
        let mut receiver = RtxReceiver::new(SfuStats::default(), types);
        let extension = |uri: &str, id: u8| RTPHeaderExtension {
            uri: uri.to_owned(),
            id: id.into(),
        };
        receiver.bind_remote_stream(&StreamInfo {
            ssrc: LAYER,
            payload_type: 96,
            rtp_header_extensions: vec![
                extension(SDES_MID_URI, MID),
                extension(SDES_RTP_STREAM_ID_URI, RID),
                extension(SDES_REPAIR_RTP_STREAM_ID_URI, RRID),
            ],
            ..StreamInfo::default()
        });
        receiver
    }

    /// An RTP packet with the given stream-name extensions (`(id, value)`).
    fn packet(
        ssrc: u32,
        payload_type: u8,
        seq: u16,
        names: &[(u8, &str)],
        payload: &[u8],
    ) -> rtc::rtp::Packet {
        let mut header = Header {
            version: 2,
            ssrc,
            payload_type,
            sequence_number: seq,
            ..Header::default()
        };
        for &(id, value) in names {
            header
                .set_extension(id, Bytes::copy_from_slice(value.as_bytes()))
                .expect("extension");
        }
        rtc::rtp::Packet {
            header,
            payload: Bytes::copy_from_slice(payload),
        }
    }

    /// `packet` after the receiver.
    fn through(receiver: &mut RtxReceiver, mut packet: rtc::rtp::Packet) -> rtc::rtp::Packet {
        receiver.unwrap(&mut packet);
        packet
    }

    #[test]
    fn a_simulcast_layers_resend_becomes_the_packet_it_repairs() {
        let mut receiver = receiver();
        through(
            &mut receiver,
            packet(LAYER, 96, 500, &[(MID, "0"), (RID, "h")], &[1]),
        );
        let resend = packet(
            LAYER_RTX,
            97,
            7,
            &[(MID, "0"), (RRID, "h")],
            &[0x01, 0xF2, 5, 6],
        );
        let repaired = through(&mut receiver, resend);
        assert_eq!(
            (repaired.header.ssrc, repaired.header.payload_type),
            (LAYER, 96)
        );
        assert_eq!(repaired.header.sequence_number, 0x01F2);
        assert_eq!(&repaired.payload[..], &[5, 6]);
        // Later resends of that stream need not name the layer again.
        let bare = through(
            &mut receiver,
            packet(LAYER_RTX, 97, 8, &[], &[0x01, 0xF3, 9]),
        );
        assert_eq!(
            (bare.header.ssrc, bare.header.sequence_number),
            (LAYER, 0x01F3)
        );
    }

    #[test]
    fn an_rtx_stream_of_a_fid_group_is_known_without_names() {
        let mut receiver = receiver();
        receiver.bind_remote_stream(&StreamInfo {
            ssrc: 3_000,
            ssrc_rtx: Some(3_001),
            ..StreamInfo::default()
        });
        let repaired = through(&mut receiver, packet(3_001, 97, 1, &[], &[0, 9, 4]));
        assert_eq!(
            (repaired.header.ssrc, repaired.header.sequence_number),
            (3_000, 9)
        );
    }

    #[test]
    fn probes_and_unknown_streams_pass_untouched() {
        let mut receiver = receiver();
        through(
            &mut receiver,
            packet(LAYER, 96, 500, &[(MID, "0"), (RID, "h")], &[1]),
        );
        let cases = [
            (
                "a probe: padding only",
                packet(LAYER_RTX, 97, 1, &[(MID, "0"), (RRID, "h")], &[]),
            ),
            (
                "a layer never seen",
                packet(4_000, 97, 1, &[(MID, "0"), (RRID, "f")], &[0, 1, 2]),
            ),
            ("no names, no group", packet(5_000, 97, 1, &[], &[0, 1, 2])),
            (
                "not an RTX payload type",
                packet(6_000, 96, 1, &[(MID, "0"), (RRID, "h")], &[0, 1, 2]),
            ),
        ];
        for (case, sent) in cases {
            let out = through(&mut receiver, sent.clone());
            assert_eq!(out, sent, "{case}");
        }
    }

    proptest! {
        /// Any packet goes through; only RTX payload types are ever rewritten.
        #[test]
        fn any_packet_passes(
            ssrc in prop_oneof![Just(LAYER), Just(LAYER_RTX), any::<u32>()],
            payload_type in prop_oneof![Just(96u8), Just(97u8), 0u8..128],
            seq in any::<u16>(),
            mid in "[0-9]{0,2}",
            rid in "[a-z]{0,2}",
            name_id in prop_oneof![Just(RID), Just(RRID)],
            payload in proptest::collection::vec(any::<u8>(), 0..8),
        ) {
            let mut receiver = receiver();
            through(&mut receiver, packet(LAYER, 96, 1, &[(MID, "0"), (RID, "h")], &[1]));
            let sent = packet(ssrc, payload_type, seq, &[(MID, &mid), (name_id, &rid)], &payload);
            let out = through(&mut receiver, sent.clone());
            if payload_type != 97 {
                prop_assert_eq!(out, sent);
            } else if out != sent {
                prop_assert_eq!(out.header.ssrc, LAYER);
                prop_assert_eq!(&out.payload[..], &payload[2..]);
            }
        }
    }
}
