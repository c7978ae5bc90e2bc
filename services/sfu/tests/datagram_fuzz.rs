//! Bad datagrams never crash or stall the SFU.
//!
//! A real WebRTC client (webrtc-rs `rtc`) connects to the sans-IO core over a virtual
//! wire: ICE, DTLS, then SRTP video and SRTCP. Everything it sent is recorded, and each
//! property case replays, truncates and corrupts those datagrams and mixes in random
//! bytes, from the client's address and from strangers. Then the call must go on: the
//! peer is still there, the client stays connected, and fresh media is accepted.
//! RTCP reaching the stack is parsed by `rtc::rtcp`; its parser gets random and
//! truncated compound packets directly as well.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use confer_sfu::core::{Sfu, Timeouts};
use confer_sfu::{ParticipantId, RoomId, SfuStats};
use proptest::prelude::*;
use rtc::interceptor::Registry;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
use rtc::peer_connection::configuration::media_engine::MediaEngine;
use rtc::peer_connection::event::RTCPeerConnectionEvent;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::transport::{CandidateConfig, CandidateHostConfig, RTCIceCandidate};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtp_transceiver::RTCRtpSenderId;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};

const SFU_ADDR: &str = "127.0.0.1:7882";
const CLIENT_ADDR: &str = "127.0.0.1:40000";
const STEP: Duration = Duration::from_millis(5);

/// A client and the SFU joined by a lossless virtual wire.
struct Pair {
    now: Instant,
    sfu: Sfu,
    stats: SfuStats,
    client: RTCPeerConnection,
    sender: RTCRtpSenderId,
    connected: bool,
    seq: u16,
    /// Every datagram the client sent, in order.
    sent: Vec<Vec<u8>>,
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("a literal socket address")
}

impl Pair {
    fn connect() -> anyhow::Result<Self> {
        let now = Instant::now();
        let stats = SfuStats::default();
        let mut sfu = Sfu::new(addr(SFU_ADDR), Timeouts::default(), stats.clone());
        let mut media_engine = MediaEngine::default();
        media_engine.register_default_codecs()?;
        // Default interceptors, so the client also sends RTCP (sender reports, TWCC).
        let registry = register_default_interceptors(Registry::new(), &mut media_engine)?;
        let mut client = RTCPeerConnectionBuilder::new()
            .with_media_engine(media_engine)
            .with_interceptor_registry(registry)
            .build(now)?;
        let track = MediaStreamTrack::new(
            "camera".into(),
            "camera-video".into(),
            "camera".into(),
            RtpCodecKind::Video,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(0x1234_5678),
                    ..Default::default()
                },
                codec: RTCRtpCodec {
                    mime_type: "video/VP8".into(),
                    clock_rate: 90_000,
                    ..Default::default()
                },
                ..Default::default()
            }],
        );
        let sender = client.add_track(track)?;
        let host = CandidateHostConfig {
            base_config: CandidateConfig {
                network: "udp".into(),
                address: "127.0.0.1".into(),
                port: addr(CLIENT_ADDR).port(),
                component: 1,
                ..Default::default()
            },
            ..Default::default()
        }
        .new_candidate_host()?;
        client.add_local_candidate(RTCIceCandidate::from(&host).to_json()?)?;
        let offer = client.create_offer(None)?;
        client.set_local_description(now, offer.clone())?;
        let answer = sfu.create_peer(
            now,
            RoomId::new("fuzz"),
            ParticipantId::new("client"),
            &offer.sdp,
        )?;
        client.set_remote_description(now, RTCSessionDescription::answer(answer)?)?;
        let mut pair = Self {
            now,
            sfu,
            stats,
            client,
            sender,
            connected: false,
            seq: 0,
            sent: Vec::new(),
        };
        for _ in 0..2_000 {
            pair.step();
            if pair.connected {
                break;
            }
        }
        anyhow::ensure!(pair.connected, "the client did not connect");
        // Some media and its reports, for the corpus.
        for _ in 0..400 {
            pair.send_video();
            pair.step();
        }
        Ok(pair)
    }

    /// Advances the virtual clock one step and carries datagrams both ways.
    fn step(&mut self) {
        self.now += STEP;
        let now = self.now;
        let _ = self.client.handle_timeout(now);
        while let Some(out) = self.client.poll_write() {
            self.sent.push(out.message.to_vec());
            self.sfu
                .handle_datagram(now, addr(CLIENT_ADDR), &out.message);
        }
        if self.sfu.poll_timeout().is_some_and(|at| at <= now) {
            self.sfu.handle_timeout(now);
        }
        while let Some(transmit) = self.sfu.poll_transmit() {
            let _ = self.client.handle_read(TaggedBytesMut {
                now,
                transport: TransportContext {
                    local_addr: addr(CLIENT_ADDR),
                    peer_addr: transmit.to,
                    ecn: None,
                    transport_protocol: TransportProtocol::UDP,
                },
                message: transmit.bytes,
            });
        }
        while self.client.poll_read().is_some() {}
        while let Some(event) = self.client.poll_event() {
            if let RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) = event {
                self.connected = state == RTCPeerConnectionState::Connected;
            }
        }
    }

    /// One VP8-looking RTP packet from the client's camera track.
    fn send_video(&mut self) {
        self.seq = self.seq.wrapping_add(1);
        let mut packet = rtc::rtp::Packet::default();
        packet.header.version = 2;
        packet.header.payload_type = 96;
        packet.header.sequence_number = self.seq;
        packet.header.timestamp = u32::from(self.seq) * 3000;
        packet.header.ssrc = 0x1234_5678;
        packet.payload = bytes::Bytes::from(vec![0x10, 0x01, 0x02, 0x03, 0x04]);
        if let Some(mut sender) = self.client.rtp_sender(self.sender) {
            let _ = sender.write_rtp(self.now, packet);
        }
    }

    fn inject(&mut self, from: SocketAddr, datagram: &[u8]) {
        self.now += Duration::from_micros(200);
        self.sfu.handle_datagram(self.now, from, datagram);
        // What the SFU says back goes nowhere: an attacker's address, or noise.
        while self.sfu.poll_transmit().is_some() {}
    }
}

/// A change to a recorded datagram, or noise.
#[derive(Debug, Clone)]
enum Mutation {
    Replay(usize),
    Truncate(usize, usize),
    FlipBit(usize, usize, u8),
    Random(Vec<u8>),
    /// A recorded datagram from an address that is not the client's.
    FromStranger(usize, u16),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::Replay),
        (any::<usize>(), any::<usize>()).prop_map(|(i, n)| Mutation::Truncate(i, n)),
        (any::<usize>(), any::<usize>(), 0u8..8).prop_map(|(i, p, b)| Mutation::FlipBit(i, p, b)),
        proptest::collection::vec(any::<u8>(), 0..1500).prop_map(Mutation::Random),
        (any::<usize>(), 1024u16..u16::MAX).prop_map(|(i, port)| Mutation::FromStranger(i, port)),
    ]
}

fn apply(pair: &mut Pair, corpus: &[Vec<u8>], mutation: &Mutation) {
    let pick = |i: &usize| corpus[i % corpus.len()].clone();
    let client = addr(CLIENT_ADDR);
    match mutation {
        Mutation::Replay(i) => pair.inject(client, &pick(i)),
        Mutation::Truncate(i, n) => {
            let datagram = pick(i);
            let cut = n % (datagram.len() + 1);
            pair.inject(client, &datagram[..cut]);
        }
        Mutation::FlipBit(i, p, bit) => {
            let mut datagram = pick(i);
            if !datagram.is_empty() {
                let at = p % datagram.len();
                datagram[at] ^= 1 << bit;
            }
            pair.inject(client, &datagram);
        }
        Mutation::Random(bytes) => pair.inject(client, bytes),
        Mutation::FromStranger(i, port) => {
            pair.inject(SocketAddr::from(([10, 9, 8, 7], *port)), &pick(i));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn bad_datagrams_neither_crash_nor_stall_a_call(
        mutations in proptest::collection::vec(mutation(), 1..120)
    ) {
        let mut pair = Pair::connect().expect("the client connects over the virtual wire");
        let corpus = pair.sent.clone();
        prop_assert!(corpus.iter().any(|d| d.len() > 1 && (200..=206).contains(&d[1])), "RTCP in the corpus");
        for mutation in &mutations {
            apply(&mut pair, &corpus, mutation);
        }
        prop_assert_eq!(pair.sfu.n_peers(), 1, "the peer survived");
        // The call goes on: seconds of consent checks and fresh media are accepted.
        let rejected_before = pair.stats.snapshot().datagrams_rejected;
        let received_before = pair.stats.snapshot().datagrams_received;
        for _ in 0..600 {
            pair.send_video();
            pair.step();
        }
        let after = pair.stats.snapshot();
        prop_assert!(pair.connected, "the client is still connected");
        prop_assert!(after.datagrams_received >= received_before + 600);
        prop_assert_eq!(after.datagrams_rejected, rejected_before, "fresh media was refused");
    }

    #[test]
    fn the_rtcp_parser_takes_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let mut buf = BytesMut::from(&bytes[..]).freeze();
        let _ = rtc::rtcp::packet::unmarshal(&mut buf);
    }

    #[test]
    fn the_rtcp_parser_takes_truncated_compound_packets(cut in 0usize..64) {
        // A receiver report followed by a PLI, cut anywhere.
        let compound: [u8; 44] = [
            0x81, 0xc9, 0x00, 0x07, 0x00, 0x00, 0x00, 0x01, 0x12, 0x34, 0x56, 0x78, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x81, 0xce, 0x00, 0x02, 0x00, 0x00, 0x00, 0x01, 0x12, 0x34,
            0x56, 0x78,
        ];
        let mut buf = bytes::Bytes::copy_from_slice(&compound[..cut.min(compound.len())]);
        let _ = rtc::rtcp::packet::unmarshal(&mut buf);
    }
}
