//! Counters the runtime and core update and the metrics endpoint reads.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use confer_metrics::{Histogram, Tally};

use crate::core::Quality;

/// Round-trip time buckets, seconds: same-city to intercontinental, and a struggling
/// mobile link.
const RTT_BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.0];
/// Interarrival jitter buckets, seconds.
const JITTER_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.25];

/// Forwarding delay buckets, seconds: from a datagram's arrival to the moment each
/// packet it caused has been handed to the kernel.
pub(crate) const FORWARD_DELAY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05,
];

/// Shared, lock-free counters. Cloning shares them.
///
/// Each media worker counts into its own cache-line-aligned block (a clone made by
/// [`SfuStats::for_worker`]), so workers on different cores never write the same
/// line; readers sum the blocks.
#[derive(Debug, Clone)]
pub struct SfuStats {
    shared: Arc<Shared>,
    worker: usize,
}

#[derive(Debug)]
struct Shared {
    timings: Timings,
    workers: Box<[Counters]>,
    /// The recorder's, from its one thread and the workers' hand-offs.
    recordings: Recordings,
}

#[derive(Debug, Default)]
struct Recordings {
    open: AtomicU64,
    finished: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
}

impl Default for SfuStats {
    fn default() -> Self {
        Self::new(1)
    }
}

/// Subscribers' round-trip time and jitter, from their receiver reports.
#[derive(Debug)]
struct Timings {
    rtt: Histogram,
    jitter: Histogram,
    relay_rtt: Histogram,
    forward_delay: Histogram,
}

impl Default for Timings {
    fn default() -> Self {
        Self {
            rtt: Histogram::new(RTT_BUCKETS),
            jitter: Histogram::new(JITTER_BUCKETS),
            relay_rtt: Histogram::new(RTT_BUCKETS),
            forward_delay: Histogram::new(FORWARD_DELAY_BUCKETS),
        }
    }
}

#[derive(Debug, Default)]
#[repr(align(128))]
struct Counters {
    bytes_forwarded: AtomicU64,
    datagrams_received: AtomicU64,
    datagrams_unroutable: AtomicU64,
    datagrams_rejected: AtomicU64,
    rtp_forwarded: AtomicU64,
    rtp_blocked: AtomicU64,
    keyframe_requests: AtomicU64,
    nacks_received: AtomicU64,
    nack_packets_requested: AtomicU64,
    nacks_sent: AtomicU64,
    retransmissions_sent: AtomicU64,
    retransmissions_suppressed: AtomicU64,
    rtx_received: AtomicU64,
    padding_lost: AtomicU64,
    estimates_twcc: AtomicU64,
    estimates_remb: AtomicU64,
    layer_switches: AtomicU64,
    losses_unrepaired: AtomicU64,
    slots_paused: AtomicU64,
    impaired_dropped: AtomicU64,
    peers: AtomicU64,
    /// Connected peers at each connection quality, in `Quality::ALL` order, at the
    /// last rating.
    peers_by_quality: [AtomicU64; 4],
    /// Times a peer's connection quality became each level (its first rating included).
    quality_changes: [AtomicU64; 4],
    peers_created: AtomicU64,
    peers_removed: AtomicU64,
    relay_links: AtomicU64,
    relay_links_down: AtomicU64,
    relay_sent: AtomicU64,
    relay_received: AtomicU64,
    relay_rejected: AtomicU64,
    relay_lost: AtomicU64,
    relay_resent: AtomicU64,
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
    /// RTCP NACK packets from subscribers, and the lost packets they named.
    pub nacks_received: u64,
    pub nack_packets_requested: u64,
    /// RTCP NACK packets sent to publishers for packets lost on their way in.
    pub nacks_sent: u64,
    /// Packets resent to subscribers from the per-stream cache in answer to NACKs.
    pub retransmissions_sent: u64,
    /// Resends held back: the same packet again within a round trip, or resends past a
    /// quarter of the subscriber's bandwidth estimate.
    pub retransmissions_suppressed: u64,
    /// Packets publishers sent in RTX streams that carried an original: resends, and
    /// bandwidth probes that repeat packets already sent (dropped as duplicates).
    pub rtx_received: u64,
    /// Padding publishers sent that was lost on the way in: never resent, and taken out
    /// of the subscribers' numbering instead.
    pub padding_lost: u64,
    /// Subscriber bandwidth estimates taken: the SFU's own from TWCC feedback (GCC),
    /// and receivers' REMB.
    pub estimates_twcc: u64,
    pub estimates_remb: u64,
    /// Times a subscriber's slot moved to another simulcast layer (at a keyframe).
    pub layer_switches: u64,
    /// Packets a publisher lost on the way in and did not resend in time; each asked
    /// for a keyframe on behalf of that layer's subscribers.
    pub losses_unrepaired: u64,
    /// Times a video slot was paused (hidden tile, or a subscriber short of bandwidth).
    pub slots_paused: u64,
    /// Datagrams dropped by the configured impairment (fault injection; 0 in production).
    pub impaired_dropped: u64,
    pub peers: u64,
    /// Connected peers rated excellent, good, poor and lost (`Quality::ALL` order).
    pub peers_by_quality: [u64; 4],
    /// Times a peer's connection quality became each level, its first rating included
    /// (`Quality::ALL` order).
    pub quality_changes: [u64; 4],
    pub peers_created: u64,
    pub peers_removed: u64,
    /// Relay links to SFUs in other regions, and those of them not hearing the far side.
    pub relay_links: u64,
    pub relay_links_down: u64,
    /// Relay datagrams sent, received (authentic) and refused (unknown link, forged,
    /// replayed, malformed).
    pub relay_sent: u64,
    pub relay_received: u64,
    pub relay_rejected: u64,
    /// Relayed media packets found missing and asked for again, and those resent.
    pub relay_lost: u64,
    pub relay_resent: u64,
    /// Recording files being written now.
    pub recordings_open: u64,
    pub recordings_finished: u64,
    /// Recordings that could not start or stopped early (a write failed).
    pub recordings_failed: u64,
    /// Packets of recorded tracks the recorder was too far behind to take.
    pub recording_packets_dropped: u64,
}

impl SfuStats {
    /// Counters for `workers` media workers.
    pub fn new(workers: usize) -> Self {
        Self {
            shared: Arc::new(Shared {
                timings: Timings::default(),
                workers: (0..workers.max(1)).map(|_| Counters::default()).collect(),
                recordings: Recordings::default(),
            }),
            worker: 0,
        }
    }

    /// A clone that counts into worker `index`'s block.
    pub fn for_worker(&self, index: usize) -> Self {
        assert!(index < self.shared.workers.len(), "no media worker {index}");
        Self {
            shared: self.shared.clone(),
            worker: index,
        }
    }

    /// The totals over every worker.
    pub fn snapshot(&self) -> StatsSnapshot {
        let mut total = StatsSnapshot::default();
        for c in &self.shared.workers {
            total.datagrams_received += c.datagrams_received.load(Relaxed);
            total.datagrams_unroutable += c.datagrams_unroutable.load(Relaxed);
            total.datagrams_rejected += c.datagrams_rejected.load(Relaxed);
            total.rtp_forwarded += c.rtp_forwarded.load(Relaxed);
            total.rtp_blocked += c.rtp_blocked.load(Relaxed);
            total.keyframe_requests += c.keyframe_requests.load(Relaxed);
            total.nacks_received += c.nacks_received.load(Relaxed);
            total.nack_packets_requested += c.nack_packets_requested.load(Relaxed);
            total.nacks_sent += c.nacks_sent.load(Relaxed);
            total.retransmissions_sent += c.retransmissions_sent.load(Relaxed);
            total.retransmissions_suppressed += c.retransmissions_suppressed.load(Relaxed);
            total.rtx_received += c.rtx_received.load(Relaxed);
            total.padding_lost += c.padding_lost.load(Relaxed);
            total.estimates_twcc += c.estimates_twcc.load(Relaxed);
            total.estimates_remb += c.estimates_remb.load(Relaxed);
            total.layer_switches += c.layer_switches.load(Relaxed);
            total.losses_unrepaired += c.losses_unrepaired.load(Relaxed);
            total.slots_paused += c.slots_paused.load(Relaxed);
            total.impaired_dropped += c.impaired_dropped.load(Relaxed);
            total.peers += c.peers.load(Relaxed);
            for (total, count) in total.peers_by_quality.iter_mut().zip(&c.peers_by_quality) {
                *total += count.load(Relaxed);
            }
            for (total, count) in total.quality_changes.iter_mut().zip(&c.quality_changes) {
                *total += count.load(Relaxed);
            }
            total.peers_created += c.peers_created.load(Relaxed);
            total.peers_removed += c.peers_removed.load(Relaxed);
            total.relay_links += c.relay_links.load(Relaxed);
            total.relay_links_down += c.relay_links_down.load(Relaxed);
            total.relay_sent += c.relay_sent.load(Relaxed);
            total.relay_received += c.relay_received.load(Relaxed);
            total.relay_rejected += c.relay_rejected.load(Relaxed);
            total.relay_lost += c.relay_lost.load(Relaxed);
            total.relay_resent += c.relay_resent.load(Relaxed);
        }
        let recordings = &self.shared.recordings;
        total.recordings_open = recordings.open.load(Relaxed);
        total.recordings_finished = recordings.finished.load(Relaxed);
        total.recordings_failed = recordings.failed.load(Relaxed);
        total.recording_packets_dropped = recordings.dropped.load(Relaxed);
        total
    }

    /// A recording's file was opened.
    pub(crate) fn recording_opened(&self) {
        self.shared.recordings.open.fetch_add(1, Relaxed);
    }

    /// A recording's file was closed: finished, or given up on (a write failed).
    pub(crate) fn recording_closed(&self, finished: bool) {
        let recordings = &self.shared.recordings;
        recordings.open.fetch_sub(1, Relaxed);
        let outcome = if finished {
            &recordings.finished
        } else {
            &recordings.failed
        };
        outcome.fetch_add(1, Relaxed);
    }

    /// A recording could not start (its file could not be made).
    pub(crate) fn recording_failed(&self) {
        self.shared.recordings.failed.fetch_add(1, Relaxed);
    }

    /// Packets the recorder was too far behind to take.
    pub(crate) fn recording_packets_dropped(&self, n: usize) {
        self.shared.recordings.dropped.fetch_add(n as u64, Relaxed);
    }

    /// Datagrams each media worker has received, in worker order: how evenly rooms
    /// spread over the cores.
    pub fn datagrams_received_per_worker(&self) -> Vec<u64> {
        self.shared
            .workers
            .iter()
            .map(|c| c.datagrams_received.load(Relaxed))
            .collect()
    }

    fn mine(&self) -> &Counters {
        &self.shared.workers[self.worker]
    }

    pub(crate) fn datagram_received(&self) {
        self.mine().datagrams_received.fetch_add(1, Relaxed);
    }
    pub(crate) fn datagram_unroutable(&self) {
        self.mine().datagrams_unroutable.fetch_add(1, Relaxed);
    }
    pub(crate) fn datagram_rejected(&self) {
        self.mine().datagrams_rejected.fetch_add(1, Relaxed);
    }
    pub(crate) fn rtp_forwarded(&self, bytes: usize) {
        self.mine().rtp_forwarded.fetch_add(1, Relaxed);
        self.mine().bytes_forwarded.fetch_add(bytes as u64, Relaxed);
    }
    pub(crate) fn subscriber_rtt(&self, rtt: Duration) {
        self.shared.timings.rtt.observe(rtt);
    }
    pub(crate) fn subscriber_jitter(&self, jitter: Duration) {
        self.shared.timings.jitter.observe(jitter);
    }
    pub(crate) fn relay_rtt(&self, rtt: Duration) {
        self.shared.timings.relay_rtt.observe(rtt);
    }

    /// Relay round trips observed so far (count, sum in seconds).
    pub fn relay_rtt_observed(&self) -> (u64, f64) {
        let snapshot = self.shared.timings.relay_rtt.snapshot();
        (snapshot.count, snapshot.sum)
    }

    /// An empty tally for [`SfuStats::absorb_forward_delays`].
    pub(crate) fn forward_delay_tally() -> Tally {
        Tally::new(FORWARD_DELAY_BUCKETS)
    }

    /// Adds a worker's forwarding delays counted since its last call.
    pub(crate) fn absorb_forward_delays(&self, tally: &mut Tally) {
        self.shared.timings.forward_delay.absorb(tally);
    }

    /// Subscribers' round-trip times and jitter so far, and the bytes forwarded.
    pub fn render_quality(&self, out: &mut confer_metrics::Exposition) {
        let c = &self.shared;
        let per_worker = self.datagrams_received_per_worker();
        let labels: Vec<String> = (0..per_worker.len()).map(|i| i.to_string()).collect();
        let samples: Vec<(String, u64)> = labels.into_iter().zip(per_worker).collect();
        out.counter_by(
            "confer_sfu_worker_datagrams_received",
            "Datagrams received per media worker (one event loop per core).",
            "worker",
            &samples,
        );
        out.counter1(
            "confer_sfu_bytes_forwarded",
            "RTP bytes (payload and fixed header) forwarded to subscribers.",
            c.workers
                .iter()
                .map(|w| w.bytes_forwarded.load(Relaxed))
                .sum(),
        );
        out.histogram(
            "confer_sfu_subscriber_rtt_seconds",
            "Round-trip time of streams sent to subscribers, from their reception reports (one observation per report).",
            &c.timings.rtt.snapshot(),
        );
        out.histogram(
            "confer_sfu_relay_rtt_seconds",
            "Round-trip time to the SFUs holding the same rooms in other regions, over the relay links (one observation per heartbeat answered).",
            &c.timings.relay_rtt.snapshot(),
        );
        out.histogram(
            "confer_sfu_forward_delay_seconds",
            "Time from an RTP or SRTP datagram's arrival at a media worker to each RTP packet it caused being sent (forwards and retransmissions; one observation per packet sent).",
            &c.timings.forward_delay.snapshot(),
        );
        out.histogram(
            "confer_sfu_subscriber_jitter_seconds",
            "Interarrival jitter subscribers report for the streams sent to them (one observation per report).",
            &c.timings.jitter.snapshot(),
        );
    }
    pub(crate) fn packet_blocked(&self) {
        self.mine().rtp_blocked.fetch_add(1, Relaxed);
    }
    pub(crate) fn keyframe_requested(&self) {
        self.mine().keyframe_requests.fetch_add(1, Relaxed);
    }
    pub(crate) fn nacks_received(&self, nacks: u64, lost: u64) {
        self.mine().nacks_received.fetch_add(nacks, Relaxed);
        self.mine().nack_packets_requested.fetch_add(lost, Relaxed);
    }
    pub(crate) fn nacks_sent(&self, nacks: u64) {
        self.mine().nacks_sent.fetch_add(nacks, Relaxed);
    }
    pub(crate) fn retransmission_sent(&self) {
        self.mine().retransmissions_sent.fetch_add(1, Relaxed);
    }
    /// A subscriber bandwidth estimate: send-side from TWCC (`true`) or a REMB.
    pub(crate) fn bandwidth_estimate(&self, from_twcc: bool) {
        let counter = if from_twcc {
            &self.mine().estimates_twcc
        } else {
            &self.mine().estimates_remb
        };
        counter.fetch_add(1, Relaxed);
    }
    pub(crate) fn retransmission_suppressed(&self) {
        self.mine().retransmissions_suppressed.fetch_add(1, Relaxed);
    }
    pub(crate) fn rtx_received(&self) {
        self.mine().rtx_received.fetch_add(1, Relaxed);
    }
    pub(crate) fn padding_lost(&self, packets: u16) {
        self.mine()
            .padding_lost
            .fetch_add(u64::from(packets), Relaxed);
    }
    pub(crate) fn layer_switched(&self) {
        self.mine().layer_switches.fetch_add(1, Relaxed);
    }
    pub(crate) fn loss_unrepaired(&self) {
        self.mine().losses_unrepaired.fetch_add(1, Relaxed);
    }
    pub(crate) fn slot_paused(&self) {
        self.mine().slots_paused.fetch_add(1, Relaxed);
    }
    pub(crate) fn impaired_drop(&self) {
        self.mine().impaired_dropped.fetch_add(1, Relaxed);
    }
    pub(crate) fn peer_created(&self) {
        self.mine().peers.fetch_add(1, Relaxed);
        self.mine().peers_created.fetch_add(1, Relaxed);
    }
    /// This worker's connected peers at each quality (`Quality::ALL` order).
    pub(crate) fn peers_rated(&self, counts: [u64; 4]) {
        for (gauge, count) in self.mine().peers_by_quality.iter().zip(counts) {
            gauge.store(count, Relaxed);
        }
    }
    /// A peer's connection quality became `quality` (`Quality::ALL` index).
    pub(crate) fn quality_changed(&self, index: usize) {
        if let Some(counter) = self.mine().quality_changes.get(index) {
            counter.fetch_add(1, Relaxed);
        }
    }
    pub(crate) fn peer_removed(&self) {
        self.mine().peers.fetch_sub(1, Relaxed);
        self.mine().peers_removed.fetch_add(1, Relaxed);
    }
    pub(crate) fn relay_opened(&self) {
        self.mine().relay_links.fetch_add(1, Relaxed);
    }
    pub(crate) fn relay_closed(&self) {
        self.mine().relay_links.fetch_sub(1, Relaxed);
    }
    pub(crate) fn set_relays_down(&self, down: u64) {
        self.mine().relay_links_down.store(down, Relaxed);
    }
    pub(crate) fn relay_sent(&self) {
        self.mine().relay_sent.fetch_add(1, Relaxed);
    }
    pub(crate) fn relay_received(&self) {
        self.mine().relay_received.fetch_add(1, Relaxed);
    }
    pub(crate) fn relay_rejected(&self) {
        self.mine().relay_rejected.fetch_add(1, Relaxed);
    }
    pub(crate) fn relay_lost(&self, packets: u64) {
        self.mine().relay_lost.fetch_add(packets, Relaxed);
    }
    pub(crate) fn relay_resent(&self) {
        self.mine().relay_resent.fetch_add(1, Relaxed);
    }
}

impl StatsSnapshot {
    /// The SFU's families on a `/metrics` page.
    pub fn render(&self, out: &mut confer_metrics::Exposition) {
        let counters = [
            (
                "confer_sfu_datagrams_received",
                "Datagrams received on the media port.",
                self.datagrams_received,
            ),
            (
                "confer_sfu_datagrams_unroutable",
                "Datagrams dropped because no peer owns their source.",
                self.datagrams_unroutable,
            ),
            (
                "confer_sfu_datagrams_rejected",
                "Datagrams a peer's WebRTC stack refused.",
                self.datagrams_rejected,
            ),
            (
                "confer_sfu_rtp_forwarded",
                "RTP packets forwarded to subscribers.",
                self.rtp_forwarded,
            ),
            (
                "confer_sfu_rtp_blocked",
                "RTP packets not forwarded because their track is blocked.",
                self.rtp_blocked,
            ),
            (
                "confer_sfu_keyframe_requests",
                "Keyframe requests sent to publishers.",
                self.keyframe_requests,
            ),
            (
                "confer_sfu_nacks_received",
                "RTCP NACKs received from subscribers.",
                self.nacks_received,
            ),
            (
                "confer_sfu_nack_packets_requested",
                "Lost packets named by subscribers' NACKs.",
                self.nack_packets_requested,
            ),
            (
                "confer_sfu_nacks_sent",
                "RTCP NACKs sent to publishers for packets lost on the way in.",
                self.nacks_sent,
            ),
            (
                "confer_sfu_retransmissions",
                "Packets resent to subscribers from the packet cache.",
                self.retransmissions_sent,
            ),
            (
                "confer_sfu_retransmissions_suppressed",
                "Resends held back: a packet again within a round trip, or past a quarter of the subscriber's bandwidth estimate.",
                self.retransmissions_suppressed,
            ),
            (
                "confer_sfu_rtx_received",
                "Packets from publishers' RTX streams carrying an original: resends, and probes that repeat packets already sent.",
                self.rtx_received,
            ),
            (
                "confer_sfu_padding_lost",
                "Publishers' padding lost on the way in, taken out of subscribers' sequence numbers.",
                self.padding_lost,
            ),
            (
                "confer_sfu_layer_switches",
                "Simulcast layer switches of subscriber slots.",
                self.layer_switches,
            ),
            (
                "confer_sfu_losses_unrepaired",
                "Inbound losses not resent in time, answered with a keyframe request.",
                self.losses_unrepaired,
            ),
            (
                "confer_sfu_slots_paused",
                "Video slots paused (hidden tile or too little bandwidth).",
                self.slots_paused,
            ),
            (
                "confer_sfu_impaired_dropped",
                "Datagrams dropped by configured impairment (fault injection).",
                self.impaired_dropped,
            ),
            (
                "confer_sfu_peers_created",
                "Peers created (joins negotiated with this SFU).",
                self.peers_created,
            ),
            (
                "confer_sfu_peers_removed",
                "Peers removed (left, timed out or moved).",
                self.peers_removed,
            ),
        ];
        for (name, help, value) in counters {
            out.counter1(name, help, value);
        }
        out.counter(
            "confer_sfu_relay_datagrams",
            "Relay datagrams to and from the room's SFUs in other regions: sent, received, and refused (unknown link, forged, replayed or malformed).",
            &[
                (&[("direction", "sent")], self.relay_sent),
                (&[("direction", "received")], self.relay_received),
                (&[("direction", "refused")], self.relay_rejected),
            ],
        );
        out.counter1(
            "confer_sfu_relay_lost",
            "Relayed media packets that did not arrive from the far SFU and were asked for again.",
            self.relay_lost,
        );
        out.counter1(
            "confer_sfu_relay_resent",
            "Media packets resent over a relay from its cache, at the far SFU's request.",
            self.relay_resent,
        );
        out.gauge1(
            "confer_sfu_relay_links",
            "Relay links to SFUs in other regions that hold the same rooms.",
            self.relay_links as f64,
        );
        out.gauge1(
            "confer_sfu_relay_links_down",
            "Relay links that have heard nothing from the far side for 3 s.",
            self.relay_links_down as f64,
        );
        out.counter(
            "confer_sfu_bandwidth_estimates",
            "Subscriber bandwidth estimates taken for layer choice, by source: the SFU's own from TWCC feedback (GCC), or the receiver's REMB.",
            &[
                (&[("source", "twcc")], self.estimates_twcc),
                (&[("source", "remb")], self.estimates_remb),
            ],
        );
        out.gauge1("confer_sfu_peers", "Peers on the SFU.", self.peers as f64);
        out.gauge1(
            "confer_sfu_recordings_open",
            "Recording files being written now (one per recorded track).",
            self.recordings_open as f64,
        );
        out.counter_by(
            "confer_sfu_recordings",
            "Recording files closed: finished, or failed (could not start, or a write failed and the file stops there).",
            "outcome",
            &[
                ("finished".to_owned(), self.recordings_finished),
                ("failed".to_owned(), self.recordings_failed),
            ],
        );
        out.counter1(
            "confer_sfu_recording_packets_dropped",
            "Packets of recorded tracks the recorder was too far behind to take (the disk is slow); their frames are missing from the files.",
            self.recording_packets_dropped,
        );
        let by_quality = |values: [u64; 4]| -> Vec<(String, u64)> {
            Quality::ALL
                .iter()
                .zip(values)
                .map(|(quality, n)| (quality.as_str().to_owned(), n))
                .collect()
        };
        out.counter_by(
            "confer_sfu_quality_changes",
            "Times a peer's connection quality became each level (its first rating included).",
            "quality",
            &by_quality(self.quality_changes),
        );
        out.gauge_by(
            "confer_sfu_peers_by_quality",
            "Connected peers by connection quality (excellent, good, poor, lost), from loss, round trip and jitter over the last 2 s; rated every 2 s.",
            "quality",
            &by_quality(self.peers_by_quality),
        );
    }
}
