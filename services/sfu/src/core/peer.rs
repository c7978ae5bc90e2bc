//! One participant's WebRTC connection, as the core sees it.
//!
//! A peer publishes what its offer sends (sendonly m-lines) and receives into the
//! *slots* its offer asks for (recvonly m-lines). Slots are filled with other
//! participants' tracks by the room logic in [`super::Sfu`]; the negotiated session
//! never changes after the answer, so joining and leaving never cost a renegotiation.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::RngExt as _;
use rtc::interceptor::{
    CongestionControlBuilder, Gcc, NackGeneratorBuilder, SenderReportBuilder, TwccSenderBuilder,
};
use rtc::interceptor::{Registry, Slot as InterceptorSlot};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::interceptor_registry::{
    configure_rtcp_reports, configure_simulcast_extension_headers, configure_twcc_receiver_only,
};
use rtc::peer_connection::configuration::media_engine::MediaEngine;
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::transport::{
    CandidateConfig, CandidateHostConfig, RTCDtlsRole, RTCIceCandidate,
};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtp_transceiver::RTCRtpSenderId;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RTCRtpHeaderExtensionCapability, RTCRtpRtxParameters, RtpCodecKind,
};

use super::codecs::{self, Codec};
use super::feedback::{self, EstimateCell, FeedbackTap};
use super::layers::{Congestion, Layer, Wanted};
use super::loss_watch::REPAIR_WAIT;
use super::offer::{requested_slots, sends_media, simulcast_send_rids, slides_mids};
use super::picture_ids::PictureIds;
use super::quality::{LinkCounters, Rating};
use super::repair_stream::WithRepairStream;
use super::responder::Responder;
use super::rewrite::Rewriter;
use super::rtx::RtxTypes;
use super::source::{Blocked, TrackSource};
use super::{MediaKind, PeerKey};
use crate::control::SfuError;
use crate::{ParticipantId, RoomId, SfuStats};

/// A track this peer publishes.
pub(crate) struct Published {
    /// The stack's receiver of a local publication; `None` for a relayed one.
    pub(crate) receiver_id: Option<rtc::rtp_transceiver::RTCRtpReceiverId>,
    /// The number it travels under on relay links (ours for a local publication, the
    /// origin's for a relayed one).
    pub(crate) relay_track: u32,
    pub(crate) kind: MediaKind,
    pub(crate) source: TrackSource,
    /// A shared screen that stopped sending: out of everyone's slots until it sends again.
    pub(crate) dormant: bool,
    /// Its encodings, lowest first: one, or one per simulcast layer.
    pub(crate) layers: Vec<Layer>,
    /// Shared, so the per-packet path holds them without copying.
    pub(crate) codecs: std::sync::Arc<[Codec]>,
    /// The negotiated id of the audio-level extension, when the publisher sends it.
    pub(crate) audio_level_ext: Option<u8>,
    pub(crate) meter: super::speaker::LevelMeter,
    /// Its recording, while its (local) publisher is recorded.
    pub(crate) recording: Option<crate::record::TrackRecording>,
}

/// Where a slot's media comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Source {
    pub(crate) publisher: PeerKey,
    pub(crate) track_id: String,
}

/// One receive m-line of this peer.
pub(crate) struct Slot {
    pub(crate) mid: String,
    pub(crate) kind: MediaKind,
    pub(crate) sender_id: RTCRtpSenderId,
    pub(crate) track_id: String,
    pub(crate) ssrc: u32,
    pub(crate) codecs: Vec<Codec>,
    pub(crate) source: Option<Source>,
    pub(crate) rewriter: Rewriter,
    pub(crate) picture_ids: PictureIds,
    /// What the subscriber renders this slot at (video).
    pub(crate) wanted: Wanted,
    /// The layer (by SSRC) chosen for this slot; `None` pauses it.
    pub(crate) target: Option<u32>,
    /// The layer being forwarded; it becomes `target` at that layer's next keyframe.
    pub(crate) current: Option<u32>,
}

impl Slot {
    /// Points the slot at another source (or none); layer choice starts over.
    pub(crate) fn set_source(&mut self, source: Option<Source>) {
        self.source = source;
        self.target = None;
        self.pause();
    }

    /// Stops forwarding until the next keyframe of `target`; the output then continues
    /// where it stopped.
    pub(crate) fn pause(&mut self) {
        self.current = None;
        self.rewriter.restart();
        self.picture_ids.restart();
    }
}

pub(crate) struct Peer {
    pub(crate) participant: ParticipantId,
    pub(crate) room: RoomId,
    pub(crate) ufrag: String,
    pub(crate) pc: RTCPeerConnection,
    pub(crate) connected: bool,
    pub(crate) created_at: Instant,
    pub(crate) last_received: Instant,
    pub(crate) next_timeout: Option<Instant>,
    pub(crate) published: HashMap<String, Published>,
    pub(crate) slots: Vec<Slot>,
    /// Sources whose tracks are not forwarded (host mute, no publish permission).
    pub(crate) blocked: Blocked,
    /// Mids of the offer's m-lines marked `a=content:slides`: screen share.
    pub(crate) slides_mids: Vec<String>,
    /// Simulcast rids in the order the offer lists them, lowest first.
    pub(crate) rid_order: Vec<String>,
    /// This peer's bandwidth estimate as a subscriber.
    pub(crate) congestion: Congestion,
    /// Send-side estimates from the peer's congestion controller (TWCC feedback).
    pub(crate) estimates: EstimateCell,
    /// The RTX payload types negotiated, shared with the interceptors that send and
    /// receive resends.
    pub(crate) rtx_types: RtxTypes,
    /// Its connection quality, from what its NACK responder counts.
    pub(crate) rating: Rating,
    /// Its publications are recorded.
    pub(crate) recording: bool,
}

/// Inputs for [`Peer::answer_offer`].
pub(crate) struct PeerInit<'a> {
    pub(crate) key: PeerKey,
    pub(crate) room: RoomId,
    pub(crate) participant: ParticipantId,
    pub(crate) offer_sdp: &'a str,
    pub(crate) media_addr: SocketAddr,
    pub(crate) stats: SfuStats,
}

/// How often a publisher is asked again for packets still missing. A subscriber asks
/// the SFU for a lost packet a few times within a couple of round trips and then gives
/// up; the SFU must have it from the publisher by then.
const NACK_INTERVAL: Duration = Duration::from_millis(20);
/// How many times one packet is asked for: until the loss watch stops waiting for it
/// ([`REPAIR_WAIT`]). Padding lost on the way in is never resent, and asking for it
/// every round for as long as the stack remembers the stream only costs uplink.
const NACKS_PER_PACKET: u16 = (REPAIR_WAIT.as_millis() / NACK_INTERVAL.as_millis()) as u16;

/// Where the send-side estimate toward a subscriber starts, bits per second: about one
/// mid simulcast layer. It only creeps up from here; what counts is when it falls.
const ESTIMATE_START_BPS: f64 = 1_000_000.0;
/// The estimate's floor and ceiling, bits per second.
const ESTIMATE_MIN_BPS: f64 = 50_000.0;
const ESTIMATE_MAX_BPS: f64 = 50_000_000.0;

/// The `rtc` interceptors a peer runs: NACK generator, TWCC feedback to publishers,
/// transport-wide sequence numbers on what the SFU sends and send-side bandwidth
/// estimation (GCC) from the subscriber's TWCC feedback, RTCP reports, and the SFU's
/// own NACK responder ([`Responder`], which also counts and measures round trips) and
/// feedback tap.
///
/// A peer whose offer sends no media (a viewer) gets only the sending half: nothing
/// reaches it to ask again for, report on or acknowledge, and every interceptor is a
/// hop each forwarded copy makes on its way out.
fn interceptors(
    media_engine: &mut MediaEngine,
    stats: &SfuStats,
    estimates: &EstimateCell,
    rtx_types: &RtxTypes,
    link: &LinkCounters,
    receives_media: bool,
) -> Result<Registry, rtc::shared::error::Error> {
    configure_simulcast_extension_headers(media_engine)?;
    let registry = Registry::new().with(
        InterceptorSlot::NackResponder,
        Responder::new(stats.clone(), rtx_types.clone(), link.clone()),
    );
    // Transport-cc is negotiated for both directions; the receiving half answers what
    // a publisher sends, the sender numbers what goes out, and the controller reads the
    // feedback that comes back.
    let registry = if receives_media {
        let registry = registry.with(
            InterceptorSlot::NackGenerator,
            NackGeneratorBuilder::new()
                .with_interval(NACK_INTERVAL)
                .with_max_nacks_per_packet(NACKS_PER_PACKET)
                .build(),
        );
        configure_rtcp_reports(configure_twcc_receiver_only(registry, media_engine)?)
    } else {
        negotiate_transport_cc(media_engine)?;
        registry.with(
            InterceptorSlot::SenderReport,
            SenderReportBuilder::new().build(),
        )
    };
    Ok(registry
        .with(
            InterceptorSlot::TwccSender,
            WithRepairStream(TwccSenderBuilder::new().build()),
        )
        .with(
            InterceptorSlot::CongestionControl,
            WithRepairStream(
                CongestionControlBuilder::new(Gcc::new(
                    ESTIMATE_START_BPS,
                    ESTIMATE_MIN_BPS,
                    ESTIMATE_MAX_BPS,
                ))
                .build(),
            ),
        )
        .with(
            InterceptorSlot::from(feedback::TAP_SLOT),
            FeedbackTap::with_estimates(estimates.clone()),
        ))
}

/// The RTCP feedback type of transport-wide congestion control (`a=rtcp-fb:* transport-cc`).
const TRANSPORT_CC_FEEDBACK: &str = "transport-cc";

/// Offers transport-wide congestion control feedback and its header extension, for
/// both kinds, without the interceptor that would generate feedback on what arrives.
fn negotiate_transport_cc(media_engine: &mut MediaEngine) -> Result<(), rtc::shared::error::Error> {
    for kind in [RtpCodecKind::Audio, RtpCodecKind::Video] {
        media_engine.register_feedback(
            RTCPFeedback {
                typ: TRANSPORT_CC_FEEDBACK.to_owned(),
                ..Default::default()
            },
            kind,
        );
        media_engine.register_header_extension(
            RTCRtpHeaderExtensionCapability {
                uri: rtc::sdp::extmap::TRANSPORT_CC_URI.to_owned(),
            },
            kind,
            None,
        )?;
    }
    Ok(())
}

fn random_token(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

fn sdp_error(err: rtc::shared::error::Error) -> SfuError {
    SfuError::InvalidOffer(err.to_string())
}

impl Peer {
    /// Builds a peer from a client's offer; returns it with the SDP answer.
    pub(crate) fn answer_offer(
        now: Instant,
        init: PeerInit<'_>,
    ) -> Result<(Peer, String), SfuError> {
        let requested = requested_slots(init.offer_sdp);
        let ufrag = random_token(16);
        let setting_engine = SettingEngineBuilder::new()
            .with_lite(true)
            .with_ice_credentials(ufrag.clone(), random_token(32))
            // The browser is the DTLS client: it starts the handshake once ICE connects.
            .with_answering_dtls_role(RTCDtlsRole::Server)
            .build();
        let mut media_engine = codecs::media_engine().map_err(SfuError::internal)?;
        let estimates = EstimateCell::default();
        let rtx_types = RtxTypes::default();
        let link = LinkCounters::default();
        let registry = interceptors(
            &mut media_engine,
            &init.stats,
            &estimates,
            &rtx_types,
            &link,
            sends_media(init.offer_sdp),
        )
        .map_err(SfuError::internal)?;
        let mut pc = RTCPeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_setting_engine(setting_engine)
            .with_media_engine(media_engine)
            .with_interceptor_registry(registry)
            .build(now)
            .map_err(SfuError::internal)?;

        let mut pending_slots = Vec::new();
        for (kind, count) in [
            (MediaKind::Audio, requested.audio),
            (MediaKind::Video, requested.video),
        ] {
            for index in 0..count {
                pending_slots.push(add_slot_track(&mut pc, init.key, kind, index)?);
            }
        }

        let offer = RTCSessionDescription::offer(init.offer_sdp.to_owned()).map_err(sdp_error)?;
        pc.set_remote_description(now, offer).map_err(sdp_error)?;
        let candidate = CandidateHostConfig {
            base_config: CandidateConfig {
                network: "udp".to_owned(),
                address: init.media_addr.ip().to_string(),
                port: init.media_addr.port(),
                component: 1,
                ..Default::default()
            },
            ..Default::default()
        }
        .new_candidate_host()
        .map_err(SfuError::internal)?;
        let candidate = RTCIceCandidate::from(&candidate)
            .to_json()
            .map_err(SfuError::internal)?;
        pc.add_local_candidate(candidate)
            .map_err(SfuError::internal)?;
        let answer = pc.create_answer(None).map_err(sdp_error)?;
        pc.set_local_description(now, answer).map_err(sdp_error)?;
        let answer_sdp = pc
            .local_description()
            .map(|description| description.sdp.clone())
            .ok_or_else(|| SfuError::Internal("no local description after answering".into()))?;

        let slots: Vec<Slot> = pending_slots
            .into_iter()
            .filter_map(|pending| pending.negotiate(&mut pc))
            .collect();
        if let Some(video) = slots.iter().find(|slot| slot.kind == MediaKind::Video) {
            rtx_types.settle(&video.codecs);
        }
        let peer = Peer {
            participant: init.participant,
            room: init.room,
            ufrag,
            pc,
            connected: false,
            created_at: now,
            last_received: now,
            next_timeout: Some(now),
            published: HashMap::new(),
            blocked: Blocked::default(),
            slides_mids: slides_mids(init.offer_sdp),
            rid_order: simulcast_send_rids(init.offer_sdp),
            congestion: Congestion::default(),
            estimates,
            rtx_types: rtx_types.clone(),
            rating: Rating::new(link),
            recording: false,
            slots,
        };
        Ok((peer, answer_sdp))
    }

    /// Whether some slot of this peer already carries `source`.
    pub(crate) fn receives(&self, source: &Source) -> bool {
        self.slots
            .iter()
            .any(|slot| slot.source.as_ref() == Some(source))
    }
}

/// A slot track added before the answer; it becomes a [`Slot`] once negotiated.
struct PendingSlot {
    kind: MediaKind,
    sender_id: RTCRtpSenderId,
    track_id: String,
    ssrc: u32,
}

fn add_slot_track(
    pc: &mut RTCPeerConnection,
    key: PeerKey,
    kind: MediaKind,
    index: usize,
) -> Result<PendingSlot, SfuError> {
    let (codec_kind, mime, clock_rate, channels) = match kind {
        MediaKind::Audio => (RtpCodecKind::Audio, "audio/opus", 48_000, 2),
        MediaKind::Video => (RtpCodecKind::Video, "video/VP8", 90_000, 0),
    };
    let ssrc = rand::random::<u32>();
    // Video resends go in their own stream when the subscriber takes RTX.
    let rtx = (kind == MediaKind::Video).then(|| RTCRtpRtxParameters {
        ssrc: rand::random::<u32>(),
    });
    let track_id = format!("{}{}-{}", kind.as_str(), index, key.0);
    let track = MediaStreamTrack::new(
        format!("slot-{track_id}"),
        track_id.clone(),
        format!("slot {index}"),
        codec_kind,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                rtx,
                ..Default::default()
            },
            codec: RTCRtpCodec {
                mime_type: mime.to_owned(),
                clock_rate,
                channels,
                ..Default::default()
            },
            ..Default::default()
        }],
    );
    let sender_id = pc.add_track(track).map_err(SfuError::internal)?;
    Ok(PendingSlot {
        kind,
        sender_id,
        track_id,
        ssrc,
    })
}

impl PendingSlot {
    /// The slot as negotiated, or `None` if the answer left its track unused.
    fn negotiate(self, pc: &mut RTCPeerConnection) -> Option<Slot> {
        let transceivers: Vec<_> = pc.get_transceivers().collect();
        let mid = transceivers.into_iter().find_map(|id| {
            let transceiver = pc.rtp_transceiver(id)?;
            if transceiver.sender() != Some(self.sender_id) {
                return None;
            }
            transceiver.mid().clone()
        })?;
        let codecs = pc
            .rtp_sender(self.sender_id)?
            .get_parameters()
            .rtp_parameters
            .codecs
            .iter()
            .map(Codec::from_parameters)
            .collect();
        Some(Slot {
            mid,
            kind: self.kind,
            sender_id: self.sender_id,
            track_id: self.track_id,
            ssrc: self.ssrc,
            codecs,
            source: None,
            rewriter: Rewriter::default(),
            picture_ids: PictureIds::default(),
            wanted: Wanted::default(),
            target: None,
            current: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What both m-sections of [`offer`] share: transport, and VP8 and H.264 with RTX.
    const SECTION: &str = "m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103\r\n\
c=IN IP4 0.0.0.0\r\n\
a=rtcp:9 IN IP4 0.0.0.0\r\n\
a=ice-ufrag:abcd\r\n\
a=ice-pwd:abcdefghijklmnopqrstuvwx\r\n\
a=fingerprint:sha-256 AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99\r\n\
a=setup:actpass\r\n\
a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n\
a=rtcp-mux\r\n\
a=rtpmap:96 VP8/90000\r\n\
a=rtcp-fb:96 nack\r\n\
a=rtcp-fb:96 nack pli\r\n\
a=rtpmap:97 rtx/90000\r\n\
a=fmtp:97 apt=96\r\n\
a=rtpmap:102 H264/90000\r\n\
a=rtcp-fb:102 nack\r\n\
a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f\r\n\
a=rtpmap:103 rtx/90000\r\n\
a=fmtp:103 apt=102\r\n";

    /// A Chromium-shaped offer: a simulcast camera it sends (mid 0), and one video slot
    /// it receives (mid 1); both list RTX for VP8 and H.264.
    fn offer() -> String {
        format!(
            "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
             a=group:BUNDLE 0 1\r\na=msid-semantic: WMS\r\n\
             {SECTION}a=mid:0\r\n\
             a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id\r\n\
             a=extmap:11 urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id\r\n\
             a=sendonly\r\na=msid:- cam\r\n\
             a=rid:q send\r\na=rid:h send\r\na=rid:f send\r\na=simulcast:send q;h;f\r\n\
             {SECTION}a=mid:1\r\na=recvonly\r\n"
        )
    }

    /// The answer's m-sections, by mid.
    fn section<'a>(answer: &'a str, mid: &str) -> &'a str {
        answer
            .split("m=")
            .find(|section| section.contains(&format!("a=mid:{mid}\r\n")))
            .unwrap_or_else(|| panic!("no m-line {mid} in {answer}"))
    }

    #[test]
    fn slots_and_publications_both_take_rtx() {
        let init = PeerInit {
            key: PeerKey(1),
            room: RoomId::new("r"),
            participant: ParticipantId::new("p"),
            offer_sdp: &offer(),
            media_addr: "127.0.0.1:5000".parse().expect("address"),
            stats: SfuStats::default(),
        };
        let (peer, answer) = Peer::answer_offer(Instant::now(), init).expect("answers");
        let publication = section(&answer, "0");
        assert!(publication.contains("VP8/90000"), "{publication}");
        assert!(
            publication.contains("a=rtpmap:97 rtx/90000"),
            "a publisher resends and probes in an RTX stream: {publication}"
        );
        let slot = section(&answer, "1");
        assert!(slot.contains("a=rtpmap:97 rtx/90000"), "{slot}");
        assert!(slot.contains("apt=96"), "{slot}");
        let [video] = &peer.slots[..] else {
            panic!("one slot: {}", peer.slots.len())
        };
        let group = format!("a=ssrc-group:FID {} ", video.ssrc);
        assert!(
            slot.contains(&group),
            "the slot declares its RTX stream: {slot}"
        );
    }
}
