use std::io::Cursor;

use proptest::prelude::*;

use super::*;

/// One element as read back: its id and either its bytes or its children.
#[derive(Debug)]
struct Read {
    id: u32,
    data: Vec<u8>,
    children: Vec<Read>,
}

fn read_vint(bytes: &[u8], keep_marker: bool) -> (u64, usize) {
    let first = bytes[0];
    let length = first.leading_zeros() as usize + 1;
    assert!(length <= 8, "a vint longer than 8 bytes");
    let mut value = if keep_marker {
        u64::from(first)
    } else {
        u64::from(first) & (0xFF_u64 >> length)
    };
    for byte in &bytes[1..length] {
        value = (value << 8) | u64::from(*byte);
    }
    (value, length)
}

const MASTERS: [u32; 8] = [
    EBML,
    SEGMENT,
    INFO,
    TRACKS,
    TRACK_ENTRY,
    VIDEO,
    AUDIO,
    CLUSTER,
];

/// Reads elements until the bytes end; an unknown-size element runs until the next
/// element of its own id (a cluster) or the end.
fn read_all(mut bytes: &[u8]) -> Vec<Read> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (element_id, id_len) = read_vint(bytes, true);
        let element_id = element_id as u32;
        let unknown = bytes.get(id_len..id_len + 8) == Some(&UNKNOWN_SIZE[..]);
        let (len, size_len) = if unknown {
            let rest = &bytes[id_len + 8..];
            let end = (1..rest.len())
                .find(|at| rest[*at..].starts_with(&CLUSTER.to_be_bytes()))
                .filter(|_| element_id == CLUSTER)
                .unwrap_or(rest.len());
            (end as u64, 8)
        } else {
            read_vint(&bytes[id_len..], false)
        };
        let start = id_len + size_len;
        let data = bytes[start..start + len as usize].to_vec();
        let children = if MASTERS.contains(&element_id) {
            read_all(&data)
        } else {
            Vec::new()
        };
        out.push(Read {
            id: element_id,
            data,
            children,
        });
        bytes = &bytes[start + len as usize..];
    }
    out
}

fn child(parent: &Read, element_id: u32) -> &Read {
    parent
        .children
        .iter()
        .find(|c| c.id == element_id)
        .unwrap_or_else(|| panic!("no element {element_id:#x} in {:#x}", parent.id))
}

fn uint_of(read: &Read) -> u64 {
    read.data.iter().fold(0, |v, b| (v << 8) | u64::from(*b))
}

fn written(format: TrackFormat, frames: &[(u64, bool, &[u8])], duration_ms: u64) -> Vec<u8> {
    let mut webm = Webm::start(Cursor::new(Vec::new()), format, 1_700_000_000_000).unwrap();
    for (at, key, data) in frames {
        webm.frame(*at, *key, data).unwrap();
    }
    webm.finish(duration_ms).unwrap().into_inner()
}

#[test]
fn an_opus_file_reads_back_with_its_header_track_and_blocks() {
    let bytes = written(
        TrackFormat::Opus,
        &[(0, true, b"one"), (20, true, b"two"), (40, true, b"three")],
        60,
    );
    let top = read_all(&bytes);
    assert_eq!(top.len(), 2, "the EBML header and one segment");
    assert_eq!(child(&top[0], DOC_TYPE).data, b"webm");
    let segment = &top[1];
    let info = child(segment, INFO);
    assert_eq!(uint_of(child(info, TIMESTAMP_SCALE)), 1_000_000);
    let duration = f64::from_be_bytes(child(info, DURATION).data.clone().try_into().unwrap());
    assert_eq!(duration, 60.0);
    let entry = child(child(segment, TRACKS), TRACK_ENTRY);
    assert_eq!(child(entry, CODEC_ID).data, b"A_OPUS");
    assert_eq!(uint_of(child(entry, TRACK_TYPE)), 2);
    assert!(child(entry, CODEC_PRIVATE).data.starts_with(b"OpusHead"));
    let clusters: Vec<&Read> = segment
        .children
        .iter()
        .filter(|c| c.id == CLUSTER)
        .collect();
    // Every audio frame is a keyframe, but a cluster opens only when time moved on.
    assert_eq!(clusters.len(), 3);
    let block = child(clusters[1], SIMPLE_BLOCK);
    assert_eq!(block.data[0], 0x81, "track 1");
    assert_eq!(&block.data[4..], b"two");
    assert_eq!(uint_of(child(clusters[1], TIMESTAMP)), 20);
}

#[test]
fn video_clusters_open_at_keyframes_and_blocks_count_from_them() {
    let bytes = written(
        TrackFormat::Vp8 {
            width: 640,
            height: 360,
        },
        &[
            (0, true, b"k0"),
            (33, false, b"d1"),
            (66, false, b"d2"),
            (100, true, b"k1"),
            (133, false, b"d3"),
            (120, false, b"late"), // goes back: held at the last time
        ],
        150,
    );
    let top = read_all(&bytes);
    let segment = &top[1];
    let entry = child(child(segment, TRACKS), TRACK_ENTRY);
    assert_eq!(child(entry, CODEC_ID).data, b"V_VP8");
    let video = child(entry, VIDEO);
    assert_eq!(uint_of(child(video, PIXEL_WIDTH)), 640);
    assert_eq!(uint_of(child(video, PIXEL_HEIGHT)), 360);
    let clusters: Vec<&Read> = segment
        .children
        .iter()
        .filter(|c| c.id == CLUSTER)
        .collect();
    assert_eq!(clusters.len(), 2);
    let times: Vec<(u64, Vec<(i16, u8)>)> = clusters
        .iter()
        .map(|cluster| {
            let blocks = cluster
                .children
                .iter()
                .filter(|c| c.id == SIMPLE_BLOCK)
                .map(|b| (i16::from_be_bytes([b.data[1], b.data[2]]), b.data[3]))
                .collect();
            (uint_of(child(cluster, TIMESTAMP)), blocks)
        })
        .collect();
    assert_eq!(
        times,
        vec![
            (0, vec![(0, 0x80), (33, 0), (66, 0)]),
            (100, vec![(0, 0x80), (33, 0), (33, 0)]),
        ]
    );
}

#[test]
fn an_h264_track_names_its_codec_and_keeps_its_decoder_configuration() {
    let config = vec![1, 0x42, 0xc0, 0x1e, 0xff, 0xe1, 0, 1, 0x67, 1, 0, 1, 0x68];
    let bytes = written(
        TrackFormat::H264 {
            width: 1280,
            height: 720,
            config: config.clone(),
        },
        &[(0, true, b"\0\0\0\x01\x65")],
        40,
    );
    let segment = &read_all(&bytes)[1];
    let entry = child(child(segment, TRACKS), TRACK_ENTRY);
    assert_eq!(child(entry, CODEC_ID).data, b"V_MPEG4/ISO/AVC");
    assert_eq!(uint_of(child(entry, TRACK_TYPE)), 1);
    assert_eq!(child(entry, CODEC_PRIVATE).data, config);
    let video = child(entry, VIDEO);
    assert_eq!(uint_of(child(video, PIXEL_WIDTH)), 1280);
    assert_eq!(uint_of(child(video, PIXEL_HEIGHT)), 720);
}

#[test]
fn a_finished_files_duration_reads_back_from_its_head() {
    let frames: Vec<(u64, bool, &[u8])> = vec![(0, true, b"k"), (40, false, b"d")];
    let h264 = TrackFormat::H264 {
        width: 640,
        height: 360,
        config: vec![1; 200],
    };
    for format in [TrackFormat::Opus, h264] {
        let bytes = written(format.clone(), &frames, 1_234);
        assert_eq!(read_duration_ms(&bytes), Some(1_234), "{format:?}");
        assert_eq!(
            read_duration_ms(&bytes[..400.min(bytes.len())]),
            Some(1_234)
        );
        // Before it is finished the duration says 0: not known.
        let mut open = Webm::start(Cursor::new(Vec::new()), format, 0).unwrap();
        open.frame(0, true, b"k").unwrap();
        assert_eq!(read_duration_ms(open.out.get_ref()), None);
    }
    assert_eq!(read_duration_ms(b"not a webm file"), None);
    assert_eq!(read_duration_ms(&[]), None);
}

#[test]
fn a_long_stretch_without_keyframes_still_opens_clusters_in_range() {
    let frames: Vec<(u64, bool, &[u8])> =
        (0..100).map(|i| (i * 1_000, i == 0, &b"f"[..])).collect();
    let bytes = written(
        TrackFormat::Vp8 {
            width: 2,
            height: 2,
        },
        &frames,
        99_000,
    );
    let segment = &read_all(&bytes)[1];
    for cluster in segment.children.iter().filter(|c| c.id == CLUSTER) {
        for block in cluster.children.iter().filter(|c| c.id == SIMPLE_BLOCK) {
            let relative = i16::from_be_bytes([block.data[1], block.data[2]]);
            assert!((0..30_000).contains(&relative), "{relative}");
        }
    }
}

proptest! {
    #[test]
    fn any_head_is_read_for_a_duration_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = read_duration_ms(&bytes);
    }
}

proptest! {
    #[test]
    fn sizes_read_back_as_written(value in 0u64..(1 << 56) - 1) {
        let mut out = Vec::new();
        size(&mut out, value);
        let (read, length) = read_vint(&out, false);
        prop_assert_eq!(read, value);
        prop_assert_eq!(length, out.len());
        prop_assert!(out != [0xFF], "one byte of ones means unknown");
    }

    #[test]
    fn frames_of_any_size_read_back(sizes in proptest::collection::vec(0usize..70_000, 1..6)) {
        let payloads: Vec<Vec<u8>> = sizes.iter().enumerate().map(|(i, n)| vec![i as u8; *n]).collect();
        let frames: Vec<(u64, bool, &[u8])> = payloads
            .iter()
            .enumerate()
            .map(|(i, p)| (i as u64 * 20, i % 2 == 0, p.as_slice()))
            .collect();
        let bytes = written(TrackFormat::Opus, &frames, 100);
        let segment = &read_all(&bytes)[1];
        let blocks: Vec<&Read> = segment
            .children
            .iter()
            .filter(|c| c.id == CLUSTER)
            .flat_map(|c| c.children.iter().filter(|b| b.id == SIMPLE_BLOCK))
            .collect();
        prop_assert_eq!(blocks.len(), payloads.len());
        for (block, payload) in blocks.iter().zip(&payloads) {
            prop_assert_eq!(&block.data[4..], payload.as_slice());
        }
    }
}
