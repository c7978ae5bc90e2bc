//! RTP packets of one recorded track back into whole frames, each at its time from
//! the recording's start.
//!
//! Opus: one packet is one frame (RFC 7587). VP8: a frame is the packets of one RTP
//! timestamp, from the one that starts partition 0 to the one with the marker bit,
//! with their payload descriptors taken off (RFC 7741). H.264: an access unit is the
//! packets of one RTP timestamp up to the one with the marker bit, its NAL units
//! length-prefixed ([`super::h264`]); a unit's first packet is known by following the
//! last unit's marker, or, after a loss, by opening with a parameter set or delimiter.
//! A frame missing a packet is dropped, and so is every frame after it until a
//! keyframe: a decoder given a frame whose reference it never saw shows garbage. The
//! recorder then asks for a keyframe.
//!
//! Payloads come from the network: nothing here panics on any bytes.

use std::time::{Duration, Instant};

use super::h264;

/// What a recorded track carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordCodec {
    Opus,
    Vp8,
    H264,
}

impl RecordCodec {
    /// The codec a negotiated MIME type is recorded as; `None`: not recorded.
    pub fn of_mime(mime: &str) -> Option<Self> {
        match mime {
            "audio/opus" => Some(RecordCodec::Opus),
            "video/vp8" => Some(RecordCodec::Vp8),
            "video/h264" => Some(RecordCodec::H264),
            _ => None,
        }
    }

    fn clock_khz(self) -> i64 {
        match self {
            RecordCodec::Opus => 48,
            RecordCodec::Vp8 | RecordCodec::H264 => 90,
        }
    }
}

/// One RTP packet as the recorder gets it.
#[derive(Debug, Clone)]
pub struct RtpIn {
    pub ssrc: u32,
    pub seq: u16,
    pub timestamp: u32,
    pub marker: bool,
    pub payload: bytes::Bytes,
    /// When the SFU received it.
    pub at: Instant,
}

/// A whole frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Milliseconds from the recording's start.
    pub at_ms: u64,
    pub keyframe: bool,
    /// A keyframe's picture size (VP8's frame header, H.264's SPS).
    pub size: Option<(u16, u16)>,
    /// The codec data a file of this track starts with, from a keyframe (H.264's
    /// decoder configuration).
    pub config: Option<Vec<u8>>,
    pub data: Vec<u8>,
}

/// Where a stream's RTP time stands against the recording's.
#[derive(Debug, Clone, Copy)]
struct Clock {
    ssrc: u32,
    timestamp: u32,
    at_ms: i64,
}

/// A VP8 frame being put together.
struct Partial {
    timestamp: u32,
    next_seq: u16,
    keyframe: bool,
    size: Option<(u16, u16)>,
    data: Vec<u8>,
}

/// An H.264 access unit being put together.
struct UnitPartial {
    timestamp: u32,
    next_seq: u16,
    unit: h264::Unit,
}

/// One track's packets to frames.
pub struct Frames {
    codec: RecordCodec,
    started: Option<Instant>,
    clock: Option<Clock>,
    last_seq: Option<(u32, u16)>,
    partial: Option<Partial>,
    unit: Option<UnitPartial>,
    /// The packet that ended the last H.264 access unit taken.
    unit_ended: Option<(u32, u16)>,
    /// The latest H.264 parameter sets seen: SPS, PPS.
    parameter_sets: (Option<Vec<u8>>, Option<Vec<u8>>),
    /// A frame was lost: nothing is taken until a keyframe.
    needs_keyframe: bool,
}

impl Frames {
    pub fn new(codec: RecordCodec) -> Self {
        Self {
            codec,
            started: None,
            clock: None,
            last_seq: None,
            partial: None,
            unit: None,
            unit_ended: None,
            parameter_sets: (None, None),
            needs_keyframe: codec != RecordCodec::Opus,
        }
    }

    /// Waiting for a keyframe (from the start, or since a frame was lost).
    pub fn needs_keyframe(&self) -> bool {
        self.needs_keyframe
    }

    /// Takes one packet; a frame it completes comes back.
    pub fn push(&mut self, packet: &RtpIn) -> Option<Frame> {
        if packet.payload.is_empty() || self.is_old(packet) {
            return None;
        }
        self.last_seq = Some((packet.ssrc, packet.seq));
        match self.codec {
            RecordCodec::Opus => {
                let at_ms = self.time_of(packet);
                Some(Frame {
                    at_ms,
                    keyframe: true,
                    size: None,
                    config: None,
                    data: packet.payload.to_vec(),
                })
            }
            RecordCodec::Vp8 => self.push_vp8(packet),
            RecordCodec::H264 => self.push_h264(packet),
        }
    }

    /// A packet at or before the last one taken (a duplicate, a late resend).
    fn is_old(&self, packet: &RtpIn) -> bool {
        matches!(self.last_seq, Some((ssrc, seq))
            if ssrc == packet.ssrc && packet.seq.wrapping_sub(seq) as i16 <= 0)
    }

    fn push_vp8(&mut self, packet: &RtpIn) -> Option<Frame> {
        let Some(descriptor) = vp8_descriptor(&packet.payload) else {
            self.lose();
            return None;
        };
        let body = &packet.payload[descriptor.len..];
        if descriptor.starts_frame {
            if self.partial.is_some() {
                self.lose(); // the last frame never got its marker
            }
            let keyframe = body.first().is_some_and(|tag| tag & 0x01 == 0);
            let size = match body.get(3..10) {
                Some([0x9d, 0x01, 0x2a, w0, w1, h0, h1]) if keyframe => Some((
                    u16::from_le_bytes([*w0, *w1]) & 0x3fff,
                    u16::from_le_bytes([*h0, *h1]) & 0x3fff,
                )),
                _ => None,
            };
            self.partial = Some(Partial {
                timestamp: packet.timestamp,
                next_seq: packet.seq.wrapping_add(1),
                keyframe,
                size,
                data: body.to_vec(),
            });
        } else {
            match self.partial.as_mut() {
                Some(partial)
                    if partial.timestamp == packet.timestamp && partial.next_seq == packet.seq =>
                {
                    partial.next_seq = packet.seq.wrapping_add(1);
                    partial.data.extend_from_slice(body);
                }
                _ => {
                    self.lose();
                    return None;
                }
            }
        }
        if !packet.marker {
            return None;
        }
        let partial = self.partial.take()?;
        if partial.keyframe {
            self.needs_keyframe = false;
        }
        if self.needs_keyframe {
            return None;
        }
        let at_ms = self.time_of(packet);
        Some(Frame {
            at_ms,
            keyframe: partial.keyframe,
            size: partial.size,
            config: None,
            data: partial.data,
        })
    }

    fn push_h264(&mut self, packet: &RtpIn) -> Option<Frame> {
        let continues = self
            .unit
            .as_ref()
            .is_some_and(|u| u.timestamp == packet.timestamp && u.next_seq == packet.seq);
        if continues {
            if let Some(partial) = self.unit.as_mut() {
                partial.next_seq = packet.seq.wrapping_add(1);
            }
        } else {
            if self.unit.is_some() {
                self.lose(); // the last unit never got its marker
            }
            let follows_last = self.unit_ended.is_some_and(|(ssrc, seq)| {
                ssrc == packet.ssrc && seq.wrapping_add(1) == packet.seq
            });
            if !follows_last && !h264::opens_unit(&packet.payload) {
                // Its unit's first packets may be gone: nothing to build on.
                self.lose();
                return None;
            }
            self.unit = Some(UnitPartial {
                timestamp: packet.timestamp,
                next_seq: packet.seq.wrapping_add(1),
                unit: h264::Unit::default(),
            });
        }
        let partial = self.unit.as_mut()?;
        if partial.unit.add(&packet.payload).is_err() {
            self.lose();
            return None;
        }
        if !packet.marker {
            return None;
        }
        let partial = self.unit.take()?;
        self.unit_ended = Some((packet.ssrc, packet.seq));
        if partial.unit.finish().is_err() {
            self.lose();
            return None;
        }
        let h264::Unit {
            data,
            idr,
            sps,
            pps,
            ..
        } = partial.unit;
        if sps.is_some() {
            self.parameter_sets.0 = sps;
        }
        if pps.is_some() {
            self.parameter_sets.1 = pps;
        }
        let config = match &self.parameter_sets {
            (Some(sps), Some(pps)) if idr => h264::decoder_config(sps, pps),
            _ => None,
        };
        // A keyframe is an IDR picture whose parameter sets are known.
        let keyframe = config.is_some();
        if keyframe {
            self.needs_keyframe = false;
        }
        if self.needs_keyframe {
            return None;
        }
        let size = keyframe
            .then_some(self.parameter_sets.0.as_deref())
            .flatten()
            .and_then(crate::core::h264_sps_size);
        let at_ms = self.time_of(packet);
        Some(Frame {
            at_ms,
            keyframe,
            size,
            config,
            data,
        })
    }

    fn lose(&mut self) {
        self.partial = None;
        self.unit = None;
        self.needs_keyframe = true;
    }

    /// The packet's time from the recording's start: its RTP time's distance from the
    /// last frame's, so a recording of any length never meets a wrap. A new stream
    /// (another simulcast layer, a restarted sender) starts at its arrival time.
    fn time_of(&mut self, packet: &RtpIn) -> u64 {
        let started = *self.started.get_or_insert(packet.at);
        let arrived_ms = packet.at.saturating_duration_since(started).as_millis() as i64;
        let at_ms = match self.clock {
            Some(clock) if clock.ssrc == packet.ssrc => {
                let ticks = i64::from(packet.timestamp.wrapping_sub(clock.timestamp) as i32);
                let at = clock.at_ms + ticks / self.codec.clock_khz();
                // A jump far from the arrival (a sender that restarted its clock) is
                // taken as arriving now.
                if (at - arrived_ms).abs() > RESYNC_AFTER.as_millis() as i64 {
                    arrived_ms
                } else {
                    at
                }
            }
            _ => arrived_ms.max(self.clock.map_or(0, |c| c.at_ms)),
        }
        .max(0);
        self.clock = Some(Clock {
            ssrc: packet.ssrc,
            timestamp: packet.timestamp,
            at_ms,
        });
        at_ms as u64
    }
}

/// RTP time that strays this far from arrival time is not believed.
const RESYNC_AFTER: Duration = Duration::from_secs(5);

struct Vp8Descriptor {
    len: usize,
    starts_frame: bool,
}

/// The VP8 payload descriptor's length and whether its packet starts a frame.
fn vp8_descriptor(payload: &[u8]) -> Option<Vp8Descriptor> {
    let first = *payload.first()?;
    let starts_frame = first & 0x10 != 0 && first & 0x07 == 0;
    let mut len = 1;
    if first & 0x80 != 0 {
        let flags = *payload.get(1)?;
        len = 2;
        if flags & 0x80 != 0 {
            len += if *payload.get(2)? & 0x80 != 0 { 2 } else { 1 };
        }
        if flags & 0x40 != 0 {
            len += 1;
        }
        if flags & 0x30 != 0 {
            len += 1;
        }
    }
    (payload.len() > len).then_some(Vp8Descriptor { len, starts_frame })
}

#[cfg(test)]
mod tests;
