//! SFU resident memory per peer: 500 peers created from real SDP offers (ICE, DTLS and
//! interceptor state allocated; not connected), resident set before and after.
//!
//! `cargo bench -p confer-e2e --bench peer_memory`

// A benchmark reports on stdout.
#![allow(clippy::print_stdout)]

use confer_e2e::signal::client_offer;
use confer_sfu::{ParticipantId, RoomId, SfuApi, SfuConfig};
use tokio::sync::watch;

const PEERS: usize = 500;

fn resident_kib() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmRSS"))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let (_shutdown, signal) = watch::channel(false);
    let sfu = confer_sfu::start(SfuConfig::default(), signal).await?;
    let offer = client_offer(8)?;
    // Warm up allocator and lazily built state with one peer.
    sfu.create_peer(
        RoomId::new("warm"),
        ParticipantId::new("warm"),
        offer.clone(),
    )
    .await?;
    let before = resident_kib()?;
    for i in 0..PEERS {
        let room = RoomId::new(format!("room-{}", i / 10));
        sfu.create_peer(room, ParticipantId::new(format!("p{i}")), offer.clone())
            .await?;
    }
    let after = resident_kib()?;
    println!(
        "{PEERS} peers (8 audio + 8 video receive slots each): resident {before} KiB -> {after} KiB, {:.1} KiB per peer",
        (after - before) as f64 / PEERS as f64
    );
    Ok(())
}
