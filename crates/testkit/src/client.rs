//! One WebRTC client: a publisher of one VP8 track, or a subscriber with receive slots.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::BytesMut;
use rtc::peer_connection::RTCPeerConnection;
use rtc::sansio::Protocol as _;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};

use crate::link::Link;
use crate::wire::SFU_ADDR;
use rtc::rtp_transceiver::RTCRtpSenderId;

/// What a client does in the room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    /// Sends one VP8 video track.
    Publisher,
    /// Receives into this many video slots.
    Subscriber { video_slots: usize },
}

pub struct Client {
    pub pc: RTCPeerConnection,
    pub addr: SocketAddr,
    pub connected: bool,
    /// RTP packets the client's stack delivered (media received, decrypted).
    pub rtp_received: u64,
    /// A limited downlink from the SFU, when the test set one.
    pub(crate) downlink: Option<Link>,
    /// Video packets whose sequence number this divides are lost on the way to the
    /// SFU (numbered, never sent): a lossy uplink.
    pub lose_every: Option<u16>,
    /// Nothing the client sends reaches the SFU (a dead link).
    pub silent: bool,
    sender: Option<RTCRtpSenderId>,
    ssrc: u32,
    seq: u16,
    frame: u32,
}

/// A VP8 RTP payload: the first packet of a key frame (with a 1280×720 size) or of a
/// delta frame, padded to `len` bytes.
pub fn vp8_payload(keyframe: bool, len: usize) -> Vec<u8> {
    let mut payload = vec![0x10];
    if keyframe {
        payload.extend_from_slice(&[0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a]);
        payload.extend_from_slice(&1280u16.to_le_bytes());
        payload.extend_from_slice(&720u16.to_le_bytes());
    } else {
        payload.extend_from_slice(&[0x51, 0x42, 0x00]);
    }
    payload.resize(len.max(payload.len()), 0xab);
    payload
}

impl Client {
    pub fn new(now: Instant, kind: ClientKind, addr: SocketAddr) -> anyhow::Result<Self> {
        let ssrc = 0x1000_0000 | u32::from(addr.port());
        let (pc, sender) = match kind {
            ClientKind::Publisher => confer_loadtest::peer::build(now, Some(ssrc), 0, addr)?,
            ClientKind::Subscriber { video_slots } => {
                confer_loadtest::peer::build(now, None, video_slots, addr)?
            }
        };
        Ok(Self {
            pc,
            addr,
            connected: false,
            rtp_received: 0,
            downlink: None,
            lose_every: None,
            silent: false,
            sender,
            ssrc,
            seq: 0,
            frame: 0,
        })
    }

    /// Sends one RTP packet of the camera track (publishers only): a keyframe start
    /// when `keyframe`, else a delta frame's.
    pub fn send_video(&mut self, now: Instant, keyframe: bool, payload_len: usize) {
        let Some(sender_id) = self.sender else {
            return;
        };
        self.seq = self.seq.wrapping_add(1);
        self.frame = self.frame.wrapping_add(1);
        if self
            .lose_every
            .is_some_and(|every| every > 0 && self.seq.is_multiple_of(every))
        {
            return;
        }
        let mut packet = rtc::rtp::Packet::default();
        packet.header.version = 2;
        packet.header.payload_type = 96;
        packet.header.marker = true;
        packet.header.sequence_number = self.seq;
        packet.header.timestamp = self.frame.wrapping_mul(3000);
        packet.header.ssrc = self.ssrc;
        packet.payload = bytes::Bytes::from(vp8_payload(keyframe, payload_len));
        if let Some(mut sender) = self.pc.rtp_sender(sender_id) {
            let _ = sender.write_rtp(now, packet);
        }
    }

    /// Hands a datagram from the SFU to the client's stack.
    pub(crate) fn receive(&mut self, now: Instant, datagram: BytesMut) {
        let _ = self.pc.handle_read(TaggedBytesMut {
            now,
            transport: TransportContext {
                local_addr: self.addr,
                peer_addr: SFU_ADDR,
                ecn: None,
                transport_protocol: TransportProtocol::UDP,
            },
            message: datagram,
        });
    }
}
