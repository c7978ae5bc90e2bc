//! The fan-out bus on a real redis-server: a feed gets its rooms' entries (and only
//! theirs) over sharded pub/sub, and after Redis restarts it subscribes again and says
//! so with a resync, so its gateway reads what it missed from history. A feed whose
//! gateway falls behind holds a bounded backlog and says so with a resync too.

use std::time::Duration;

use confer_chat::{Bus, ChatEntry, EntryKind, Feed, FeedEvent};
use tokio::sync::mpsc;

fn entry(room: &str, seq: u64) -> ChatEntry {
    ChatEntry {
        room: room.into(),
        seq,
        kind: EntryKind::Text,
        sender_id: "ada".into(),
        sender_name: "Ada".into(),
        sender_identity: String::new(),
        text: format!("#{seq}"),
        client_id: String::new(),
        reply_to: 0,
        target_seq: 0,
        sent_at_ms: 0,
        edited: false,
        deleted: false,
        file_type: String::new(),
        file_size: 0,
    }
}

async fn next(events: &mut mpsc::Receiver<FeedEvent>) -> anyhow::Result<FeedEvent> {
    tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await?
        .ok_or_else(|| anyhow::anyhow!("feed ended"))
}

/// Publishes `entry` until the feed sees one (a subscription takes a moment), skipping
/// resyncs; returns the seq received.
async fn publish_until_seen(
    bus: &Bus,
    events: &mut mpsc::Receiver<FeedEvent>,
    e: &ChatEntry,
) -> anyhow::Result<u64> {
    for _ in 0..100 {
        let _ = bus.publish(e).await;
        if let Ok(Some(FeedEvent::Entry(got))) =
            tokio::time::timeout(Duration::from_millis(100), events.recv()).await
        {
            return Ok(got.entry.seq);
        }
    }
    anyhow::bail!("entry {} never arrived", e.seq)
}

/// A feed, connected (its first resync) and subscribed to room `t/a`, whose entry 1
/// it has seen.
async fn feed_of_room_a(bus: &Bus) -> anyhow::Result<(Feed, mpsc::Receiver<FeedEvent>)> {
    let (feed, mut events) = bus.feed();
    assert!(
        matches!(next(&mut events).await?, FeedEvent::Resync),
        "connected"
    );
    feed.subscribe("t/a");
    assert_eq!(
        publish_until_seen(bus, &mut events, &entry("t/a", 1)).await?,
        1
    );
    Ok((feed, events))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_gets_its_rooms_and_resubscribes_after_a_redis_restart() -> anyhow::Result<()> {
    let mut redis = confer_e2e::backing::RedisServer::start().await?;
    let bus = Bus::redis(&redis.url())?;
    let (feed, mut events) = feed_of_room_a(&bus).await?;
    // Another room's entries do not reach this feed; its own keep their order.
    bus.publish(&entry("t/b", 1)).await?;
    for seq in 2..=50 {
        bus.publish(&entry("t/a", seq)).await?;
    }
    for seq in 2..=50 {
        match next(&mut events).await? {
            FeedEvent::Entry(got) => {
                assert_eq!((got.entry.room.as_str(), got.entry.seq), ("t/a", seq))
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    redis.stop();
    assert!(
        bus.publish(&entry("t/a", 51)).await.is_err(),
        "Redis is down"
    );
    redis.restart().await?;
    // The feed reconnects, subscribes again, and asks for a resync.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no resync after the restart"
        );
        if matches!(next(&mut events).await?, FeedEvent::Resync) {
            break;
        }
    }
    assert_eq!(
        publish_until_seen(&bus, &mut events, &entry("t/a", 52)).await?,
        52
    );

    feed.unsubscribe("t/a");
    tokio::time::sleep(Duration::from_millis(200)).await;
    bus.publish(&entry("t/a", 53)).await?;
    let quiet = tokio::time::timeout(Duration::from_millis(300), events.recv()).await;
    assert!(quiet.is_err(), "unsubscribed: {quiet:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_that_falls_behind_drops_what_it_cannot_hold_and_asks_for_a_resync()
-> anyhow::Result<()> {
    const BACKLOG: usize = 100;
    let redis = confer_e2e::backing::RedisServer::start().await?;
    let bus = Bus::redis_with_backlog(&redis.url(), BACKLOG)?;
    let (_feed, mut events) = feed_of_room_a(&bus).await?;

    // The gateway takes nothing while far more is published than the feed can hold
    // for it: its hand-off queue and its backlog fill, and the rest is dropped.
    let last = 2 + 4_096 + BACKLOG as u64 + 2_000;
    for seq in 2..=last {
        bus.publish(&entry("t/a", seq)).await?;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    // What it held comes in order; where entries are missing, a resync comes first,
    // so the gateway reads them from history.
    let (mut previous, mut taken, mut resyncs, mut resynced) = (1, 0u64, 0, false);
    while let Ok(event) = tokio::time::timeout(Duration::from_millis(500), events.recv()).await {
        match event.ok_or_else(|| anyhow::anyhow!("feed ended"))? {
            FeedEvent::Resync => (resyncs, resynced) = (resyncs + 1, true),
            FeedEvent::Entry(got) => {
                let seq = got.entry.seq;
                assert!(seq > previous, "{seq} after {previous}");
                assert!(
                    seq == previous + 1 || resynced,
                    "{}..{} were dropped without a resync",
                    previous + 1,
                    seq - 1
                );
                (previous, taken, resynced) = (seq, taken + 1, false);
            }
        }
    }
    assert!(resyncs >= 1, "the feed never said it fell behind");
    assert!(
        taken <= 4_096 + BACKLOG as u64 + 2,
        "the feed held {taken} of {} entries: more than its backlog",
        last - 1
    );
    // It goes on as before.
    assert_eq!(
        publish_until_seen(&bus, &mut events, &entry("t/a", last + 1)).await?,
        last + 1
    );
    Ok(())
}
