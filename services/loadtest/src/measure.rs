//! What the clients count, and the report made of it.
//!
//! Only packets *sent* inside the measurement window count, on both sides: a publisher
//! counts what it sent in the window (dropped on purpose or not), a subscriber what it
//! received of those. Loss is then exact: deliveries expected (every packet sent in
//! the window, once per subscriber of its room) against distinct deliveries seen.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use crate::stamp::Stamp;

/// One clock for every client, and the measurement window on it.
#[derive(Debug)]
pub struct Clock {
    epoch: Instant,
    window_start_us: AtomicU64,
    window_end_us: AtomicU64,
}

impl Clock {
    pub fn new() -> Self {
        Self {
            epoch: Instant::now(),
            window_start_us: AtomicU64::new(u64::MAX),
            window_end_us: AtomicU64::new(u64::MAX),
        }
    }

    pub fn now_us(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    pub fn open_window(&self) {
        self.window_start_us.store(self.now_us(), Relaxed);
    }

    pub fn close_window(&self) {
        self.window_end_us.store(self.now_us(), Relaxed);
    }

    fn in_window(&self, sent_us: u64) -> bool {
        sent_us >= self.window_start_us.load(Relaxed) && sent_us < self.window_end_us.load(Relaxed)
    }

    /// Length of the closed window.
    pub fn window(&self) -> Duration {
        let start = self.window_start_us.load(Relaxed);
        let end = self.window_end_us.load(Relaxed);
        Duration::from_micros(end.saturating_sub(start))
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// What a publisher sent in the window.
#[derive(Debug, Default)]
pub struct PublisherTally {
    pub sent: u64,
    pub dropped: u64,
}

impl PublisherTally {
    pub fn sent(&mut self, clock: &Clock, stamp: Stamp) {
        if clock.in_window(stamp.sent_us) {
            self.sent += 1;
        }
    }

    /// One datagram dropped by the configured loss (counted if the window is open).
    pub fn dropped(&mut self, clock: &Clock) {
        if clock.in_window(clock.now_us()) {
            self.dropped += 1;
        }
    }
}

/// What a subscriber received of the packets sent in the window.
#[derive(Debug, Default)]
pub struct SubscriberTally {
    /// Distinct packets received.
    pub received: u64,
    /// Copies of a packet already received (retransmissions that crossed the original).
    pub duplicates: u64,
    /// Send → receive time of each distinct packet, microseconds.
    pub latencies_us: Vec<u32>,
    streams: HashMap<u32, StreamState>,
}

/// Per publisher: which packet numbers arrived, and the RFC 3550 interarrival jitter.
#[derive(Debug, Default)]
struct StreamState {
    seen: Vec<u64>,
    last_transit_us: Option<i64>,
    jitter_us: f64,
}

impl StreamState {
    /// Marks `counter` seen; false when it already was.
    fn mark(&mut self, counter: u64) -> bool {
        let word = usize::try_from(counter / 64).unwrap_or(usize::MAX);
        if word >= self.seen.len() {
            if word > 1 << 24 {
                return false; // a counter no run reaches: not ours
            }
            self.seen.resize(word + 1, 0);
        }
        let bit = 1u64 << (counter % 64);
        let fresh = self.seen[word] & bit == 0;
        self.seen[word] |= bit;
        fresh
    }
}

impl SubscriberTally {
    pub fn record(&mut self, clock: &Clock, stamp: Stamp) {
        if !clock.in_window(stamp.sent_us) {
            return;
        }
        let arrived_us = clock.now_us();
        let stream = self.streams.entry(stamp.publisher).or_default();
        if !stream.mark(stamp.counter) {
            self.duplicates += 1;
            return;
        }
        self.received += 1;
        let transit = i64::try_from(arrived_us).unwrap_or(i64::MAX)
            - i64::try_from(stamp.sent_us).unwrap_or(i64::MAX);
        if let Some(last) = stream.last_transit_us {
            let d = (transit - last).abs() as f64;
            stream.jitter_us += (d - stream.jitter_us) / 16.0;
        }
        stream.last_transit_us = Some(transit);
        self.latencies_us
            .push(u32::try_from(transit.max(0)).unwrap_or(u32::MAX));
    }

    /// Mean interarrival jitter over the streams received, microseconds.
    pub fn jitter_us(&self) -> Option<f64> {
        let n = self.streams.len();
        (n > 0).then(|| self.streams.values().map(|s| s.jitter_us).sum::<f64>() / n as f64)
    }
}

/// The outcome of a run.
#[derive(Debug, Clone)]
pub struct Report {
    pub window: Duration,
    /// Packets the publishers sent in the window (whether or not dropped on purpose).
    pub sent: u64,
    pub dropped_on_purpose: u64,
    /// Deliveries expected: each packet sent, once per subscriber of its room.
    pub expected: u64,
    /// Distinct packets received by subscribers.
    pub delivered: u64,
    pub duplicates: u64,
    /// Send → receive time over every delivery, microseconds: p50, p90, p99, max.
    pub latency_us: [u32; 4],
    /// Mean RFC 3550 interarrival jitter across subscribers' streams, microseconds.
    pub jitter_us: f64,
    /// CPU the server process used in the window (user + system), when its pid is known.
    pub server_cpu: Option<Duration>,
    /// The same per thread name, busiest first.
    pub server_threads_cpu: Vec<(String, Duration)>,
    /// The server's own arrival-to-send histogram over the window, when its metrics
    /// address is known.
    pub forward_delay: Option<crate::server_metrics::Buckets>,
}

impl Report {
    pub fn delivered_per_second(&self) -> f64 {
        self.delivered as f64 / self.window.as_secs_f64().max(f64::MIN_POSITIVE)
    }

    /// Share of expected deliveries that never arrived.
    pub fn loss(&self) -> f64 {
        1.0 - self.delivered as f64 / self.expected.max(1) as f64
    }

    /// CPU the server's threads named `name` used in the window.
    pub fn thread_cpu(&self, name: &str) -> Option<Duration> {
        self.server_threads_cpu
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, cpu)| *cpu)
    }

    /// Server CPU per million delivered packets.
    pub fn cpu_per_million(&self) -> Option<Duration> {
        let cpu = self.server_cpu?;
        Some(cpu.mul_f64(1e6 / self.delivered.max(1) as f64))
    }
}

/// Percentiles p50, p90, p99 and the maximum of `values` (sorted in place).
pub fn percentiles(values: &mut [u32]) -> [u32; 4] {
    if values.is_empty() {
        return [0; 4];
    }
    values.sort_unstable();
    let at = |p: f64| values[((values.len() - 1) as f64 * p).round() as usize];
    [at(0.50), at(0.90), at(0.99), values[values.len() - 1]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_packets_sent_inside_the_window_count_and_duplicates_are_set_apart() {
        let clock = Clock::new();
        let mut publisher = PublisherTally::default();
        let mut subscriber = SubscriberTally::default();
        let stamp = |counter, sent_us| Stamp {
            publisher: 7,
            counter,
            sent_us,
        };
        let before = stamp(0, clock.now_us());
        publisher.sent(&clock, before);
        subscriber.record(&clock, before);
        clock.open_window();
        let inside = stamp(1, clock.now_us());
        publisher.sent(&clock, inside);
        subscriber.record(&clock, inside);
        subscriber.record(&clock, inside);
        publisher.sent(&clock, stamp(2, clock.now_us()));
        clock.close_window();
        assert_eq!(publisher.sent, 2);
        assert_eq!(subscriber.received, 1);
        assert_eq!(subscriber.duplicates, 1);
        assert_eq!(subscriber.latencies_us.len(), 1);
        assert!(subscriber.jitter_us().is_some());
    }

    #[test]
    fn percentiles_of_a_known_series() {
        let mut values: Vec<u32> = (1..=100).rev().collect();
        assert_eq!(percentiles(&mut values), [51, 90, 99, 100]);
        assert_eq!(percentiles(&mut []), [0; 4]);
    }

    #[test]
    fn loss_and_cpu_per_million_follow_the_counts() {
        let report = Report {
            window: Duration::from_secs(2),
            sent: 1000,
            dropped_on_purpose: 0,
            expected: 10_000,
            delivered: 9_900,
            duplicates: 0,
            latency_us: [0; 4],
            jitter_us: 0.0,
            server_cpu: Some(Duration::from_millis(99)),
            server_threads_cpu: vec![("media-0".into(), Duration::from_millis(60))],
            forward_delay: None,
        };
        assert!((report.loss() - 0.01).abs() < 1e-9);
        assert!((report.delivered_per_second() - 4_950.0).abs() < 1e-9);
        assert_eq!(report.cpu_per_million(), Some(Duration::from_secs(10)));
        assert_eq!(
            report.thread_cpu("media-0"),
            Some(Duration::from_millis(60))
        );
        assert_eq!(report.thread_cpu("media-1"), None);
    }
}
