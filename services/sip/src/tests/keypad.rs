use std::time::{Duration, Instant};

use proptest::prelude::*;

use crate::keypad::{KeyCommand, KeyEvent, Keypad, SECOND_KEY_WITHIN};

/// A `telephone-event` payload for `event`, its end or not.
fn payload(event: u8, end: bool) -> [u8; 4] {
    [event, if end { 0x80 | 10 } else { 10 }, 0x03, 0x20]
}

/// Presses `key` as a phone sends it: a few packets while it is held, then the end
/// three times, all with the key's start timestamp `ts`. The commands made.
fn press(pad: &mut Keypad, event: u8, ts: u32, now: Instant) -> Vec<KeyCommand> {
    let held = [false, false, true, true, true];
    held.iter()
        .filter_map(|end| pad.press(&payload(event, *end), ts, now))
        .collect()
}

#[test]
fn star_six_mutes_and_star_nine_raises_the_hand_once_each() {
    let mut pad = Keypad::default();
    let t0 = Instant::now();
    assert!(press(&mut pad, 10, 8_000, t0).is_empty(), "`*` alone");
    assert_eq!(press(&mut pad, 6, 9_600, t0), [KeyCommand::ToggleMute]);
    assert!(press(&mut pad, 10, 11_200, t0).is_empty());
    assert_eq!(press(&mut pad, 9, 12_800, t0), [KeyCommand::ToggleHand]);
    // Pressed again, the same key is a new event (a new timestamp).
    assert!(press(&mut pad, 10, 14_400, t0).is_empty());
    assert_eq!(press(&mut pad, 9, 16_000, t0), [KeyCommand::ToggleHand]);
}

#[test]
fn keys_without_a_star_or_too_late_after_it_do_nothing() {
    let mut pad = Keypad::default();
    let t0 = Instant::now();
    assert!(press(&mut pad, 6, 100, t0).is_empty(), "`6` alone");
    assert!(press(&mut pad, 10, 200, t0).is_empty());
    let late = t0 + SECOND_KEY_WITHIN + Duration::from_millis(1);
    assert!(
        press(&mut pad, 6, 300, late).is_empty(),
        "too late after `*`"
    );
    assert!(press(&mut pad, 10, 400, late).is_empty());
    assert!(
        press(&mut pad, 1, 500, late).is_empty(),
        "`*1` is no command"
    );
    assert!(
        press(&mut pad, 6, 600, late).is_empty(),
        "the star was used up"
    );
    assert!(press(&mut pad, 10, 700, late).is_empty());
    assert!(
        press(&mut pad, 10, 800, late).is_empty(),
        "`**`: the second waits"
    );
    assert_eq!(press(&mut pad, 6, 900, late), [KeyCommand::ToggleMute]);
}

#[test]
fn events_read_as_their_keys() {
    let keys: String = (0..=16)
        .filter_map(|event| KeyEvent::parse(&payload(event, true)).ok()?.key())
        .collect();
    assert_eq!(keys, "0123456789*#ABCD");
    let event = KeyEvent::parse(&[5, 0x8a, 0x01, 0x40, 0xff]).unwrap();
    assert_eq!((event.event, event.end, event.duration), (5, true, 320));
    assert!(KeyEvent::parse(&[5, 0x8a, 0x01]).is_err());
}

proptest! {
    /// Any bytes: an error or an event, never a panic; and a command only for a six or
    /// a nine whose end follows a star's.
    #[test]
    fn any_packets_are_read_or_refused(
        packets in proptest::collection::vec((proptest::collection::vec(any::<u8>(), 0..8), 0u32..4), 0..32),
    ) {
        let mut pad = Keypad::default();
        let now = Instant::now();
        let (mut last_key, mut last_ts) = (None, None);
        for (bytes, ts) in packets {
            // Taken: an end, not a repeat of the event taken last.
            let event = KeyEvent::parse(&bytes).ok().filter(|e| e.end && last_ts != Some(ts));
            if event.is_some() {
                last_ts = Some(ts);
            }
            let before = last_key;
            if let Some(command) = pad.press(&bytes, ts, now) {
                let key = event.and_then(KeyEvent::key);
                prop_assert_eq!(before, Some('*'));
                prop_assert!(matches!(
                    (command, key),
                    (KeyCommand::ToggleMute, Some('6')) | (KeyCommand::ToggleHand, Some('9'))
                ));
            }
            if let Some(key) = event.and_then(KeyEvent::key) {
                last_key = Some(key);
            }
        }
    }
}
