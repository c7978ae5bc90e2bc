//! 1,000 join/leave cycles leave nothing behind in the SFU.

use confer_e2e::signal::client_offer;
use confer_sfu::{ParticipantId, RoomId, SfuApi, SfuConfig};
use tokio::sync::watch;

fn resident_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_join_leave_cycles_leak_no_peer() -> anyhow::Result<()> {
    let (_shutdown, signal) = watch::channel(false);
    let sfu = confer_sfu::start(SfuConfig::default(), signal).await?;
    let offer = client_offer(4)?;
    let cycle = |i: usize| {
        let sfu = sfu.clone();
        let offer = offer.clone();
        async move {
            let participant = ParticipantId::new(format!("p{i}"));
            let room = RoomId::new(format!("room{}", i % 7));
            sfu.create_peer(room, participant.clone(), offer).await?;
            sfu.remove_peer(participant).await?;
            anyhow::Ok(())
        }
    };
    for i in 0..100 {
        cycle(i).await?;
    }
    let warm = resident_kib();
    for i in 100..1100 {
        cycle(i).await?;
    }
    let after = resident_kib();
    let occupancy = sfu.occupancy().await?;
    assert_eq!(
        (occupancy.peers, occupancy.rooms),
        (0, 0),
        "every peer and room is gone"
    );
    let stats = sfu.stats().snapshot();
    assert_eq!(stats.peers_created, 1100);
    assert_eq!(stats.peers_removed, 1100);
    assert_eq!(stats.peers, 0);
    if let (Some(warm), Some(after)) = (warm, after) {
        let growth = after.saturating_sub(warm);
        eprintln!(
            "resident memory: {warm} KiB after warm-up, {after} KiB after 1,000 more cycles (+{growth} KiB)"
        );
        // A leaked peer holds its DTLS state, SRTP contexts and buffers: tens of KiB. A
        // leak of all 1,000 would be tens of MiB.
        assert!(
            growth < 16 * 1024,
            "resident memory grew by {growth} KiB over 1,000 cycles"
        );
    }
    Ok(())
}
