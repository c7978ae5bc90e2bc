//! Keeps VP8 picture ids and TL0PICIDX continuous while a slot's source changes.
//!
//! A VP8 receiver tracks frames by the PictureID in the payload descriptor (RFC 7741
//! §4.2), not by RTP sequence number, and each simulcast layer numbers its pictures
//! from its own random start. Forwarded as they come, a layer switch makes the ids jump
//! anywhere, forward or back; Chromium then takes the new layer's frames for old ones
//! (or for pictures far in the future) and drops them until the next keyframe happens to
//! land right. So, like sequence numbers, both indexes are offset at every switch to
//! continue from the last one sent. The 8-bit TL0PICIDX is offset the same way, so
//! temporal-layer references stay valid.
//!
//! Payloads come from the network: a descriptor this cannot read is forwarded as is.

use bytes::Bytes;

/// Where the rewritable fields sit in one payload: found once per packet, used for
/// every subscriber's copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fields {
    /// Offset of the PictureID and whether it is the 15-bit form.
    picture_id: Option<(usize, bool)>,
    tl0_pic_idx: Option<usize>,
}

/// `None` when the descriptor cannot be read (the payload is forwarded as is).
pub(crate) fn locate(payload: &[u8]) -> Option<Fields> {
    let first = *payload.first()?;
    if first & 0x80 == 0 {
        return Some(Fields {
            picture_id: None,
            tl0_pic_idx: None,
        });
    }
    let flags = *payload.get(1)?;
    let mut offset = 2;
    let mut fields = Fields {
        picture_id: None,
        tl0_pic_idx: None,
    };
    if flags & 0x80 != 0 {
        let long = *payload.get(offset)? & 0x80 != 0;
        payload.get(offset + usize::from(long))?;
        fields.picture_id = Some((offset, long));
        offset += if long { 2 } else { 1 };
    }
    if flags & 0x40 != 0 {
        payload.get(offset)?;
        fields.tl0_pic_idx = Some(offset);
    }
    Some(fields)
}

fn read_picture_id(payload: &[u8], at: usize, long: bool) -> u16 {
    if long {
        (u16::from(payload[at] & 0x7f) << 8) | u16::from(payload[at + 1])
    } else {
        u16::from(payload[at] & 0x7f)
    }
}

fn write_picture_id(payload: &mut [u8], at: usize, long: bool, id: u16) {
    if long {
        payload[at] = 0x80 | ((id >> 8) as u8 & 0x7f);
        payload[at + 1] = id as u8;
    } else {
        payload[at] = id as u8 & 0x7f;
    }
}

/// 15-bit PictureID space; 7-bit ids live in its low bits.
const PICTURE_ID_MODULUS: u16 = 1 << 15;

fn picture_id_newer(a: u16, b: u16) -> bool {
    let ahead = a.wrapping_sub(b) % PICTURE_ID_MODULUS;
    ahead != 0 && ahead < PICTURE_ID_MODULUS / 2
}

/// PictureID and TL0PICIDX offsets for one slot.
#[derive(Debug, Default, Clone)]
pub(crate) struct PictureIds {
    source_ssrc: Option<u32>,
    picture_id_offset: u16,
    tl0_offset: u8,
    last_picture_id: Option<u16>,
    last_tl0: Option<u8>,
}

impl PictureIds {
    /// The payload to send for a VP8 packet from `ssrc` whose descriptor is `fields`
    /// ([`locate`]): `payload` itself while the offsets are zero, a rewritten copy
    /// otherwise.
    pub(crate) fn rewrite(&mut self, ssrc: u32, payload: &Bytes, fields: Option<Fields>) -> Bytes {
        let Some(fields) = fields else {
            return payload.clone();
        };
        let picture_id = fields
            .picture_id
            .map(|(at, long)| read_picture_id(payload, at, long));
        let tl0 = fields.tl0_pic_idx.map(|at| payload[at]);
        if self.source_ssrc != Some(ssrc) {
            self.source_ssrc = Some(ssrc);
            self.picture_id_offset = match (self.last_picture_id, picture_id) {
                (Some(last), Some(id)) => {
                    last.wrapping_add(1).wrapping_sub(id) % PICTURE_ID_MODULUS
                }
                _ => 0,
            };
            self.tl0_offset = match (self.last_tl0, tl0) {
                (Some(last), Some(idx)) => last.wrapping_add(1).wrapping_sub(idx),
                _ => 0,
            };
        }
        let out_picture_id =
            picture_id.map(|id| id.wrapping_add(self.picture_id_offset) % PICTURE_ID_MODULUS);
        let out_tl0 = tl0.map(|idx| idx.wrapping_add(self.tl0_offset));
        if let Some(id) = out_picture_id
            && self
                .last_picture_id
                .is_none_or(|last| picture_id_newer(id, last))
        {
            self.last_picture_id = Some(id);
        }
        if let Some(idx) = out_tl0
            && self
                .last_tl0
                .is_none_or(|last| idx != last && idx.wrapping_sub(last) < 0x80)
        {
            self.last_tl0 = Some(idx);
        }
        if out_picture_id == picture_id && out_tl0 == tl0 {
            return payload.clone();
        }
        let mut copy = payload.to_vec();
        if let (Some((at, long)), Some(id)) = (fields.picture_id, out_picture_id) {
            write_picture_id(&mut copy, at, long, id);
        }
        if let (Some(at), Some(idx)) = (fields.tl0_pic_idx, out_tl0) {
            copy[at] = idx;
        }
        Bytes::from(copy)
    }

    /// The slot stopped forwarding (a paused tile): the next packet, from whichever
    /// layer, continues from the last ids sent.
    pub(crate) fn restart(&mut self) {
        self.source_ssrc = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A VP8 payload descriptor with a 15-bit PictureID and a TL0PICIDX, then `rest`.
    fn packet(picture_id: u16, tl0: u8, rest: &[u8]) -> Bytes {
        let mut bytes = vec![
            0x90,
            0xc0,
            0x80 | (picture_id >> 8) as u8,
            picture_id as u8,
            tl0,
        ];
        bytes.extend_from_slice(rest);
        Bytes::from(bytes)
    }

    fn rw(rewriter: &mut PictureIds, ssrc: u32, payload: &Bytes) -> Bytes {
        rewriter.rewrite(ssrc, payload, locate(payload))
    }

    fn ids(payload: &[u8]) -> (u16, u8) {
        (read_picture_id(payload, 2, true), payload[4])
    }

    #[test]
    fn the_first_source_passes_through_untouched() {
        let mut rewriter = PictureIds::default();
        let payload = packet(1234, 7, b"frame");
        let out = rw(&mut rewriter, 1, &payload);
        assert_eq!(out, payload);
        assert_eq!(
            out.as_ptr(),
            payload.as_ptr(),
            "no copy while offsets are zero"
        );
    }

    #[test]
    fn a_switch_continues_both_indexes_and_keeps_the_rest() {
        let mut rewriter = PictureIds::default();
        rw(&mut rewriter, 1, &packet(1000, 50, b"a"));
        rw(&mut rewriter, 1, &packet(1001, 51, b"b"));
        let out = rw(&mut rewriter, 2, &packet(30_000, 200, b"key"));
        assert_eq!(ids(&out), (1002, 52));
        assert_eq!(&out[5..], b"key");
        let out = rw(&mut rewriter, 2, &packet(30_001, 201, b"c"));
        assert_eq!(ids(&out), (1003, 53));
    }

    #[test]
    fn ids_wrap_at_fifteen_and_eight_bits() {
        let mut rewriter = PictureIds::default();
        rw(&mut rewriter, 1, &packet(32_767, 255, b""));
        let out = rw(&mut rewriter, 2, &packet(5, 9, b""));
        assert_eq!(ids(&out), (0, 0));
    }

    #[test]
    fn a_restart_continues_the_same_layer_without_a_jump() {
        let mut rewriter = PictureIds::default();
        rw(&mut rewriter, 1, &packet(10, 1, b""));
        rewriter.restart();
        let out = rw(&mut rewriter, 1, &packet(90, 20, b""));
        assert_eq!(ids(&out), (11, 2));
    }

    #[test]
    fn a_short_picture_id_keeps_its_width() {
        let mut rewriter = PictureIds::default();
        rw(&mut rewriter, 1, &packet(500, 0, b""));
        let short = Bytes::from_static(&[0x90, 0x80, 0x05, 0xaa]);
        let out = rw(&mut rewriter, 2, &short);
        assert_eq!(out.len(), short.len());
        assert_eq!(out[2] & 0x80, 0, "still the 7-bit form");
        assert_eq!(out[2], (501 % 128) as u8);
        assert_eq!(out[3], 0xaa);
    }

    #[test]
    fn descriptors_without_ids_and_truncated_ones_pass_unchanged() {
        let mut rewriter = PictureIds::default();
        rw(&mut rewriter, 1, &packet(10, 1, b""));
        for payload in [&[0x10u8, 0x9d][..], &[0x90], &[0x90, 0x80, 0x81], &[]] {
            let payload = Bytes::copy_from_slice(payload);
            assert_eq!(rw(&mut rewriter, 2, &payload), payload);
        }
    }

    proptest! {
        #[test]
        fn output_ids_are_contiguous_across_any_switches(
            runs in proptest::collection::vec((any::<u16>(), any::<u8>(), 1u16..40), 1..8)
        ) {
            let mut rewriter = PictureIds::default();
            let mut expected: Option<(u16, u8)> = None;
            for (run, (start, tl0, len)) in runs.into_iter().enumerate() {
                for i in 0..len {
                    let id = start.wrapping_add(i) % PICTURE_ID_MODULUS;
                    let out = rw(&mut rewriter, run as u32, &packet(id, tl0.wrapping_add(i as u8), b"x"));
                    let got = ids(&out);
                    if let Some(want) = expected {
                        prop_assert_eq!(got, want);
                    }
                    expected = Some(((got.0 + 1) % PICTURE_ID_MODULUS, got.1.wrapping_add(1)));
                }
            }
        }

        #[test]
        fn any_bytes_are_safe(payload in proptest::collection::vec(any::<u8>(), 0..16), ssrc in 0u32..3) {
            let mut rewriter = PictureIds::default();
            let payload = Bytes::from(payload);
            let out = rw(&mut rewriter, ssrc, &payload);
            prop_assert_eq!(out.len(), payload.len());
        }
    }
}
