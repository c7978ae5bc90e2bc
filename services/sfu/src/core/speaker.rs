//! Active speaker detection from the audio-level RTP header extension (RFC 6464): each
//! audio packet says how loud it is (0 = 0 dBov, loudest; 127 = silence). The SFU reads
//! it on the way through, averages it per publisher over a window, and names the
//! loudest publisher above a threshold as the room's speaker.

/// `urn:ietf:params:rtp-hdrext:ssrc-audio-level`.
pub(crate) const AUDIO_LEVEL_URI: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";

/// A packet louder than this level (-dBov) carries voice.
const VOICE_LEVEL: u8 = 50;
/// Share of a window's packets that must carry voice for the publisher to be speaking:
/// a cough or a click is not speech.
const VOICE_SHARE_PERCENT: u32 = 25;

/// The level in -dBov (0..=127) carried by an audio-level extension payload.
pub(crate) fn parse_audio_level(payload: &[u8]) -> Option<u8> {
    payload.first().map(|byte| byte & 0x7f)
}

/// One publisher's audio over the current window.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct LevelMeter {
    packets: u32,
    voiced: u32,
    /// Sum of loudness (127 - level) over the voiced packets.
    voiced_loudness: u32,
}

impl LevelMeter {
    pub(crate) fn add(&mut self, level: u8) {
        let level = level.min(127);
        self.packets = self.packets.saturating_add(1);
        if level <= VOICE_LEVEL {
            self.voiced = self.voiced.saturating_add(1);
            self.voiced_loudness = self.voiced_loudness.saturating_add(127 - u32::from(level));
        }
    }

    /// How loud the publisher spoke in the window (mean loudness of its voiced
    /// packets), or `None` if it did not speak; starts a new window.
    pub(crate) fn take(&mut self) -> Option<u32> {
        let meter = std::mem::take(self);
        let speaking = meter.voiced > 0
            && meter.voiced.saturating_mul(100)
                >= meter.packets.saturating_mul(VOICE_SHARE_PERCENT);
        speaking.then(|| meter.voiced_loudness / meter.voiced)
    }
}

/// The loudest of `(who, loudness)` among those speaking.
pub(crate) fn loudest<T: Copy>(
    candidates: impl IntoIterator<Item = (T, Option<u32>)>,
) -> Option<T> {
    candidates
        .into_iter()
        .filter_map(|(who, loudness)| loudness.map(|l| (who, l)))
        .max_by_key(|(_, loudness)| *loudness)
        .map(|(who, _)| who)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_voice_activity_bit_is_not_part_of_the_level() {
        assert_eq!(parse_audio_level(&[0x80 | 30]), Some(30));
        assert_eq!(parse_audio_level(&[127]), Some(127));
        assert_eq!(parse_audio_level(&[]), None);
    }

    #[test]
    fn the_loudest_speaking_publisher_wins_and_silence_never_does() {
        let mut loud = LevelMeter::default();
        let mut quiet = LevelMeter::default();
        let mut silent = LevelMeter::default();
        for _ in 0..50 {
            loud.add(20);
            quiet.add(45);
            silent.add(127);
        }
        assert_eq!(
            loudest([
                ("loud", loud.take()),
                ("quiet", quiet.take()),
                ("silent", silent.take())
            ]),
            Some("loud")
        );
        assert_eq!(loudest([("silent", None)]), None);
        assert_eq!(loud.take(), None, "a new window starts empty");
    }

    #[test]
    fn a_click_in_silence_is_not_speech() {
        let mut meter = LevelMeter::default();
        meter.add(5);
        for _ in 0..24 {
            meter.add(127);
        }
        assert_eq!(meter.take(), None);
    }

    proptest! {
        #[test]
        fn any_payload_parses_to_a_valid_level(payload in proptest::collection::vec(any::<u8>(), 0..4)) {
            if let Some(level) = parse_audio_level(&payload) {
                prop_assert!(level <= 127);
                let mut meter = LevelMeter::default();
                meter.add(level);
                prop_assert!(meter.take().is_none_or(|loudness| loudness <= 127));
            }
        }
    }
}
