//! The bridge's WebRTC peer in the room: a webrtc-rs (`rtc`, sans-IO) peer connection
//! on its own UDP socket that publishes the caller's audio as one Opus microphone
//! track and opens receive slots for the others' audio, as the web client does.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use anyhow::Context as _;
use bytes::BytesMut;
use rtc::media_stream::{MediaStreamTrack, MediaStreamTrackId};
use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_OPUS, MediaEngine};
use rtc::peer_connection::event::{RTCPeerConnectionEvent, RTCTrackEvent};
use rtc::peer_connection::message::RTCMessage;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::transport::{CandidateConfig, CandidateHostConfig, RTCIceCandidate};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RTCRtpHeaderExtensionCapability,
    RtpCodecKind,
};
use rtc::rtp_transceiver::{
    RTCRtpReceiverId, RTCRtpSenderId, RTCRtpTransceiverDirection, RTCRtpTransceiverInit,
};
use rtc::sansio::Protocol as _;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};

/// Receive slots for others' audio: the caller hears one of them at a time.
pub const AUDIO_SLOTS: usize = 8;
/// RFC 6464, as the SFU reads it for the active speaker.
const AUDIO_LEVEL_URI: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";
/// Opus as the default media engine registers it.
const DEFAULT_OPUS_PT: u8 = 111;

/// What the peer connection has for the bridge after a datagram or a timeout.
#[derive(Debug)]
pub enum PeerOutput {
    /// Connected (ICE and DTLS done).
    Connected,
    Failed,
    /// An RTP packet of the others' audio, on receive slot `mid`.
    Audio {
        mid: String,
        ssrc: u32,
        packet: rtc::rtp::Packet,
    },
}

pub struct RoomPeer {
    pc: RTCPeerConnection,
    sender: RTCRtpSenderId,
    ssrc: u32,
    opus_pt: u8,
    /// The negotiated id of the audio-level extension, once answered.
    audio_level_ext: Option<u8>,
    /// Receive slot of each track the far end opened.
    mids: HashMap<MediaStreamTrackId, String>,
    pub local: SocketAddr,
}

impl RoomPeer {
    /// A peer whose one host candidate is `local` (the address of its socket).
    pub fn new(local: SocketAddr, now: Instant) -> anyhow::Result<Self> {
        let mut media_engine = MediaEngine::default();
        media_engine.register_default_codecs()?;
        // The caller's level on every packet: the room's active speaker can be the caller.
        media_engine.register_header_extension(
            RTCRtpHeaderExtensionCapability {
                uri: AUDIO_LEVEL_URI.to_owned(),
            },
            RtpCodecKind::Audio,
            None,
        )?;
        let registry =
            register_default_interceptors(rtc::interceptor::Registry::new(), &mut media_engine)?;
        let mut pc = RTCPeerConnectionBuilder::new()
            .with_media_engine(media_engine)
            .with_interceptor_registry(registry)
            .build(now)?;
        let ssrc = rand::random::<u32>() | 1;
        let sender = pc.add_track(microphone(ssrc))?;
        for _ in 0..AUDIO_SLOTS {
            pc.add_transceiver_from_kind(
                RtpCodecKind::Audio,
                Some(RTCRtpTransceiverInit {
                    direction: RTCRtpTransceiverDirection::Recvonly,
                    streams: Vec::new(),
                    send_encodings: Vec::new(),
                }),
            )?;
        }
        let host = CandidateHostConfig {
            base_config: CandidateConfig {
                network: "udp".into(),
                address: local.ip().to_string(),
                port: local.port(),
                component: 1,
                ..Default::default()
            },
            ..Default::default()
        }
        .new_candidate_host()?;
        pc.add_local_candidate(RTCIceCandidate::from(&host).to_json()?)?;
        Ok(Self {
            pc,
            sender,
            ssrc,
            opus_pt: DEFAULT_OPUS_PT,
            audio_level_ext: None,
            mids: HashMap::new(),
            local,
        })
    }

    pub fn offer(&mut self, now: Instant) -> anyhow::Result<String> {
        let offer = self.pc.create_offer(None)?;
        self.pc.set_local_description(now, offer.clone())?;
        Ok(offer.sdp)
    }

    pub fn accept_answer(&mut self, sdp: String, now: Instant) -> anyhow::Result<()> {
        self.pc
            .set_remote_description(now, RTCSessionDescription::answer(sdp)?)
            .context("the room's answer could not be applied")?;
        if let Some(mut sender) = self.pc.rtp_sender(self.sender) {
            let parameters = &sender.get_parameters().rtp_parameters;
            if let Some(opus) = parameters
                .codecs
                .iter()
                .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(MIME_TYPE_OPUS))
            {
                self.opus_pt = opus.payload_type;
            }
            self.audio_level_ext = parameters
                .header_extensions
                .iter()
                .find(|ext| ext.uri == AUDIO_LEVEL_URI)
                .and_then(|ext| u8::try_from(ext.id).ok());
        }
        Ok(())
    }

    /// Publishes one Opus packet of the caller's, with its `level` (-dBov) when the
    /// room negotiated the audio-level extension.
    pub fn send_audio(
        &mut self,
        now: Instant,
        sequence: u16,
        timestamp: u32,
        marker: bool,
        payload: &[u8],
        level: u8,
    ) -> bool {
        let audio_level_ext = self.audio_level_ext;
        let Some(mut sender) = self.pc.rtp_sender(self.sender) else {
            return false;
        };
        let mut packet = rtc::rtp::Packet::default();
        packet.header.version = 2;
        packet.header.payload_type = self.opus_pt;
        packet.header.marker = marker;
        packet.header.sequence_number = sequence;
        packet.header.timestamp = timestamp;
        packet.header.ssrc = self.ssrc;
        packet.payload = bytes::Bytes::copy_from_slice(payload);
        if let Some(id) = audio_level_ext {
            // RFC 6464: the voice-activity bit, then the level.
            let voice = if level < crate::level::SILENT {
                0x80
            } else {
                0
            };
            let _ = packet
                .header
                .set_extension(id, bytes::Bytes::copy_from_slice(&[voice | level.min(127)]));
        }
        sender.write_rtp(now, packet).is_ok()
    }

    pub fn handle_datagram(&mut self, datagram: &[u8], from: SocketAddr, now: Instant) {
        // A datagram the stack cannot use is dropped; ICE, DTLS and SRTP recover or fail.
        let _ = self.pc.handle_read(TaggedBytesMut {
            now,
            transport: TransportContext {
                local_addr: self.local,
                peer_addr: from,
                ecn: None,
                transport_protocol: TransportProtocol::UDP,
            },
            message: BytesMut::from(datagram),
        });
    }

    pub fn handle_timeout(&mut self, now: Instant) -> anyhow::Result<()> {
        self.pc.handle_timeout(now)?;
        Ok(())
    }

    pub fn poll_timeout(&mut self) -> Option<Instant> {
        self.pc.poll_timeout()
    }

    /// The next datagram to send, and where.
    pub fn poll_transmit(&mut self) -> Option<(BytesMut, SocketAddr)> {
        self.pc
            .poll_write()
            .map(|out| (out.message, out.transport.peer_addr))
    }

    /// The next thing the bridge acts on.
    pub fn poll_output(&mut self) -> Option<PeerOutput> {
        while let Some(event) = self.pc.poll_event() {
            match event {
                RTCPeerConnectionEvent::OnConnectionStateChangeEvent(
                    RTCPeerConnectionState::Connected,
                ) => return Some(PeerOutput::Connected),
                RTCPeerConnectionEvent::OnConnectionStateChangeEvent(
                    RTCPeerConnectionState::Failed,
                ) => return Some(PeerOutput::Failed),
                RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnOpen(init)) => {
                    if let Some(mid) = self.mid_of(init.receiver_id) {
                        self.mids.insert(init.track_id, mid);
                    }
                }
                _ => {}
            }
        }
        while let Some(message) = self.pc.poll_read() {
            if let RTCMessage::RtpPacket(track, packet) = message.message
                && let Some(mid) = self.mids.get(&track)
            {
                return Some(PeerOutput::Audio {
                    mid: mid.clone(),
                    ssrc: packet.header.ssrc,
                    packet,
                });
            }
        }
        None
    }

    fn mid_of(&mut self, receiver: RTCRtpReceiverId) -> Option<String> {
        let transceivers: Vec<_> = self.pc.get_transceivers().collect();
        transceivers.into_iter().find_map(|id| {
            let transceiver = self.pc.rtp_transceiver(id)?;
            (transceiver.receiver() == Some(receiver))
                .then(|| transceiver.mid().clone())
                .flatten()
        })
    }

    pub fn close(&mut self) {
        let _ = self.pc.close();
    }
}

fn microphone(ssrc: u32) -> MediaStreamTrack {
    MediaStreamTrack::new(
        format!("sip-{ssrc}"),
        format!("sip-audio-{ssrc}"),
        "microphone".into(),
        RtpCodecKind::Audio,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            codec: RTCRtpCodec {
                mime_type: MIME_TYPE_OPUS.into(),
                clock_rate: 48_000,
                channels: 2,
                ..Default::default()
            },
            ..Default::default()
        }],
    )
}
