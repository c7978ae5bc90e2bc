use std::time::{Duration, Instant};

use crate::speaker::Speaker;

#[test]
fn the_active_speaker_is_heard_while_sending_else_whoever_was_heard() {
    let t = Instant::now();
    let ms = |n| t + Duration::from_millis(n);
    let mut speaker = Speaker::default();
    assert!(
        !speaker.forward("0", t),
        "an unassigned slot is never forwarded"
    );
    speaker.assigned("1", "ada");
    speaker.assigned("2", "bob");
    // Nobody is the active speaker: the first stream heard wins and keeps the line.
    assert!(speaker.forward("1", ms(0)));
    assert!(!speaker.forward("2", ms(5)));
    assert!(speaker.forward("1", ms(20)));
    assert_eq!(speaker.current_participant(), Some("ada"));
    // Bob becomes the active speaker: his next packet takes over.
    speaker.active_speaker("bob");
    assert!(speaker.forward("2", ms(25)));
    assert!(!speaker.forward("1", ms(40)));
    assert_eq!(speaker.current_participant(), Some("bob"));
    // Bob goes quiet (nothing for longer than the quiet limit): Ada is heard again.
    assert!(speaker.forward("1", ms(1000)));
    // Bob leaves: his slot is forgotten.
    speaker.unassigned("2");
    speaker.active_speaker("");
    assert!(speaker.forward("1", ms(1020)));
    assert!(!speaker.forward("2", ms(1030)));
}
