use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;

/// A VP8 packet: descriptor with a 15-bit PictureID, then `body`.
fn vp8(seq: u16, timestamp: u32, starts: bool, marker: bool, body: &[u8], at: Instant) -> RtpIn {
    let mut payload = vec![if starts { 0x90 } else { 0x80 }, 0x80, 0x80, 0x01];
    payload.extend_from_slice(body);
    RtpIn {
        ssrc: 7,
        seq,
        timestamp,
        marker,
        payload: payload.into(),
        at,
    }
}

/// A keyframe's first bytes: frame tag (key), start code, 320×180.
fn key_body() -> Vec<u8> {
    vec![
        0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xb4, 0x00, 0xAA,
    ]
}

#[test]
fn a_vp8_frame_is_its_packets_bodies_in_order() {
    let t0 = Instant::now();
    let mut frames = Frames::new(RecordCodec::Vp8);
    let key = key_body();
    assert_eq!(frames.push(&vp8(10, 9000, true, false, &key, t0)), None);
    assert_eq!(frames.push(&vp8(11, 9000, false, false, b"mid", t0)), None);
    let frame = frames
        .push(&vp8(12, 9000, false, true, b"end", t0))
        .unwrap();
    let mut expected = key.clone();
    expected.extend_from_slice(b"midend");
    assert_eq!(frame.data, expected);
    assert!(frame.keyframe);
    assert_eq!(frame.size, Some((320, 180)));
    assert_eq!(frame.at_ms, 0);
    // The next frame, 3000 ticks (33 ms) on: a delta frame.
    let t1 = t0 + Duration::from_millis(40);
    let frame = frames
        .push(&vp8(13, 12000, true, true, &[0x01, 0x55], t1))
        .unwrap();
    assert!(!frame.keyframe);
    assert_eq!(frame.at_ms, 33, "RTP time, not arrival");
}

#[test]
fn a_lost_packet_drops_frames_until_a_keyframe() {
    let t0 = Instant::now();
    let mut frames = Frames::new(RecordCodec::Vp8);
    assert!(frames.needs_keyframe(), "nothing before the first keyframe");
    assert_eq!(frames.push(&vp8(1, 0, true, true, &[0x01, 0x00], t0)), None);
    assert!(
        frames
            .push(&vp8(2, 3000, true, true, &key_body(), t0))
            .is_some()
    );
    assert!(!frames.needs_keyframe());
    // Packet 4 is lost: the frame of 3 and 5 is broken, and the next delta frame too.
    assert_eq!(
        frames.push(&vp8(3, 6000, true, false, &[0x01, 0x00], t0)),
        None
    );
    assert_eq!(frames.push(&vp8(5, 6000, false, true, b"x", t0)), None);
    assert!(frames.needs_keyframe());
    assert_eq!(
        frames.push(&vp8(6, 9000, true, true, &[0x01, 0x00], t0)),
        None
    );
    let frame = frames
        .push(&vp8(7, 12000, true, true, &key_body(), t0))
        .unwrap();
    assert!(frame.keyframe);
    assert_eq!(frame.at_ms, 100, "from the first frame taken");
    // A late resend of packet 4 is old news.
    assert_eq!(frames.push(&vp8(4, 6000, false, false, b"y", t0)), None);
    assert!(!frames.needs_keyframe());
}

#[test]
fn opus_packets_are_frames_and_duplicates_are_not() {
    let t0 = Instant::now();
    let mut frames = Frames::new(RecordCodec::Opus);
    let packet = |seq: u16, timestamp: u32| RtpIn {
        ssrc: 1,
        seq,
        timestamp,
        marker: false,
        payload: vec![0x78, seq as u8].into(),
        at: t0,
    };
    let first = frames.push(&packet(65535, 4_294_966_336)).unwrap();
    assert_eq!(first.at_ms, 0);
    // Across both wraps: sequence 0 and RTP time 0 come 960 ticks (20 ms) later.
    let second = frames.push(&packet(0, 0)).unwrap();
    assert_eq!(second.at_ms, 20);
    assert_eq!(frames.push(&packet(0, 0)), None, "a duplicate");
    assert_eq!(frames.push(&packet(65535, 4_294_966_336)), None, "older");
}

#[test]
fn a_new_stream_starts_at_its_arrival_time() {
    let t0 = Instant::now();
    let mut frames = Frames::new(RecordCodec::Vp8);
    assert!(
        frames
            .push(&vp8(1, 500, true, true, &key_body(), t0))
            .is_some()
    );
    let mut other = vp8(
        900,
        77_000_000,
        true,
        true,
        &key_body(),
        t0 + Duration::from_secs(2),
    );
    other.ssrc = 8;
    assert_eq!(frames.push(&other).unwrap().at_ms, 2000);
}

proptest! {
    #[test]
    fn any_packets_are_taken_without_panicking(
        packets in proptest::collection::vec(
            (any::<u16>(), any::<u32>(), any::<bool>(), proptest::collection::vec(any::<u8>(), 0..40)),
            0..60,
        ),
        opus in any::<bool>(),
    ) {
        let t0 = Instant::now();
        let codec = if opus { RecordCodec::Opus } else { RecordCodec::Vp8 };
        let mut frames = Frames::new(codec);
        for (i, (seq, timestamp, marker, payload)) in packets.into_iter().enumerate() {
            let packet = RtpIn {
                ssrc: 3,
                seq,
                timestamp,
                marker,
                payload: payload.into(),
                at: t0 + Duration::from_millis(i as u64 * 10),
            };
            if let Some(frame) = frames.push(&packet) {
                prop_assert!(!frame.data.is_empty());
                // RTP time is believed only near the arrival time.
                let arrived = i as u64 * 10;
                prop_assert!(frame.at_ms <= arrived + 5_000, "{} for {}", frame.at_ms, arrived);
            }
        }
    }
}
