//! What a published track carries: the microphone, the camera or a shared screen.
//!
//! Hosts and permissions block sources, not kinds (a participant may be allowed a
//! camera but not a screen), and subscribers show a shared screen differently from a
//! face. The publisher marks its screen m-line with `a=content:slides` (RFC 4796).

use super::MediaKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrackSource {
    Microphone,
    Camera,
    ScreenShare,
}

impl TrackSource {
    pub const ALL: [TrackSource; 3] = [
        TrackSource::Microphone,
        TrackSource::Camera,
        TrackSource::ScreenShare,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TrackSource::Microphone => "microphone",
            TrackSource::Camera => "camera",
            TrackSource::ScreenShare => "screen_share",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|source| source.as_str() == s)
    }

    pub fn kind(self) -> MediaKind {
        match self {
            TrackSource::Microphone => MediaKind::Audio,
            TrackSource::Camera | TrackSource::ScreenShare => MediaKind::Video,
        }
    }

    /// The source of a track of `kind` on an m-line that is (or is not) marked as
    /// showing slides.
    pub(crate) fn of(kind: MediaKind, slides: bool) -> Self {
        match (kind, slides) {
            (MediaKind::Audio, _) => TrackSource::Microphone,
            (MediaKind::Video, false) => TrackSource::Camera,
            (MediaKind::Video, true) => TrackSource::ScreenShare,
        }
    }

    fn index(self) -> usize {
        match self {
            TrackSource::Microphone => 0,
            TrackSource::Camera => 1,
            TrackSource::ScreenShare => 2,
        }
    }
}

/// The sources of one peer that are not forwarded (host mute, missing permission).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Blocked([bool; 3]);

impl Blocked {
    pub(crate) fn contains(self, source: TrackSource) -> bool {
        self.0[source.index()]
    }

    pub(crate) fn set(&mut self, source: TrackSource, blocked: bool) {
        self.0[source.index()] = blocked;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_kinds_match() {
        for source in TrackSource::ALL {
            assert_eq!(TrackSource::parse(source.as_str()), Some(source));
        }
        assert_eq!(TrackSource::parse("video"), None);
        assert_eq!(
            TrackSource::of(MediaKind::Video, true),
            TrackSource::ScreenShare
        );
        assert_eq!(TrackSource::ScreenShare.kind(), MediaKind::Video);
        let mut blocked = Blocked::default();
        blocked.set(TrackSource::Camera, true);
        assert!(blocked.contains(TrackSource::Camera));
        assert!(!blocked.contains(TrackSource::ScreenShare));
    }
}
