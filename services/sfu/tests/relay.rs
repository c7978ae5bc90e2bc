//! Relays: one room on two SFUs (two regions). A publisher on SFU A reaches a
//! subscriber on SFU B over a sealed relay link; B's keyframe requests travel back to
//! A's publisher; a partition between the two is reported, frees the subscriber's slot
//! and heals by itself; when A's side of the room ends, B's subscriber loses the
//! relayed track at once; forged and replayed relay datagrams are refused and change
//! nothing; media lost between the regions is asked for again and resent.
//!
//! Two SFU cores, each with real webrtc-rs clients on its own testkit wire; the relay
//! datagrams between the cores are carried by the test like a network would.

use std::net::SocketAddr;

use confer_sfu::core::RelayStatus;
use confer_sfu::{RoomId, SfuEvent};
use confer_testkit::{ClientKind, Wire};

const A_ADDR: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::new(10, 0, 0, 1),
    7882,
));
const B_ADDR: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::new(10, 0, 0, 2),
    7882,
));
/// Steps of 5 ms in one second of virtual time.
const SECOND: usize = 200;

struct TwoRegions {
    a: Wire,
    b: Wire,
    /// Relay datagrams seen going from A to B, for the replay check.
    a_to_b: Vec<Vec<u8>>,
    /// When false, relay datagrams are lost (a partition).
    connected: bool,
    /// Loses every n-th media-sized relay datagram from A to B (loss between regions).
    drop_every: Option<usize>,
    a_to_b_media: usize,
}

impl TwoRegions {
    fn new() -> anyhow::Result<Self> {
        let a = Wire::new();
        let mut b = Wire::new();
        b.now = a.now;
        let mut regions = Self {
            a,
            b,
            a_to_b: Vec::new(),
            connected: true,
            drop_every: None,
            a_to_b_media: 0,
        };
        regions.a.join("room", ClientKind::Publisher)?;
        regions
            .b
            .join("room", ClientKind::Subscriber { video_slots: 1 })?;
        regions.a.connect_all(2_000)?;
        regions.b.now = regions.a.now;
        regions.b.connect_all(2_000)?;
        regions.a.now = regions.b.now;
        Ok(regions)
    }

    fn link(&mut self) {
        let room = RoomId::new("room");
        let now = self.a.now;
        let at_a = self.a.sfu.relay_endpoint(now, &room, "sfu-b");
        let at_b = self.b.sfu.relay_endpoint(now, &room, "sfu-a");
        // Asking again gives the same endpoint: concurrent set-ups agree.
        assert_eq!(self.b.sfu.relay_endpoint(now, &room, "sfu-a"), at_b);
        self.a.sfu.connect_relay(now, &room, "sfu-b", B_ADDR, &at_b);
        self.b.sfu.connect_relay(now, &room, "sfu-a", A_ADDR, &at_a);
    }

    /// Carries relay datagrams both ways until none are left.
    fn shuttle(&mut self) {
        loop {
            let from_a: Vec<_> = self.a.elsewhere.drain(..).collect();
            let from_b: Vec<_> = self.b.elsewhere.drain(..).collect();
            if from_a.is_empty() && from_b.is_empty() {
                return;
            }
            for (to, bytes) in from_a {
                assert_eq!(to, B_ADDR, "A relays only to B");
                if bytes.len() > 500 {
                    self.a_to_b_media += 1;
                    if self
                        .drop_every
                        .is_some_and(|n| self.a_to_b_media.is_multiple_of(n))
                    {
                        continue;
                    }
                }
                if self.connected {
                    self.b.sfu.handle_datagram(self.b.now, A_ADDR, &bytes);
                    self.a_to_b.push(bytes);
                }
            }
            for (to, bytes) in from_b {
                assert_eq!(to, A_ADDR, "B relays only to A");
                if self.connected {
                    self.a.sfu.handle_datagram(self.a.now, B_ADDR, &bytes);
                }
            }
            self.a.carry();
            self.b.carry();
        }
    }

    /// The publisher sends one packet per step (a keyframe every half second).
    fn run(&mut self, steps: usize, sent: &mut usize) {
        for _ in 0..steps {
            let now = self.a.now;
            self.a.clients[0].send_video(now, sent.is_multiple_of(SECOND / 2), 1_000);
            *sent += 1;
            self.a.step();
            self.b.step();
            self.shuttle();
        }
    }

    fn b_events(&mut self) -> Vec<SfuEvent> {
        std::iter::from_fn(|| self.b.sfu.poll_event()).collect()
    }
}

fn up(statuses: &[RelayStatus]) -> bool {
    statuses.len() == 1 && statuses[0].up
}

#[test]
fn a_publisher_on_one_sfu_reaches_a_subscriber_on_another() -> anyhow::Result<()> {
    let mut regions = TwoRegions::new()?;
    let mut sent = 0;
    // Unlinked, nothing crosses.
    regions.run(SECOND / 2, &mut sent);
    assert_eq!(regions.b.clients[0].rtp_received, 0);
    regions.b_events();

    regions.link();
    regions.run(2 * SECOND, &mut sent);
    let events = regions.b_events();
    assert!(
        events.iter().any(|event| matches!(
            event,
            SfuEvent::TrackAssigned { publisher, .. } if publisher.as_str() == "client-0"
        )),
        "B's subscriber is given A's publisher's track: {events:?}"
    );
    let received = regions.b.clients[0].rtp_received;
    assert!(
        received >= (SECOND as u64) * 3 / 2,
        "B's subscriber receives A's video: {received} packets in 2 s"
    );
    let (a, b) = (regions.a.stats.snapshot(), regions.b.stats.snapshot());
    assert!(a.relay_sent >= 2 * SECOND as u64, "{a:?}");
    assert!(b.relay_received >= 2 * SECOND as u64, "{b:?}");
    assert_eq!((a.relay_links, b.relay_links), (1, 1));
    // B asked A's publisher for a keyframe through the relay when the track arrived.
    assert!(
        a.keyframe_requests >= 1 && b.keyframe_requests >= 1,
        "{a:?} {b:?}"
    );
    let now = regions.a.now;
    assert!(up(&regions.a.sfu.relays(now)) && up(&regions.b.sfu.relays(now)));
    // Heartbeats measure the round trip (the test's network is instant, so it is well
    // under 50 ms here).
    for sfu in [&regions.a.sfu, &regions.b.sfu] {
        let rtt = sfu.relays(now)[0].rtt;
        assert!(
            rtt.is_some_and(|rtt| rtt < std::time::Duration::from_millis(50)),
            "{rtt:?}"
        );
    }
    let (count, _) = regions.b.stats.relay_rtt_observed();
    assert!(count >= 2, "round trips observed: {count}");
    Ok(())
}

#[test]
fn forged_and_replayed_relay_datagrams_are_refused() -> anyhow::Result<()> {
    let mut regions = TwoRegions::new()?;
    let mut sent = 0;
    regions.link();
    regions.run(SECOND, &mut sent);
    let before = regions.b.stats.snapshot();
    let received = regions.b.clients[0].rtp_received;
    let now = regions.b.now;
    let replays: Vec<Vec<u8>> = regions.a_to_b.iter().rev().take(50).cloned().collect();
    for datagram in &replays {
        regions.b.sfu.handle_datagram(now, A_ADDR, datagram);
        let mut forged = datagram.clone();
        let last = forged.len() - 1;
        forged[last] ^= 0x55;
        regions.b.sfu.handle_datagram(now, A_ADDR, &forged);
        regions
            .b
            .sfu
            .handle_datagram(now, A_ADDR, &datagram[..datagram.len() / 2]);
    }
    regions.b.carry();
    let after = regions.b.stats.snapshot();
    assert_eq!(after.relay_rejected - before.relay_rejected, 150);
    assert_eq!(after.relay_received, before.relay_received);
    assert_eq!(
        regions.b.clients[0].rtp_received, received,
        "nothing replayed reached the subscriber"
    );
    // The link goes on as before.
    regions.run(SECOND / 2, &mut sent);
    assert!(regions.b.clients[0].rtp_received > received + SECOND as u64 / 4);
    Ok(())
}

#[test]
fn a_partition_is_reported_and_heals_and_an_ended_room_closes_the_link() -> anyhow::Result<()> {
    let mut regions = TwoRegions::new()?;
    let mut sent = 0;
    regions.link();
    regions.run(SECOND, &mut sent);
    regions.b_events();

    // A partition: the link is reported down after 3 s; after 15 s the subscriber's
    // slot is freed, but the link stays.
    regions.connected = false;
    regions.run(4 * SECOND, &mut sent);
    let now = regions.b.now;
    assert!(
        !up(&regions.b.sfu.relays(now)),
        "down: {:?}",
        regions.b.sfu.relays(now)
    );
    assert_eq!(regions.b.stats.snapshot().relay_links_down, 1);
    regions.run(12 * SECOND, &mut sent);
    assert_eq!(
        regions.b.sfu.relays(regions.b.now).len(),
        1,
        "the link stays"
    );
    let events = regions.b_events();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, SfuEvent::TrackUnassigned { .. })),
        "{events:?}"
    );

    // The partition heals: without any new set-up the link is up again and the track
    // is back in the subscriber's slot, with video flowing.
    regions.connected = true;
    regions.run(SECOND, &mut sent);
    assert!(up(&regions.b.sfu.relays(regions.b.now)));
    assert_eq!(regions.b.stats.snapshot().relay_links_down, 0);
    assert!(
        regions
            .b_events()
            .iter()
            .any(|e| matches!(e, SfuEvent::TrackAssigned { .. }))
    );
    let received = regions.b.clients[0].rtp_received;
    regions.run(SECOND, &mut sent);
    assert!(regions.b.clients[0].rtp_received > received + SECOND as u64 / 2);

    // The publisher leaves A and the room ends there: B's subscriber loses the track
    // within the same step (not after a timeout) and the link closes on both sides.
    let now = regions.a.now;
    regions
        .a
        .sfu
        .remove_peer(now, &confer_sfu::ParticipantId::new("client-0"))?;
    regions.a.carry();
    regions.shuttle();
    let events = regions.b_events();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, SfuEvent::TrackUnassigned { .. })),
        "{events:?}"
    );
    assert!(regions.a.sfu.relays(now).is_empty() && regions.b.sfu.relays(now).is_empty());
    Ok(())
}

#[test]
fn media_lost_between_regions_is_asked_for_and_resent() -> anyhow::Result<()> {
    let mut regions = TwoRegions::new()?;
    let mut sent = 0;
    regions.link();
    regions.run(SECOND, &mut sent);

    // 5 % of the relayed media is lost on the way from A to B.
    regions.drop_every = Some(20);
    let (received, sent_before) = (regions.b.clients[0].rtp_received, sent);
    regions.run(4 * SECOND, &mut sent);
    let delivered = regions.b.clients[0].rtp_received - received;
    let due = (sent - sent_before) as u64;
    let (a, b) = (regions.a.stats.snapshot(), regions.b.stats.snapshot());
    assert!(b.relay_lost >= due / 25, "B noticed the gaps: {b:?}");
    assert!(
        a.relay_resent >= b.relay_lost * 9 / 10,
        "A resent them: {a:?} / {b:?}"
    );
    // What a resend did not bring (itself lost, one in twenty) is the loss watch's.
    assert!(
        delivered >= due * 99 / 100,
        "the subscriber got {delivered} of {due} packets sent in the window"
    );
    Ok(())
}
