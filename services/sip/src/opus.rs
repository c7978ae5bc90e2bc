//! What the bridge reads of an Opus packet without decoding it: how much audio it
//! holds, from its table-of-contents byte (RFC 6716 §3.1).

/// Audio in a packet, in 48 kHz ticks (RTP timestamp units); `None` for an empty
/// packet or a code-3 packet without its frame count.
pub fn duration_ticks(packet: &[u8]) -> Option<u32> {
    let &toc = packet.first()?;
    // The configuration's frame length, in ticks: SILK 10/20/40/60 ms, Hybrid
    // 10/20 ms, CELT 2.5/5/10/20 ms.
    let frame: u32 = match toc >> 3 {
        config @ 0..=11 => [480, 960, 1920, 2880][usize::from(config % 4)],
        config @ 12..=15 => [480, 960][usize::from(config % 2)],
        config => [120, 240, 480, 960][usize::from(config % 4)],
    };
    let frames = match toc & 0x03 {
        0 => 1,
        1 | 2 => 2,
        _ => match packet.get(1)? & 0x3f {
            0 => return None,
            count => u32::from(count),
        },
    };
    Some(frame * frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_configuration_and_frame_count_gives_its_length() {
        // SILK wideband 20 ms, one frame.
        assert_eq!(duration_ticks(&[0x48, 0x55]), Some(960));
        // SILK narrowband 60 ms.
        assert_eq!(duration_ticks(&[0x18]), Some(2880));
        // Hybrid fullband 10 ms, two frames (code 1); 20 ms, two frames.
        assert_eq!(duration_ticks(&[0x71]), Some(960));
        assert_eq!(duration_ticks(&[0x79]), Some(1920));
        // CELT fullband 2.5 ms, code 3 with 8 frames.
        assert_eq!(duration_ticks(&[0xe3, 0x08]), Some(960));
        // CELT fullband 20 ms, code 2.
        assert_eq!(duration_ticks(&[0xfe]), Some(1920));
        assert_eq!(duration_ticks(&[]), None);
        assert_eq!(duration_ticks(&[0xfb]), None, "code 3 without its count");
        assert_eq!(duration_ticks(&[0xfb, 0x40]), None, "code 3 with no frames");
    }
}
