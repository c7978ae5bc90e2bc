//! Counters the runtime and core update and the metrics endpoint reads.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Shared, lock-free counters. Cloning shares them.
#[derive(Debug, Clone, Default)]
pub struct SfuStats(Arc<Counters>);

#[derive(Debug, Default)]
struct Counters {
    datagrams_received: AtomicU64,
    datagrams_unroutable: AtomicU64,
    datagrams_rejected: AtomicU64,
    rtp_forwarded: AtomicU64,
    rtp_blocked: AtomicU64,
    keyframe_requests: AtomicU64,
    peers: AtomicU64,
    peers_created: AtomicU64,
    peers_removed: AtomicU64,
}

/// A point-in-time copy of [`SfuStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub datagrams_received: u64,
    /// Datagrams from an address no peer owns that were not a STUN request naming a peer.
    pub datagrams_unroutable: u64,
    /// Datagrams a peer's WebRTC stack refused (bad STUN, DTLS, SRTP or RTP).
    pub datagrams_rejected: u64,
    pub rtp_forwarded: u64,
    /// RTP packets not forwarded because their track is blocked (host mute, no right).
    pub rtp_blocked: u64,
    pub keyframe_requests: u64,
    pub peers: u64,
    pub peers_created: u64,
    pub peers_removed: u64,
}

impl SfuStats {
    pub fn snapshot(&self) -> StatsSnapshot {
        let c = &self.0;
        StatsSnapshot {
            datagrams_received: c.datagrams_received.load(Relaxed),
            datagrams_unroutable: c.datagrams_unroutable.load(Relaxed),
            datagrams_rejected: c.datagrams_rejected.load(Relaxed),
            rtp_forwarded: c.rtp_forwarded.load(Relaxed),
            rtp_blocked: c.rtp_blocked.load(Relaxed),
            keyframe_requests: c.keyframe_requests.load(Relaxed),
            peers: c.peers.load(Relaxed),
            peers_created: c.peers_created.load(Relaxed),
            peers_removed: c.peers_removed.load(Relaxed),
        }
    }

    pub(crate) fn datagram_received(&self) {
        self.0.datagrams_received.fetch_add(1, Relaxed);
    }
    pub(crate) fn datagram_unroutable(&self) {
        self.0.datagrams_unroutable.fetch_add(1, Relaxed);
    }
    pub(crate) fn datagram_rejected(&self) {
        self.0.datagrams_rejected.fetch_add(1, Relaxed);
    }
    pub(crate) fn rtp_forwarded(&self) {
        self.0.rtp_forwarded.fetch_add(1, Relaxed);
    }
    pub(crate) fn packet_blocked(&self) {
        self.0.rtp_blocked.fetch_add(1, Relaxed);
    }
    pub(crate) fn keyframe_requested(&self) {
        self.0.keyframe_requests.fetch_add(1, Relaxed);
    }
    pub(crate) fn peer_created(&self) {
        self.0.peers.fetch_add(1, Relaxed);
        self.0.peers_created.fetch_add(1, Relaxed);
    }
    pub(crate) fn peer_removed(&self) {
        self.0.peers.fetch_sub(1, Relaxed);
        self.0.peers_removed.fetch_add(1, Relaxed);
    }
}
