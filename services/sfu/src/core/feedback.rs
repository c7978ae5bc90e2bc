//! Two interceptors in each peer's WebRTC stack that let the SFU see RTCP feedback.
//!
//! - [`FeedbackTap`], next to the application: the stack's interceptors consume inbound
//!   RTCP, but a subscriber's PLI or FIR is about a stream the SFU only relays, so only
//!   the SFU can act on it (by asking the publisher), and a subscriber's REMB is the
//!   bandwidth estimate layer selection needs. The tap marks exactly those packets for
//!   delivery to the application; all other RTCP still stops inside the stack. It also
//!   picks up the send-side estimate: the congestion controller (next to the wire)
//!   turns the subscriber's transport-wide feedback (TWCC) into a target bitrate (GCC)
//!   and attaches it to the feedback packet on its way in; the tap leaves it in an
//!   [`EstimateCell`] the core reads after the packet.
//! - [`FeedbackCounter`], next to the wire: counts NACKs received and sent and the
//!   retransmissions the stack's NACK responder sends from its packet cache (holding
//!   back those [`ResendGate`] refuses: a packet twice within a round trip, or resends
//!   beyond a quarter of the subscriber's estimate), and
//!   measures each outgoing stream's round trip and jitter from the reception reports
//!   that come back (see [`super::round_trip`]), for metrics.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use rtc::interceptor::{Attribute, Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::payload_feedbacks::receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate;
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::reception_report::ReceptionReport;
use rtc::rtcp::sender_report::SenderReport;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use rtc::sansio::Protocol;
use rtc::shared::error::Error;
use rtc::shared::marshal::MarshalSize as _;

use super::resend_gate::ResendGate;
use super::round_trip::RoundTrips;
use crate::SfuStats;

/// Registry slot of [`FeedbackTap`]: after every built-in interceptor. Clients of the
/// SFU that must answer keyframe requests (the load generator) use the tap too.
pub const TAP_SLOT: usize = 11_500;
/// Registry slot of [`FeedbackCounter`]: between the congestion controller and the
/// TWCC sender, so it sees every inbound packet first and every outbound one last,
/// the NACK generator's and responder's included.
pub(crate) const COUNTER_SLOT: usize = 1_500;

#[derive(Default)]
pub struct FeedbackTap {
    reads: VecDeque<TaggedPacket>,
    writes: VecDeque<TaggedPacket>,
    estimates: EstimateCell,
}

impl FeedbackTap {
    /// A tap that leaves send-side bandwidth estimates in `estimates`.
    pub(crate) fn with_estimates(estimates: EstimateCell) -> Self {
        Self {
            estimates,
            ..Self::default()
        }
    }
}

/// The latest send-side bandwidth estimate toward one peer, from its stack's
/// congestion controller to the core; read once.
#[derive(Debug, Clone, Default)]
pub(crate) struct EstimateCell(Arc<AtomicU64>);

impl EstimateCell {
    fn put(&self, bits_per_second: f64) {
        // 0 means "nothing new"; an estimate is never below the controller's floor.
        let bps = (bits_per_second.max(1.0)) as u64;
        self.0.store(bps, Ordering::Relaxed);
    }

    /// The estimate put since the last take, in bits per second.
    pub(crate) fn take(&self) -> Option<u64> {
        match self.0.swap(0, Ordering::Relaxed) {
            0 => None,
            bps => Some(bps),
        }
    }
}

const ANY_TARGET: Attribute = Attribute::TargetBitrateChanged {
    bits_per_second: 0.0,
};

fn is_for_application(packet: &dyn rtc::rtcp::Packet) -> bool {
    let any = packet.as_any();
    any.is::<PictureLossIndication>()
        || any.is::<FullIntraRequest>()
        || any.is::<ReceiverEstimatedMaximumBitrate>()
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for FeedbackTap {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Some(Attribute::TargetBitrateChanged { bits_per_second }) =
            msg.message.get(&ANY_TARGET)
        {
            self.estimates.put(*bits_per_second);
        }
        if let Packet::Rtcp(packets) = &msg.message.packet {
            let wanted: Vec<Box<dyn rtc::rtcp::Packet>> = packets
                .iter()
                .filter(|packet| is_for_application(packet.as_ref()))
                .cloned()
                .collect();
            if wanted.is_empty() {
                return Ok(());
            }
            msg.message.packet = Packet::Rtcp(wanted);
            msg.message.add(Attribute::DeliverToApplication);
        }
        self.reads.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.reads.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.writes.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.writes.pop_front()
    }
}

impl Interceptor for FeedbackTap {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

/// Counts loss-repair traffic and measures round trips into [`SfuStats`]; passes
/// everything through.
pub(crate) struct FeedbackCounter {
    stats: SfuStats,
    round_trips: RoundTrips,
    resends: ResendGate,
    reads: VecDeque<TaggedPacket>,
    writes: VecDeque<TaggedPacket>,
}

impl FeedbackCounter {
    pub(crate) fn new(stats: SfuStats) -> Self {
        Self {
            stats,
            round_trips: RoundTrips::default(),
            resends: ResendGate::default(),
            reads: VecDeque::new(),
            writes: VecDeque::new(),
        }
    }

    /// Reception reports about our streams, alone or in a sender report.
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
                if let Some(rtt) = self.round_trips.round_trip(
                    now,
                    report.ssrc,
                    report.last_sender_report,
                    report.delay,
                ) {
                    self.stats.subscriber_rtt(rtt);
                    self.resends.on_round_trip(rtt);
                }
                if let Some(jitter) = self.round_trips.jitter(report.ssrc, report.jitter) {
                    self.stats.subscriber_jitter(jitter);
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

/// NACK packets in `packet`, and how many lost packets they name.
fn count_nacks(packet: &Packet) -> (u64, u64) {
    let Packet::Rtcp(packets) = packet else {
        return (0, 0);
    };
    packets
        .iter()
        .filter_map(|p| p.as_any().downcast_ref::<TransportLayerNack>())
        .fold((0, 0), |(nacks, lost), nack| {
            let named: usize = nack.nacks.iter().map(|pair| pair.packet_list().len()).sum();
            (nacks + 1, lost + named as u64)
        })
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for FeedbackCounter {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = Error;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Some(Attribute::TargetBitrateChanged { bits_per_second }) =
            msg.message.get(&ANY_TARGET)
        {
            self.resends.on_estimate(*bits_per_second);
        }
        let (nacks, lost) = count_nacks(&msg.message.packet);
        if nacks > 0 {
            self.stats.nacks_received(nacks, lost);
        }
        self.on_reports(msg.now, &msg.message.packet);
        self.reads.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.reads.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.on_reports_sent(msg.now, &msg.message.packet);
        if msg.message.has(&Attribute::Retransmission) {
            if let Packet::Rtp(packet) = &msg.message.packet
                && !self.resends.allow(
                    msg.now,
                    packet.header.ssrc,
                    packet.header.sequence_number,
                    packet.header.marshal_size() + packet.payload.len(),
                )
            {
                self.stats.retransmission_suppressed();
                return Ok(());
            }
            self.stats.retransmission_sent();
        } else {
            let (nacks, _) = count_nacks(&msg.message.packet);
            if nacks > 0 {
                self.stats.nacks_sent(nacks);
            }
        }
        self.writes.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.writes.pop_front()
    }
}

impl Interceptor for FeedbackCounter {
    fn bind_local_stream(&mut self, info: &StreamInfo) {
        self.round_trips.stream_bound(info.ssrc, info.clock_rate);
    }
    fn unbind_local_stream(&mut self, info: &StreamInfo) {
        self.round_trips.stream_unbound(info.ssrc);
    }
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}
