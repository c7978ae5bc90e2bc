//! A fixed-bucket histogram of durations, updated with atomics.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Counts per bucket (not cumulative), their sum in microseconds and the total count.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    sum_us: AtomicU64,
    count: AtomicU64,
}

/// A histogram read at one moment, in seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// Upper bounds of the buckets, seconds, ascending.
    pub bounds: Vec<f64>,
    /// Observations per bucket (not cumulative); those above the last bound are only
    /// in `count`.
    pub counts: Vec<u64>,
    pub sum: f64,
    pub count: u64,
}

impl Histogram {
    /// `bounds`: bucket upper bounds in seconds, ascending.
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_us: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, value: Duration) {
        let seconds = value.as_secs_f64();
        if let Some(bucket) = self.bounds.iter().position(|bound| seconds <= *bound) {
            self.counts[bucket].fetch_add(1, Relaxed);
        }
        let micros = u64::try_from(value.as_micros()).unwrap_or(u64::MAX);
        self.sum_us.fetch_add(micros, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    /// Adds what `tally` has counted since its last flush, and empties it: one atomic
    /// add per bucket used instead of three per observation, for hot paths that
    /// observe many times per loop pass.
    pub fn absorb(&self, tally: &mut Tally) {
        if tally.count == 0 {
            return;
        }
        debug_assert_eq!(
            tally.counts.len(),
            self.counts.len(),
            "tally of another histogram"
        );
        for (shared, local) in self.counts.iter().zip(tally.counts.iter_mut()) {
            if *local > 0 {
                shared.fetch_add(std::mem::take(local), Relaxed);
            }
        }
        self.sum_us
            .fetch_add(std::mem::take(&mut tally.sum_us), Relaxed);
        self.count
            .fetch_add(std::mem::take(&mut tally.count), Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            bounds: self.bounds.to_vec(),
            counts: self.counts.iter().map(|c| c.load(Relaxed)).collect(),
            sum: self.sum_us.load(Relaxed) as f64 / 1e6,
            count: self.count.load(Relaxed),
        }
    }
}

/// A histogram's counts kept by one thread, without atomics, until
/// [`Histogram::absorb`] adds them to the shared one.
#[derive(Debug, Clone)]
pub struct Tally {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum_us: u64,
    count: u64,
}

impl Tally {
    /// `bounds`: the same bucket upper bounds as the histogram it is absorbed into.
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: vec![0; bounds.len()],
            sum_us: 0,
            count: 0,
        }
    }

    pub fn observe(&mut self, value: Duration) {
        let seconds = value.as_secs_f64();
        if let Some(bucket) = self.bounds.iter().position(|bound| seconds <= *bound) {
            self.counts[bucket] += 1;
        }
        let micros = u64::try_from(value.as_micros()).unwrap_or(u64::MAX);
        self.sum_us = self.sum_us.saturating_add(micros);
        self.count += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: &[f64] = &[0.001, 0.01];

    #[test]
    fn a_tally_absorbed_counts_as_if_observed_directly() {
        let direct = Histogram::new(BOUNDS);
        let absorbed = Histogram::new(BOUNDS);
        let mut tally = Tally::new(BOUNDS);
        for micros in [200, 900, 1_000, 5_000, 20_000] {
            direct.observe(Duration::from_micros(micros));
            tally.observe(Duration::from_micros(micros));
        }
        absorbed.absorb(&mut tally);
        assert_eq!(absorbed.snapshot(), direct.snapshot());
        assert_eq!(absorbed.snapshot().counts, vec![3, 1]);
        assert_eq!(absorbed.snapshot().count, 5);

        // Absorbing empties the tally: a second absorb adds nothing.
        absorbed.absorb(&mut tally);
        assert_eq!(absorbed.snapshot().count, 5);
        tally.observe(Duration::from_micros(50));
        absorbed.absorb(&mut tally);
        assert_eq!(absorbed.snapshot().counts, vec![4, 1]);
        assert_eq!(absorbed.snapshot().count, 6);
    }
}
