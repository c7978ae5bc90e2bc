//! A participant that closes its media connection is gone from the SFU at once: its
//! DTLS `close_notify` ends its peer, and its tracks leave the subscribers' slots,
//! without waiting for the peer to fall silent.
//!
//! Real webrtc-rs clients on the testkit's wire and virtual clock.

use confer_sfu::SfuEvent;
use confer_sfu::core::CLOSED_BY_PARTICIPANT;
use confer_testkit::{ClientKind, Wire};
use rtc::sansio::Protocol as _;

/// Steps of 5 ms.
const HALF_SECOND: usize = 100;

fn drain_events(wire: &mut Wire) -> Vec<SfuEvent> {
    std::iter::from_fn(|| wire.sfu.poll_event()).collect()
}

/// A publisher and a subscriber, connected, the subscriber receiving video.
fn call() -> anyhow::Result<Wire> {
    let mut wire = Wire::new();
    wire.join("close", ClientKind::Publisher)?;
    wire.join("close", ClientKind::Subscriber { video_slots: 1 })?;
    wire.connect_all(2_000)?;
    for i in 0..HALF_SECOND {
        let now = wire.now;
        wire.clients[0].send_video(now, i % 20 == 0, 1_000);
        wire.step();
    }
    anyhow::ensure!(
        wire.clients[1].rtp_received > 0,
        "the subscriber receives video"
    );
    Ok(wire)
}

#[test]
fn a_publisher_that_closes_its_connection_is_removed_at_once() -> anyhow::Result<()> {
    let mut wire = call()?;
    drain_events(&mut wire);
    assert_eq!(wire.stats.snapshot().peers, 2);

    wire.clients[0].pc.close()?;
    wire.carry();

    let events = drain_events(&mut wire);
    let gone: Vec<&str> = events
        .iter()
        .filter_map(|event| match event {
            SfuEvent::PeerDisconnected {
                participant,
                reason,
            } => {
                assert_eq!(participant.as_str(), "client-0");
                Some(reason.as_str())
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        gone,
        [CLOSED_BY_PARTICIPANT],
        "the publisher's close ends its peer, before any timer: {events:?}"
    );
    assert!(
        events.iter().any(|event| matches!(
            event,
            SfuEvent::TrackUnassigned { subscriber, .. } if subscriber.as_str() == "client-1"
        )),
        "the subscriber's slot is freed: {events:?}"
    );
    assert_eq!(wire.stats.snapshot().peers, 1, "the subscriber stays");

    // The subscriber's connection goes on: a second later it is still there.
    for _ in 0..2 * HALF_SECOND {
        wire.step();
    }
    let later = drain_events(&mut wire);
    assert!(
        !later
            .iter()
            .any(|event| matches!(event, SfuEvent::PeerDisconnected { .. })),
        "nobody else is removed: {later:?}"
    );
    assert_eq!(wire.stats.snapshot().peers, 1);
    Ok(())
}

#[test]
fn a_forged_alert_from_a_participants_address_ends_nothing() -> anyhow::Result<()> {
    let mut wire = call()?;
    drain_events(&mut wire);
    // A DTLS alert record in epoch 1 whose ciphertext is not the participant's: the
    // record header is in the clear, so anyone on the path can send one.
    let mut forged = vec![21, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 0x40, 0, 26];
    forged.extend_from_slice(&[0x5a; 26]);
    let (now, addr) = (wire.now, wire.clients[0].addr);
    wire.sfu.handle_datagram(now, addr, &forged);
    wire.carry();
    for i in 0..HALF_SECOND {
        let now = wire.now;
        wire.clients[0].send_video(now, i % 20 == 0, 1_000);
        wire.step();
    }
    let events = drain_events(&mut wire);
    assert!(
        !events
            .iter()
            .any(|event| matches!(event, SfuEvent::PeerDisconnected { .. })),
        "a forged alert removes no one: {events:?}"
    );
    assert_eq!(wire.stats.snapshot().peers, 2);
    Ok(())
}
