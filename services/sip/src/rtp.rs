//! Plain RTP on the caller's side: reading the header of what the caller sends, and
//! writing the one continuous stream the caller hears (one SSRC, sequence numbers and
//! timestamps that run on across a change of speaker).

use std::time::Instant;

/// Opus runs at 48 kHz.
const CLOCK_RATE: u64 = 48_000;
/// One 20 ms Opus frame, in timestamp units.
const FRAME_TICKS: u32 = 960;

/// Why a datagram is not an RTP packet we take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    #[error("shorter than an RTP header")]
    TooShort,
    #[error("not RTP version 2")]
    BadVersion,
    #[error("an RTCP packet")]
    Rtcp,
    #[error("the header's CSRC list, extension or padding overruns the packet")]
    BadLength,
}

/// The fields of an RTP packet the bridge uses, and where its payload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpView {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    /// Payload bounds in the datagram (after CSRCs and extension, before padding).
    pub payload: (usize, usize),
}

impl RtpView {
    pub fn parse(datagram: &[u8]) -> Result<Self, RtpError> {
        if datagram.len() < 12 {
            return Err(RtpError::TooShort);
        }
        if datagram[0] >> 6 != 2 {
            return Err(RtpError::BadVersion);
        }
        if (192..=223).contains(&datagram[1]) {
            return Err(RtpError::Rtcp);
        }
        let csrcs = usize::from(datagram[0] & 0x0f);
        let mut start = 12 + 4 * csrcs;
        if datagram[0] & 0x10 != 0 {
            let words = datagram
                .get(start + 2..start + 4)
                .ok_or(RtpError::BadLength)?;
            start += 4 + 4 * usize::from(u16::from_be_bytes([words[0], words[1]]));
        }
        let mut end = datagram.len();
        if datagram[0] & 0x20 != 0 {
            let padding = usize::from(*datagram.last().ok_or(RtpError::BadLength)?);
            end = end.checked_sub(padding).ok_or(RtpError::BadLength)?;
        }
        if start > end {
            return Err(RtpError::BadLength);
        }
        Ok(Self {
            marker: datagram[1] & 0x80 != 0,
            payload_type: datagram[1] & 0x7f,
            sequence: u16::from_be_bytes([datagram[2], datagram[3]]),
            timestamp: u32::from_be_bytes([datagram[4], datagram[5], datagram[6], datagram[7]]),
            ssrc: u32::from_be_bytes([datagram[8], datagram[9], datagram[10], datagram[11]]),
            payload: (start, end),
        })
    }
}

/// Writes a 12-byte RTP header and `payload` into `out` (cleared first).
pub fn write_packet(out: &mut Vec<u8>, header: &OutHeader, payload: &[u8]) {
    out.clear();
    out.push(0x80);
    out.push(u8::from(header.marker) << 7 | (header.payload_type & 0x7f));
    out.extend_from_slice(&header.sequence.to_be_bytes());
    out.extend_from_slice(&header.timestamp.to_be_bytes());
    out.extend_from_slice(&header.ssrc.to_be_bytes());
    out.extend_from_slice(payload);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutHeader {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
}

/// Makes the room's audio streams, one at a time, into the single stream the caller
/// hears. Within one source, sequence and timestamp gaps are kept (the caller's jitter
/// buffer sees loss as loss); at a switch the new source continues where the last
/// packet out left off, advanced by the wall time between them, with the marker set.
#[derive(Debug)]
pub struct Splicer {
    ssrc: u32,
    payload_type: u8,
    source: Option<Source>,
    last_out: Option<(u16, u32, Instant)>,
}

#[derive(Debug, Clone, Copy)]
struct Source {
    key: u64,
    seq_offset: u16,
    ts_offset: u32,
    first_seq: u16,
}

impl Splicer {
    pub fn new(ssrc: u32, payload_type: u8) -> Self {
        Self {
            ssrc,
            payload_type,
            source: None,
            last_out: None,
        }
    }

    /// The header for a packet of source `key` (any id of the stream: an SSRC, or a
    /// prompt's key above every SSRC), or `None` for a packet from before the current
    /// source's first one.
    pub fn header(
        &mut self,
        key: u64,
        sequence: u16,
        timestamp: u32,
        now: Instant,
    ) -> Option<OutHeader> {
        let mut marker = false;
        let source = match self.source {
            Some(source) if source.key == key => {
                if is_before(sequence, source.first_seq) {
                    return None;
                }
                source
            }
            _ => {
                marker = true;
                let (next_seq, next_ts) = match self.last_out {
                    Some((seq, ts, at)) => {
                        let elapsed = now.saturating_duration_since(at);
                        let ticks = (elapsed.as_micros() as u64 * CLOCK_RATE / 1_000_000) as u32;
                        (seq.wrapping_add(1), ts.wrapping_add(ticks.max(FRAME_TICKS)))
                    }
                    // RFC 3550: unpredictable starting points.
                    None => (rand::random(), rand::random()),
                };
                let source = Source {
                    key,
                    seq_offset: next_seq.wrapping_sub(sequence),
                    ts_offset: next_ts.wrapping_sub(timestamp),
                    first_seq: sequence,
                };
                self.source = Some(source);
                source
            }
        };
        let header = OutHeader {
            marker,
            payload_type: self.payload_type,
            sequence: sequence.wrapping_add(source.seq_offset),
            timestamp: timestamp.wrapping_add(source.ts_offset),
            ssrc: self.ssrc,
        };
        let newer = self
            .last_out
            .is_none_or(|(seq, _, _)| !is_before(header.sequence, seq));
        if newer {
            self.last_out = Some((header.sequence, header.timestamp, now));
        }
        Some(header)
    }

    /// Packets stop going out for a while (held back on purpose): the next one starts
    /// again as at a switch, right after the last one out, so the pause is no gap.
    pub fn pause(&mut self) {
        self.source = None;
    }

    /// The source whose packets go out now, if any has been spliced in.
    pub fn current(&self) -> Option<u64> {
        self.source.map(|s| s.key)
    }
}

/// `a` comes before `b` in RTP sequence order (with wrap-around).
fn is_before(a: u16, b: u16) -> bool {
    a != b && b.wrapping_sub(a) < 0x8000
}
