//! Group commit: this replica's sends are stored and published in batches.
//!
//! Up to [`IN_FLIGHT`] batches are stored at once; sends that arrive while all of them
//! are busy wait, and go together in the next.
//! On PostgreSQL one statement numbers and inserts all of a batch's messages, whatever
//! their rooms, under one commit ([`Store::append_batch`]); edits and deletes (which
//! amend their target), SQLite, and the sends of a batch the database refused (a
//! resend's client id among them) are stored one at a time. The batch's entries are
//! then published in the order they were numbered, as one pipeline, and only then are
//! its sends answered: nothing is acknowledged before it is committed.
//!
//! Batches publish in the order they finished storing. Two batches in flight may
//! number one room's messages in either order (their statements race for the room's
//! row), but the one that locks the row first holds it until it commits, so for every
//! room they share, commit order is numbering order. (Publishing in the order batches
//! were taken put one in six of a busy room's entries on the bus ahead of a missing
//! one.) What can still reach the bus out of order, two commits finishing within a
//! scheduling slice or another replica's batch, gateways hold until the missing
//! entries arrive.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, mpsc, oneshot};
use tracing::Instrument as _;

use crate::api::{ChatEntry, SendRequest};
use crate::bus::Bus;
use crate::error::{ChatError, ChatResult};
use crate::stats::ChatStats;
use crate::store::{BatchError, MAX_BATCH, Store, Stored};

/// How long a failed publish is retried; gateways that miss it read it from history
/// at the next entry or resync anyway.
const REPUBLISH_FOR: Duration = Duration::from_secs(30);

/// One send waiting to be stored.
struct Job {
    req: SendRequest,
    now_ms: u64,
    /// The send's span: storing and publishing are its children.
    span: tracing::Span,
    reply: oneshot::Sender<ChatResult<Stored>>,
}

/// Where sends are handed to the storing task; cloning shares it. The task ends when
/// the last clone is dropped.
#[derive(Clone)]
pub(crate) struct Pipeline {
    jobs: mpsc::UnboundedSender<Job>,
}

impl Pipeline {
    /// Starts the storing task (on the current tokio runtime).
    pub(crate) fn start(store: Store, bus: Bus, stats: ChatStats) -> Self {
        let (jobs, receiver) = mpsc::unbounded_channel();
        tokio::spawn(run(store, bus, stats, receiver));
        Self { jobs }
    }

    /// Stores `req` (received at `now_ms`) and publishes its entry; answers once both
    /// are done, under the current span.
    pub(crate) async fn submit(&self, req: SendRequest, now_ms: u64) -> ChatResult<Stored> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            req,
            now_ms,
            span: tracing::Span::current(),
            reply,
        };
        self.jobs
            .send(job)
            .map_err(|_| ChatError::internal("the chat store has stopped"))?;
        answer
            .await
            .map_err(|_| ChatError::internal("the chat store dropped a send"))?
    }
}

/// Batches stored at once. More than one keeps sends moving while a commit waits for
/// the disk or for CPU; each uses its own database connection.
const IN_FLIGHT: usize = 4;

async fn run(store: Store, bus: Bus, stats: ChatStats, mut jobs: mpsc::UnboundedReceiver<Job>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let slow = Arc::new(SlowBatches::default());
    // Taken when a batch is stored and held while it publishes: batches publish in the
    // order they finished storing (the lock is fair).
    let publishing = Arc::new(tokio::sync::Mutex::new(()));
    while let Some(first) = jobs.recv().await {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        // Whatever queued while every slot was busy goes in this batch.
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH
            && let Ok(job) = jobs.try_recv()
        {
            batch.push(job);
        }
        let (store, bus, stats, slow) = (store.clone(), bus.clone(), stats.clone(), slow.clone());
        let publishing = Arc::clone(&publishing);
        tokio::spawn(async move {
            let started = Instant::now();
            let outcomes = store_batch(&store, &stats, &batch).await;
            let stored = started.elapsed();
            let turn = publishing.lock().await;
            let publish_started = Instant::now();
            publish(&bus, &stats, &batch, &outcomes).await;
            let published = publish_started.elapsed();
            drop(turn);
            stats.batch_timed(stored, published);
            slow.check(batch.len(), stored, published);
            for (job, outcome) in batch.into_iter().zip(outcomes) {
                let _ = job.reply.send(outcome);
            }
            drop(slot);
        });
    }
}

/// A batch slower than this to store or to publish is logged: its members waited.
const SLOW_BATCH: Duration = Duration::from_millis(50);

/// Logs slow batches, at most once per [`SlowBatches::EVERY`], counting the rest.
#[derive(Default)]
struct SlowBatches(Mutex<SlowLog>);

#[derive(Default)]
struct SlowLog {
    logged_at: Option<Instant>,
    unlogged: u64,
}

impl SlowBatches {
    const EVERY: Duration = Duration::from_secs(10);

    fn check(&self, sends: usize, stored: Duration, published: Duration) {
        if stored < SLOW_BATCH && published < SLOW_BATCH {
            return;
        }
        let mut log = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        log.unlogged += 1;
        if log.logged_at.is_some_and(|at| at.elapsed() < Self::EVERY) {
            return;
        }
        tracing::warn!(
            sends,
            store_ms = stored.as_millis() as u64,
            publish_ms = published.as_millis() as u64,
            slow_batches = log.unlogged,
            "chat batches are slow (counting those since the last warning)"
        );
        *log = SlowLog {
            logged_at: Some(Instant::now()),
            unlogged: 0,
        };
    }
}

/// A `chat.persist` span under the send's own.
fn persist_span(store: &Store, job: &Job) -> tracing::Span {
    tracing::info_span!(
        parent: &job.span,
        "chat.persist",
        otel.kind = "client",
        db.system.name = store.system(),
        db.operation.name = "INSERT",
    )
}

/// Each job's outcome, in the batch's order.
async fn store_batch(store: &Store, stats: &ChatStats, batch: &[Job]) -> Vec<ChatResult<Stored>> {
    let mut outcomes: Vec<Option<ChatResult<Stored>>> = batch.iter().map(|_| None).collect();
    // Sends that can share the statement; a second send of one client id (a resend
    // racing its original) waits for the one-by-one pass, which finds the first.
    let mut client_ids = std::collections::HashSet::new();
    let grouped: Vec<usize> = (0..batch.len())
        .filter(|&i| {
            let req = &batch[i].req;
            store.batches(req)
                && (req.client_id.is_empty()
                    || client_ids.insert((&req.room, &req.sender_id, &req.client_id)))
        })
        .collect();
    // One message alone takes the one-statement path below, which is as cheap.
    if grouped.len() > 1 {
        let spans: Vec<_> = grouped
            .iter()
            .map(|&i| persist_span(store, &batch[i]))
            .collect();
        let sends: Vec<_> = grouped
            .iter()
            .map(|&i| (&batch[i].req, batch[i].now_ms))
            .collect();
        match store.append_batch(&sends).await {
            Ok(entries) => {
                stats.batch_stored(entries.len());
                for (&i, entry) in grouped.iter().zip(entries) {
                    outcomes[i] = Some(Ok(Stored::New(entry)));
                }
            }
            Err(BatchError::Unavailable(err)) => {
                for &i in &grouped {
                    outcomes[i] = Some(Err(err.clone()));
                }
            }
            Err(BatchError::Refused(err)) => {
                tracing::debug!(error = %err, sends = grouped.len(), "batch refused; storing its sends one by one");
            }
        }
        drop(spans);
    }
    for (job, outcome) in batch.iter().zip(&mut outcomes) {
        if outcome.is_none() {
            let stored = store
                .append(&job.req, job.now_ms)
                .instrument(persist_span(store, job))
                .await;
            *outcome = Some(stored);
        }
    }
    outcomes
        .into_iter()
        .map(|outcome| outcome.unwrap_or_else(|| Err(ChatError::internal("a send was not stored"))))
        .collect()
}

/// Publishes the batch's new entries in number order; a failed publish is retried in
/// the background, in the same order.
async fn publish(bus: &Bus, stats: &ChatStats, batch: &[Job], outcomes: &[ChatResult<Stored>]) {
    let mut entries: Vec<(&ChatEntry, &tracing::Span)> = batch
        .iter()
        .zip(outcomes)
        .filter_map(|(job, outcome)| match outcome {
            Ok(Stored::New(entry)) => Some((entry, &job.span)),
            _ => None,
        })
        .collect();
    if entries.is_empty() {
        return;
    }
    entries.sort_by(|a, b| (&a.0.room, a.0.seq).cmp(&(&b.0.room, b.0.seq)));
    for (entry, span) in &entries {
        span.record("seq", entry.seq);
    }
    let Err(err) = bus.publish_all(&entries).await else {
        return;
    };
    for _ in &entries {
        stats.publish_failed();
    }
    tracing::warn!(error = %err, entries = entries.len(), "chat publish failed; retrying");
    let unpublished: Vec<ChatEntry> = entries
        .into_iter()
        .map(|(entry, _)| entry.clone())
        .collect();
    let bus = bus.clone();
    tokio::spawn(async move {
        let started = tokio::time::Instant::now();
        let mut wait = Duration::from_millis(100);
        let none = tracing::Span::none();
        let entries: Vec<_> = unpublished.iter().map(|entry| (entry, &none)).collect();
        while started.elapsed() < REPUBLISH_FOR {
            tokio::time::sleep(wait).await;
            if bus.publish_all(&entries).await.is_ok() {
                return;
            }
            wait = (wait * 2).min(Duration::from_secs(5));
        }
    });
}
