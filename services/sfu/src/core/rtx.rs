//! Resends in their own stream (RTX, RFC 4588) toward subscribers.
//!
//! A subscriber's video slot is negotiated with an RTX stream (`a=ssrc-group:FID` in the
//! answer). A resend then travels on the slot's RTX SSRC with its own sequence numbers,
//! under the RTX payload type bound (`apt=`) to the original's, the original sequence
//! number in its first two bytes. The receiver tells resends from late packets, and its
//! loss and jitter figures, and the reports it sends back, are not skewed by them.
//!
//! A slot may carry any negotiated codec, so the RTX payload type is chosen per packet
//! from what the answer bound ([`RtxTypes`]), not per stream. Publishers are answered
//! without RTX ([`receive_without_rtx`]): the stack cannot tie a simulcast layer's RTX
//! stream (`repaired-rtp-stream-id`) back to its layer, so their resends keep their own
//! SSRC.

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

/// The answer with RTX taken out of every m-section in which the SFU receives
/// (`recvonly`, `sendrecv`): its formats from the `m=` line and their `rtpmap`, `fmtp`
/// and `rtcp-fb` lines. The stack always answers RTX where the offer has it; the
/// publisher then resends in the original stream. Sections the SFU only sends in keep
/// theirs.
pub(crate) fn receive_without_rtx(answer: &str) -> String {
    let mut sections = answer.split_inclusive("\nm=");
    let mut out = String::with_capacity(answer.len());
    out.push_str(sections.next().unwrap_or_default());
    for section in sections {
        out.push_str(&section_without_rtx(section));
    }
    out
}

/// One m-section (from just after `m=`, up to and including the next `\nm=`).
fn section_without_rtx(section: &str) -> String {
    let receives = section
        .lines()
        .any(|line| matches!(line.trim_end(), "a=recvonly" | "a=sendrecv"));
    let rtx: Vec<&str> = section
        .lines()
        .filter_map(|line| line.trim_end().strip_prefix("a=rtpmap:"))
        .filter_map(|map| map.split_once(' '))
        .filter(|(_, format)| format.to_ascii_lowercase().starts_with("rtx/"))
        .map(|(payload_type, _)| payload_type)
        .collect();
    if !receives || rtx.is_empty() {
        return section.to_owned();
    }
    let names_rtx = |line: &str| {
        ["a=rtpmap:", "a=fmtp:", "a=rtcp-fb:"].iter().any(|prefix| {
            line.strip_prefix(prefix)
                .and_then(|rest| rest.split([' ', '\r']).next())
                .is_some_and(|payload_type| rtx.contains(&payload_type))
        })
    };
    let mut out = String::with_capacity(section.len());
    for (index, line) in section.split_inclusive('\n').enumerate() {
        if index == 0 {
            // `video 9 UDP/TLS/RTP/SAVPF 96 97 …`: the formats follow the protocol.
            let ending = &line[line.trim_end().len()..];
            let kept: Vec<&str> = line
                .trim_end()
                .split(' ')
                .enumerate()
                .filter(|(position, word)| *position < 3 || !rtx.contains(word))
                .map(|(_, word)| word)
                .collect();
            out.push_str(&kept.join(" "));
            out.push_str(ending);
        } else if !names_rtx(line) {
            out.push_str(line);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::codecs::codec;
    use rtc::rtp::header::Header;
    use rtc::shared::marshal::{Marshal as _, Unmarshal as _};

    const ANSWER: &str = "v=0\r\n\
s=-\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96 102 97 103\r\n\
a=mid:0\r\n\
a=rtpmap:96 VP8/90000\r\n\
a=rtcp-fb:96 nack\r\n\
a=rtpmap:102 H264/90000\r\n\
a=rtpmap:97 rtx/90000\r\n\
a=fmtp:97 apt=96\r\n\
a=rtpmap:103 rtx/90000\r\n\
a=fmtp:103 apt=102\r\n\
a=recvonly\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\n\
a=mid:1\r\n\
a=rtpmap:96 VP8/90000\r\n\
a=rtpmap:97 rtx/90000\r\n\
a=fmtp:97 apt=96\r\n\
a=sendonly\r\n";

    #[test]
    fn receiving_sections_lose_rtx_and_sending_ones_keep_it() {
        let trimmed = receive_without_rtx(ANSWER);
        let (receiving, sending) = trimmed
            .split_once("m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\n")
            .expect("second section");
        assert!(
            receiving.contains("m=video 9 UDP/TLS/RTP/SAVPF 96 102\r\n"),
            "{receiving}"
        );
        assert!(receiving.contains("a=rtpmap:96 VP8/90000\r\na=rtcp-fb:96 nack\r\na=rtpmap:102 H264/90000\r\na=recvonly\r\n"), "{receiving}");
        assert!(
            !receiving.contains("rtx") && !receiving.contains("apt="),
            "{receiving}"
        );
        assert!(
            sending.contains("a=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\n"),
            "{sending}"
        );
        assert!(trimmed.starts_with("v=0\r\ns=-\r\n"));
        assert_eq!(
            receive_without_rtx(&trimmed),
            trimmed,
            "nothing left to take"
        );
    }

    proptest::proptest! {
        /// Any text in: no panic, and nothing but whole lines (and m-line formats) go.
        #[test]
        fn trims_any_text(sdp in "(m=video 9 P 96 97\r\n|a=rtpmap:97 rtx/90000\r\n|a=recvonly\r\n|a=fmtp:97 apt=96\r\n|[ -~]{0,12}\r?\n){0,12}") {
            let trimmed = receive_without_rtx(&sdp);
            proptest::prop_assert!(trimmed.len() <= sdp.len());
            proptest::prop_assert_eq!(receive_without_rtx(&trimmed), trimmed.clone());
        }
    }

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
