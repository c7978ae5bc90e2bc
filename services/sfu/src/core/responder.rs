//! The interceptor that answers a subscriber's NACKs, in the stack's NACK responder slot.
//!
//! It keeps the last packets of every outgoing stream that negotiated NACK
//! ([`SentPackets`]) and answers a NACK from them: on the slot's RTX stream when the
//! answer bound one to the packet's payload type ([`super::rtx`]), else as the packet
//! again. [`ResendGate`] holds back what would not help: a packet twice within a round
//! trip, or resends beyond a quarter of the subscriber's estimate. On the way it counts
//! NACKs received and sent and the resends into [`SfuStats`], and measures each
//! outgoing stream's round trip and jitter from the reception reports that come back
//! (see [`super::round_trip`]), for metrics. On the way in it also turns the peer's own
//! resends, sent in RTX streams, back into the packets they repair
//! ([`super::rtx_receiver`]).
//!
//! Where it sits: above the TWCC sender and the congestion controller, so its resends
//! are numbered and recorded like any packet (`repair_stream.rs` binds the RTX streams
//! to both); the controller's estimate rides up to it on the feedback that carried it;
//! the sender reports and the NACK generator's requests pass down through it; and it
//! reads packets before the NACK generator does.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use rtc::interceptor::{
    Attribute, AttributedPacket, Interceptor, Packet, StreamInfo, TaggedPacket,
};
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::reception_report::ReceptionReport;
use rtc::rtcp::sender_report::SenderReport;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use rtc::sansio::Protocol;
use rtc::shared::TransportContext;
use rtc::shared::error::Error;
use rtc::shared::marshal::MarshalSize as _;

use super::quality::{LinkCounters, SentTally, UplinkTally};
use super::resend_gate::ResendGate;
use super::round_trip::RoundTrips;
use super::rtx::{self, RtxTypes};
use super::rtx_receiver::RtxReceiver;
use super::sent_packets::SentPackets;
use crate::SfuStats;

const ANY_TARGET: Attribute = Attribute::TargetBitrateChanged {
    bits_per_second: 0.0,
};

/// One outgoing stream that answers NACKs.
struct Outgoing {
    sent: SentPackets,
    /// Its RTX stream, if the slot declared one.
    rtx: Option<RtxStream>,
}

struct RtxStream {
    ssrc: u32,
    next_sequence: u16,
}

pub(crate) struct Responder {
    stats: SfuStats,
    round_trips: RoundTrips,
    gate: ResendGate,
    rtx_types: RtxTypes,
    incoming_rtx: RtxReceiver,
    /// What the peer's link carries, for its connection quality.
    link: LinkCounters,
    uplink: UplinkTally,
    sent: SentTally,
    streams: HashMap<u32, Outgoing>,
    reads: VecDeque<TaggedPacket>,
    writes: VecDeque<TaggedPacket>,
}

impl Responder {
    pub(crate) fn new(stats: SfuStats, rtx_types: RtxTypes, link: LinkCounters) -> Self {
        Self {
            incoming_rtx: RtxReceiver::new(stats.clone(), rtx_types.clone()),
            link,
            uplink: UplinkTally::default(),
            sent: SentTally::default(),
            stats,
            round_trips: RoundTrips::default(),
            gate: ResendGate::default(),
            rtx_types,
            streams: HashMap::new(),
            reads: VecDeque::new(),
            writes: VecDeque::new(),
        }
    }

    /// Resends what `nack` names and the stream still holds; returns how many packets
    /// it named.
    fn answer(&mut self, now: Instant, nack: &TransportLayerNack) -> u64 {
        let mut named = 0;
        let mut stream = self.streams.get_mut(&nack.media_ssrc);
        for sequence in nack.nacks.iter().flat_map(|pair| pair.packet_list()) {
            named += 1;
            let Some(stream) = stream.as_mut() else {
                continue;
            };
            let Some(original) = stream.sent.get(sequence) else {
                continue;
            };
            let bytes = original.header.marshal_size() + original.payload.len();
            if !self.gate.allow(now, nack.media_ssrc, sequence, bytes) {
                self.stats.retransmission_suppressed();
                continue;
            }
            let repairing = self.rtx_types.repairing(original.header.payload_type);
            let packet = match (stream.rtx.as_mut(), repairing) {
                (Some(rtx), Some(payload_type)) => {
                    let sequence = rtx.next_sequence;
                    rtx.next_sequence = sequence.wrapping_add(1);
                    rtx::encapsulate(original, rtx.ssrc, payload_type, sequence)
                }
                _ => original.clone(),
            };
            self.stats.retransmission_sent();
            self.writes.push_back(TaggedPacket {
                now,
                transport: TransportContext::default(),
                message: AttributedPacket::new(Packet::Rtp(packet)).with(Attribute::Retransmission),
            });
        }
        named
    }

    fn on_reports(&mut self, now: Instant, packet: &Packet) {
        let Packet::Rtcp(packets) = packet else {
            return;
        };
        for packet in packets {
            let any = packet.as_any();
            let reports: &[ReceptionReport] = if let Some(rr) = any.downcast_ref::<ReceiverReport>()
            {
                &rr.reports
            } else if let Some(sr) = any.downcast_ref::<SenderReport>() {
                &sr.reports
            } else {
                continue;
            };
            for report in reports {
                let rtt = self.round_trips.round_trip(
                    now,
                    report.ssrc,
                    report.last_sender_report,
                    report.delay,
                );
                if let Some(rtt) = rtt {
                    self.stats.subscriber_rtt(rtt);
                    self.gate.on_round_trip(rtt);
                }
                let jitter = self.round_trips.jitter(report.ssrc, report.jitter);
                if let Some(jitter) = jitter {
                    self.stats.subscriber_jitter(jitter);
                }
                if self.round_trips.sends(report.ssrc) {
                    let since_last = self.sent.report(
                        report.ssrc,
                        report.last_sequence_number,
                        report.total_lost,
                    );
                    self.link.reception_report(since_last, rtt, jitter);
                }
            }
        }
    }

    fn on_reports_sent(&mut self, now: Instant, packet: &Packet) {
        let Packet::Rtcp(packets) = packet else {
            return;
        };
        for packet in packets {
            if let Some(sr) = packet.as_any().downcast_ref::<SenderReport>() {
                self.round_trips.report_sent(now, sr.ssrc, sr.ntp_time);
            }
        }
    }
}

/// The NACKs in an RTCP compound.
fn nacks(packet: &Packet) -> impl Iterator<Item = &TransportLayerNack> {
    let packets = match packet {
        Packet::Rtcp(packets) => packets.as_slice(),
        _ => &[],
    };
    packets
        .iter()
        .filter_map(|p| p.as_any().downcast_ref::<TransportLayerNack>())
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for Responder {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtp(packet) = &mut msg.message.packet {
            // Resends are not counted as arrivals: what came only when asked for
            // again was lost on the link.
            if self
                .rtx_types
                .original(packet.header.payload_type)
                .is_none()
            {
                let header = &packet.header;
                self.uplink
                    .arrived(&self.link, header.ssrc, header.sequence_number);
            }
            self.incoming_rtx.unwrap(packet);
        }
        if let Some(Attribute::TargetBitrateChanged { bits_per_second }) =
            msg.message.get(&ANY_TARGET)
        {
            self.gate.on_estimate(*bits_per_second);
        }
        let (mut count, mut lost) = (0, 0);
        for nack in nacks(&msg.message.packet) {
            count += 1;
            lost += self.answer(msg.now, nack);
        }
        if count > 0 {
            self.stats.nacks_received(count, lost);
        }
        self.on_reports(msg.now, &msg.message.packet);
        self.reads.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.reads.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        match &msg.message.packet {
            Packet::Rtp(packet) => {
                self.sent
                    .sent(packet.header.ssrc, packet.header.sequence_number);
                if let Some(stream) = self.streams.get_mut(&packet.header.ssrc) {
                    stream.sent.keep(packet);
                }
            }
            _ => {
                self.on_reports_sent(msg.now, &msg.message.packet);
                let sent = nacks(&msg.message.packet).count() as u64;
                if sent > 0 {
                    self.stats.nacks_sent(sent);
                }
            }
        }
        self.writes.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.writes.pop_front()
    }
}

/// Whether a stream negotiated generic NACK (`a=rtcp-fb:* nack`).
fn answers_nacks(info: &StreamInfo) -> bool {
    info.rtcp_feedback
        .iter()
        .any(|feedback| feedback.typ == "nack" && feedback.parameter.is_empty())
}

impl Interceptor for Responder {
    fn bind_local_stream(&mut self, info: &StreamInfo) {
        self.round_trips.stream_bound(info.ssrc, info.clock_rate);
        if answers_nacks(info) {
            let rtx = info.ssrc_rtx.map(|ssrc| RtxStream {
                ssrc,
                next_sequence: rand::random(),
            });
            self.streams.insert(
                info.ssrc,
                Outgoing {
                    sent: SentPackets::default(),
                    rtx,
                },
            );
        }
    }
    fn unbind_local_stream(&mut self, info: &StreamInfo) {
        self.round_trips.stream_unbound(info.ssrc);
        self.sent.forget(info.ssrc);
        self.streams.remove(&info.ssrc);
    }
    fn bind_remote_stream(&mut self, info: &StreamInfo) {
        self.incoming_rtx.bind_remote_stream(info);
    }
    fn unbind_remote_stream(&mut self, info: &StreamInfo) {
        self.incoming_rtx.unbind_remote_stream(info);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::codecs::codec;
    use rtc::interceptor::RTCPFeedback;
    use rtc::rtcp::transport_feedbacks::transport_layer_nack::NackPair;
    use rtc::rtp::header::Header;

    const MEDIA: u32 = 1_000;
    const REPAIR: u32 = 2_000;

    fn responder(rtx: bool) -> (Responder, SfuStats) {
        let stats = SfuStats::default();
        let types = RtxTypes::default();
        types.settle(&[
            codec(96, "video/vp8", ""),
            codec(97, rtx::RTX_MIME, "apt=96"),
        ]);
        let mut responder = Responder::new(stats.clone(), types, LinkCounters::default());
        responder.bind_local_stream(&StreamInfo {
            ssrc: MEDIA,
            ssrc_rtx: rtx.then_some(REPAIR),
            payload_type: 96,
            clock_rate: 90_000,
            rtcp_feedback: vec![RTCPFeedback {
                typ: "nack".into(),
                parameter: String::new(),
            }],
            ..StreamInfo::default()
        });
        (responder, stats)
    }

    fn tagged(now: Instant, packet: Packet) -> TaggedPacket {
        TaggedPacket {
            now,
            transport: TransportContext::default(),
            message: AttributedPacket::new(packet),
        }
    }

    fn media(sequence: u16, payload_type: u8) -> Packet {
        Packet::Rtp(rtc::rtp::Packet {
            header: Header {
                version: 2,
                payload_type,
                sequence_number: sequence,
                ssrc: MEDIA,
                ..Header::default()
            },
            payload: vec![sequence as u8; 100].into(),
        })
    }

    /// A NACK for `first` and the packets its bitmap names.
    fn nack(now: Instant, first: u16, bitmap: u16) -> TaggedPacket {
        tagged(
            now,
            Packet::Rtcp(vec![Box::new(TransportLayerNack {
                sender_ssrc: 9,
                media_ssrc: MEDIA,
                nacks: vec![NackPair {
                    packet_id: first,
                    lost_packets: bitmap,
                }],
            })]),
        )
    }

    /// Sends packets 10..20 through, then drains what went out.
    fn send_some(responder: &mut Responder, now: Instant) {
        for sequence in 10..20 {
            responder
                .handle_write(tagged(now, media(sequence, 96)))
                .expect("writes");
        }
        while responder.poll_write().is_some() {}
    }

    fn resends(responder: &mut Responder) -> Vec<rtc::rtp::Packet> {
        std::iter::from_fn(|| responder.poll_write())
            .map(|msg| {
                assert!(msg.message.has(&Attribute::Retransmission));
                match msg.message.packet {
                    Packet::Rtp(packet) => packet,
                    other => panic!("a resend is RTP: {other:?}"),
                }
            })
            .collect()
    }

    #[test]
    fn the_peers_own_resends_are_read_as_the_packets_they_repair() {
        let (mut responder, stats) = responder(true);
        responder.bind_remote_stream(&StreamInfo {
            ssrc: 5_000,
            ssrc_rtx: Some(5_001),
            payload_type: 96,
            ..StreamInfo::default()
        });
        let resend = rtc::rtp::Packet {
            header: Header {
                version: 2,
                payload_type: 97,
                sequence_number: 3,
                ssrc: 5_001,
                ..Header::default()
            },
            payload: vec![0x10, 0x20, 7].into(),
        };
        let now = Instant::now();
        responder
            .handle_read(tagged(now, Packet::Rtp(resend)))
            .expect("reads");
        let Some(Packet::Rtp(read)) = responder.poll_read().map(|m| m.message.packet) else {
            panic!("an RTP packet passes on");
        };
        assert_eq!(
            (
                read.header.ssrc,
                read.header.payload_type,
                read.header.sequence_number
            ),
            (5_000, 96, 0x1020)
        );
        assert_eq!(stats.snapshot().rtx_received, 1);
    }

    #[test]
    fn answers_on_the_rtx_stream_with_the_original_number_in_front() {
        let now = Instant::now();
        let (mut responder, stats) = responder(true);
        send_some(&mut responder, now);
        // 12, and 14 from the bitmap; 30 was never sent.
        responder.handle_read(nack(now, 12, 0b10)).expect("reads");
        responder.handle_read(nack(now, 30, 0)).expect("reads");
        let sent = resends(&mut responder);
        assert_eq!(sent.len(), 2, "{sent:?}");
        for (packet, original) in sent.iter().zip([12u16, 14]) {
            assert_eq!(
                (packet.header.ssrc, packet.header.payload_type),
                (REPAIR, 97)
            );
            assert_eq!(&packet.payload[..2], &original.to_be_bytes());
            assert_eq!(packet.payload.len(), 102);
            assert_eq!(packet.payload[2], original as u8);
        }
        assert_eq!(
            sent[1].header.sequence_number,
            sent[0].header.sequence_number.wrapping_add(1),
            "the RTX stream numbers its own packets"
        );
        let snapshot = stats.snapshot();
        assert_eq!(snapshot.retransmissions_sent, 2);
        assert_eq!(snapshot.nacks_received, 2);
        assert!(responder.poll_read().is_some(), "the NACK goes on up");
    }

    #[test]
    fn resends_the_packet_itself_without_rtx_and_not_twice_in_a_round_trip() {
        let now = Instant::now();
        let (mut responder, stats) = responder(false);
        send_some(&mut responder, now);
        responder.handle_read(nack(now, 15, 0)).expect("reads");
        responder.handle_read(nack(now, 15, 0)).expect("reads");
        let sent = resends(&mut responder);
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert_eq!(
            (
                sent[0].header.ssrc,
                sent[0].header.sequence_number,
                sent[0].header.payload_type
            ),
            (MEDIA, 15, 96)
        );
        assert_eq!(stats.snapshot().retransmissions_suppressed, 1);
    }

    #[test]
    fn a_payload_type_without_rtx_goes_out_as_itself() {
        let now = Instant::now();
        let (mut responder, _) = responder(true);
        responder
            .handle_write(tagged(now, media(40, 102)))
            .expect("writes");
        while responder.poll_write().is_some() {}
        responder.handle_read(nack(now, 40, 0)).expect("reads");
        let sent = resends(&mut responder);
        assert_eq!(
            (sent[0].header.ssrc, sent[0].header.payload_type),
            (MEDIA, 102),
            "no RTX payload type was bound to 102"
        );
    }
}
