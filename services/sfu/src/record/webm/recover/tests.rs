use std::io::Cursor;
use std::path::PathBuf;

use proptest::prelude::*;

use super::super::{TrackFormat, Webm, read_duration_ms};
use super::*;

const STARTED: u64 = 1_700_000_000_000;

/// 3 s of VP8: a keyframe every second (a cluster each), a frame every 40 ms.
fn frames() -> Vec<(u64, bool, Vec<u8>)> {
    (0..75)
        .map(|i| {
            (
                i * 40,
                i % 25 == 0,
                vec![i as u8; 50 + (i as usize % 7) * 30],
            )
        })
        .collect()
}

fn format() -> TrackFormat {
    TrackFormat::Vp8 {
        width: 320,
        height: 180,
    }
}

/// The file as its recorder leaves it when the SFU stops: every frame written, never
/// finished (its duration says 0).
fn unfinished() -> Vec<u8> {
    let mut webm = Webm::start(Cursor::new(Vec::new()), format(), STARTED).unwrap();
    for (at, key, data) in frames() {
        webm.frame(at, key, &data).unwrap();
    }
    webm.out.into_inner()
}

/// The same file, finished by its recorder at its last frame.
fn finished() -> Vec<u8> {
    let mut webm = Webm::start(Cursor::new(Vec::new()), format(), STARTED).unwrap();
    for (at, key, data) in frames() {
        webm.frame(at, key, &data).unwrap();
    }
    let last = webm.duration_ms();
    webm.finish(last).unwrap().into_inner()
}

fn file_with(name: &str, bytes: &[u8]) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "confer-recover-{name}-{}-{:08x}.webm.part",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn an_unfinished_file_is_finished_as_its_recorder_would_have() {
    let path = file_with("whole", &unfinished());
    assert_eq!(read_duration_ms(&std::fs::read(&path).unwrap()), None);
    let recovered = recover(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(
        recovered,
        Recovered {
            duration_ms: 2_960,
            length: bytes.len() as u64,
            cut: 0
        }
    );
    assert_eq!(bytes, finished(), "byte for byte what finishing writes");
    assert_eq!(read_duration_ms(&bytes), Some(2_960));
}

#[test]
fn a_block_cut_off_mid_write_is_cut_away() {
    let whole = unfinished();
    // Half of one more block: its id, its size, and a few of its bytes.
    let mut cut_off = whole.clone();
    cut_off.extend_from_slice(&[0xA3, 0x40, 0x80, 0x81, 0x0B]);
    let path = file_with("cut", &cut_off);
    let recovered = recover(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(recovered.cut, 5);
    assert_eq!(recovered.duration_ms, 2_960);
    assert_eq!(bytes, finished());
    // Cut inside a cluster's header: back to the last block before it.
    let mut in_header = whole;
    in_header.extend_from_slice(&[0x1F, 0x43, 0xB6]);
    let path = file_with("header", &in_header);
    let recovered = recover(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!((recovered.cut, recovered.duration_ms), (3, 2_960));
}

#[test]
fn a_damaged_size_ends_the_scan_where_it_stands() {
    // A new cluster, then a timestamp claiming 64 KiB, and bytes after it.
    let mut damaged = unfinished();
    damaged.extend_from_slice(&[0x1F, 0x43, 0xB6, 0x75]);
    damaged.extend_from_slice(&[0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]);
    damaged.extend_from_slice(&[0xE7, 0x01, 0, 0, 0, 0, 0x01, 0, 0]);
    damaged.extend_from_slice(&[7; 100]);
    let path = file_with("damaged", &damaged);
    let recovered = recover(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(recovered.duration_ms, 2_960);
    assert_eq!(recovered.cut, 9 + 100, "cut from the damaged element on");
}

#[test]
fn a_file_with_no_block_yet_has_nothing_to_last_and_one_not_ours_is_left_alone() {
    let header_only = Webm::start(Cursor::new(Vec::new()), format(), STARTED)
        .unwrap()
        .out
        .into_inner();
    let path = file_with("empty", &header_only);
    let recovered = recover(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(recovered.duration_ms, 0);
    assert_eq!(recovered.cut, 0);

    for (name, bytes) in [
        ("text", b"not a recording at all".to_vec()),
        ("short", unfinished()[..30].to_vec()),
        ("empty-file", Vec::new()),
    ] {
        let path = file_with(name, &bytes);
        assert!(recover(&path).is_err(), "{name}");
        let after = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(after, bytes, "{name}: untouched");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// A recorder stopped anywhere: what is recovered is the file up to a whole
    /// element, its duration no later than the last frame written.
    #[test]
    fn a_file_cut_anywhere_is_recovered_or_refused_without_a_panic(cut in 0usize..4_000) {
        let whole = unfinished();
        let cut = cut.min(whole.len());
        let path = file_with("prop", &whole[..cut]);
        let result = recover(&path);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        if let Ok(recovered) = result {
            prop_assert!(recovered.duration_ms <= 2_960);
            prop_assert_eq!(recovered.length as usize, bytes.len());
            prop_assert!(bytes.len() <= cut);
            let finished = finished();
            // A prefix of the finished file, but for the duration's 8 bytes.
            let duration_at = finished
                .iter()
                .zip(&whole)
                .position(|(a, b)| a != b)
                .unwrap_or(finished.len());
            prop_assert_eq!(&bytes[..duration_at.min(bytes.len())], &whole[..duration_at.min(bytes.len())]);
            if bytes.len() > duration_at + 8 {
                prop_assert_eq!(&bytes[duration_at + 8..], &whole[duration_at + 8..bytes.len()]);
            }
        }
    }

    #[test]
    fn any_bytes_are_recovered_or_refused_without_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let path = file_with("any", &bytes);
        let _ = recover(&path);
        std::fs::remove_file(&path).unwrap();
    }
}
