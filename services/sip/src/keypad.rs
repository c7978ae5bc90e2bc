//! The caller's keypad: DTMF events (RFC 4733 `telephone-event`) read from the
//! caller's RTP, and the two-key commands they make. `*6` mutes or unmutes the caller,
//! `*9` raises or lowers their hand: the keys phone participants know from other
//! conferencing services.

use std::time::{Duration, Instant};

/// A command a caller keyed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyCommand {
    /// `*6`: mute, or unmute.
    ToggleMute,
    /// `*9`: raise the hand, or lower it.
    ToggleHand,
}

/// Why a `telephone-event` payload is not one we read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("shorter than a telephone-event payload (4 bytes)")]
    TooShort,
}

/// One `telephone-event` payload (RFC 4733 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyEvent {
    /// 0–9 the digits, 10 `*`, 11 `#`, 12–15 A–D, more for other tones.
    pub event: u8,
    /// The event's last packet (sent three times).
    pub end: bool,
    pub duration: u16,
}

impl KeyEvent {
    /// Reads the first event of `payload` (a packet may carry redundant older events
    /// after it, which the first one's end covers).
    pub fn parse(payload: &[u8]) -> Result<Self, EventError> {
        let [event, flags, high, low, ..] = *payload else {
            return Err(EventError::TooShort);
        };
        Ok(Self {
            event,
            end: flags & 0x80 != 0,
            duration: u16::from_be_bytes([high, low]),
        })
    }

    /// The key it stands for: `0`–`9`, `*`, `#`, `A`–`D`; `None` for other tones.
    pub fn key(self) -> Option<char> {
        match self.event {
            0..=9 => char::from_digit(u32::from(self.event), 10),
            10 => Some('*'),
            11 => Some('#'),
            12..=15 => Some(char::from(b'A' + (self.event - 12))),
            _ => None,
        }
    }
}

/// How long after `*` the second key may come.
pub const SECOND_KEY_WITHIN: Duration = Duration::from_secs(3);

/// Keys as the caller presses them, and the commands they make.
#[derive(Debug, Default)]
pub struct Keypad {
    /// The RTP timestamp of the last event taken: an event's end is sent three times
    /// (and its earlier packets more), all with its start's timestamp.
    last_event: Option<u32>,
    /// When `*` was pressed, waiting for the second key.
    star: Option<Instant>,
}

impl Keypad {
    /// One `telephone-event` packet with RTP timestamp `timestamp`, at `now`: the
    /// command it completes, if any. A key counts once, at its end.
    pub fn press(&mut self, payload: &[u8], timestamp: u32, now: Instant) -> Option<KeyCommand> {
        let event = KeyEvent::parse(payload).ok()?;
        if !event.end || self.last_event == Some(timestamp) {
            return None;
        }
        self.last_event = Some(timestamp);
        let key = event.key()?;
        let after_star = self
            .star
            .take()
            .is_some_and(|at| now.saturating_duration_since(at) <= SECOND_KEY_WITHIN);
        match (after_star, key) {
            (true, '6') => Some(KeyCommand::ToggleMute),
            (true, '9') => Some(KeyCommand::ToggleHand),
            (_, '*') => {
                self.star = Some(now);
                None
            }
            _ => None,
        }
    }
}
