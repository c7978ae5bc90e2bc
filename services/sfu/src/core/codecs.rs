//! The codecs the SFU negotiates: Opus, VP8 and H.264 (the profiles Chromium offers).
//!
//! Forwarding is codec-agnostic, but a subscriber can only decode what its browser
//! supports; limiting the set to codecs every WebRTC browser decodes keeps any
//! publisher forwardable to any subscriber.

use rtc::peer_connection::configuration::media_engine::{
    MIME_TYPE_H264, MIME_TYPE_OPUS, MIME_TYPE_RTX, MIME_TYPE_VP8, MediaEngine,
};
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpHeaderExtensionCapability, RtpCodecKind,
};
use rtc::shared::error::Result;

/// VP8's payload type, and that of the RTX codec bound to it (`apt=`).
const VP8: (u8, u8) = (96, 97);
/// Each H.264 profile: its payload type, its RTX payload type, `profile-level-id`.
const H264_PROFILES: [(u8, u8, &str); 3] = [
    (102, 103, "42001f"),
    (108, 109, "42e01f"),
    (123, 124, "4d001f"),
];

fn feedback(typ: &str, parameter: &str) -> RTCPFeedback {
    RTCPFeedback {
        typ: typ.to_owned(),
        parameter: parameter.to_owned(),
    }
}

fn video(mime: &str, payload_type: u8, fmtp: String) -> RTCRtpCodecParameters {
    RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: mime.to_owned(),
            clock_rate: 90_000,
            channels: 0,
            sdp_fmtp_line: fmtp,
            rtcp_feedback: vec![
                feedback("goog-remb", ""),
                feedback("ccm", "fir"),
                feedback("nack", ""),
                feedback("nack", "pli"),
            ],
        },
        payload_type,
    }
}

/// A media engine with Confer's codec set.
pub(crate) fn media_engine() -> Result<MediaEngine> {
    let mut engine = MediaEngine::default();
    engine.register_codec(
        RTCRtpCodecParameters {
            rtp_codec: RTCRtpCodec {
                mime_type: MIME_TYPE_OPUS.to_owned(),
                clock_rate: 48_000,
                channels: 2,
                sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
                rtcp_feedback: vec![],
            },
            payload_type: 111,
        },
        RtpCodecKind::Audio,
    )?;
    // Publishers tag audio packets with their level; the SFU reads it for the active
    // speaker.
    engine.register_header_extension(
        RTCRtpHeaderExtensionCapability {
            uri: super::speaker::AUDIO_LEVEL_URI.to_owned(),
        },
        RtpCodecKind::Audio,
        None,
    )?;
    let (vp8, vp8_rtx) = VP8;
    engine.register_codec(
        video(MIME_TYPE_VP8, vp8, String::new()),
        RtpCodecKind::Video,
    )?;
    engine.register_codec(rtx(vp8, vp8_rtx), RtpCodecKind::Video)?;
    for (payload_type, rtx_payload_type, profile) in H264_PROFILES {
        let fmtp =
            format!("level-asymmetry-allowed=1;packetization-mode=1;profile-level-id={profile}");
        engine.register_codec(
            video(MIME_TYPE_H264, payload_type, fmtp),
            RtpCodecKind::Video,
        )?;
        engine.register_codec(rtx(payload_type, rtx_payload_type), RtpCodecKind::Video)?;
    }
    Ok(engine)
}

/// The RTX codec that repairs `repaired` (resends to subscribers travel in their own
/// stream: see `rtx.rs`).
fn rtx(repaired: u8, payload_type: u8) -> RTCRtpCodecParameters {
    RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: MIME_TYPE_RTX.to_owned(),
            clock_rate: 90_000,
            channels: 0,
            sdp_fmtp_line: format!("apt={repaired}"),
            rtcp_feedback: vec![],
        },
        payload_type,
    }
}

/// One negotiated codec of a sender or receiver, as the forwarding path needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Codec {
    pub(crate) payload_type: u8,
    pub(crate) mime: String,
    pub(crate) fmtp: String,
}

impl Codec {
    pub(crate) fn from_parameters(parameters: &RTCRtpCodecParameters) -> Self {
        Self {
            payload_type: parameters.payload_type,
            mime: parameters.rtp_codec.mime_type.to_ascii_lowercase(),
            fmtp: parameters.rtp_codec.sdp_fmtp_line.clone(),
        }
    }
}

/// The payload type in `theirs` for the codec `ours` is, preferring an identical fmtp
/// (same H.264 profile) over the same codec name.
pub(crate) fn map_payload_type(ours: &Codec, theirs: &[Codec]) -> Option<u8> {
    theirs
        .iter()
        .find(|codec| codec.mime == ours.mime && codec.fmtp == ours.fmtp)
        .or_else(|| theirs.iter().find(|codec| codec.mime == ours.mime))
        .map(|codec| codec.payload_type)
}

/// A negotiated codec, for tests.
#[cfg(test)]
pub(crate) fn codec(payload_type: u8, mime: &str, fmtp: &str) -> Codec {
    Codec {
        payload_type,
        mime: mime.into(),
        fmtp: fmtp.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_by_name_preferring_the_same_profile() {
        let theirs = [
            codec(100, "video/vp8", ""),
            codec(101, "video/h264", "profile-level-id=42001f"),
            codec(102, "video/h264", "profile-level-id=42e01f"),
        ];
        assert_eq!(
            map_payload_type(&codec(96, "video/vp8", ""), &theirs),
            Some(100)
        );
        let h264 = codec(108, "video/h264", "profile-level-id=42e01f");
        assert_eq!(map_payload_type(&h264, &theirs), Some(102));
        let other_profile = codec(123, "video/h264", "profile-level-id=4d001f");
        assert_eq!(map_payload_type(&other_profile, &theirs), Some(101));
        assert_eq!(map_payload_type(&codec(41, "video/av1", ""), &theirs), None);
    }

    #[test]
    fn the_media_engine_registers() {
        media_engine().expect("codec set registers");
    }
}
