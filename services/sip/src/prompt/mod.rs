//! Voice prompts a caller hears from the bridge itself: that the call is being
//! recorded (when they join a recorded room, and when recording starts or stops),
//! and what their keys did (`*6` muted or unmuted, `*9` hand raised or lowered, an
//! unmute a host did not allow). The bridge neither decodes nor encodes audio: each
//! prompt is Opus made ahead of time (`prompts/make.sh`), kept in the binary as an
//! Ogg Opus file and sent packet by packet in the caller's stream, in place of the
//! room's audio while it plays.

mod ogg;
mod player;

use std::sync::LazyLock;

pub use ogg::{OggError, opus_packets};
pub use player::{Announcer, Due, PromptPacket};

/// Something the bridge tells a caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prompt {
    /// "This call is being recorded."
    RecordingStarted,
    /// "Recording has stopped."
    RecordingStopped,
    /// "You are muted. Press star six to unmute."
    Muted,
    /// "You are unmuted."
    Unmuted,
    /// "A host has muted you." (the caller's `*6` could not unmute them)
    MuteRefused,
    /// "Your hand is raised."
    HandRaised,
    /// "Your hand is lowered."
    HandLowered,
}

/// Which prompts a deployment plays to callers (`--sip-prompts`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PromptSet {
    /// Recording notices and what the caller's keys or a host changed.
    #[default]
    All,
    /// Only that the call is being recorded, or no longer is (where a trunk's own
    /// announcements say the rest, or callers should hear nothing else).
    Recording,
    /// None (the deployment tells callers of recording some other way).
    Off,
}

impl PromptSet {
    /// Whether `prompt` is played.
    pub fn plays(self, prompt: Prompt) -> bool {
        match self {
            PromptSet::All => true,
            PromptSet::Recording => prompt.subject() == Subject::Recording,
            PromptSet::Off => false,
        }
    }
}

impl std::str::FromStr for PromptSet {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "all" => Ok(PromptSet::All),
            "recording" => Ok(PromptSet::Recording),
            "off" => Ok(PromptSet::Off),
            other => Err(format!(
                "`{other}` is not a prompt setting: all, recording or off"
            )),
        }
    }
}

/// What a prompt is about: a newer prompt on the same subject replaces one not yet
/// heard to its end (`*6` pressed twice quickly says only where it ended up).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Subject {
    Recording,
    Mute,
    Hand,
}

impl Prompt {
    pub const ALL: [Prompt; 7] = [
        Prompt::RecordingStarted,
        Prompt::RecordingStopped,
        Prompt::Muted,
        Prompt::Unmuted,
        Prompt::MuteRefused,
        Prompt::HandRaised,
        Prompt::HandLowered,
    ];

    /// Its name in metrics and logs.
    pub fn name(self) -> &'static str {
        match self {
            Prompt::RecordingStarted => "recording_started",
            Prompt::RecordingStopped => "recording_stopped",
            Prompt::Muted => "muted",
            Prompt::Unmuted => "unmuted",
            Prompt::MuteRefused => "mute_refused",
            Prompt::HandRaised => "hand_raised",
            Prompt::HandLowered => "hand_lowered",
        }
    }

    pub(crate) fn subject(self) -> Subject {
        match self {
            Prompt::RecordingStarted | Prompt::RecordingStopped => Subject::Recording,
            Prompt::Muted | Prompt::Unmuted | Prompt::MuteRefused => Subject::Mute,
            Prompt::HandRaised | Prompt::HandLowered => Subject::Hand,
        }
    }

    /// The Ogg Opus file, as `prompts/make.sh` made it.
    pub fn file(self) -> &'static [u8] {
        match self {
            Prompt::RecordingStarted => include_bytes!("../../prompts/recording-started.opus"),
            Prompt::RecordingStopped => include_bytes!("../../prompts/recording-stopped.opus"),
            Prompt::Muted => include_bytes!("../../prompts/muted.opus"),
            Prompt::Unmuted => include_bytes!("../../prompts/unmuted.opus"),
            Prompt::MuteRefused => include_bytes!("../../prompts/mute-refused.opus"),
            Prompt::HandRaised => include_bytes!("../../prompts/hand-raised.opus"),
            Prompt::HandLowered => include_bytes!("../../prompts/hand-lowered.opus"),
        }
    }

    /// Its Opus packets with their lengths, read from [`Prompt::file`] once. A file
    /// that cannot be read (the tests read every one) is an empty prompt.
    pub fn packets(self) -> &'static [PromptPacket] {
        static READ: LazyLock<Vec<Vec<PromptPacket>>> = LazyLock::new(|| {
            Prompt::ALL
                .iter()
                .map(|prompt| prompt.read().unwrap_or_default())
                .collect()
        });
        let index = Prompt::ALL.iter().position(|p| *p == self).unwrap_or(0);
        READ.get(index).map_or(&[], Vec::as_slice)
    }

    /// Reads the prompt's file: its audio packets, each with its length.
    pub fn read(self) -> Result<Vec<PromptPacket>, OggError> {
        read_packets(self.file())
    }
}

/// The audio packets of an Ogg Opus file, each with its length; a packet whose
/// length cannot be told is an error, never left out (the prompt would skip ahead).
fn read_packets(file: &[u8]) -> Result<Vec<PromptPacket>, OggError> {
    opus_packets(file)?
        .into_iter()
        .enumerate()
        .map(|(index, payload)| {
            let ticks =
                crate::opus::duration_ticks(&payload).ok_or(OggError::NotOpusAudio(index))?;
            Ok(PromptPacket { payload, ticks })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_prompt_is_opus_in_20_ms_packets_lasting_one_to_four_seconds() {
        for prompt in Prompt::ALL {
            let packets = prompt.read().unwrap_or_else(|e| panic!("{prompt:?}: {e}"));
            assert_eq!(packets.len(), prompt.packets().len(), "{prompt:?}");
            assert!(
                packets.iter().all(|p| p.ticks == 960),
                "{prompt:?}: every packet 20 ms"
            );
            let seconds = packets.len() as f64 * 0.02;
            assert!((1.0..=4.0).contains(&seconds), "{prompt:?}: {seconds} s");
            // Speech, not silence: most packets carry more than a silence frame.
            let spoken = packets.iter().filter(|p| p.payload.len() > 20).count();
            assert!(
                spoken * 2 > packets.len(),
                "{prompt:?}: {spoken} of {}",
                packets.len()
            );
        }
    }

    #[test]
    fn a_packet_whose_length_cannot_be_told_fails_the_read() {
        let file = super::ogg::tests::file(&[b"\x48one", b"\x4b\x00", b"\x48two"]);
        assert_eq!(
            read_packets(&file).map(|p| p.len()),
            Err(OggError::NotOpusAudio(1)),
            "a code-3 packet of no frames"
        );
        let bad_count = super::ogg::tests::file(&[b"\x48one", b"\x4b"]);
        assert_eq!(
            read_packets(&bad_count).map(|p| p.len()),
            Err(OggError::NotOpusAudio(1)),
            "a code-3 packet without its frame count"
        );
        let good = super::ogg::tests::file(&[b"\x48one", b"\x4b\x02ab"]);
        let ticks: Vec<u32> = read_packets(&good)
            .expect("read")
            .iter()
            .map(|p| p.ticks)
            .collect();
        assert_eq!(ticks, [960, 1920]);
    }

    #[test]
    fn a_deployment_plays_all_prompts_only_the_recording_notices_or_none() {
        let played = |set: PromptSet| -> Vec<Prompt> {
            Prompt::ALL.into_iter().filter(|p| set.plays(*p)).collect()
        };
        assert_eq!(played(PromptSet::All), Prompt::ALL);
        assert_eq!(
            played(PromptSet::Recording),
            [Prompt::RecordingStarted, Prompt::RecordingStopped]
        );
        assert!(played(PromptSet::Off).is_empty());
        assert_eq!("all".parse(), Ok(PromptSet::All));
        assert_eq!("recording".parse(), Ok(PromptSet::Recording));
        assert_eq!("off".parse(), Ok(PromptSet::Off));
        assert!(
            "loud"
                .parse::<PromptSet>()
                .unwrap_err()
                .contains("all, recording or off")
        );
        assert_eq!(PromptSet::default(), PromptSet::All);
    }

    #[test]
    fn prompts_on_one_subject_replace_each_other_and_only_those() {
        assert_eq!(Prompt::Muted.subject(), Prompt::MuteRefused.subject());
        assert_ne!(Prompt::Muted.subject(), Prompt::HandRaised.subject());
        assert_ne!(
            Prompt::RecordingStarted.subject(),
            Prompt::HandLowered.subject()
        );
        let names: std::collections::HashSet<_> = Prompt::ALL.iter().map(|p| p.name()).collect();
        assert_eq!(names.len(), Prompt::ALL.len());
    }
}
