//! Send-side bandwidth estimation: the SFU numbers every packet it sends with the
//! transport-wide sequence extension, the subscriber's stack answers with TWCC feedback,
//! and the congestion controller in the subscriber's peer (GCC) turns that into an
//! estimate. A subscriber behind a slow link gets its video paused instead of a queue
//! that only grows; one on a fast link is untouched; once the link is fast again the
//! paused subscriber gets video back. The NACKs for what the slow link dropped are not
//! answered in full: resends stay within a share of the estimate.
//!
//! Real webrtc-rs clients on the testkit's wire and virtual clock. The subscribers'
//! stacks send TWCC feedback and no REMB, so the estimate that acts here can only be
//! the SFU's own.

use confer_testkit::{ClientKind, Wire};

/// Steps of 5 ms in one second of virtual time.
const SECOND: usize = 200;

/// One publisher sending ~1.8 Mbit/s of VP8 (one 1,100-byte packet per 5 ms step, a
/// keyframe every half second), and two single-slot subscribers.
fn call() -> anyhow::Result<Wire> {
    let mut wire = Wire::new();
    wire.join("bwe", ClientKind::Publisher)?;
    wire.join("bwe", ClientKind::Subscriber { video_slots: 1 })?;
    wire.join("bwe", ClientKind::Subscriber { video_slots: 1 })?;
    wire.connect_all(2_000)?;
    Ok(wire)
}

fn run(wire: &mut Wire, steps: usize, sent: &mut usize) {
    for _ in 0..steps {
        let now = wire.now;
        wire.clients[0].send_video(now, sent.is_multiple_of(SECOND / 2), 1_100);
        *sent += 1;
        wire.step();
    }
}

#[test]
fn a_subscriber_behind_a_slow_link_is_paused_and_resumes_when_it_clears() -> anyhow::Result<()> {
    let mut wire = call()?;
    let mut sent = 0;
    run(&mut wire, 2 * SECOND, &mut sent);
    let (fast, slow) = (wire.clients[1].rtp_received, wire.clients[2].rtp_received);
    assert!(
        fast >= 250 && slow >= 250,
        "both receive on an ideal wire: {fast} / {slow}"
    );

    // Subscriber 2's downlink drops to 400 kbit/s: under a quarter of the video.
    wire.limit_downlink(2, Some(400_000));
    let paused_before = wire.stats.snapshot().slots_paused;
    run(&mut wire, 8 * SECOND, &mut sent);
    let stats = wire.stats.snapshot();
    assert!(
        stats.slots_paused > paused_before,
        "the slow subscriber's video is paused: {stats:?}"
    );
    // Paused: over the next two seconds the slow subscriber gets next to no video while
    // the fast one gets all of it.
    let (fast_mark, slow_mark) = (wire.clients[1].rtp_received, wire.clients[2].rtp_received);
    run(&mut wire, 2 * SECOND, &mut sent);
    let fast_late = wire.clients[1].rtp_received - fast_mark;
    let slow_late = wire.clients[2].rtp_received - slow_mark;
    assert!(
        fast_late >= (2 * SECOND) as u64 * 95 / 100,
        "the fast subscriber keeps every packet: {fast_late} of {}",
        2 * SECOND
    );
    assert!(
        slow_late < fast_late / 4,
        "the slow subscriber is not sent what its link cannot carry: {slow_late} against {fast_late}"
    );
    let dropped = wire.downlink_dropped(2);
    // The slow subscriber asks for much of what its link dropped, again and again; the
    // resends that go out stay a fraction of the video, not a flood on top of it.
    let stats = wire.stats.snapshot();
    assert!(
        stats.retransmissions_suppressed > 0
            && stats.retransmissions_sent * 4 < stats.rtp_forwarded,
        "resends are held back on the congested link: {stats:?}"
    );

    // The link clears: the estimate recovers and video comes back (from a keyframe).
    wire.limit_downlink(2, None);
    let slow_mark = wire.clients[2].rtp_received;
    run(&mut wire, 15 * SECOND, &mut sent);
    let resumed = wire.clients[2].rtp_received - slow_mark;
    assert!(
        resumed > SECOND as u64,
        "video resumes on the cleared link: {resumed} packets in 15 s (the slow link dropped {dropped})"
    );
    Ok(())
}
