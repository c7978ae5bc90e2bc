//! A bottleneck on the wire: datagrams toward one client leave at a fixed bit rate
//! through a drop-tail queue, as at a congested access link.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::BytesMut;

pub(crate) struct Link {
    bits_per_second: u64,
    /// The longest a datagram may wait; a full queue drops what arrives.
    max_queue_delay: Duration,
    /// When the link finishes sending what it holds.
    free_at: Option<Instant>,
    queue: VecDeque<(Instant, BytesMut)>,
    pub(crate) dropped: u64,
}

impl Link {
    pub(crate) fn new(bits_per_second: u64) -> Self {
        Self {
            bits_per_second: bits_per_second.max(1),
            max_queue_delay: Duration::from_millis(400),
            free_at: None,
            queue: VecDeque::new(),
            dropped: 0,
        }
    }

    /// Queues a datagram at `now`; it arrives once the link has sent it.
    pub(crate) fn send(&mut self, now: Instant, datagram: BytesMut) {
        let start = self.free_at.filter(|at| *at > now).unwrap_or(now);
        if start.duration_since(now) > self.max_queue_delay {
            self.dropped += 1;
            return;
        }
        let bits = datagram.len() as u64 * 8;
        let serialization = Duration::from_nanos(bits * 1_000_000_000 / self.bits_per_second);
        let arrival = start + serialization;
        self.free_at = Some(arrival);
        self.queue.push_back((arrival, datagram));
    }

    /// The next datagram that has arrived by `now`.
    pub(crate) fn arrived(&mut self, now: Instant) -> Option<BytesMut> {
        if self.queue.front().is_some_and(|(at, _)| *at <= now) {
            self.queue.pop_front().map(|(_, datagram)| datagram)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_paces_at_its_rate_and_drops_past_its_queue() {
        let start = Instant::now();
        // 80 kbit/s: a 1,000-byte datagram takes 100 ms.
        let mut link = Link::new(80_000);
        for _ in 0..10 {
            link.send(start, BytesMut::from(&[0u8; 1000][..]));
        }
        // 100, 200, 300, 400, 500 ms queued; the rest would wait more than 400 ms.
        assert_eq!(link.dropped, 5);
        assert!(link.arrived(start + Duration::from_millis(99)).is_none());
        assert!(link.arrived(start + Duration::from_millis(100)).is_some());
        assert!(link.arrived(start + Duration::from_millis(100)).is_none());
        let later = start + Duration::from_secs(1);
        assert_eq!(std::iter::from_fn(|| link.arrived(later)).count(), 4);
    }
}
