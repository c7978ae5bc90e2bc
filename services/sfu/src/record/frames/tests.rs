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

/// A baseline SPS for 320×240, and a PPS.
const SPS: [u8; 8] = [0x67, 0x42, 0xc0, 0x1e, 0xda, 0x05, 0x07, 0xe4];
const PPS: [u8; 4] = [0x68, 0xce, 0x3c, 0x80];

fn h264(seq: u16, timestamp: u32, marker: bool, payload: Vec<u8>, at: Instant) -> RtpIn {
    RtpIn {
        ssrc: 9,
        seq,
        timestamp,
        marker,
        payload: payload.into(),
        at,
    }
}

/// A STAP-A of the given NAL units.
fn stap_a(nals: &[&[u8]]) -> Vec<u8> {
    let mut payload = vec![0x78];
    for nal in nals {
        payload.extend_from_slice(&(nal.len() as u16).to_be_bytes());
        payload.extend_from_slice(nal);
    }
    payload
}

/// One FU-A fragment of a NAL unit whose header is `nal_header`.
fn fu_a(nal_header: u8, start: bool, end: bool, body: &[u8]) -> Vec<u8> {
    let mut payload = vec![(nal_header & 0xe0) | 28];
    payload.push(u8::from(start) << 7 | u8::from(end) << 6 | (nal_header & 0x1f));
    payload.extend_from_slice(body);
    payload
}

/// NAL units behind their 4-byte lengths.
fn avc(nals: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for nal in nals {
        out.extend_from_slice(&(nal.len() as u32).to_be_bytes());
        out.extend_from_slice(nal);
    }
    out
}

#[test]
fn an_h264_access_unit_is_its_nal_units_length_prefixed() {
    let t0 = Instant::now();
    let mut frames = Frames::new(RecordCodec::H264);
    assert!(frames.needs_keyframe());
    // A keyframe: parameter sets in a STAP-A, the IDR slice in three fragments.
    assert_eq!(
        frames.push(&h264(100, 9000, false, stap_a(&[&SPS, &PPS]), t0)),
        None
    );
    assert_eq!(
        frames.push(&h264(101, 9000, false, fu_a(0x65, true, false, b"ab"), t0)),
        None
    );
    assert_eq!(
        frames.push(&h264(102, 9000, false, fu_a(0x65, false, false, b"cd"), t0)),
        None
    );
    let key = frames
        .push(&h264(103, 9000, true, fu_a(0x65, false, true, b"ef"), t0))
        .unwrap();
    assert!(key.keyframe);
    assert_eq!(key.size, Some((320, 240)));
    assert_eq!(
        key.data,
        avc(&[&SPS, &PPS, &[0x65, b'a', b'b', b'c', b'd', b'e', b'f']])
    );
    let config = key.config.expect("a keyframe's decoder configuration");
    assert_eq!(&config[..6], &[1, 0x42, 0xc0, 0x1e, 0xff, 0xe1]);
    assert_eq!(&config[6..8], &[0, 8]);
    assert_eq!(&config[8..16], &SPS);
    assert_eq!(&config[16..19], &[1, 0, 4]);
    assert_eq!(&config[19..], &PPS);
    // The next picture, one packet that follows the last unit's marker: a delta frame.
    let delta = frames
        .push(&h264(104, 12000, true, vec![0x41, 0x9a, 0x01], t0))
        .unwrap();
    assert!(!delta.keyframe);
    assert_eq!((delta.size, delta.config), (None, None));
    assert_eq!(delta.data, avc(&[&[0x41, 0x9a, 0x01]]));
    assert_eq!(delta.at_ms, 33);
}

#[test]
fn an_h264_loss_drops_units_until_an_idr_with_its_parameter_sets() {
    let t0 = Instant::now();
    let mut frames = Frames::new(RecordCodec::H264);
    // Nothing before the first keyframe; a lone IDR without parameter sets is not one.
    assert_eq!(frames.push(&h264(1, 0, true, vec![0x41, 0x01], t0)), None);
    assert_eq!(
        frames.push(&h264(2, 3000, true, vec![0x65, 0x01], t0)),
        None
    );
    assert!(frames.needs_keyframe());
    let key = stap_a(&[&SPS, &PPS, &[0x65, 0x01]]);
    assert!(frames.push(&h264(3, 6000, true, key.clone(), t0)).is_some());
    // The middle fragment of the next unit is lost: that unit and the one after go.
    assert_eq!(
        frames.push(&h264(4, 9000, false, fu_a(0x41, true, false, b"a"), t0)),
        None
    );
    assert_eq!(
        frames.push(&h264(6, 9000, true, fu_a(0x41, false, true, b"c"), t0)),
        None
    );
    assert!(frames.needs_keyframe());
    assert_eq!(
        frames.push(&h264(7, 12000, true, vec![0x41, 0x02], t0)),
        None
    );
    // A unit whose first packet may be gone (it follows no marker it saw) is not
    // started on; an IDR alone, the parameter sets known, is a keyframe again.
    assert_eq!(
        frames.push(&h264(9, 15000, true, fu_a(0x65, false, true, b"z"), t0)),
        None
    );
    let idr = frames.push(&h264(10, 18000, true, vec![0x65, 0x03], t0));
    assert_eq!(
        idr, None,
        "no marker seen just before, and no parameter set first"
    );
    let again = frames.push(&h264(11, 21000, true, key, t0)).unwrap();
    assert!(again.keyframe);
    assert_eq!(again.at_ms, 166);
}

#[test]
fn malformed_h264_payloads_break_their_unit() {
    let t0 = Instant::now();
    for bad in [
        vec![0x80 | 0x65, 0x01],      // forbidden bit
        vec![0x78, 0x00, 0x09, 0x67], // STAP-A NAL longer than the packet
        vec![0x78],                   // empty STAP-A
        vec![0x7c],                   // FU-A without its header
        vec![0x7c, 0x05, 0x00],       // FU-A continuing nothing
        vec![0x79, 0x00],             // STAP-B: interleaved mode
        vec![0x1f],                   // undefined type
    ] {
        let mut frames = Frames::new(RecordCodec::H264);
        let key = stap_a(&[&SPS, &PPS, &[0x65, 0x01]]);
        assert!(frames.push(&h264(1, 0, true, key, t0)).is_some());
        assert!(!frames.needs_keyframe());
        assert_eq!(
            frames.push(&h264(2, 3000, true, bad.clone(), t0)),
            None,
            "{bad:x?}"
        );
        assert!(frames.needs_keyframe(), "{bad:x?}");
    }
}

proptest! {
    /// An access unit cut into packets any way (STAP-A, single NAL units, fragments
    /// of any size) comes back as its NAL units, length-prefixed.
    #[test]
    fn any_packetization_of_an_h264_unit_reads_back(
        slices in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..300), 1..4),
        fragment in 1usize..200,
    ) {
        let t0 = Instant::now();
        let mut frames = Frames::new(RecordCodec::H264);
        let mut nals: Vec<Vec<u8>> = vec![SPS.to_vec(), PPS.to_vec()];
        for (i, body) in slices.iter().enumerate() {
            let mut nal = vec![if i == 0 { 0x65 } else { 0x41 }];
            nal.extend_from_slice(body);
            nals.push(nal);
        }
        let mut payloads = vec![stap_a(&[&SPS, &PPS])];
        for nal in &nals[2..] {
            if nal.len() <= fragment {
                payloads.push(nal.clone());
                continue;
            }
            let pieces: Vec<&[u8]> = nal[1..].chunks(fragment).collect();
            for (i, piece) in pieces.iter().enumerate() {
                payloads.push(fu_a(nal[0], i == 0, i + 1 == pieces.len(), piece));
            }
        }
        let last = payloads.len() - 1;
        let mut out = None;
        for (i, payload) in payloads.into_iter().enumerate() {
            let got = frames.push(&h264(500 + i as u16, 90_000, i == last, payload, t0));
            prop_assert_eq!(got.is_some(), i == last);
            out = got;
        }
        let frame = out.unwrap();
        let refs: Vec<&[u8]> = nals.iter().map(Vec::as_slice).collect();
        prop_assert_eq!(frame.data, avc(&refs));
        prop_assert!(frame.keyframe);
    }
}

proptest! {
    #[test]
    fn any_packets_are_taken_without_panicking(
        packets in proptest::collection::vec(
            (any::<u16>(), any::<u32>(), any::<bool>(), proptest::collection::vec(any::<u8>(), 0..40)),
            0..60,
        ),
        codec in prop_oneof![Just(RecordCodec::Opus), Just(RecordCodec::Vp8), Just(RecordCodec::H264)],
    ) {
        let t0 = Instant::now();
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
