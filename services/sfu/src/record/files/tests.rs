use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;
use crate::record::RtpIn;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("confer-record-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn opus(seq: u16, at: Instant) -> Note {
    Note::Packets(vec![(
        1,
        RtpIn {
            ssrc: 9,
            seq,
            timestamp: u32::from(seq) * 960,
            marker: false,
            payload: vec![0xfc, 0xff, 0xfe].into(),
            at,
        },
    )])
}

/// A writer under a fresh directory `name`, told track 1 of `participant` in `room`
/// starts: the directory, the counters, the writer and the track's keyframe flag.
fn started(
    name: &str,
    room: &str,
    participant: &str,
    source: TrackSource,
    codec: RecordCodec,
) -> (PathBuf, SfuStats, Writer, Arc<AtomicBool>) {
    let dir = temp_dir(name);
    let stats = SfuStats::default();
    let mut writer = Writer::new(dir.clone(), Arc::new(AtomicUsize::new(0)), stats.clone());
    let wants_keyframe = Arc::new(AtomicBool::new(false));
    writer.take(Note::Start {
        id: 1,
        room: RoomId::new(room),
        participant: ParticipantId::new(participant),
        source,
        codec,
        wants_keyframe: wants_keyframe.clone(),
    });
    (dir, stats, writer, wants_keyframe)
}

#[test]
fn a_track_is_written_as_part_then_finished_under_its_room() {
    let (dir, stats, mut writer, wants_keyframe) = started(
        "writer",
        "acme/board room",
        "p.1/ada",
        TrackSource::Microphone,
        RecordCodec::Opus,
    );
    assert!(
        list(&dir, "acme/board room").unwrap().is_empty(),
        "nothing before a frame"
    );
    let t0 = Instant::now();
    for seq in 0..50u16 {
        writer.queued.fetch_add(1, Ordering::Relaxed);
        writer.take(opus(seq, t0 + Duration::from_millis(u64::from(seq) * 20)));
    }
    let listed = list(&dir, "acme/board room").unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].in_progress);
    assert!(listed[0].file.ends_with(".webm.part"), "{}", listed[0].file);
    assert_eq!(stats.snapshot().recordings_open, 1);
    writer.take(Note::Stop { id: 1 });
    let counted = stats.snapshot();
    assert_eq!(
        (counted.recordings_open, counted.recordings_finished),
        (0, 1)
    );
    let listed = list(&dir, "acme/board room").unwrap();
    assert_eq!(listed.len(), 1);
    let recorded = &listed[0];
    assert!(!recorded.in_progress);
    assert_eq!(recorded.participant, "p.1/ada");
    assert_eq!(recorded.source, "microphone");
    assert!(recorded.file.ends_with(".webm"));
    assert!(!recorded.file.contains('/'));
    let bytes = std::fs::read(dir.join(path_part("acme/board room")).join(&recorded.file)).unwrap();
    assert_eq!(recorded.bytes, bytes.len() as u64);
    assert_eq!(&bytes[..4], &[0x1A, 0x45, 0xDF, 0xA3], "an EBML file");
    // The duration was filled in: 49 frames of 20 ms after the first.
    let at = bytes
        .windows(2)
        .position(|w| w == [0x44, 0x89])
        .expect("a duration element");
    let duration = f64::from_be_bytes(bytes[at + 3..at + 11].try_into().unwrap());
    assert_eq!(duration, 980.0);
    assert!(
        !wants_keyframe.load(Ordering::Relaxed),
        "audio needs no keyframe"
    );
    assert_eq!(writer.queued.load(Ordering::Relaxed), 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_video_track_asks_for_a_keyframe_and_opens_no_file_without_one() {
    let (dir, stats, mut writer, wants_keyframe) =
        started("video", "r", "p", TrackSource::Camera, RecordCodec::Vp8);
    assert!(wants_keyframe.load(Ordering::Relaxed));
    writer.queued.fetch_add(1, Ordering::Relaxed);
    writer.take(Note::Packets(vec![(
        1,
        RtpIn {
            ssrc: 1,
            seq: 1,
            timestamp: 0,
            marker: true,
            payload: vec![0x90, 0x80, 0x80, 0x01, 0x01, 0x00].into(), // a delta frame
            at: Instant::now(),
        },
    )]));
    writer.take(Note::Stop { id: 1 });
    assert!(list(&dir, "r").unwrap().is_empty());
    assert_eq!(
        stats.snapshot().recordings_finished,
        0,
        "no file, nothing finished"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The bytes of the one finished file in room `r`.
fn finished_file(dir: &Path) -> Vec<u8> {
    let listed = list(dir, "r").unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert!(!listed[0].in_progress);
    std::fs::read(dir.join("r").join(&listed[0].file)).unwrap()
}

#[test]
fn packets_that_come_out_of_order_are_written_in_order() {
    let t0 = Instant::now();
    let ms = |n: u64| t0 + Duration::from_millis(n);
    let mut files = Vec::new();
    // The same ten packets in order, and with 3 and 7 coming late (a resend's
    // round trip, well within the wait).
    for (name, order) in [
        ("in-order", vec![0u16, 1, 2, 3, 4, 5, 6, 7, 8, 9]),
        ("reordered", vec![0, 1, 2, 4, 5, 3, 6, 8, 9, 7]),
    ] {
        let (dir, stats, mut writer, _) =
            started(name, "r", "p", TrackSource::Microphone, RecordCodec::Opus);
        for (i, seq) in order.into_iter().enumerate() {
            writer.queued.fetch_add(1, Ordering::Relaxed);
            writer.take(opus(seq, ms(i as u64 * 20)));
        }
        writer.take(Note::Stop { id: 1 });
        assert_eq!(stats.snapshot().recordings_finished, 1);
        files.push(finished_file(&dir));
        let _ = std::fs::remove_dir_all(&dir);
    }
    // Block for block the same (the headers differ only in their start date).
    let blocks = |bytes: &[u8]| {
        bytes
            .windows(4)
            .filter(|w| w[0] == 0xA3 && w[2] == 0x81)
            .count()
    };
    assert_eq!(blocks(&files[0]), 10);
    assert_eq!(blocks(&files[1]), 10, "every packet made its frame");
    assert_eq!(files[0].len(), files[1].len());
}

#[test]
fn other_files_in_a_room_directory_are_not_listed() {
    for name in [
        "notes.txt",
        "p.camera.12.mp4",
        "p.speaker.12.webm",
        "p.camera.x.webm",
        "p.camera.1.2.webm",
        "p%G1.camera.1.webm",
    ] {
        assert_eq!(Recorded::parse(name, 1), None, "{name}");
    }
    let parsed = Recorded::parse("a%2Fb.screen_share.17.webm", 5).unwrap();
    assert_eq!(parsed.participant, "a/b");
    assert_eq!(parsed.started_unix_ms, 17);
}

proptest! {
    #[test]
    fn path_parts_are_one_safe_name_and_read_back(id in ".{0,40}") {
        let part = path_part(&id);
        prop_assert!(part.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-%".contains(&b)));
        prop_assert_eq!(unescape(&part), Some(id));
    }
}

/// The path of the one file being written for room `r`.
fn part_of(dir: &Path) -> PathBuf {
    let listed = list(dir, "r").unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert!(listed[0].in_progress);
    dir.join(path_part("r")).join(&listed[0].file)
}

fn set_age(path: &Path, age: Duration) {
    File::options()
        .write(true)
        .open(path)
        .and_then(|file| file.set_modified(SystemTime::now() - age))
        .unwrap();
}

fn age(path: &Path) -> Duration {
    let modified = std::fs::metadata(path).unwrap().modified().unwrap();
    SystemTime::now()
        .duration_since(modified)
        .unwrap_or_default()
}

#[test]
fn a_file_whose_track_falls_silent_is_marked_alive_while_it_is_written() {
    let (dir, stats, mut writer, _) = started(
        "alive",
        "r",
        "p",
        TrackSource::Microphone,
        RecordCodec::Opus,
    );
    let t0 = Instant::now();
    for seq in 0..5u16 {
        writer.queued.fetch_add(1, Ordering::Relaxed);
        writer.take(opus(seq, t0 + Duration::from_millis(u64::from(seq) * 20)));
    }
    let part = part_of(&dir);
    // The track sends nothing for two hours: before the writer's next mark, the
    // file looks as old as that; at the mark, it is alive again.
    let two_hours = Duration::from_secs(7200);
    set_age(&part, two_hours);
    writer.mark_alive_if_due(Instant::now());
    assert!(age(&part) >= two_hours, "not marked before it is due");
    writer.mark_alive_if_due(Instant::now() + MARK_ALIVE_EVERY);
    assert!(
        age(&part) < Duration::from_secs(60),
        "marked: {:?}",
        age(&part)
    );
    // Finished as any other, under its final name.
    writer.take(Note::Stop { id: 1 });
    assert_eq!(stats.snapshot().recordings_finished, 1);
    assert!(!list(&dir, "r").unwrap()[0].in_progress);
    let _ = std::fs::remove_dir_all(&dir);
}
