//! Files shared in chat. A member asks over signalling to share a file (name, type,
//! size) and gets an upload URL carrying a signed, five-minute grant; the gateway checks
//! the bytes against the declared type and size, stores them, and posts a `file` chat
//! entry. Members get download links signed for them (an hour); nobody else can read a
//! file. Grants are HMAC-SHA256 under the gateway's file key, which every gateway of a
//! deployment shares.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use base64::Engine as _;
use confer_chat::{ChatAction, SendRequest};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::AppState;

/// Where shared files live and how big they may be.
#[derive(Clone)]
pub struct FileConfig {
    /// The storage directory (a volume shared by the gateways in a deployment).
    pub dir: PathBuf,
    pub max_bytes: u64,
    /// Signs upload and download grants; the same on every gateway.
    pub key: Vec<u8>,
    /// How often the bytes of files whose messages are gone (expired with the room's
    /// retention, the room deleted) are looked for and removed.
    pub sweep_every: Duration,
}

impl Default for FileConfig {
    fn default() -> Self {
        Self {
            dir: std::env::temp_dir().join("confer-files"),
            max_bytes: 25 * 1024 * 1024,
            key: rand::random::<[u8; 32]>().to_vec(),
            sweep_every: Duration::from_secs(60),
        }
    }
}

const UPLOAD_FOR: Duration = Duration::from_secs(300);
const DOWNLOAD_FOR: Duration = Duration::from_secs(3600);
const MAX_NAME_CHARS: usize = 200;

/// Whether bytes are of a content type.
type Sniff = fn(&[u8]) -> bool;

/// The content types that may be shared, each with how its bytes must begin.
const ALLOWED: &[(&str, Sniff)] = &[
    ("image/png", |b| b.starts_with(b"\x89PNG\r\n\x1a\n")),
    ("image/jpeg", |b| b.starts_with(&[0xff, 0xd8, 0xff])),
    ("image/gif", |b| {
        b.starts_with(b"GIF87a") || b.starts_with(b"GIF89a")
    }),
    ("image/webp", |b| {
        b.len() >= 12 && &b[..4] == b"RIFF" && &b[8..12] == b"WEBP"
    }),
    ("application/pdf", |b| b.starts_with(b"%PDF-")),
    ("text/plain", |b| std::str::from_utf8(b).is_ok()),
];

/// Why a file is refused, with its code and HTTP status.
#[derive(Debug)]
pub(crate) struct FileError {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

impl FileError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// The chat service could not be reached.
    fn chat_unavailable(message: String) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "chat_unavailable", message)
    }
}

impl IntoResponse for FileError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code, "message": self.message}});
        (self.status, Json(body)).into_response()
    }
}

/// What a signed URL allows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Grant {
    /// "up" or "down".
    op: String,
    room: String,
    file: String,
    name: String,
    content_type: String,
    size: u64,
    /// Who uploads, or who may download.
    participant: String,
    /// The uploader's display name, for the chat entry.
    sender_name: String,
    /// The uploader's identity, for the chat entry (uploads).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    sender_identity: String,
    /// Unix seconds.
    expires: u64,
    /// The chat entry that shares the file (downloads): it must still be there.
    #[serde(default)]
    seq: u64,
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
}

fn sign(key: &[u8], grant: &Grant) -> String {
    let payload = b64().encode(serde_json::to_vec(grant).unwrap_or_default());
    let tag = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key),
        payload.as_bytes(),
    );
    format!("{payload}.{}", b64().encode(tag.as_ref()))
}

fn verify(key: &[u8], token: &str, op: &str, now: u64) -> Result<Grant, FileError> {
    let refused = || {
        FileError::new(
            StatusCode::FORBIDDEN,
            "invalid_link",
            "this link is not valid",
        )
    };
    let (payload, tag) = token.split_once('.').ok_or_else(refused)?;
    let tag = b64().decode(tag).map_err(|_| refused())?;
    ring::hmac::verify(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key),
        payload.as_bytes(),
        &tag,
    )
    .map_err(|_| refused())?;
    let grant: Grant = serde_json::from_slice(&b64().decode(payload).map_err(|_| refused())?)
        .map_err(|_| refused())?;
    if grant.op != op {
        return Err(refused());
    }
    if grant.expires < now {
        return Err(FileError::new(
            StatusCode::FORBIDDEN,
            "link_expired",
            "this link has expired",
        ));
    }
    Ok(grant)
}

/// A file to share, as a member declared it.
pub(crate) struct Declared<'a> {
    pub(crate) room: &'a str,
    pub(crate) participant: &'a str,
    pub(crate) sender_name: &'a str,
    pub(crate) sender_identity: &'a str,
    pub(crate) name: &'a str,
    pub(crate) content_type: &'a str,
    pub(crate) size: u64,
}

/// Checks a declared file and returns the URL to upload it to.
pub(crate) fn upload_url(config: &FileConfig, file: Declared<'_>) -> Result<String, FileError> {
    let name = file.name.trim();
    if name.is_empty()
        || name.chars().count() > MAX_NAME_CHARS
        || name
            .chars()
            .any(|c| c.is_control() || c == '/' || c == '\\')
    {
        return Err(FileError::new(
            StatusCode::BAD_REQUEST,
            "invalid_file_name",
            format!(
                "a file name is 1 to {MAX_NAME_CHARS} characters, without / \\ or control characters"
            ),
        ));
    }
    if !ALLOWED.iter().any(|(ty, _)| *ty == file.content_type) {
        let allowed: Vec<&str> = ALLOWED.iter().map(|(ty, _)| *ty).collect();
        return Err(FileError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_file_type",
            format!(
                "files of type `{}` cannot be shared; allowed: {}",
                file.content_type,
                allowed.join(", ")
            ),
        ));
    }
    if file.size == 0 || file.size > config.max_bytes {
        return Err(FileError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "file_too_large",
            format!("a shared file is 1 byte to {} bytes", config.max_bytes),
        ));
    }
    let grant = Grant {
        op: "up".into(),
        room: file.room.to_owned(),
        file: format!("{:032x}", rand::random::<u128>()),
        name: name.to_owned(),
        content_type: file.content_type.to_owned(),
        size: file.size,
        participant: file.participant.to_owned(),
        sender_name: file.sender_name.to_owned(),
        sender_identity: file.sender_identity.to_owned(),
        expires: unix_secs() + UPLOAD_FOR.as_secs(),
        seq: 0,
    };
    Ok(format!("/files/upload/{}", sign(&config.key, &grant)))
}

/// A download link to a shared file for one member of its room.
pub(crate) fn download_url(
    config: &FileConfig,
    room: &str,
    participant: &str,
    entry: &confer_proto::signal::ChatMessage,
) -> String {
    let grant = Grant {
        op: "down".into(),
        room: room.to_owned(),
        file: entry.client_id.clone(),
        name: entry.text.clone(),
        content_type: entry.file_type.clone(),
        size: entry.file_size,
        participant: participant.to_owned(),
        sender_name: String::new(),
        sender_identity: String::new(),
        expires: unix_secs() + DOWNLOAD_FOR.as_secs(),
        seq: entry.seq,
    };
    format!("/files/download/{}", sign(&config.key, &grant))
}

/// Entry `seq` of `room`, if it is still there.
async fn entry_at(
    state: &AppState,
    room: &str,
    seq: u64,
) -> confer_chat::ChatResult<Option<confer_chat::ChatEntry>> {
    let page = confer_chat::Page::Before {
        before: seq.saturating_add(1),
        limit: 1,
    };
    let page = state.chat.api.history(room.to_owned(), page).await?;
    Ok(page
        .entries
        .into_iter()
        .next()
        .filter(|entry| entry.seq == seq))
}

pub(crate) fn routes(max_bytes: u64) -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/files/upload/{token}",
            put(upload).layer(DefaultBodyLimit::max(
                usize::try_from(max_bytes)
                    .unwrap_or(usize::MAX)
                    .saturating_add(1),
            )),
        )
        .route("/files/download/{token}", get(download))
}

pub(crate) fn stored_path(config: &FileConfig, file: &str) -> Result<PathBuf, FileError> {
    // File ids are ours (32 hex digits); anything else never names a path.
    if file.len() != 32 || !file.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(FileError::new(
            StatusCode::FORBIDDEN,
            "invalid_link",
            "this link is not valid",
        ));
    }
    Ok(config.dir.join(file))
}

async fn upload(
    State(state): State<Arc<AppState>>,
    Path(token): Path<String>,
    body: Body,
) -> Result<Response, FileError> {
    let config = &state.config.files;
    let grant = verify(&config.key, &token, "up", unix_secs())?;
    still_may_post(&state, &grant).await?;
    let limit = usize::try_from(grant.size).unwrap_or(usize::MAX);
    let bytes = axum::body::to_bytes(body, limit.saturating_add(1))
        .await
        .map_err(|_| {
            FileError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "file_too_large",
                format!("the file is larger than the {} bytes declared", grant.size),
            )
        })?;
    if bytes.len() as u64 != grant.size {
        return Err(FileError::new(
            StatusCode::BAD_REQUEST,
            "size_mismatch",
            format!(
                "{} bytes arrived, {} were declared",
                bytes.len(),
                grant.size
            ),
        ));
    }
    let matches = ALLOWED
        .iter()
        .find(|(ty, _)| *ty == grant.content_type)
        .is_some_and(|(_, check)| check(&bytes));
    if !matches {
        return Err(FileError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "content_type_mismatch",
            format!("the file is not `{}`", grant.content_type),
        ));
    }
    // The bytes took their time (a large file, a slow link): the sender may have left,
    // or the chat been kept to hosts, since they began.
    still_may_post(&state, &grant).await?;
    let path = stored_path(config, &grant.file)?;
    let unavailable = |err: std::io::Error| {
        tracing::warn!(%err, "cannot store a shared file");
        FileError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage_unavailable",
            "the file could not be stored",
        )
    };
    tokio::fs::create_dir_all(&config.dir)
        .await
        .map_err(unavailable)?;
    let partial = path.with_extension("part");
    tokio::fs::write(&partial, &bytes)
        .await
        .map_err(unavailable)?;
    tokio::fs::rename(&partial, &path)
        .await
        .map_err(unavailable)?;
    let sent = state
        .chat
        .api
        .send(SendRequest {
            room: grant.room,
            sender_id: grant.participant,
            sender_name: grant.sender_name,
            sender_identity: grant.sender_identity,
            sender_is_host: false,
            client_id: grant.file,
            action: ChatAction::File {
                name: grant.name,
                content_type: grant.content_type,
                size: grant.size,
            },
        })
        .await;
    let sent = match sent {
        Ok(sent) => sent,
        Err(err) => {
            // Not shared: the bytes go (a retry uploads them again).
            let _ = tokio::fs::remove_file(&path).await;
            return Err(FileError::chat_unavailable(err.message));
        }
    };
    Ok((StatusCode::CREATED, Json(json!({"seq": sent.entry.seq}))).into_response())
}

/// Whether an upload link's sender may still post in its room's chat: the link
/// outlives the moment it was given (the sender removed or gone since, or the chat
/// kept to hosts), and the upload may reach another gateway than the sender's.
async fn still_may_post(state: &AppState, grant: &Grant) -> Result<(), FileError> {
    let Err(err) = state
        .room
        .check_chat_poster(grant.room.clone(), grant.participant.clone())
        .await
    else {
        return Ok(());
    };
    let code = match err.code.as_str() {
        "not_a_member" => "not_a_member",
        "chat_restricted" => "chat_restricted",
        _ => {
            tracing::warn!(error = %err, "cannot check a file's sender with the room service");
            return Err(FileError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "room_service_unavailable",
                "the room service cannot be reached; upload again",
            ));
        }
    };
    Err(FileError::new(StatusCode::FORBIDDEN, code, err.message))
}

async fn download(
    State(state): State<Arc<AppState>>,
    Path(token): Path<String>,
) -> Result<Response, FileError> {
    let config = &state.config.files;
    let grant = verify(&config.key, &token, "down", unix_secs())?;
    // A link outlives nothing it links to: once the message is deleted (or expired
    // with the room's retention), its file cannot be downloaded.
    let entry = entry_at(&state, &grant.room, grant.seq)
        .await
        .map_err(|err| FileError::chat_unavailable(err.message))?;
    let shared = entry.is_some_and(|entry| entry.client_id == grant.file && !entry.deleted);
    if !shared {
        return Err(FileError::new(
            StatusCode::NOT_FOUND,
            "file_not_found",
            "the file was deleted",
        ));
    }
    let bytes = tokio::fs::read(stored_path(config, &grant.file)?)
        .await
        .map_err(|_| FileError::new(StatusCode::NOT_FOUND, "file_not_found", "the file is gone"))?;
    let name: String = grant
        .name
        .chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .filter(|c| *c != '"')
        .collect();
    Ok((
        [
            (header::CONTENT_TYPE, grant.content_type),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
            (header::CACHE_CONTROL, "private, max-age=3600".to_owned()),
        ],
        bytes,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(op: &str, expires: u64) -> Grant {
        Grant {
            op: op.into(),
            room: "t/r".into(),
            file: "0".repeat(32),
            name: "a.png".into(),
            content_type: "image/png".into(),
            size: 3,
            participant: "PA_1".into(),
            sender_name: "Ada".into(),
            sender_identity: "ada".into(),
            expires,
            seq: 1,
        }
    }

    #[test]
    fn grants_verify_only_unchanged_unexpired_and_for_their_use() {
        let key = b"k".repeat(32);
        let token = sign(&key, &grant("down", 100));
        assert_eq!(
            verify(&key, &token, "down", 99).map(|g| g.file).ok(),
            Some("0".repeat(32))
        );
        assert_eq!(
            verify(&key, &token, "down", 101).unwrap_err().code,
            "link_expired"
        );
        assert_eq!(
            verify(&key, &token, "up", 99).unwrap_err().code,
            "invalid_link"
        );
        assert_eq!(
            verify(b"other", &token, "down", 99).unwrap_err().code,
            "invalid_link"
        );
        let (payload, tag) = token.split_once('.').unwrap_or_default();
        let forged = b64().encode(serde_json::to_vec(&grant("down", u64::MAX)).unwrap_or_default());
        assert_eq!(
            verify(&key, &format!("{forged}.{tag}"), "down", 99)
                .unwrap_err()
                .code,
            "invalid_link"
        );
        for garbage in ["", ".", "x", &format!("{payload}."), "a.b.c"] {
            assert!(verify(&key, garbage, "down", 0).is_err(), "{garbage}");
        }
    }

    proptest::proptest! {
        /// A link is a token from the network: whatever it holds, it is refused
        /// unless it is one the gateway signed, and then only unchanged.
        #[test]
        fn any_token_but_a_signed_one_unchanged_is_refused(
            garbage in ".{0,300}",
            at in proptest::prelude::any::<proptest::sample::Index>(),
            replacement in proptest::prelude::any::<char>(),
        ) {
            let key = b"k".repeat(32);
            let refused = verify(&key, &garbage, "down", 0);
            proptest::prop_assert_eq!(refused.map(|g| g.file).map_err(|e| e.code), Err("invalid_link"));
            let token = sign(&key, &grant("down", 100));
            let chars: Vec<char> = token.chars().collect();
            let i = at.index(chars.len());
            proptest::prop_assume!(chars[i] != replacement);
            let mut changed = chars;
            changed[i] = replacement;
            let changed: String = changed.into_iter().collect();
            let outcome = verify(&key, &changed, "down", 0).map_err(|e| e.code);
            proptest::prop_assert_eq!(outcome.map(|g| g.file), Err("invalid_link"), "{}", changed);
        }
    }

    #[test]
    fn declared_types_must_match_the_bytes() {
        let check = |ty: &str, bytes: &[u8]| {
            ALLOWED
                .iter()
                .find(|(t, _)| *t == ty)
                .is_some_and(|(_, f)| f(bytes))
        };
        assert!(check("image/png", b"\x89PNG\r\n\x1a\nrest"));
        assert!(!check("image/png", b"%PDF-1.7"));
        assert!(check("application/pdf", b"%PDF-1.7"));
        assert!(check("text/plain", "héllo".as_bytes()));
        assert!(!check("text/plain", b"\xff\xfe"));
        assert!(!check("application/x-msdownload", b"MZ"));
    }
}
