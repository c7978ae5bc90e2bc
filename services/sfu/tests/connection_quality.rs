//! Connection quality on the core, with real webrtc-rs clients on the testkit's wire
//! and virtual clock: a publisher whose uplink loses a fifth of its packets is rated
//! poor, and its subscriber, which misses the same packets, is not blamed for them;
//! the publisher is excellent again two windows after its link heals; a client that
//! falls silent is lost well before its peer times out.

use confer_sfu::SfuEvent;
use confer_sfu::core::Quality;
use confer_testkit::{ClientKind, Wire};

/// Steps of 5 ms.
const SECOND: usize = 200;

/// The levels told for `participant` among `events`.
fn told(events: &[SfuEvent], participant: &str) -> Vec<Quality> {
    events
        .iter()
        .filter_map(|event| match event {
            SfuEvent::ConnectionQuality {
                participant: p,
                quality,
                room,
            } if p.as_str() == participant => {
                assert_eq!(room.as_str(), "weak-link");
                Some(*quality)
            }
            _ => None,
        })
        .collect()
}

/// Runs `seconds` of the call (the publisher sending 200 video packets a second);
/// returns the events.
fn run(wire: &mut Wire, seconds: usize) -> Vec<SfuEvent> {
    let mut events = Vec::new();
    for i in 0..seconds * SECOND {
        let now = wire.now;
        wire.clients[0].send_video(now, i % SECOND == 0, 1_000);
        wire.step();
        events.extend(std::iter::from_fn(|| wire.sfu.poll_event()));
    }
    events
}

#[test]
fn a_lossy_uplink_is_its_own_participants_and_heals_and_silence_is_lost() -> anyhow::Result<()> {
    let mut wire = Wire::new();
    wire.join("weak-link", ClientKind::Publisher)?;
    wire.join("weak-link", ClientKind::Subscriber { video_slots: 1 })?;
    wire.connect_all(2_000)?;
    let (publisher, subscriber) = ("client-0", "client-1");

    let clean = run(&mut wire, 5);
    assert_eq!(told(&clean, publisher), [Quality::Excellent]);
    assert_eq!(told(&clean, subscriber), [Quality::Excellent]);

    wire.clients[0].lose_every = Some(5);
    // A window that straddles the change may see less loss first.
    let lossy = run(&mut wire, 8);
    let levels = told(&lossy, publisher);
    assert_eq!(levels.last(), Some(&Quality::Poor), "{lossy:?}");
    assert!(!levels.contains(&Quality::Excellent), "{levels:?}");
    assert!(
        told(&lossy, subscriber).is_empty(),
        "the subscriber stays excellent: {lossy:?}"
    );
    assert!(wire.clients[1].rtp_received > 0);
    assert_eq!(wire.stats.snapshot().peers_by_quality, [1, 0, 1, 0]);

    wire.clients[0].lose_every = None;
    // Better only after two windows in a row.
    let healed = run(&mut wire, 9);
    let levels = told(&healed, publisher);
    assert_eq!(levels.last(), Some(&Quality::Excellent), "{healed:?}");
    assert!(levels.len() <= 2, "{levels:?}");

    wire.clients[1].silent = true;
    let silent = run(&mut wire, 9);
    assert_eq!(told(&silent, subscriber), [Quality::Lost], "{silent:?}");
    assert!(
        !silent
            .iter()
            .any(|event| matches!(event, SfuEvent::PeerDisconnected { .. })),
        "lost is told before the peer times out"
    );
    assert_eq!(wire.stats.snapshot().peers_by_quality, [1, 0, 0, 1]);
    Ok(())
}
