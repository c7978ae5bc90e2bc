use super::*;
use proptest::prelude::*;

/// Writes bits and Exp-Golomb codes, to build SPS units for the reader.
#[derive(Default)]
struct Writer {
    bits: Vec<u8>,
}

impl Writer {
    fn u(&mut self, n: u32, value: u32) {
        for i in (0..n).rev() {
            self.bits.push(((value >> i) & 1) as u8);
        }
    }

    fn ue(&mut self, value: u32) {
        let code = u64::from(value) + 1;
        let len = 64 - code.leading_zeros();
        self.u(len - 1, 0);
        for i in (0..len).rev() {
            self.bits.push(((code >> i) & 1) as u8);
        }
    }

    /// The NAL unit: header, bytes, stop bit, with emulation prevention.
    fn nal(mut self) -> Vec<u8> {
        self.bits.push(1);
        while !self.bits.len().is_multiple_of(8) {
            self.bits.push(0);
        }
        let bytes: Vec<u8> = self
            .bits
            .chunks(8)
            .map(|chunk| chunk.iter().fold(0, |acc, bit| (acc << 1) | bit))
            .collect();
        let mut out = vec![0x67];
        let mut zeros = 0;
        for byte in bytes {
            if zeros >= 2 && byte <= 3 {
                out.push(3);
                zeros = 0;
            }
            zeros = if byte == 0 { zeros + 1 } else { 0 };
            out.push(byte);
        }
        out
    }
}

/// A baseline (or, with `high`, high-profile 4:2:0) SPS for a `width` × `height`
/// progressive picture, cropped from whole macroblocks as encoders do.
fn sps(width: u32, height: u32, high: bool) -> Vec<u8> {
    let mut w = Writer::default();
    w.u(8, if high { 100 } else { 66 });
    w.u(8, 0xc0);
    w.u(8, 31);
    w.ue(0);
    if high {
        w.ue(1); // chroma_format_idc 4:2:0
        w.ue(0);
        w.ue(0);
        w.u(1, 0);
        w.u(1, 0); // no scaling matrix
    }
    w.ue(0); // log2_max_frame_num_minus4
    w.ue(2); // pic_order_cnt_type
    w.ue(1); // max_num_ref_frames
    w.u(1, 0);
    let mbs_w = width.div_ceil(16);
    let mbs_h = height.div_ceil(16);
    w.ue(mbs_w - 1);
    w.ue(mbs_h - 1);
    w.u(1, 1); // frame_mbs_only
    w.u(1, 1); // direct_8x8_inference
    let (crop_right, crop_bottom) = ((mbs_w * 16 - width) / 2, (mbs_h * 16 - height) / 2);
    if crop_right > 0 || crop_bottom > 0 {
        w.u(1, 1);
        w.ue(0);
        w.ue(crop_right);
        w.ue(0);
        w.ue(crop_bottom);
    } else {
        w.u(1, 0);
    }
    w.u(1, 0); // vui_parameters_present_flag
    w.nal()
}

#[test]
fn reads_the_sizes_browsers_send() {
    for (width, height) in [(1280, 720), (640, 360), (320, 180), (1920, 1080)] {
        assert_eq!(
            sps_size(&sps(width, height, false)),
            Some((width as u16, height as u16))
        );
        assert_eq!(
            sps_size(&sps(width, height, true)),
            Some((width as u16, height as u16))
        );
    }
}

#[test]
fn removes_emulation_prevention_bytes() {
    assert_eq!(unescape(&[0, 0, 3, 1, 0, 0, 3, 0]), vec![0, 0, 1, 0, 0, 0]);
}

proptest! {
    #[test]
    fn any_even_size_round_trips(w in 1u32..240, h in 1u32..135, high in any::<bool>()) {
        let (width, height) = (w * 8, h * 8);
        prop_assert_eq!(sps_size(&sps(width, height, high)), Some((width as u16, height as u16)));
    }

    #[test]
    fn any_bytes_are_read_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = sps_size(&bytes);
    }

    #[test]
    fn truncated_units_never_panic(cut in 0usize..16) {
        let unit = sps(1280, 720, true);
        let _ = sps_size(&unit[..cut.min(unit.len())]);
    }
}

#[test]
fn an_h264_keyframe_names_its_size_from_the_sps_beside_it() {
    use crate::core::frame::{PayloadFormat, keyframe_start};
    let unit = sps(1280, 720, false);
    let mut stap_a = vec![0x78];
    stap_a.extend_from_slice(
        &u16::try_from(unit.len())
            .expect("a short unit")
            .to_be_bytes(),
    );
    stap_a.extend_from_slice(&unit);
    stap_a.extend_from_slice(&[0x00, 0x02, 0x65, 0x88]);
    let start = keyframe_start(PayloadFormat::H264, &stap_a);
    assert_eq!(start.and_then(|s| s.size), Some((1280, 720)));
    // An IDR slice alone still starts a keyframe, of unknown size.
    let idr = keyframe_start(PayloadFormat::H264, &[0x65, 0x88]);
    assert_eq!(idr.map(|s| s.size), Some(None));
}
