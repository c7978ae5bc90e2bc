//! `ChatApi`: everything a gateway asks of the chat service, with its request and answer
//! types. Implemented in-process by [`crate::ChatService`] and over gRPC by
//! [`crate::grpc::GrpcChat`].

use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

use crate::error::ChatResult;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Longest chat text, in characters.
pub const MAX_TEXT_CHARS: usize = 4000;
/// Longest client message id, in bytes.
pub const MAX_CLIENT_ID: usize = 64;
/// Most entries in one history page.
pub const MAX_PAGE: u32 = 200;
/// Entries in a page when the request does not say.
pub const DEFAULT_PAGE: u32 = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// A message.
    Text,
    /// New text for message `target_seq`.
    Edit,
    /// Message `target_seq` was deleted.
    Delete,
    /// A shared file: `text` is its name, `file_type` and `file_size` describe it.
    File,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Text => "text",
            EntryKind::Edit => "edit",
            EntryKind::Delete => "delete",
            EntryKind::File => "file",
        }
    }

    pub fn parse(kind: &str) -> Option<Self> {
        match kind {
            "text" => Some(EntryKind::Text),
            "edit" => Some(EntryKind::Edit),
            "delete" => Some(EntryKind::Delete),
            "file" => Some(EntryKind::File),
            _ => None,
        }
    }
}

/// One entry of a room's chat, numbered by the room's sequence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatEntry {
    pub room: String,
    pub seq: u64,
    pub kind: EntryKind,
    pub sender_id: String,
    pub sender_name: String,
    /// Who the sender is across its connections (the access token's subject, or the
    /// guest identity a rejoin keeps): its messages stay its own after it comes back.
    /// Empty for entries stored before it was recorded.
    #[serde(default)]
    pub sender_identity: String,
    pub text: String,
    pub client_id: String,
    pub reply_to: u64,
    pub target_seq: u64,
    pub sent_at_ms: u64,
    pub edited: bool,
    pub deleted: bool,
    /// Of a shared file.
    #[serde(default)]
    pub file_type: String,
    #[serde(default)]
    pub file_size: u64,
}

/// What a member asks to add to the room's chat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChatAction {
    Text {
        text: String,
        reply_to: u64,
    },
    /// A file the gateway has stored under the entry's `client_id`.
    File {
        name: String,
        content_type: String,
        size: u64,
    },
    Edit {
        seq: u64,
        text: String,
    },
    Delete {
        seq: u64,
    },
}

/// A send, as the gateway vouches for it: the sender is a member of `room`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendRequest {
    pub room: String,
    pub sender_id: String,
    pub sender_name: String,
    /// The sender's identity: with it, a resend under the same client id after the
    /// sender came back through another connection is still the same message, and
    /// edits and deletes go by it as by `sender_id`. Empty: by `sender_id` only.
    #[serde(default)]
    pub sender_identity: String,
    /// Hosts may delete anyone's message.
    pub sender_is_host: bool,
    /// Makes the send idempotent per sender; empty for none.
    pub client_id: String,
    pub action: ChatAction,
}

/// Which page of a room's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Page {
    /// The newest entries before `before` (0: the newest of all).
    Before { before: u64, limit: u32 },
    /// The oldest entries after `after`.
    After { after: u64, limit: u32 },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryPage {
    /// Oldest first.
    pub entries: Vec<ChatEntry>,
    /// More exists beyond this page in the direction asked.
    pub more: bool,
}

/// The answer to a send: the stored entry; `duplicate` when the client id had been
/// stored already (nothing new was stored or published).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sent {
    pub entry: ChatEntry,
    pub duplicate: bool,
}

/// The chat service's name for `tenant`'s `room`: its history, retention and channel.
pub fn room_key(tenant: &str, room: &str) -> String {
    format!("{tenant}/{room}")
}

/// How long a room's chat is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    /// Seconds; 0: for as long as the room exists.
    pub seconds: u64,
    /// The room's own setting; false: the chat service's default.
    pub own: bool,
}

pub trait ChatApi: Send + Sync + 'static {
    /// Stores the action under the room's next sequence number, then publishes it to
    /// the gateways. Returns once it is durable.
    fn send(&self, req: SendRequest) -> BoxFuture<'_, ChatResult<Sent>>;
    fn history(&self, room: String, page: Page) -> BoxFuture<'_, ChatResult<HistoryPage>>;
    /// Keep a room's chat for `secs` seconds (0: for as long as the room exists),
    /// whatever the service's default.
    fn set_retention(&self, room: String, secs: u64) -> BoxFuture<'_, ChatResult<()>>;
    /// How long a room's chat is kept: its own setting, or the service's default.
    fn retention(&self, room: String) -> BoxFuture<'_, ChatResult<Retention>>;
    /// Drop a room's own retention: its chat goes by the service's default again.
    fn clear_retention(&self, room: String) -> BoxFuture<'_, ChatResult<()>>;
    /// Forget a room's chat (the room was deleted).
    fn delete_room(&self, room: String) -> BoxFuture<'_, ChatResult<()>>;
    /// Up to `limit` shared files whose entries are gone (deleted, expired, their room
    /// deleted): the gateways remove their bytes, then report them with
    /// [`ChatApi::files_removed`].
    fn files_to_remove(&self, limit: u32) -> BoxFuture<'_, ChatResult<Vec<String>>>;
    fn files_removed(&self, files: Vec<String>) -> BoxFuture<'_, ChatResult<()>>;
    /// What a client of the service counts about its link to it, for the gateway's
    /// `/metrics` (the gRPC client's send stream; nothing in-process).
    fn render_link_metrics(&self, _out: &mut confer_metrics::Exposition) {}
}
