//! A WebM (Matroska) writer for one track: the EBML header, a segment whose size is
//! left open (as a live recorder writes it), the track's header, then clusters of
//! `SimpleBlock`s. [`Webm::finish`] goes back and fills in the duration, so players
//! show the length and can seek by it.
//!
//! Element ids and layouts are the Matroska specification's (RFC 9559); only the
//! elements a WebM player needs are written.

use std::io::{self, Seek, SeekFrom, Write};

const EBML: u32 = 0x1A45_DFA3;
const EBML_VERSION: u32 = 0x4286;
const EBML_READ_VERSION: u32 = 0x42F7;
const EBML_MAX_ID_LENGTH: u32 = 0x42F2;
const EBML_MAX_SIZE_LENGTH: u32 = 0x42F3;
const DOC_TYPE: u32 = 0x4282;
const DOC_TYPE_VERSION: u32 = 0x4287;
const DOC_TYPE_READ_VERSION: u32 = 0x4285;
const SEGMENT: u32 = 0x1853_8067;
const INFO: u32 = 0x1549_A966;
const TIMESTAMP_SCALE: u32 = 0x2A_D7B1;
const DURATION: u32 = 0x4489;
const DATE_UTC: u32 = 0x4461;
const MUXING_APP: u32 = 0x4D80;
const WRITING_APP: u32 = 0x5741;
const TRACKS: u32 = 0x1654_AE6B;
const TRACK_ENTRY: u32 = 0xAE;
const TRACK_NUMBER: u32 = 0xD7;
const TRACK_UID: u32 = 0x73C5;
const TRACK_TYPE: u32 = 0x83;
const CODEC_ID: u32 = 0x86;
const CODEC_PRIVATE: u32 = 0x63A2;
const CODEC_DELAY: u32 = 0x56AA;
const SEEK_PRE_ROLL: u32 = 0x56BB;
const VIDEO: u32 = 0xE0;
const PIXEL_WIDTH: u32 = 0xB0;
const PIXEL_HEIGHT: u32 = 0xBA;
const AUDIO: u32 = 0xE1;
const SAMPLING_FREQUENCY: u32 = 0xB5;
const CHANNELS: u32 = 0x9F;
const CLUSTER: u32 = 0x1F43_B675;
const TIMESTAMP: u32 = 0xE7;
const SIMPLE_BLOCK: u32 = 0xA3;

/// The size field of an element whose end is not known when it starts (8 bytes).
const UNKNOWN_SIZE: [u8; 8] = [0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];
/// Block times are signed 16-bit milliseconds from their cluster's.
const CLUSTER_SPAN_MS: u64 = 30_000;
/// Seconds from the Unix epoch to Matroska's (2001-01-01T00:00:00Z).
const MATROSKA_EPOCH_UNIX_SECS: u64 = 978_307_200;
/// Opus's pre-skip at 48 kHz (what libopus encoders put first), in samples and in ns.
const OPUS_PRE_SKIP: u16 = 312;
const OPUS_PRE_SKIP_NS: u64 = 6_500_000;
/// Opus decoders need 80 ms before a seek point to converge.
const OPUS_SEEK_PRE_ROLL_NS: u64 = 80_000_000;

/// The one track a file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrackFormat {
    /// Opus at 48 kHz, two channels (what WebRTC negotiates; mono decodes as both).
    Opus,
    /// VP8 at the first keyframe's size.
    Vp8 { width: u16, height: u16 },
    /// H.264 at the first keyframe's size, with its decoder configuration
    /// (`AVCDecoderConfigurationRecord`). Matroska's `V_MPEG4/ISO/AVC` in a file whose
    /// document type stays `webm`, as Chromium's own recorder writes H.264.
    H264 {
        width: u16,
        height: u16,
        config: Vec<u8>,
    },
}

/// One track's WebM file being written.
pub struct Webm<W: Write + Seek> {
    out: W,
    /// Where the duration's 8-byte float starts, to fill in at the end.
    duration_at: u64,
    /// The current cluster's time, ms from the start; `None` before the first.
    cluster: Option<u64>,
    /// The last block's time, ms.
    last_ms: u64,
    bytes: u64,
}

impl<W: Write + Seek> Webm<W> {
    /// Writes the headers. `started_unix_ms` is when the first frame was taken.
    pub fn start(mut out: W, format: TrackFormat, started_unix_ms: u64) -> io::Result<Self> {
        let mut head = Vec::with_capacity(256);
        element(&mut head, EBML, &ebml_header());
        id(&mut head, SEGMENT);
        head.extend_from_slice(&UNKNOWN_SIZE);
        let info = info(started_unix_ms);
        let duration_in_info = info.len() - 8;
        id(&mut head, INFO);
        size(&mut head, info.len() as u64);
        let duration_at = (head.len() + duration_in_info) as u64;
        head.extend_from_slice(&info);
        element(&mut head, TRACKS, &track_entry(format));
        out.write_all(&head)?;
        Ok(Self {
            out,
            duration_at,
            cluster: None,
            last_ms: 0,
            bytes: head.len() as u64,
        })
    }

    /// Adds one frame at `at_ms` from the start (times that go back are held at the
    /// last one's). A keyframe, or a frame too far from its cluster, opens a cluster.
    pub fn frame(&mut self, at_ms: u64, keyframe: bool, data: &[u8]) -> io::Result<()> {
        let at_ms = at_ms.max(self.last_ms);
        let opens = match self.cluster {
            None => true,
            Some(start) => (keyframe && at_ms > start) || at_ms - start >= CLUSTER_SPAN_MS,
        };
        let mut buf = Vec::with_capacity(data.len() + 32);
        if opens {
            id(&mut buf, CLUSTER);
            buf.extend_from_slice(&UNKNOWN_SIZE);
            element(&mut buf, TIMESTAMP, &uint(at_ms));
            self.cluster = Some(at_ms);
        }
        let relative = at_ms - self.cluster.unwrap_or(at_ms);
        let relative = i16::try_from(relative).unwrap_or(i16::MAX);
        id(&mut buf, SIMPLE_BLOCK);
        size(&mut buf, data.len() as u64 + 4);
        buf.push(0x81); // track number 1, as a one-byte vint
        buf.extend_from_slice(&relative.to_be_bytes());
        buf.push(if keyframe { 0x80 } else { 0x00 });
        buf.extend_from_slice(data);
        self.out.write_all(&buf)?;
        self.bytes += buf.len() as u64;
        self.last_ms = at_ms;
        Ok(())
    }

    /// Bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The last frame's time, ms from the start.
    pub fn duration_ms(&self) -> u64 {
        self.last_ms
    }

    /// Fills in the duration and hands back the output, flushed.
    pub fn finish(mut self, duration_ms: u64) -> io::Result<W> {
        let end = self.out.stream_position()?;
        self.out.seek(SeekFrom::Start(self.duration_at))?;
        self.out.write_all(&(duration_ms as f64).to_be_bytes())?;
        self.out.seek(SeekFrom::Start(end))?;
        self.out.flush()?;
        Ok(self.out)
    }
}

fn ebml_header() -> Vec<u8> {
    let mut header = Vec::new();
    element(&mut header, EBML_VERSION, &uint(1));
    element(&mut header, EBML_READ_VERSION, &uint(1));
    element(&mut header, EBML_MAX_ID_LENGTH, &uint(4));
    element(&mut header, EBML_MAX_SIZE_LENGTH, &uint(8));
    element(&mut header, DOC_TYPE, b"webm");
    element(&mut header, DOC_TYPE_VERSION, &uint(4));
    element(&mut header, DOC_TYPE_READ_VERSION, &uint(2));
    header
}

/// Segment information; the duration (an 8-byte float) comes last.
fn info(started_unix_ms: u64) -> Vec<u8> {
    let mut info = Vec::new();
    element(&mut info, TIMESTAMP_SCALE, &uint(1_000_000)); // ms
    let since_2001_ns = started_unix_ms
        .saturating_sub(MATROSKA_EPOCH_UNIX_SECS * 1000)
        .saturating_mul(1_000_000);
    element(&mut info, DATE_UTC, &since_2001_ns.to_be_bytes());
    element(&mut info, MUXING_APP, b"confer");
    element(&mut info, WRITING_APP, b"confer");
    element(&mut info, DURATION, &0f64.to_be_bytes());
    info
}

fn track_entry(format: TrackFormat) -> Vec<u8> {
    let mut entry = Vec::new();
    element(&mut entry, TRACK_NUMBER, &uint(1));
    element(&mut entry, TRACK_UID, &uint(1));
    match format {
        TrackFormat::Opus => {
            element(&mut entry, TRACK_TYPE, &uint(2));
            element(&mut entry, CODEC_ID, b"A_OPUS");
            element(&mut entry, CODEC_PRIVATE, &opus_head());
            element(&mut entry, CODEC_DELAY, &uint(OPUS_PRE_SKIP_NS));
            element(&mut entry, SEEK_PRE_ROLL, &uint(OPUS_SEEK_PRE_ROLL_NS));
            let mut audio = Vec::new();
            element(&mut audio, SAMPLING_FREQUENCY, &48_000f64.to_be_bytes());
            element(&mut audio, CHANNELS, &uint(2));
            element(&mut entry, AUDIO, &audio);
        }
        TrackFormat::Vp8 { width, height } => {
            element(&mut entry, TRACK_TYPE, &uint(1));
            element(&mut entry, CODEC_ID, b"V_VP8");
            element(&mut entry, VIDEO, &video(width, height));
        }
        TrackFormat::H264 {
            width,
            height,
            config,
        } => {
            element(&mut entry, TRACK_TYPE, &uint(1));
            element(&mut entry, CODEC_ID, b"V_MPEG4/ISO/AVC");
            element(&mut entry, CODEC_PRIVATE, &config);
            element(&mut entry, VIDEO, &video(width, height));
        }
    }
    let mut tracks = Vec::new();
    element(&mut tracks, TRACK_ENTRY, &entry);
    tracks
}

fn video(width: u16, height: u16) -> Vec<u8> {
    let mut video = Vec::new();
    element(&mut video, PIXEL_WIDTH, &uint(width.into()));
    element(&mut video, PIXEL_HEIGHT, &uint(height.into()));
    video
}

/// The Opus identification header (RFC 7845 §5.1) Matroska keeps as codec data.
fn opus_head() -> Vec<u8> {
    let mut head = b"OpusHead".to_vec();
    head.push(1); // version
    head.push(2); // channels
    head.extend_from_slice(&OPUS_PRE_SKIP.to_le_bytes());
    head.extend_from_slice(&48_000u32.to_le_bytes());
    head.extend_from_slice(&0i16.to_le_bytes()); // output gain
    head.push(0); // channel mapping family: mono or stereo
    head
}

/// The duration a file's segment information gives, in ms, read from its first bytes
/// (`head`); `None` when they hold none (a file still being written says 0).
pub fn read_duration_ms(head: &[u8]) -> Option<u64> {
    let mut rest = head;
    // The EBML header, skipped whole; then the segment, whose children come next.
    let (header, size, body) = read_element(rest)?;
    if header != EBML {
        return None;
    }
    rest = body.get(usize::try_from(size?).ok()?..)?;
    let (segment, _, body) = read_element(rest)?;
    if segment != SEGMENT {
        return None;
    }
    rest = body;
    loop {
        let (child, size, body) = read_element(rest)?;
        let size = usize::try_from(size?).ok()?;
        if child == INFO {
            let mut info = body.get(..size)?;
            while !info.is_empty() {
                let (field, len, after) = read_element(info)?;
                let len = usize::try_from(len?).ok()?;
                let data = after.get(..len)?;
                if field == DURATION {
                    let ms = match data.len() {
                        8 => f64::from_be_bytes(data.try_into().ok()?),
                        4 => f64::from(f32::from_be_bytes(data.try_into().ok()?)),
                        _ => return None,
                    };
                    return (ms.is_finite() && ms > 0.0).then_some(ms as u64);
                }
                info = &after[len..];
            }
            return None;
        }
        rest = body.get(size..)?;
    }
}

/// One element at the start of `bytes`: its id (length marker kept), its size
/// (`None`: unknown) and what follows the size.
fn read_element(bytes: &[u8]) -> Option<(u32, Option<u64>, &[u8])> {
    let first = *bytes.first()?;
    let id_len = first.leading_zeros() as usize + 1;
    if id_len > 4 {
        return None;
    }
    let id = bytes
        .get(..id_len)?
        .iter()
        .fold(0u32, |id, b| (id << 8) | u32::from(*b));
    let rest = &bytes[id_len..];
    let marker = *rest.first()?;
    let size_len = marker.leading_zeros() as usize + 1;
    if size_len > 8 {
        return None;
    }
    let raw = rest.get(..size_len)?;
    let value =
        raw.iter().fold(0u64, |v, b| (v << 8) | u64::from(*b)) & ((1u64 << (7 * size_len)) - 1);
    let unknown = value == (1u64 << (7 * size_len)) - 1;
    Some((id, (!unknown).then_some(value), &rest[size_len..]))
}

fn element(out: &mut Vec<u8>, element_id: u32, data: &[u8]) {
    id(out, element_id);
    size(out, data.len() as u64);
    out.extend_from_slice(data);
}

/// An element id is written as the bytes it is (its length marker included).
fn id(out: &mut Vec<u8>, element_id: u32) {
    let bytes = element_id.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    out.extend_from_slice(&bytes[skip..]);
}

/// A size as the shortest EBML variable-length integer (all ones is reserved).
fn size(out: &mut Vec<u8>, value: u64) {
    let mut length = 1;
    while length < 8 && value >= (1u64 << (7 * length)) - 1 {
        length += 1;
    }
    let marked = value | (1u64 << (7 * length));
    out.extend_from_slice(&marked.to_be_bytes()[8 - length..]);
}

/// An unsigned integer in as few bytes as it needs (at least one).
fn uint(value: u64) -> Vec<u8> {
    let bytes = value.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count().min(7);
    bytes[skip..].to_vec()
}

mod recover;

pub use recover::{Recovered, recover};

#[cfg(test)]
mod tests;
