//! Durable chat: every entry of a room under the room's monotonic sequence number.
//! PostgreSQL in production, SQLite in `confer dev`, over sqlx's `Any` driver (`$n`
//! placeholders work on both). A send is one transaction: the room row is locked while
//! its next number is taken, so numbers are gap-free and committed in order.
//!
//! Shared files' bytes live outside the database (the gateways' files volume). Whatever
//! removes a `file` entry (a delete, retention, the room's deletion) queues its file id
//! in `chat_file_removals` in the same transaction; the gateways remove the bytes and
//! then the queued ids, so no file outlives its message, whichever process fails when.

use std::time::Duration;

use anyhow::Context as _;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row as _};

use crate::api::{ChatAction, ChatEntry, EntryKind, HistoryPage, Page, Retention, SendRequest};
use crate::error::{ChatError, ChatResult};

const POSTGRES_MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/postgres/0001_chat.sql")),
    (2, include_str!("../migrations/postgres/0002_files.sql")),
    (
        3,
        include_str!("../migrations/postgres/0003_file_removals.sql"),
    ),
    (
        4,
        include_str!("../migrations/postgres/0004_room_retention_set.sql"),
    ),
    (
        5,
        include_str!("../migrations/postgres/0005_sender_identity.sql"),
    ),
];
const SQLITE_MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/sqlite/0001_chat.sql")),
    (2, include_str!("../migrations/sqlite/0002_files.sql")),
    (
        3,
        include_str!("../migrations/sqlite/0003_file_removals.sql"),
    ),
    (
        4,
        include_str!("../migrations/sqlite/0004_room_retention_set.sql"),
    ),
    (
        5,
        include_str!("../migrations/sqlite/0005_sender_identity.sql"),
    ),
];

/// The longest retention kept, seconds (some 292,000 years): the sweep compares
/// `now - 1000 * retention` in milliseconds, which must not overflow.
const MAX_RETENTION_SECS: u64 = i64::MAX as u64 / 1000;

/// Which versions are applied.
const LEDGER: confer_migrate::Ledger = confer_migrate::Ledger {
    table: "confer_chat_migrations",
    service: "chat",
    timed: false,
};

/// PostgreSQL connections per chat replica unless configured.
pub const DEFAULT_CONNECTIONS: u32 = 32;

/// An entry's columns, in the order `entry` reads them.
macro_rules! columns {
    () => {
        "room, seq, kind, sender_id, sender_name, body, client_id, reply_to, target_seq, sent_at_ms, edited, deleted, file_type, file_size, sender_identity"
    };
}

mod batch;

pub(crate) use batch::{BatchError, MAX_BATCH};

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    sqlite: bool,
    /// The retention of a room whose tenant has not set one, in seconds; 0 keeps
    /// such rooms' chat for good.
    default_retention_secs: u64,
}

/// The outcome of storing a send.
pub(crate) enum Stored {
    New(ChatEntry),
    /// The sender's client id was stored before: this is that entry.
    Duplicate(ChatEntry),
}

impl Store {
    /// `db.system.name` of the database, for spans.
    pub(crate) fn system(&self) -> &'static str {
        if self.sqlite { "sqlite" } else { "postgresql" }
    }

    /// Connects to `url` (`postgres://…` or `sqlite:…`) and applies pending migrations.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        Self::connect_with(url, DEFAULT_CONNECTIONS).await
    }

    /// As [`Store::connect`], with at most `connections` to PostgreSQL (SQLite: one).
    /// Each holds one send at a time, so this bounds sends in progress.
    pub async fn connect_with(url: &str, connections: u32) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        let sqlite = url.starts_with("sqlite:");
        let pool = AnyPoolOptions::new()
            .max_connections(if sqlite { 1 } else { connections.max(1) })
            .acquire_timeout(Duration::from_secs(3))
            .connect(url)
            .await
            .with_context(|| {
                format!("failed to connect to the chat database at {}", redact(url))
            })?;
        let store = Self {
            pool,
            sqlite,
            default_retention_secs: 0,
        };
        let migrations = if sqlite {
            SQLITE_MIGRATIONS
        } else {
            POSTGRES_MIGRATIONS
        };
        confer_migrate::apply(&store.pool, LEDGER, migrations).await?;
        Ok(store)
    }

    /// This store, expiring the chat of rooms whose tenant set no retention after
    /// `default` (none: kept for good).
    pub fn with_default_retention(self, default: Option<Duration>) -> Self {
        Self {
            default_retention_secs: default.map_or(0, |d| d.as_secs().max(1)),
            ..self
        }
    }

    /// How the connection pool is used now, for `/metrics`.
    pub fn pool_use(&self) -> confer_metrics::PoolUse {
        confer_metrics::PoolUse {
            open: self.pool.size(),
            idle: u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX),
            max: self.pool.options().get_max_connections(),
        }
    }

    /// Stores `req` under the room's next number, or returns what the same client id
    /// stored before. Nothing is written unless all of it is.
    pub(crate) async fn append(&self, req: &SendRequest, now_ms: u64) -> ChatResult<Stored> {
        match self.append_new(req, now_ms).await {
            // A resend: the client id is stored already (the unique index refused the
            // insert and the transaction, number included, rolled back).
            Err(err) if err.code == "duplicate_client_id" => self
                .by_client_id(req)
                .await?
                .map(Stored::Duplicate)
                .ok_or(err),
            other => other.map(Stored::New),
        }
    }

    /// What the sender stored under `req`'s client id: through this connection, or
    /// (by its identity) through an earlier one.
    async fn by_client_id(&self, req: &SendRequest) -> ChatResult<Option<ChatEntry>> {
        if req.client_id.is_empty() {
            return Ok(None);
        }
        let row = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM chat_entries WHERE room = $1 AND client_id = $3 \
             AND (sender_id = $2 OR (sender_identity = $4 AND sender_identity <> ''))"
        ))
        .bind(&req.room)
        .bind(&req.sender_id)
        .bind(&req.client_id)
        .bind(&req.sender_identity)
        .fetch_optional(&self.pool)
        .await
        .map_err(ChatError::store)?;
        row.map(|row| entry(&row)).transpose()
    }

    async fn append_new(&self, req: &SendRequest, now_ms: u64) -> ChatResult<ChatEntry> {
        let mut entry = draft(req, now_ms);
        let amends = matches!(entry.kind, EntryKind::Edit | EntryKind::Delete);
        if !self.sqlite && !amends {
            return self.append_in_one_statement(entry).await;
        }
        let mut tx = self.pool.begin().await.map_err(ChatError::store)?;
        // One statement takes the room's next number and locks its row until commit.
        let seq: i64 = sqlx::query_scalar(
            "INSERT INTO chat_rooms (room, last_seq) VALUES ($1, 1) \
             ON CONFLICT (room) DO UPDATE SET last_seq = chat_rooms.last_seq + 1 RETURNING last_seq",
        )
        .bind(&req.room)
        .fetch_one(&mut *tx)
        .await
        .map_err(ChatError::store)?;
        if amends {
            amend_target(&mut tx, req, entry.target_seq, &entry.text).await?;
        }
        entry.seq = seq as u64;
        // Without a client id the entry is still unique per sender: its own number.
        if entry.client_id.is_empty() {
            entry.client_id = format!("~{seq}");
        }
        let inserted = sqlx::query(concat!(
            "INSERT INTO chat_entries (",
            columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 0, 0, $11, $12, $13)"
        ))
        .bind(&entry.room)
        .bind(seq)
        .bind(entry.kind.as_str())
        .bind(&entry.sender_id)
        .bind(&entry.sender_name)
        .bind(&entry.text)
        .bind(&entry.client_id)
        .bind(entry.reply_to as i64)
        .bind(entry.target_seq as i64)
        .bind(entry.sent_at_ms as i64)
        .bind(&entry.file_type)
        .bind(entry.file_size.min(i64::MAX as u64) as i64)
        .bind(&entry.sender_identity)
        .execute(&mut *tx)
        .await;
        inserted.map_err(insert_error)?;
        tx.commit().await.map_err(ChatError::store)?;
        Ok(entry)
    }

    /// A message (no target to amend) on PostgreSQL: numbering and insert are one
    /// statement, so one round trip and its own transaction; the room's row stays
    /// locked until it commits, and a refused insert takes its number back with it.
    async fn append_in_one_statement(&self, mut entry: ChatEntry) -> ChatResult<ChatEntry> {
        let row = sqlx::query(concat!(
            "WITH n AS (INSERT INTO chat_rooms (room, last_seq) VALUES ($1, 1) \
             ON CONFLICT (room) DO UPDATE SET last_seq = chat_rooms.last_seq + 1 RETURNING last_seq) \
             INSERT INTO chat_entries (",
            columns!(),
            ") SELECT $1, n.last_seq, $2, $3, $4, $5, \
             CASE WHEN $6 = '' THEN '~' || n.last_seq ELSE $6 END, $7, 0, $8, 0, 0, $9, $10, $11 FROM n \
             RETURNING seq, client_id"
        ))
        .bind(&entry.room)
        .bind(entry.kind.as_str())
        .bind(&entry.sender_id)
        .bind(&entry.sender_name)
        .bind(&entry.text)
        .bind(&entry.client_id)
        .bind(entry.reply_to as i64)
        .bind(entry.sent_at_ms as i64)
        .bind(&entry.file_type)
        .bind(entry.file_size.min(i64::MAX as u64) as i64)
        .bind(&entry.sender_identity)
        .fetch_one(&self.pool)
        .await
        .map_err(insert_error)?;
        entry.seq = row.try_get::<i64, _>(0).map_err(ChatError::internal)? as u64;
        entry.client_id = row.try_get(1).map_err(ChatError::internal)?;
        Ok(entry)
    }

    pub(crate) async fn history(&self, room: &str, page: Page) -> ChatResult<HistoryPage> {
        let (sql, bound, limit, newest_first) = match page {
            Page::Before { before, limit } => (
                concat!(
                    "SELECT ",
                    columns!(),
                    " FROM chat_entries WHERE room = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3"
                ),
                if before == 0 { i64::MAX } else { before as i64 },
                limit,
                true,
            ),
            Page::After { after, limit } => (
                concat!(
                    "SELECT ",
                    columns!(),
                    " FROM chat_entries WHERE room = $1 AND seq > $2 ORDER BY seq ASC LIMIT $3"
                ),
                after.min(i64::MAX as u64) as i64,
                limit,
                false,
            ),
        };
        let rows = sqlx::query(sql)
            .bind(room)
            .bind(bound)
            .bind(i64::from(limit) + 1)
            .fetch_all(&self.pool)
            .await
            .map_err(ChatError::store)?;
        let more = rows.len() > limit as usize;
        let mut entries = rows
            .iter()
            .take(limit as usize)
            .map(entry)
            .collect::<ChatResult<Vec<_>>>()?;
        if newest_first {
            entries.reverse();
        }
        Ok(HistoryPage { entries, more })
    }

    pub(crate) async fn set_retention(&self, room: &str, secs: u64) -> ChatResult<()> {
        sqlx::query(
            "INSERT INTO chat_rooms (room, last_seq, retention_secs, retention_set) VALUES ($1, 0, $2, 1) \
             ON CONFLICT (room) DO UPDATE SET retention_secs = $2, retention_set = 1",
        )
        .bind(room)
        .bind(secs.min(MAX_RETENTION_SECS) as i64)
        .execute(&self.pool)
        .await
        .map_err(ChatError::store)?;
        Ok(())
    }

    pub(crate) async fn retention(&self, room: &str) -> ChatResult<Retention> {
        let own: Option<(i64, i64)> =
            sqlx::query_as("SELECT retention_secs, retention_set FROM chat_rooms WHERE room = $1")
                .bind(room)
                .fetch_optional(&self.pool)
                .await
                .map_err(ChatError::store)?;
        Ok(match own {
            Some((secs, 1)) => Retention {
                seconds: u64::try_from(secs).unwrap_or_default(),
                own: true,
            },
            _ => Retention {
                seconds: self.default_retention_secs,
                own: false,
            },
        })
    }

    pub(crate) async fn clear_retention(&self, room: &str) -> ChatResult<()> {
        sqlx::query("UPDATE chat_rooms SET retention_secs = 0, retention_set = 0 WHERE room = $1")
            .bind(room)
            .execute(&self.pool)
            .await
            .map_err(ChatError::store)?;
        Ok(())
    }

    /// Deletes entries older than their room's retention (its own, or the default
    /// for a room whose tenant set none); returns how many.
    pub(crate) async fn expire(&self, now_ms: u64) -> ChatResult<u64> {
        /// A room's retention, seconds, given the default as `$2`.
        macro_rules! retention {
            () => {
                "(CASE WHEN retention_set = 1 THEN retention_secs ELSE $2 END)"
            };
        }
        /// Entries past their room's retention at `$1`.
        macro_rules! expired {
            () => {
                concat!(
                    "room IN (SELECT room FROM chat_rooms WHERE ",
                    retention!(),
                    " > 0) AND sent_at_ms < $1 - 1000 * (SELECT ",
                    retention!(),
                    " FROM chat_rooms WHERE chat_rooms.room = chat_entries.room)"
                )
            };
        }
        let default = self.default_retention_secs.min(MAX_RETENTION_SECS) as i64;
        let mut tx = self.pool.begin().await.map_err(ChatError::store)?;
        sqlx::query(concat!(
            "INSERT INTO chat_file_removals (file_id, queued_at_ms) \
             SELECT client_id, $1 FROM chat_entries WHERE ",
            expired!(),
            " AND kind = 'file' AND deleted = 0 ON CONFLICT (file_id) DO NOTHING"
        ))
        .bind(now_ms as i64)
        .bind(default)
        .execute(&mut *tx)
        .await
        .map_err(ChatError::store)?;
        let done = sqlx::query(concat!("DELETE FROM chat_entries WHERE ", expired!()))
            .bind(now_ms as i64)
            .bind(default)
            .execute(&mut *tx)
            .await
            .map_err(ChatError::store)?;
        tx.commit().await.map_err(ChatError::store)?;
        Ok(done.rows_affected())
    }

    pub(crate) async fn delete_room(&self, room: &str, now_ms: u64) -> ChatResult<()> {
        let mut tx = self.pool.begin().await.map_err(ChatError::store)?;
        sqlx::query(
            "INSERT INTO chat_file_removals (file_id, queued_at_ms) \
             SELECT client_id, $2 FROM chat_entries WHERE room = $1 AND kind = 'file' AND deleted = 0 \
             ON CONFLICT (file_id) DO NOTHING",
        )
        .bind(room)
        .bind(now_ms as i64)
        .execute(&mut *tx)
        .await
        .map_err(ChatError::store)?;
        for sql in [
            "DELETE FROM chat_entries WHERE room = $1",
            "DELETE FROM chat_rooms WHERE room = $1",
        ] {
            sqlx::query(sql)
                .bind(room)
                .execute(&mut *tx)
                .await
                .map_err(ChatError::store)?;
        }
        tx.commit().await.map_err(ChatError::store)
    }

    /// Shared files whose entries are gone, oldest first: their bytes are to be removed.
    pub(crate) async fn files_to_remove(&self, limit: u32) -> ChatResult<Vec<String>> {
        sqlx::query_scalar(
            "SELECT file_id FROM chat_file_removals ORDER BY queued_at_ms, file_id LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(ChatError::store)
    }

    /// The bytes of `files` are removed: forget them.
    pub(crate) async fn files_removed(&self, files: &[String]) -> ChatResult<()> {
        let mut tx = self.pool.begin().await.map_err(ChatError::store)?;
        for file in files {
            sqlx::query("DELETE FROM chat_file_removals WHERE file_id = $1")
                .bind(file)
                .execute(&mut *tx)
                .await
                .map_err(ChatError::store)?;
        }
        tx.commit().await.map_err(ChatError::store)
    }
}

/// The entry `req` asks for, before it has a number (and, without a client id, before
/// it has that).
fn draft(req: &SendRequest, now_ms: u64) -> ChatEntry {
    let (kind, text, reply_to, target_seq) = match &req.action {
        ChatAction::Text { text, reply_to } => (EntryKind::Text, text.clone(), *reply_to, 0),
        ChatAction::File { name, .. } => (EntryKind::File, name.clone(), 0, 0),
        ChatAction::Edit { seq, text } => (EntryKind::Edit, text.clone(), 0, *seq),
        ChatAction::Delete { seq } => (EntryKind::Delete, String::new(), 0, *seq),
    };
    let (file_type, file_size) = match &req.action {
        ChatAction::File {
            content_type, size, ..
        } => (content_type.clone(), *size),
        _ => (String::new(), 0),
    };
    ChatEntry {
        room: req.room.clone(),
        seq: 0,
        kind,
        sender_id: req.sender_id.clone(),
        sender_name: req.sender_name.clone(),
        sender_identity: req.sender_identity.clone(),
        text,
        client_id: req.client_id.clone(),
        reply_to,
        target_seq,
        sent_at_ms: now_ms,
        edited: false,
        deleted: false,
        file_type,
        file_size,
    }
}

/// A refused entry insert: the unique client id index means a resend.
fn insert_error(err: sqlx::Error) -> ChatError {
    match err {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            ChatError::invalid("duplicate_client_id", "this client id was stored already")
        }
        err => ChatError::store(err),
    }
}

/// An edit or delete changes its target in the same transaction: only a message (not
/// an edit or delete), not deleted; edits by the author, deletes by the author or a host.
/// The author is the sender through this connection, or through an earlier one of the
/// same identity.
async fn amend_target(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    req: &SendRequest,
    target: u64,
    text: &str,
) -> ChatResult<()> {
    let row = sqlx::query(
        "SELECT kind, sender_id, deleted, sender_identity FROM chat_entries WHERE room = $1 AND seq = $2",
    )
    .bind(&req.room)
    .bind(target as i64)
    .fetch_optional(&mut **tx)
    .await
    .map_err(ChatError::store)?;
    let Some(row) = row else {
        return Err(ChatError::not_found(
            "message_not_found",
            format!("no message {target} in this room"),
        ));
    };
    let kind: String = row.try_get(0).map_err(ChatError::internal)?;
    let author: String = row.try_get(1).map_err(ChatError::internal)?;
    let deleted: i64 = row.try_get(2).map_err(ChatError::internal)?;
    let author_identity: String = row.try_get(3).map_err(ChatError::internal)?;
    let deleting = matches!(req.action, ChatAction::Delete { .. });
    let changeable =
        kind == EntryKind::Text.as_str() || (deleting && kind == EntryKind::File.as_str());
    if !changeable || deleted != 0 {
        return Err(ChatError::not_found(
            "message_not_found",
            format!("message {target} cannot be changed"),
        ));
    }
    let deleting = matches!(req.action, ChatAction::Delete { .. });
    let same_person = !author_identity.is_empty() && author_identity == req.sender_identity;
    let allowed = author == req.sender_id || same_person || (deleting && req.sender_is_host);
    if !allowed {
        return Err(ChatError::forbidden(
            "not_author",
            if deleting {
                "only the author or a host can delete a message"
            } else {
                "only the author can edit a message"
            },
        ));
    }
    if deleting && kind == EntryKind::File.as_str() {
        sqlx::query(
            "INSERT INTO chat_file_removals (file_id, queued_at_ms) \
             SELECT client_id, sent_at_ms FROM chat_entries WHERE room = $1 AND seq = $2 \
             ON CONFLICT (file_id) DO NOTHING",
        )
        .bind(&req.room)
        .bind(target as i64)
        .execute(&mut **tx)
        .await
        .map_err(ChatError::store)?;
    }
    let sql = if deleting {
        "UPDATE chat_entries SET deleted = 1, body = '' WHERE room = $1 AND seq = $2"
    } else {
        "UPDATE chat_entries SET edited = 1, body = $3 WHERE room = $1 AND seq = $2"
    };
    let mut query = sqlx::query(sql).bind(&req.room).bind(target as i64);
    if !deleting {
        query = query.bind(text);
    }
    query.execute(&mut **tx).await.map_err(ChatError::store)?;
    Ok(())
}

fn entry(row: &AnyRow) -> ChatResult<ChatEntry> {
    let get_i64 = |i: usize| row.try_get::<i64, _>(i).map_err(ChatError::internal);
    let get_str = |i: usize| row.try_get::<String, _>(i).map_err(ChatError::internal);
    let kind = get_str(2)?;
    Ok(ChatEntry {
        room: get_str(0)?,
        seq: get_i64(1)? as u64,
        kind: EntryKind::parse(&kind)
            .ok_or_else(|| ChatError::internal(format!("stored entry of unknown kind {kind}")))?,
        sender_id: get_str(3)?,
        sender_name: get_str(4)?,
        text: get_str(5)?,
        client_id: get_str(6)?,
        reply_to: get_i64(7)? as u64,
        target_seq: get_i64(8)? as u64,
        sent_at_ms: get_i64(9)? as u64,
        edited: get_i64(10)? != 0,
        deleted: get_i64(11)? != 0,
        file_type: get_str(12)?,
        file_size: get_i64(13)? as u64,
        sender_identity: get_str(14)?,
    })
}

/// `url` without its password, for error messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://…@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}
