//! How loud a caller is, for the room's active speaker. The SFU names the speaker from
//! the audio level (RFC 6464) on each packet; callers rarely send one and the bridge
//! does not decode audio, so it reads the level from the Opus encoder's output instead:
//! Opus spends few bytes on silence and comfort noise (or stops sending, with DTX) and
//! many on speech, so the size of a 20 ms frame separates the two well enough to tell
//! who is talking. Not a loudness measurement: two talkers come out alike.

/// Level of silence, -dBov.
pub const SILENT: u8 = 127;
/// Below the SFU's voice threshold (50): sound, but not speech.
const QUIET: u8 = 70;
/// Above the SFU's voice threshold: speech.
const TALKING: u8 = 35;

/// The level (-dBov, 0..=127) an Opus packet's size suggests.
pub fn estimate(payload: &[u8]) -> u8 {
    // Bytes per 20 ms of audio (960 ticks).
    let Some(ticks) = crate::opus::duration_ticks(payload) else {
        return SILENT;
    };
    let per_20ms = payload.len() * 960 / ticks as usize;
    match per_20ms {
        0..=12 => SILENT,
        13..=35 => QUIET,
        _ => TALKING,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_is_silent_and_speech_sized_frames_are_talking() {
        assert_eq!(estimate(&[]), SILENT);
        assert_eq!(
            estimate(&[0xf8, 0xff, 0xfe]),
            SILENT,
            "a CELT silence frame"
        );
        // SILK wideband 20 ms (config 9), 80 bytes: speech.
        let mut speech = vec![0x48];
        speech.resize(80, 0x55);
        assert_eq!(estimate(&speech), TALKING);
        // The same bytes spread over 60 ms (config 11) are only ~27 bytes per 20 ms.
        speech[0] = 0x58;
        assert_eq!(estimate(&speech), QUIET);
        // Two 20 ms frames in one packet (code 1): half per frame.
        let mut two = vec![0x49];
        two.resize(100, 0x55);
        assert_eq!(estimate(&two), TALKING);
        two.truncate(40);
        assert_eq!(estimate(&two), QUIET);
        // Code 3 with a frame count of 0 (no such packet) is silent, never a division by 0.
        assert_eq!(estimate(&[0x4b, 0x00, 1, 2, 3]), SILENT);
    }
}
