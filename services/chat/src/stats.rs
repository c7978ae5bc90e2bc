//! What the chat service counts, for its `/metrics`: entries stored, duplicate sends,
//! sends refused by reason (the error code the sender got), publishes that failed, the
//! time from a send's arrival to its entry stored and published, how long each batch
//! took to store and to publish, commits shared by concurrent sends, entries expired.
//! Labels are error codes only: never rooms or senders.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use confer_metrics::{Exposition, Histogram, LabeledCounter};

/// Buckets of the send histogram, seconds: a store round trip is milliseconds.
const SEND_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];

/// Shared counters; cloning shares them.
#[derive(Debug, Clone)]
pub struct ChatStats(Arc<Counters>);

#[derive(Debug)]
struct Counters {
    stored: AtomicU64,
    duplicates: AtomicU64,
    refused: LabeledCounter,
    publish_failures: AtomicU64,
    batches: AtomicU64,
    batched: AtomicU64,
    expired: AtomicU64,
    expiry_failures: AtomicU64,
    send_duration: Histogram,
    batch_store: Histogram,
    batch_publish: Histogram,
}

impl Default for ChatStats {
    fn default() -> Self {
        Self(Arc::new(Counters {
            stored: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            refused: LabeledCounter::default(),
            publish_failures: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            batched: AtomicU64::new(0),
            expired: AtomicU64::new(0),
            expiry_failures: AtomicU64::new(0),
            send_duration: Histogram::new(SEND_BUCKETS),
            batch_store: Histogram::new(SEND_BUCKETS),
            batch_publish: Histogram::new(SEND_BUCKETS),
        }))
    }
}

impl ChatStats {
    pub(crate) fn stored(&self, took: Duration) {
        self.0.stored.fetch_add(1, Relaxed);
        self.0.send_duration.observe(took);
    }
    pub(crate) fn duplicate(&self) {
        self.0.duplicates.fetch_add(1, Relaxed);
    }
    pub(crate) fn refused(&self, code: &str) {
        self.0.refused.inc(code);
    }
    pub(crate) fn publish_failed(&self) {
        self.0.publish_failures.fetch_add(1, Relaxed);
    }
    /// One statement and commit stored `entries` messages of concurrent sends.
    pub(crate) fn batch_stored(&self, entries: usize) {
        self.0.batches.fetch_add(1, Relaxed);
        self.0.batched.fetch_add(entries as u64, Relaxed);
    }
    /// A batch took `store` to store (every send in it, shared commit or one by one)
    /// and `publish` to publish.
    pub(crate) fn batch_timed(&self, store: Duration, publish: Duration) {
        self.0.batch_store.observe(store);
        self.0.batch_publish.observe(publish);
    }
    pub(crate) fn expired(&self, entries: u64) {
        self.0.expired.fetch_add(entries, Relaxed);
    }
    pub(crate) fn expiry_failed(&self) {
        self.0.expiry_failures.fetch_add(1, Relaxed);
    }

    /// The chat service's families on a `/metrics` page.
    pub fn render(&self, out: &mut Exposition) {
        let c = &self.0;
        out.counter1(
            "confer_chat_entries_stored",
            "Chat entries stored (and then published).",
            c.stored.load(Relaxed),
        );
        out.counter1(
            "confer_chat_duplicate_sends",
            "Sends whose client id was stored before (a resend after a lost answer).",
            c.duplicates.load(Relaxed),
        );
        out.counter_by(
            "confer_chat_sends_refused",
            "Sends refused, by reason (the error code the sender got).",
            "reason",
            &c.refused.snapshot(),
        );
        out.counter1(
            "confer_chat_publish_failures",
            "Publishes to the bus that failed (retried; gateways read history meanwhile).",
            c.publish_failures.load(Relaxed),
        );
        out.counter1(
            "confer_chat_batch_commits",
            "Commits that stored the messages of several concurrent sends at once.",
            c.batches.load(Relaxed),
        );
        out.counter1(
            "confer_chat_batched_entries",
            "Entries stored by those commits (divided by them: the batch size).",
            c.batched.load(Relaxed),
        );
        out.counter1(
            "confer_chat_entries_expired",
            "Entries deleted by their room's retention.",
            c.expired.load(Relaxed),
        );
        out.counter1(
            "confer_chat_expiry_failures",
            "Sweeps for entries past their retention that failed (entries stay until one succeeds).",
            c.expiry_failures.load(Relaxed),
        );
        out.histogram(
            "confer_chat_send_duration_seconds",
            "From a send's arrival to its entry stored and published.",
            &c.send_duration.snapshot(),
        );
        out.histogram(
            "confer_chat_batch_store_duration_seconds",
            "How long each batch of sends took to store, from its first statement to its last commit.",
            &c.batch_store.snapshot(),
        );
        out.histogram(
            "confer_chat_batch_publish_duration_seconds",
            "How long each batch's entries took to publish on the bus (one pipeline).",
            &c.batch_publish.snapshot(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_render_with_bounded_labels() {
        let stats = ChatStats::default();
        stats.stored(Duration::from_millis(3));
        stats.stored(Duration::from_millis(30));
        stats.duplicate();
        stats.refused("message_too_long");
        stats.refused("message_too_long");
        stats.refused("chat_unavailable");
        stats.publish_failed();
        stats.batch_stored(3);
        stats.batch_stored(5);
        stats.expired(5);
        stats.expiry_failed();
        stats.batch_timed(Duration::from_millis(2), Duration::from_micros(300));
        let mut out = Exposition::new(confer_metrics::Format::Prometheus);
        stats.render(&mut out);
        let text = out.finish();
        for line in [
            "confer_chat_entries_stored_total 2",
            "confer_chat_duplicate_sends_total 1",
            "confer_chat_sends_refused_total{reason=\"message_too_long\"} 2",
            "confer_chat_sends_refused_total{reason=\"chat_unavailable\"} 1",
            "confer_chat_publish_failures_total 1",
            "confer_chat_batch_commits_total 2",
            "confer_chat_batched_entries_total 8",
            "confer_chat_entries_expired_total 5",
            "confer_chat_expiry_failures_total 1",
            "confer_chat_send_duration_seconds_count 2",
            "confer_chat_send_duration_seconds_bucket{le=\"0.005\"} 1",
            "confer_chat_batch_store_duration_seconds_bucket{le=\"0.001\"} 0",
            "confer_chat_batch_store_duration_seconds_bucket{le=\"0.0025\"} 1",
            "confer_chat_batch_publish_duration_seconds_bucket{le=\"0.001\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
    }
}
