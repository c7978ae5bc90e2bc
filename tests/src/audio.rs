//! Test audio: a WAV file Chromium can use as its fake microphone.

use std::path::Path;

/// Writes `seconds` of a steady voice-loud tone (220 Hz, about -10 dBov), 48 kHz mono
/// 16-bit PCM. Chromium's built-in fake microphone only beeps briefly twice a second,
/// which is not speech; this is.
pub fn write_tone_wav(path: &Path, seconds: u32) -> std::io::Result<()> {
    const RATE: u32 = 48_000;
    let samples = RATE * seconds;
    let mut wav = Vec::with_capacity(44 + samples as usize * 2);
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + samples * 2).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&1u16.to_le_bytes()); // mono
    wav.extend_from_slice(&RATE.to_le_bytes());
    wav.extend_from_slice(&(RATE * 2).to_le_bytes());
    wav.extend_from_slice(&2u16.to_le_bytes());
    wav.extend_from_slice(&16u16.to_le_bytes());
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&(samples * 2).to_le_bytes());
    for n in 0..samples {
        let phase = f64::from(n) * 220.0 * std::f64::consts::TAU / f64::from(RATE);
        let sample = (phase.sin() * 0.3 * f64::from(i16::MAX)) as i16;
        wav.extend_from_slice(&sample.to_le_bytes());
    }
    std::fs::write(path, wav)
}
