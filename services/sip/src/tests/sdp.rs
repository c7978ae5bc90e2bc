use proptest::prelude::*;

use std::net::SocketAddr;

use crate::sdp::{AudioOffer, Direction, SdpError};

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

const OFFER: &str = "v=0\r\n\
o=- 1 1 IN IP4 198.51.100.7\r\n\
s=-\r\n\
c=IN IP4 198.51.100.7\r\n\
t=0 0\r\n\
m=audio 40000 RTP/AVP 0 8 111 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:111 opus/48000/2\r\n\
a=fmtp:111 useinbandfec=1\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=sendrecv\r\n\
m=video 40002 RTP/AVP 96\r\n\
a=rtpmap:96 VP8/90000\r\n";

#[test]
fn an_offer_with_opus_is_answered_in_the_callers_payload_types() {
    let offer = AudioOffer::parse(OFFER.as_bytes()).unwrap();
    assert_eq!(offer.remote, addr("198.51.100.7:40000"));
    assert_eq!(offer.opus_pt, 111);
    assert_eq!(offer.dtmf_pt, Some(101));
    assert_eq!(offer.direction, Direction::SendRecv);
    let answer = offer.answer("192.0.2.10:30000".parse().unwrap(), 7, 8);
    assert!(
        answer.contains("o=confer 7 8 IN IP4 192.0.2.10\r\n"),
        "{answer}"
    );
    assert!(answer.contains("c=IN IP4 192.0.2.10\r\n"), "{answer}");
    assert!(
        answer.contains("m=audio 30000 RTP/AVP 111 101\r\n"),
        "{answer}"
    );
    assert!(answer.contains("a=rtpmap:111 opus/48000/2\r\n"), "{answer}");
    assert!(
        answer.contains("a=rtpmap:101 telephone-event/8000\r\n"),
        "{answer}"
    );
    assert!(answer.ends_with("a=sendrecv\r\n"), "{answer}");
    // The answer is an offer's equal: it parses back to the same codec.
    let again = AudioOffer::parse(answer.as_bytes()).unwrap();
    assert_eq!(again.opus_pt, 111);
    assert_eq!(again.remote, addr("192.0.2.10:30000"));
}

#[test]
fn media_level_address_and_direction_win_and_hold_is_answered() {
    let offer = "v=0\r\nc=IN IP4 198.51.100.7\r\na=sendrecv\r\nm=audio 5004 RTP/AVP 96\r\nc=IN IP4 203.0.113.5\r\na=rtpmap:96 OPUS/48000/2\r\na=sendonly\r\na=rtcp-mux\r\n";
    let offer = AudioOffer::parse(offer.as_bytes()).unwrap();
    assert_eq!(offer.remote, addr("203.0.113.5:5004"));
    assert_eq!(offer.opus_pt, 96);
    assert_eq!(offer.direction, Direction::SendOnly);
    assert!(offer.rtcp_mux);
    let answer = offer.answer("192.0.2.10:30000".parse().unwrap(), 1, 1);
    assert!(
        answer.contains("a=recvonly\r\n") && answer.contains("a=rtcp-mux\r\n"),
        "{answer}"
    );
}

#[test]
fn offers_the_bridge_cannot_take_say_why() {
    let pcmu = "v=0\r\nc=IN IP4 198.51.100.7\r\nm=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    assert_eq!(AudioOffer::parse(pcmu.as_bytes()), Err(SdpError::NoOpus));
    // Opus mapped but not among the m-line's formats.
    let unlisted =
        "v=0\r\nc=IN IP4 198.51.100.7\r\nm=audio 4000 RTP/AVP 0\r\na=rtpmap:111 opus/48000/2\r\n";
    assert_eq!(
        AudioOffer::parse(unlisted.as_bytes()),
        Err(SdpError::NoOpus)
    );
    let srtp = "v=0\r\nc=IN IP4 198.51.100.7\r\nm=audio 4000 RTP/SAVP 111\r\na=rtpmap:111 opus/48000/2\r\n";
    assert_eq!(
        AudioOffer::parse(srtp.as_bytes()),
        Err(SdpError::UnsupportedProfile)
    );
    let video = "v=0\r\nc=IN IP4 198.51.100.7\r\nm=video 4000 RTP/AVP 96\r\n";
    assert_eq!(AudioOffer::parse(video.as_bytes()), Err(SdpError::NoAudio));
    let rejected =
        "v=0\r\nc=IN IP4 198.51.100.7\r\nm=audio 0 RTP/AVP 111\r\na=rtpmap:111 opus/48000/2\r\n";
    assert_eq!(
        AudioOffer::parse(rejected.as_bytes()),
        Err(SdpError::NoAudio)
    );
    let no_address = "v=0\r\nm=audio 4000 RTP/AVP 111\r\na=rtpmap:111 opus/48000/2\r\n";
    assert_eq!(
        AudioOffer::parse(no_address.as_bytes()),
        Err(SdpError::NoAddress)
    );
    assert_eq!(AudioOffer::parse(b"\xff\xfe"), Err(SdpError::NotSdp));
    assert_eq!(AudioOffer::parse(b"m=audio\r\n"), Err(SdpError::NotSdp));
}

proptest! {
    #[test]
    fn arbitrary_bodies_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
        let _ = AudioOffer::parse(&bytes);
    }

    #[test]
    fn mutated_offers_never_panic(at in 0usize..OFFER.len(), byte in any::<u8>()) {
        let mut mutated = OFFER.as_bytes().to_vec();
        mutated[at] = byte;
        if let Ok(offer) = AudioOffer::parse(&mutated) {
            let _ = offer.answer("192.0.2.10:30000".parse().unwrap(), 1, 1);
        }
    }
}

#[test]
fn a_re_invite_is_answered_in_the_same_session_with_the_next_version() {
    let offer = AudioOffer::parse(OFFER.as_bytes()).unwrap();
    let mut answer = crate::sdp::LocalAnswer::new(addr("192.0.2.10:30000"), offer.clone());
    let first = answer.sdp();
    let session = answer.session;
    let mut moved = offer;
    moved.remote = addr("198.51.100.9:41000");
    answer.renegotiate(moved);
    let second = answer.sdp();
    assert!(
        first.contains(&format!("o=confer {session} {session} ")),
        "{first}"
    );
    assert!(
        second.contains(&format!("o=confer {session} {} ", session + 1)),
        "{second}"
    );
    assert!(
        second.contains("m=audio 30000 "),
        "the bridge's port stays: {second}"
    );
}
