//! The interceptor in each peer's WebRTC stack that lets the SFU see RTCP feedback.
//!
//! [`FeedbackTap`], next to the application: the stack's interceptors consume inbound
//! RTCP, but a subscriber's PLI or FIR is about a stream the SFU only relays, so only
//! the SFU can act on it (by asking the publisher), and a subscriber's REMB is the
//! bandwidth estimate layer selection needs. The tap marks exactly those packets for
//! delivery to the application; all other RTCP still stops inside the stack. It also
//! picks up the send-side estimate: the congestion controller (next to the wire)
//! turns the subscriber's transport-wide feedback (TWCC) into a target bitrate (GCC)
//! and attaches it to the feedback packet on its way in; the tap leaves it in an
//! [`EstimateCell`] the core reads after the packet.
//!
//! NACKs, resends and round trips are [`super::responder`]'s.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use rtc::interceptor::{Attribute, Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::payload_feedbacks::receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate;
use rtc::sansio::Protocol;
use rtc::shared::error::Error;

/// Registry slot of [`FeedbackTap`]: after every built-in interceptor. Clients of the
/// SFU that must answer keyframe requests (the load generator) use the tap too.
pub const TAP_SLOT: usize = 11_500;

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
