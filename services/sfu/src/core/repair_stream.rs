//! Resends in a slot's RTX stream, numbered and counted like everything else the SFU
//! sends.
//!
//! The stack binds an outgoing stream's interceptors to its original SSRC only. The
//! transport-wide sequence numberer and the congestion controller therefore let resends
//! in the RTX stream go out unnumbered and unrecorded: the subscriber could not report
//! them, and the send-side estimate never saw their bytes. [`WithRepairStream`] binds
//! the RTX SSRC as well, as a stream like its original, to the interceptor it wraps.

use std::time::Instant;

use rtc::interceptor::{Interceptor, StreamInfo, TaggedPacket};
use rtc::sansio::Protocol;
use rtc::shared::error::Error;

/// `I`, told of each outgoing stream's RTX SSRC as a stream of its own.
pub(crate) struct WithRepairStream<I>(pub(crate) I);

/// The RTX stream of `info`, described as a stream of its own.
fn repair_stream(info: &StreamInfo) -> Option<StreamInfo> {
    let ssrc = info.ssrc_rtx?;
    Some(StreamInfo {
        ssrc,
        ssrc_rtx: None,
        payload_type: info.payload_type_rtx.unwrap_or(info.payload_type),
        payload_type_rtx: None,
        ..info.clone()
    })
}

impl<I: Interceptor> Protocol<TaggedPacket, TaggedPacket, ()> for WithRepairStream<I> {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = Error;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.0.handle_read(msg)
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.0.poll_read()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.0.handle_write(msg)
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.0.poll_write()
    }

    fn handle_event(&mut self, event: ()) -> Result<(), Self::Error> {
        self.0.handle_event(event)
    }

    fn poll_event(&mut self) -> Option<Self::Eout> {
        self.0.poll_event()
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), Self::Error> {
        self.0.handle_timeout(now)
    }

    fn poll_timeout(&mut self) -> Option<Instant> {
        self.0.poll_timeout()
    }

    fn close(&mut self) -> Result<(), Self::Error> {
        self.0.close()
    }
}

impl<I: Interceptor> Interceptor for WithRepairStream<I> {
    fn bind_local_stream(&mut self, info: &StreamInfo) {
        self.0.bind_local_stream(info);
        if let Some(repair) = repair_stream(info) {
            self.0.bind_local_stream(&repair);
        }
    }

    fn unbind_local_stream(&mut self, info: &StreamInfo) {
        self.0.unbind_local_stream(info);
        if let Some(repair) = repair_stream(info) {
            self.0.unbind_local_stream(&repair);
        }
    }

    fn bind_remote_stream(&mut self, info: &StreamInfo) {
        self.0.bind_remote_stream(info);
    }

    fn unbind_remote_stream(&mut self, info: &StreamInfo) {
        self.0.unbind_remote_stream(info);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::interceptor::{AttributedPacket, Packet, RTPHeaderExtension, TwccSenderBuilder};
    use rtc::rtp::header::Header;
    use rtc::shared::TransportContext;

    const MEDIA: u32 = 10;
    const REPAIR: u32 = 11;
    const TWCC_ID: u8 = 5;

    /// Whether a packet written on `ssrc` through `interceptor` leaves with a
    /// transport-wide sequence number.
    fn numbered(interceptor: &mut impl Interceptor, ssrc: u32) -> bool {
        let packet = rtc::rtp::Packet {
            header: Header {
                version: 2,
                ssrc,
                ..Header::default()
            },
            payload: vec![1, 2, 3].into(),
        };
        interceptor
            .handle_write(TaggedPacket {
                now: Instant::now(),
                transport: TransportContext::default(),
                message: AttributedPacket::new(Packet::Rtp(packet)),
            })
            .expect("writes");
        match interceptor.poll_write().expect("passed on").message.packet {
            Packet::Rtp(packet) => packet.header.get_extension(TWCC_ID).is_some(),
            _ => panic!("RTP in, something else out"),
        }
    }

    fn slot() -> StreamInfo {
        StreamInfo {
            ssrc: MEDIA,
            ssrc_rtx: Some(REPAIR),
            payload_type: 96,
            payload_type_rtx: Some(97),
            clock_rate: 90_000,
            rtp_header_extensions: vec![RTPHeaderExtension {
                uri: rtc::sdp::extmap::TRANSPORT_CC_URI.to_owned(),
                id: TWCC_ID.into(),
            }],
            ..StreamInfo::default()
        }
    }

    #[test]
    fn resends_in_the_rtx_stream_are_numbered_like_the_original() {
        let mut bare = TwccSenderBuilder::new().build();
        bare.bind_local_stream(&slot());
        assert!(numbered(&mut bare, MEDIA));
        assert!(
            !numbered(&mut bare, REPAIR),
            "the stack alone leaves RTX out"
        );

        let mut wrapped = WithRepairStream(TwccSenderBuilder::new().build());
        wrapped.bind_local_stream(&slot());
        assert!(numbered(&mut wrapped, MEDIA));
        assert!(numbered(&mut wrapped, REPAIR));
        wrapped.unbind_local_stream(&slot());
        assert!(!numbered(&mut wrapped, REPAIR), "unbound with its original");
    }
}
