use std::time::{Duration, Instant};

use crate::prompt::{Announcer, Prompt};

const MS20: Duration = Duration::from_millis(20);

/// Everything due by `now`, as (prompt, key, sequence, timestamp).
fn due_by(announcer: &mut Announcer, now: Instant) -> Vec<(Prompt, u64, u16, u32)> {
    std::iter::from_fn(|| announcer.due(now))
        .map(|d| (d.prompt, d.key, d.sequence, d.timestamp))
        .collect()
}

#[test]
fn a_prompt_is_sent_a_packet_every_20_ms_from_its_start_and_plays_until_its_audio_ends() {
    let start = Instant::now();
    let mut announcer = Announcer::default();
    assert!(!announcer.playing());
    announcer.announce(Prompt::Unmuted, start + Duration::from_millis(500));
    assert!(announcer.playing(), "waiting for its start");
    assert_eq!(
        announcer.next_due(),
        Some(start + Duration::from_millis(500))
    );
    assert!(
        due_by(&mut announcer, start).is_empty(),
        "nothing before its start"
    );

    let packets = Prompt::Unmuted.packets();
    let mut sent = Vec::new();
    let mut now = start + Duration::from_millis(500);
    while sent.len() < packets.len() {
        let due: Vec<_> = std::iter::from_fn(|| announcer.due(now)).collect();
        assert_eq!(due.len(), 1, "one packet each 20 ms");
        sent.extend(due);
        now += MS20;
    }
    assert!(
        sent.iter()
            .zip(packets)
            .all(|(d, p)| d.payload == p.payload.as_slice()),
        "the file's packets, in order"
    );
    assert!(
        sent.iter()
            .enumerate()
            .all(|(i, d)| usize::from(d.sequence) == i
                && d.timestamp == 960 * i as u32
                && d.key == sent[0].key)
    );
    assert!(sent[0].key > u64::from(u32::MAX), "never an SSRC");
    // The last packet's 20 ms are still its own; then the room's audio comes back.
    assert!(announcer.playing());
    assert!(announcer.due(now).is_none());
    assert!(!announcer.playing());
    assert_eq!(announcer.next_due(), None);
}

#[test]
fn prompts_on_other_subjects_follow_each_other_and_a_newer_one_on_the_same_subject_replaces() {
    let start = Instant::now();
    let mut announcer = Announcer::default();
    announcer.announce(Prompt::RecordingStarted, start);
    announcer.announce(Prompt::HandRaised, start);
    announcer.announce(Prompt::Muted, start);
    // `*6` again before "muted" was heard: only "unmuted" is left of the two.
    announcer.announce(Prompt::Unmuted, start);
    let recording = Prompt::RecordingStarted.packets().len();
    let half = start + MS20 * (recording as u32 / 2);
    let first = due_by(&mut announcer, half);
    assert_eq!(first.len(), recording / 2 + 1);
    assert!(first.iter().all(|d| d.0 == Prompt::RecordingStarted));
    // Recording stops halfway through its notice: the notice is cut short and the
    // new one follows at once; the queued ones wait their turn.
    announcer.announce(Prompt::RecordingStopped, half);
    let rest = due_by(&mut announcer, half + Duration::from_secs(30));
    let order: Vec<Prompt> = rest.iter().fold(Vec::new(), |mut order, d| {
        if order.last() != Some(&d.0) {
            order.push(d.0);
        }
        order
    });
    assert_eq!(
        order,
        [
            Prompt::RecordingStopped,
            Prompt::HandRaised,
            Prompt::Unmuted
        ]
    );
    let keys: std::collections::BTreeSet<u64> = rest.iter().map(|d| d.1).collect();
    assert_eq!(keys.len(), 3, "each prompt its own source");
    assert!(!keys.contains(&first[0].1));
    assert_eq!(
        rest.len(),
        Prompt::RecordingStopped.packets().len()
            + Prompt::HandRaised.packets().len()
            + Prompt::Unmuted.packets().len()
    );
}

#[test]
fn a_prompt_that_follows_another_starts_when_its_audio_ends() {
    let start = Instant::now();
    let mut announcer = Announcer::default();
    announcer.announce(Prompt::HandLowered, start);
    announcer.announce(Prompt::Muted, start);
    let lowered = Prompt::HandLowered.packets().len() as u32;
    let end = start + MS20 * lowered;
    let before = due_by(&mut announcer, end - Duration::from_millis(1));
    assert_eq!(before.len() as u32, lowered);
    assert_eq!(announcer.next_due(), Some(end));
    let at_end = due_by(&mut announcer, end);
    assert_eq!(at_end.len(), 1);
    assert_eq!(
        (at_end[0].0, at_end[0].2, at_end[0].3),
        (Prompt::Muted, 0, 0)
    );
}
