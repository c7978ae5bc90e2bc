use std::time::{Duration, Instant};

use proptest::prelude::*;

use crate::rtp::{OutHeader, RtpError, RtpView, Splicer, write_packet};

fn packet(seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let header = OutHeader {
        marker: false,
        payload_type: 111,
        sequence: seq,
        timestamp: ts,
        ssrc,
    };
    write_packet(&mut out, &header, payload);
    out
}

#[test]
fn a_written_packet_reads_back() {
    let bytes = packet(7, 960, 0xdead_beef, &[0xf8, 0xff, 0xfe]);
    let view = RtpView::parse(&bytes).unwrap();
    assert_eq!(
        (view.sequence, view.timestamp, view.ssrc, view.payload_type),
        (7, 960, 0xdead_beef, 111)
    );
    assert_eq!(&bytes[view.payload.0..view.payload.1], &[0xf8, 0xff, 0xfe]);
}

#[test]
fn csrcs_extension_and_padding_are_skipped_and_overruns_refused() {
    // One CSRC, a one-word extension, two bytes of padding.
    let mut bytes = vec![0xb1, 111, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2];
    bytes.extend_from_slice(&[0, 0, 0, 3]); // CSRC
    bytes.extend_from_slice(&[0xbe, 0xde, 0, 1, 0x10, 0xff, 0, 0]); // extension
    bytes.extend_from_slice(&[9, 9, 9]); // payload
    bytes.extend_from_slice(&[0, 2]); // padding
    let view = RtpView::parse(&bytes).unwrap();
    assert_eq!(&bytes[view.payload.0..view.payload.1], &[9, 9, 9]);
    assert_eq!(RtpView::parse(&bytes[..14]), Err(RtpError::BadLength));
    assert_eq!(RtpView::parse(&[0x80, 111, 0]), Err(RtpError::TooShort));
    assert_eq!(RtpView::parse(&[0x40; 12]), Err(RtpError::BadVersion));
    assert_eq!(
        RtpView::parse(&[0x80, 200, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0]),
        Err(RtpError::Rtcp)
    );
    let mut overpadded = packet(1, 1, 1, &[1]);
    overpadded[0] |= 0x20;
    *overpadded.last_mut().unwrap() = 200;
    assert_eq!(RtpView::parse(&overpadded), Err(RtpError::BadLength));
}

#[test]
fn the_caller_hears_one_stream_across_a_change_of_speaker() {
    let start = Instant::now();
    let mut splicer = Splicer::new(42, 96);
    let first = splicer.header(1, 1000, 50_000, start).unwrap();
    assert!(first.marker, "a new source starts with the marker");
    assert_eq!((first.ssrc, first.payload_type), (42, 96));
    let second = splicer
        .header(1, 1001, 50_960, start + Duration::from_millis(20))
        .unwrap();
    assert_eq!(second.sequence, first.sequence.wrapping_add(1));
    assert_eq!(second.timestamp, first.timestamp.wrapping_add(960));
    assert!(!second.marker);
    // A lost packet stays a gap.
    let fourth = splicer
        .header(1, 1003, 52_880, start + Duration::from_millis(60))
        .unwrap();
    assert_eq!(fourth.sequence, first.sequence.wrapping_add(3));
    // Another speaker, 100 ms later, with unrelated numbers: the stream runs on.
    let other = splicer
        .header(2, 7, 123, start + Duration::from_millis(160))
        .unwrap();
    assert!(other.marker);
    assert_eq!(other.sequence, fourth.sequence.wrapping_add(1));
    assert_eq!(other.timestamp, fourth.timestamp.wrapping_add(100 * 48));
    assert_eq!(splicer.current(), Some(2));
    // A late packet of the new source from before its first is dropped.
    assert_eq!(
        splicer.header(2, 6, 0, start + Duration::from_millis(170)),
        None
    );
    // Back to the first speaker: never a step back in time.
    let back = splicer
        .header(1, 1010, 60_000, start + Duration::from_millis(161))
        .unwrap();
    assert_eq!(back.sequence, other.sequence.wrapping_add(1));
    assert_eq!(back.timestamp, other.timestamp.wrapping_add(960));
}

#[test]
fn a_pause_is_no_gap_in_the_stream() {
    let start = Instant::now();
    let mut splicer = Splicer::new(42, 111);
    // The caller's packet `n` (20 ms of Opus each), `ms` after the first.
    let packet = |splicer: &mut Splicer, n: u16, ms: u64| {
        let timestamp = 9_600 + u32::from(n) * 960;
        splicer
            .header(7, 500 + n, timestamp, start + Duration::from_millis(ms))
            .unwrap()
    };
    let first = packet(&mut splicer, 0, 0);
    // 50 packets (1 s) held back, then the same source again.
    splicer.pause();
    let resumed = packet(&mut splicer, 51, 1_020);
    assert!(resumed.marker, "a talkspurt starts with the marker");
    assert_eq!(resumed.sequence, first.sequence.wrapping_add(1));
    assert_eq!(resumed.timestamp, first.timestamp.wrapping_add(1_020 * 48));
    let next = packet(&mut splicer, 52, 1_040);
    assert_eq!(next.sequence, resumed.sequence.wrapping_add(1));
    assert!(!next.marker);
}

proptest! {
    #[test]
    fn arbitrary_datagrams_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(view) = RtpView::parse(&bytes) {
            prop_assert!(view.payload.0 <= view.payload.1 && view.payload.1 <= bytes.len());
        }
    }

    /// Within one source the output advances exactly as the input does.
    #[test]
    fn one_source_keeps_its_spacing(seq in any::<u16>(), ts in any::<u32>(), steps in proptest::collection::vec(1u16..5, 1..50)) {
        let now = Instant::now();
        let mut splicer = Splicer::new(1, 111);
        let first = splicer.header(9, seq, ts, now).unwrap();
        let (mut s, mut t) = (seq, ts);
        for step in steps {
            s = s.wrapping_add(step);
            t = t.wrapping_add(u32::from(step) * 960);
            let out = splicer.header(9, s, t, now).unwrap();
            prop_assert_eq!(out.sequence.wrapping_sub(first.sequence), s.wrapping_sub(seq));
            prop_assert_eq!(out.timestamp.wrapping_sub(first.timestamp), t.wrapping_sub(ts));
        }
    }
}
