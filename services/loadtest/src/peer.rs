//! One synthetic client: a webrtc-rs (`rtc`) peer connection on its own UDP socket,
//! driven by a small event loop. A publisher sends one paced VP8 stream whose payloads
//! carry a [`Stamp`]; a subscriber reads the stamps of what it receives.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::BytesMut;
use confer_sfu::core::{FeedbackTap, TAP_SLOT};
use rtc::interceptor::{Registry, Slot as InterceptorSlot};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::RTCPeerConnection;
use rtc::peer_connection::RTCPeerConnectionBuilder;
use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
use rtc::peer_connection::configuration::media_engine::MediaEngine;
use rtc::peer_connection::event::RTCPeerConnectionEvent;
use rtc::peer_connection::message::RTCMessage;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::transport::{CandidateConfig, CandidateHostConfig, RTCIceCandidate};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpSenderId, RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use rtc::sansio::Protocol as _;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use tokio::net::UdpSocket;
use tokio::sync::watch;

use crate::measure::{Clock, PublisherTally, SubscriberTally};
use crate::stamp::{STAMP_LEN, Stamp};

const FPS: u32 = 30;
const VIDEO_CLOCK_PER_FRAME: u32 = 90_000 / FPS;
/// A keyframe at least this often, and on request no more often than [`KEYFRAME_MIN_GAP`].
const KEYFRAME_EVERY: Duration = Duration::from_secs(5);
const KEYFRAME_MIN_GAP: Duration = Duration::from_millis(300);
const IDLE_WAKEUP: Duration = Duration::from_millis(200);

/// What the peer sends.
#[derive(Debug, Clone, Copy)]
pub struct Publishing {
    pub id: u32,
    /// RTP packets per second.
    pub packets_per_second: u32,
    /// RTP payload bytes per packet (at least [`STAMP_LEN`] + 16).
    pub payload_len: usize,
    /// Share of outbound RTP dropped before it reaches the socket (0.0..1.0).
    pub loss: f64,
}

/// A peer connection bound to its own UDP socket.
pub struct Peer {
    pc: RTCPeerConnection,
    socket: UdpSocket,
    local: SocketAddr,
    sender: Option<RTCRtpSenderId>,
    ssrc: u32,
}

impl Peer {
    /// A peer on `ip` that publishes one VP8 track (`publishing`), or receives into
    /// `video_slots` recvonly video transceivers (none when the far end offers).
    pub async fn bind(ip: IpAddr, publishing: bool, video_slots: usize) -> anyhow::Result<Self> {
        let socket = UdpSocket::bind((ip, 0))
            .await
            .context("failed to bind a client socket")?;
        let local = socket.local_addr()?;
        let ssrc = rand::random::<u32>() | 1;
        let (pc, sender) = build(
            Instant::now(),
            publishing.then_some(ssrc),
            video_slots,
            local,
        )?;
        Ok(Self {
            pc,
            socket,
            local,
            sender,
            ssrc,
        })
    }

    /// Creates the offer and makes it the local description.
    pub fn offer(&mut self) -> anyhow::Result<String> {
        let offer = self.pc.create_offer(None)?;
        self.pc
            .set_local_description(Instant::now(), offer.clone())?;
        Ok(offer.sdp)
    }

    pub fn accept_answer(&mut self, sdp: String) -> anyhow::Result<()> {
        self.pc
            .set_remote_description(Instant::now(), RTCSessionDescription::answer(sdp)?)?;
        Ok(())
    }

    /// Answers an offer from the far end (a server that offers what it sends).
    pub fn answer(&mut self, offer_sdp: String) -> anyhow::Result<String> {
        self.pc
            .set_remote_description(Instant::now(), RTCSessionDescription::offer(offer_sdp)?)?;
        let answer = self.pc.create_answer(None)?;
        self.pc
            .set_local_description(Instant::now(), answer.clone())?;
        Ok(answer.sdp)
    }

    /// Runs until `stop`, publishing `publishing` if given; returns what was counted
    /// inside the clock's measurement window.
    pub async fn run(
        mut self,
        publishing: Option<Publishing>,
        clock: Arc<Clock>,
        connected: Arc<tokio::sync::Semaphore>,
        mut stop: watch::Receiver<bool>,
    ) -> anyhow::Result<Tally> {
        let mut tally = match publishing {
            Some(_) => Tally::Publisher(PublisherTally::default()),
            None => Tally::Subscriber(SubscriberTally::default()),
        };
        let mut source = publishing.map(|p| Source::new(p, self.ssrc));
        let mut buf = vec![0u8; 2048];
        let mut is_connected = false;
        loop {
            self.flush(
                source.as_ref().map_or(0.0, |s| s.config.loss),
                &clock,
                &mut tally,
            )
            .await;
            while let Some(event) = self.pc.poll_event() {
                if let RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) = event {
                    match state {
                        RTCPeerConnectionState::Connected if !is_connected => {
                            is_connected = true;
                            connected.add_permits(1);
                        }
                        RTCPeerConnectionState::Failed => {
                            anyhow::bail!("peer {} failed to connect", self.local)
                        }
                        _ => {}
                    }
                }
            }
            while let Some(message) = self.pc.poll_read() {
                match message.message {
                    RTCMessage::RtpPacket(_, packet) => {
                        if let (Tally::Subscriber(t), Some(stamp)) =
                            (&mut tally, Stamp::read(&packet.payload))
                        {
                            t.record(&clock, stamp);
                        }
                    }
                    RTCMessage::RtcpPacket(_, packets) => {
                        if let Some(source) = &mut source
                            && packets.iter().any(|p| {
                                p.as_any().is::<PictureLossIndication>()
                                    || p.as_any().is::<FullIntraRequest>()
                            })
                        {
                            source.keyframe_requested = true;
                        }
                    }
                    _ => {}
                }
            }
            let now = Instant::now();
            let mut deadline = self.pc.poll_timeout().unwrap_or(now + IDLE_WAKEUP);
            if let Some(source) = &mut source
                && is_connected
            {
                if source.next_frame <= now {
                    source.send_frame(&mut self.pc, self.sender, now, &clock, &mut tally);
                    continue;
                }
                deadline = deadline.min(source.next_frame);
            }
            if deadline <= now {
                self.pc.handle_timeout(now)?;
                continue;
            }
            tokio::select! {
                _ = stop.changed() => break,
                received = self.socket.recv_from(&mut buf) => {
                    let (len, from) = received.context("client socket failed")?;
                    let _ = self.pc.handle_read(TaggedBytesMut {
                        now: Instant::now(),
                        transport: TransportContext {
                            local_addr: self.local,
                            peer_addr: from,
                            ecn: None,
                            transport_protocol: TransportProtocol::UDP,
                        },
                        message: BytesMut::from(&buf[..len]),
                    });
                }
                _ = tokio::time::sleep_until(deadline.into()) => {
                    self.pc.handle_timeout(Instant::now())?;
                }
            }
        }
        let _ = self.pc.close();
        Ok(tally)
    }

    /// Sends what the peer connection has queued, dropping the configured share of RTP.
    async fn flush(&mut self, loss: f64, clock: &Clock, tally: &mut Tally) {
        while let Some(out) = self.pc.poll_write() {
            if loss > 0.0 && is_rtp(&out.message) && rand::random::<f64>() < loss {
                if let Tally::Publisher(t) = tally {
                    t.dropped(clock);
                }
                continue;
            }
            // A send error concerns one datagram; the far end recovers or the run reports loss.
            let _ = self
                .socket
                .send_to(&out.message, out.transport.peer_addr)
                .await;
        }
    }
}

/// A webrtc-rs peer connection with a host candidate at `local`: publishing one VP8
/// camera track with `ssrc` when given, and `video_slots` recvonly video transceivers.
/// Default interceptors (NACK, reports, TWCC), plus the tap that hands keyframe
/// requests up to the application.
pub fn build(
    now: Instant,
    ssrc: Option<u32>,
    video_slots: usize,
    local: SocketAddr,
) -> anyhow::Result<(RTCPeerConnection, Option<RTCRtpSenderId>)> {
    let mut media_engine = MediaEngine::default();
    media_engine.register_default_codecs()?;
    let registry = register_default_interceptors(Registry::new(), &mut media_engine)?
        .with(InterceptorSlot::from(TAP_SLOT), FeedbackTap::default());
    let mut pc = RTCPeerConnectionBuilder::new()
        .with_media_engine(media_engine)
        .with_interceptor_registry(registry)
        .build(now)?;
    let sender = match ssrc {
        Some(ssrc) => Some(pc.add_track(camera_track(ssrc))?),
        None => None,
    };
    for _ in 0..video_slots {
        pc.add_transceiver_from_kind(
            RtpCodecKind::Video,
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
    Ok((pc, sender))
}

/// What one peer counted.
#[derive(Debug)]
pub enum Tally {
    Publisher(PublisherTally),
    Subscriber(SubscriberTally),
}

/// A paced VP8-shaped stream: `packets_per_second` split into 30 frames a second,
/// the last packet of a frame marked.
struct Source {
    config: Publishing,
    ssrc: u32,
    seq: u16,
    frame: u32,
    counter: u64,
    next_frame: Instant,
    last_keyframe: Option<Instant>,
    keyframe_requested: bool,
    payload: Vec<u8>,
}

impl Source {
    fn new(config: Publishing, ssrc: u32) -> Self {
        Self {
            config,
            ssrc,
            seq: rand::random(),
            frame: 0,
            counter: 0,
            next_frame: Instant::now(),
            last_keyframe: None,
            keyframe_requested: true,
            payload: vec![0xab; config.payload_len.max(STAMP_LEN + 16)],
        }
    }

    fn packets_per_frame(&self) -> u32 {
        self.config.packets_per_second.div_ceil(FPS).max(1)
    }

    fn send_frame(
        &mut self,
        pc: &mut RTCPeerConnection,
        sender: Option<RTCRtpSenderId>,
        now: Instant,
        clock: &Clock,
        tally: &mut Tally,
    ) {
        self.next_frame += Duration::from_secs(1) / FPS;
        if self.next_frame < now {
            // Fell behind (a stalled runtime): skip ahead rather than burst.
            self.next_frame = now + Duration::from_secs(1) / FPS;
        }
        let keyframe = self.keyframe_due(now);
        if keyframe {
            self.last_keyframe = Some(now);
            self.keyframe_requested = false;
        }
        self.frame = self.frame.wrapping_add(1);
        let Some(sender_id) = sender else { return };
        let Some(mut sender) = pc.rtp_sender(sender_id) else {
            return;
        };
        let packets = self.packets_per_frame();
        for i in 0..packets {
            write_vp8_descriptor(&mut self.payload, i == 0, keyframe && i == 0);
            let stamp = Stamp {
                publisher: self.config.id,
                counter: self.counter,
                sent_us: clock.now_us(),
            };
            stamp.write(&mut self.payload);
            self.counter += 1;
            self.seq = self.seq.wrapping_add(1);
            let mut packet = rtc::rtp::Packet::default();
            packet.header.version = 2;
            packet.header.payload_type = 96;
            packet.header.marker = i + 1 == packets;
            packet.header.sequence_number = self.seq;
            packet.header.timestamp = self.frame.wrapping_mul(VIDEO_CLOCK_PER_FRAME);
            packet.header.ssrc = self.ssrc;
            packet.payload = bytes::Bytes::copy_from_slice(&self.payload);
            if sender.write_rtp(now, packet).is_ok()
                && let Tally::Publisher(t) = tally
            {
                t.sent(clock, stamp);
            }
        }
    }

    fn keyframe_due(&self, now: Instant) -> bool {
        match self.last_keyframe {
            None => true,
            Some(at) => {
                let since = now.duration_since(at);
                since >= KEYFRAME_EVERY || (self.keyframe_requested && since >= KEYFRAME_MIN_GAP)
            }
        }
    }
}

/// The VP8 payload descriptor (RFC 7741) and, on a keyframe's first packet, the
/// start of a 1280×720 key frame header.
fn write_vp8_descriptor(payload: &mut [u8], start: bool, keyframe: bool) {
    payload[0] = if start { 0x10 } else { 0x00 };
    let header: &[u8] = if keyframe {
        &[0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a, 0x00, 0x05, 0xd0, 0x02]
    } else {
        &[0x51, 0x42, 0x00, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab]
    };
    payload[1..1 + header.len()].copy_from_slice(header);
}

fn is_rtp(datagram: &[u8]) -> bool {
    datagram.len() > 12 && datagram[0] >> 6 == 2 && !(192..=223).contains(&datagram[1])
}

fn camera_track(ssrc: u32) -> MediaStreamTrack {
    MediaStreamTrack::new(
        format!("load-{ssrc}"),
        format!("load-video-{ssrc}"),
        "camera".into(),
        RtpCodecKind::Video,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            codec: RTCRtpCodec {
                mime_type: "video/VP8".into(),
                clock_rate: 90_000,
                ..Default::default()
            },
            ..Default::default()
        }],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtcp_is_not_counted_as_rtp() {
        let mut rtp = vec![0x80, 96];
        rtp.resize(100, 0);
        let mut rtcp = vec![0x80, 200];
        rtcp.resize(100, 0);
        assert!(is_rtp(&rtp));
        assert!(!is_rtp(&rtcp));
        assert!(!is_rtp(&[0x16, 0xfe, 0xfd]));
    }

    #[test]
    fn a_keyframe_is_sent_on_request_but_not_more_often_than_the_minimum_gap() {
        let config = Publishing {
            id: 1,
            packets_per_second: 300,
            payload_len: 1100,
            loss: 0.0,
        };
        let mut source = Source::new(config, 1);
        let now = Instant::now();
        assert!(source.keyframe_due(now), "the first frame is a keyframe");
        source.last_keyframe = Some(now);
        source.keyframe_requested = true;
        assert!(!source.keyframe_due(now + Duration::from_millis(100)));
        assert!(source.keyframe_due(now + KEYFRAME_MIN_GAP));
        source.keyframe_requested = false;
        assert!(!source.keyframe_due(now + Duration::from_secs(1)));
        assert!(source.keyframe_due(now + KEYFRAME_EVERY));
        assert_eq!(source.packets_per_frame(), 10);
    }
}
