//! A room's presence: how many participants are active in it, counted in and out
//! together with the webhook events each change queues. A change holds the room's row
//! until it commits, so however many replicas race, a room's events are queued in the
//! order they happened: the first one in is preceded by `room_started`, the last one
//! out followed by `room_finished`. An empty room's session may wait before it
//! finishes (the room's `empty_timeout_secs`, or while a lost participant may come
//! back): someone entering meanwhile continues it, and [`Store::finish_empty_rooms`]
//! finishes the rooms that stayed empty.
//!
//! [`PresenceLog`] commits changes in groups. A big room's participants coming or going
//! at once (a webinar starting, a meeting ending, a gateway going away) would otherwise
//! take one transaction and one commit each, one after another on the room's row,
//! while the rest queue for the connection pool.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use tokio::sync::{mpsc, oneshot};

use super::Store;
use super::webhooks::{OutboxEvent, insert_event};
use crate::clock::unix_millis_i64;
use crate::error::{RoomError, RoomResult};

/// What a change in a room's presence did to its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    Started,
    Continued,
    /// The last participant left and the session waits, empty, until its time
    /// (`room_finished` then comes from [`Store::finish_empty_rooms`]).
    Emptied,
    Finished,
}

/// One participant counted in or out of a room, with the events it queues.
#[derive(Debug, Clone)]
pub struct PresenceChange {
    pub tenant: String,
    pub room: String,
    /// 1: a participant in; -1: one out.
    pub delta: i64,
    /// The change's own events, in order.
    pub events: Vec<OutboxEvent>,
    /// Queued before `events` when this change starts the room's session.
    pub started: OutboxEvent,
    /// Queued after `events` when this change finishes it.
    pub finished: OutboxEvent,
    /// When this change empties the room, how long its session waits at least (a lost
    /// participant's time to come back); the room's own empty timeout may be longer.
    pub linger_ms: i64,
}

/// A room's presence while a group of changes is applied.
#[derive(Debug, Default)]
struct RoomPresence {
    /// The room has a row (a session can wait only then).
    exists: bool,
    count: i64,
    empty_until_ms: i64,
    empty_timeout_ms: i64,
}

impl RoomPresence {
    /// Applies one change: what it did to the session.
    fn apply(&mut self, change: &PresenceChange, now_ms: i64) -> Presence {
        let before = self.count;
        self.count = (before + change.delta).max(0);
        match (before, self.count) {
            (0, after) if after > 0 && self.empty_until_ms > 0 => {
                self.empty_until_ms = 0;
                Presence::Continued
            }
            (0, after) if after > 0 => Presence::Started,
            (before, 0) if before > 0 => {
                let wait = self.empty_timeout_ms.max(change.linger_ms);
                if self.exists && wait > 0 {
                    self.empty_until_ms = now_ms.saturating_add(wait);
                    Presence::Emptied
                } else {
                    Presence::Finished
                }
            }
            _ => Presence::Continued,
        }
    }
}

/// The one setting presence reads from a room's stored settings.
#[derive(serde::Deserialize)]
struct EmptyTimeout {
    #[serde(default)]
    empty_timeout_secs: u32,
}

fn empty_timeout_ms(settings: &str) -> i64 {
    serde_json::from_str::<EmptyTimeout>(settings)
        .map(|s| i64::from(s.empty_timeout_secs) * 1000)
        .unwrap_or(0)
}

/// Reads a room's presence and holds its row until the transaction ends (SQLite
/// holds the whole database while a transaction writes).
const LOCK_ROOM: &str = "SELECT active_participants, empty_until_ms, settings FROM rooms \
     WHERE tenant_id = $1 AND name = $2 FOR UPDATE";

/// Changes one group commits at most.
pub const MAX_GROUP: usize = 256;

impl Store {
    /// [`LOCK_ROOM`] in this store's dialect.
    fn room_presence_lock(&self) -> &'static str {
        if self.sqlite {
            LOCK_ROOM.trim_end_matches(" FOR UPDATE")
        } else {
            LOCK_ROOM
        }
    }

    /// Records one change in a transaction of its own.
    pub async fn record_presence(&self, change: &PresenceChange) -> RoomResult<Presence> {
        self.record_presences(std::slice::from_ref(change))
            .await?
            .pop()
            .ok_or_else(|| RoomError::internal("a presence change went unrecorded"))
    }

    /// Records `changes` in order, in one transaction: each room's row is locked once
    /// (in key order, so two replicas' groups cannot deadlock), its count carried from
    /// one change to the next and written once. Returns what each change did.
    pub async fn record_presences(&self, changes: &[PresenceChange]) -> RoomResult<Vec<Presence>> {
        Ok(self.apply_presences(changes).await?)
    }

    /// [`Store::record_presences`], with the database's own error: whether it refused
    /// a statement or could not be reached.
    async fn apply_presences(
        &self,
        changes: &[PresenceChange],
    ) -> Result<Vec<Presence>, sqlx::Error> {
        let lock = self.room_presence_lock();
        let now_ms = unix_millis_i64();
        let mut tx = self.pool().begin().await?;
        let mut rooms: BTreeMap<(&str, &str), RoomPresence> = changes
            .iter()
            .map(|c| {
                (
                    (c.tenant.as_str(), c.room.as_str()),
                    RoomPresence::default(),
                )
            })
            .collect();
        for ((tenant, room), presence) in &mut rooms {
            let stored: Option<(i64, i64, String)> = sqlx::query_as(lock)
                .bind(*tenant)
                .bind(*room)
                .fetch_optional(&mut *tx)
                .await?;
            if let Some((count, empty_until_ms, settings)) = stored {
                *presence = RoomPresence {
                    exists: true,
                    count,
                    empty_until_ms,
                    empty_timeout_ms: empty_timeout_ms(&settings),
                };
            }
        }
        let mut outcomes = Vec::with_capacity(changes.len());
        for change in changes {
            let key = (change.tenant.as_str(), change.room.as_str());
            // Every change's room was locked above.
            let presence = rooms.entry(key).or_default().apply(change, now_ms);
            let started = (presence == Presence::Started).then_some(&change.started);
            let finished = (presence == Presence::Finished).then_some(&change.finished);
            for event in started.into_iter().chain(&change.events).chain(finished) {
                insert_event(&mut tx, key.0, key.1, event).await?;
            }
            outcomes.push(presence);
        }
        for ((tenant, room), presence) in rooms {
            sqlx::query(
                "UPDATE rooms SET active_participants = $1, empty_until_ms = $2 \
                 WHERE tenant_id = $3 AND name = $4",
            )
            .bind(presence.count)
            .bind(presence.empty_until_ms)
            .bind(tenant)
            .bind(room)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(outcomes)
    }

    /// The room's session waits, empty, for someone who will not come back after all:
    /// its wait is cut to the room's empty timeout from `now_ms`, or to `kept_ms` more
    /// (the others still kept for it), whichever is longer. Returns whether the wait
    /// is over now. A room someone entered, or that is not waiting, stays as it is.
    pub async fn shorten_empty_wait(
        &self,
        tenant: &str,
        room: &str,
        now_ms: i64,
        kept_ms: i64,
    ) -> RoomResult<bool> {
        let lock = self.room_presence_lock();
        let mut tx = self.pool().begin().await?;
        let stored: Option<(i64, i64, String)> = sqlx::query_as(lock)
            .bind(tenant)
            .bind(room)
            .fetch_optional(&mut *tx)
            .await?;
        let Some((0, empty_until_ms, settings)) = stored.filter(|(_, until, _)| *until > 0) else {
            return Ok(false);
        };
        let until_ms = now_ms.saturating_add(empty_timeout_ms(&settings).max(kept_ms));
        if until_ms >= empty_until_ms {
            return Ok(false);
        }
        sqlx::query("UPDATE rooms SET empty_until_ms = $1 WHERE tenant_id = $2 AND name = $3")
            .bind(until_ms)
            .bind(tenant)
            .bind(room)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(until_ms <= now_ms)
    }

    /// Finishes the sessions of rooms that stayed empty until their time
    /// (`now_ms`): queues each one's `room_finished` (`finished` makes it for a room's
    /// name), once, however many replicas look at the same time. Returns the rooms
    /// (tenant, name), at most 100 a call.
    pub async fn finish_empty_rooms(
        &self,
        now_ms: i64,
        finished: impl Fn(&str) -> OutboxEvent,
    ) -> RoomResult<Vec<(String, String)>> {
        let due = if self.sqlite {
            "SELECT tenant_id, name FROM rooms \
             WHERE empty_until_ms > 0 AND empty_until_ms <= $1 AND active_participants = 0 \
             LIMIT 100"
        } else {
            "SELECT tenant_id, name FROM rooms \
             WHERE empty_until_ms > 0 AND empty_until_ms <= $1 AND active_participants = 0 \
             LIMIT 100 FOR UPDATE SKIP LOCKED"
        };
        let mut tx = self.pool().begin().await?;
        let rooms: Vec<(String, String)> =
            sqlx::query_as(due).bind(now_ms).fetch_all(&mut *tx).await?;
        for (tenant, room) in &rooms {
            sqlx::query("UPDATE rooms SET empty_until_ms = 0 WHERE tenant_id = $1 AND name = $2")
                .bind(tenant)
                .bind(room)
                .execute(&mut *tx)
                .await?;
            insert_event(&mut tx, tenant, room, &finished(room)).await?;
        }
        tx.commit().await?;
        Ok(rooms)
    }
}

/// How many groups a [`PresenceLog`] has committed, and the changes in them.
#[derive(Clone, Debug, Default)]
pub struct PresenceStats {
    commits: Arc<AtomicU64>,
    changes: Arc<AtomicU64>,
}

impl PresenceStats {
    /// Transactions committed (a group, or one change of a group that failed).
    pub fn commits(&self) -> u64 {
        self.commits.load(Relaxed)
    }

    /// Changes recorded.
    pub fn changes(&self) -> u64 {
        self.changes.load(Relaxed)
    }

    pub fn render(&self, out: &mut confer_metrics::Exposition) {
        out.counter1(
            "confer_room_presence_commits",
            "Transactions that counted participants in or out of rooms (a group of changes, or one change of a group that failed).",
            self.commits(),
        );
        out.counter1(
            "confer_room_presence_changes",
            "Participants counted in or out of rooms.",
            self.changes(),
        );
    }

    fn committed(&self, changes: usize) {
        self.commits.fetch_add(1, Relaxed);
        self.changes.fetch_add(changes as u64, Relaxed);
    }
}

/// One change waiting for its group.
struct Job {
    change: PresenceChange,
    reply: oneshot::Sender<RoomResult<Presence>>,
}

/// Presence changes committed in groups: the changes that arrive while one group
/// commits go together in the next (at most [`MAX_GROUP`]), in the order they came.
/// Cloning shares it; its task ends when the last clone is dropped.
#[derive(Clone)]
pub struct PresenceLog {
    jobs: mpsc::UnboundedSender<Job>,
    store: Store,
}

impl PresenceLog {
    /// Starts the committing task on the current tokio runtime.
    pub fn start(store: Store, stats: PresenceStats) -> Self {
        let (jobs, receiver) = mpsc::unbounded_channel();
        tokio::spawn(run(store.clone(), stats, receiver));
        Self { jobs, store }
    }

    /// Records `change` with whatever else is waiting; answers once it is committed.
    /// The change is recorded even if the caller stops waiting.
    pub async fn record(&self, change: PresenceChange) -> RoomResult<Presence> {
        let (reply, answer) = oneshot::channel();
        if let Err(mpsc::error::SendError(job)) = self.jobs.send(Job { change, reply }) {
            // The task's runtime has gone (a service that outlived it): on its own.
            return self.store.record_presence(&job.change).await;
        }
        answer
            .await
            .map_err(|_| RoomError::internal("the presence log dropped a change"))?
    }
}

async fn run(store: Store, stats: PresenceStats, mut jobs: mpsc::UnboundedReceiver<Job>) {
    while let Some(first) = jobs.recv().await {
        let mut group = vec![first];
        while group.len() < MAX_GROUP
            && let Ok(job) = jobs.try_recv()
        {
            group.push(job);
        }
        commit(&store, &stats, group).await;
    }
}

/// Commits `group` in one transaction. If the database refused a statement of it, each
/// change is retried in a transaction of its own, so one bad change does not fail the
/// others; if it could not be reached, the whole group fails at once (retrying each
/// change would wait for a connection once per change).
async fn commit(store: &Store, stats: &PresenceStats, group: Vec<Job>) {
    let (changes, replies): (Vec<PresenceChange>, Vec<_>) =
        group.into_iter().map(|job| (job.change, job.reply)).unzip();
    let err = match store.apply_presences(&changes).await {
        Ok(outcomes) => {
            stats.committed(changes.len());
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                let _ = reply.send(Ok(outcome));
            }
            return;
        }
        Err(err) => err,
    };
    let refused = matches!(err, sqlx::Error::Database(_));
    let err = RoomError::from(err);
    if changes.len() == 1 || !refused {
        for reply in replies {
            let _ = reply.send(Err(err.clone()));
        }
        return;
    }
    tracing::warn!(
        changes = changes.len(),
        error = %err,
        "a group of presence changes failed; recording them one at a time"
    );
    for (change, reply) in changes.iter().zip(replies) {
        let outcome = store.record_presence(change).await;
        if outcome.is_ok() {
            stats.committed(1);
        }
        let _ = reply.send(outcome);
    }
}
