//! A room's recordings through the tenant API: the list, each file, and its removal.
//! The SFUs write them to the recordings directory this gateway reads too (a shared
//! volume), under the room's key, which names the tenant: a tenant reaches only its
//! own. They outlive the room: a deleted room's recordings stay until removed.

use std::path::PathBuf;

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use confer_sfu::record::{self, Recorded};
use serde_json::json;
use tokio::io::AsyncReadExt as _;

use super::extract::{ApiError, Tenant};
use super::handlers::St;
use crate::AppState;

/// What a download reads at a time.
const CHUNK: usize = 64 * 1024;

fn room_key(tenant: &str, room: &str) -> String {
    format!("{tenant}/{room}")
}

fn directory(state: &AppState) -> Result<PathBuf, ApiError> {
    state.config.recordings.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "recording_unavailable",
            "this deployment keeps no recordings (no recordings directory)",
        )
    })
}

/// Refuses settings that turn recording on where no recordings are kept.
pub(crate) fn allows(state: &AppState, recording: bool) -> Result<(), ApiError> {
    if recording {
        directory(state)?;
    }
    Ok(())
}

async fn listed(dir: PathBuf, key: String) -> Result<Vec<Recorded>, ApiError> {
    tokio::task::spawn_blocking(move || record::list(&dir, &key))
        .await
        .map_err(|err| ApiError::internal(err.to_string()))?
        .map_err(|err| ApiError::internal(format!("cannot read the recordings: {err}")))
}

fn described(recorded: &Recorded) -> serde_json::Value {
    json!({
        "file": recorded.file,
        "participant_id": recorded.participant,
        "source": recorded.source,
        "started_at_ms": recorded.started_unix_ms,
        "bytes": recorded.bytes,
        "complete": !recorded.in_progress,
        "duration_ms": recorded.duration_ms,
    })
}

pub(crate) async fn list_recordings(
    s: St,
    Tenant(t): Tenant,
    Path(room): Path<String>,
) -> Result<Response, ApiError> {
    let dir = directory(&s.0)?;
    let all = listed(dir, room_key(&t, &room)).await?;
    let recordings: Vec<_> = all.iter().map(described).collect();
    Ok(axum::Json(json!({"recordings": recordings})).into_response())
}

/// The finished recording `file` of the tenant's `room`, and its path. Only a name
/// the listing gives is found: nothing else can be named.
async fn finished(
    s: &St,
    tenant: &str,
    room: &str,
    file: &str,
) -> Result<(Recorded, PathBuf), ApiError> {
    let dir = directory(&s.0)?;
    let key = room_key(tenant, room);
    let found = listed(dir.clone(), key.clone())
        .await?
        .into_iter()
        .find(|recorded| recorded.file == file && !recorded.in_progress)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "recording_not_found",
                "no finished recording of that name in this room",
            )
        })?;
    let path = dir.join(record::path_part(&key)).join(&found.file);
    Ok((found, path))
}

pub(crate) async fn delete_recording(
    s: St,
    Tenant(t): Tenant,
    Path((room, file)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (_, path) = finished(&s, &t, &room, &file).await?;
    tokio::fs::remove_file(&path)
        .await
        .map_err(|err| ApiError::internal(format!("cannot remove the recording: {err}")))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(crate) async fn get_recording(
    s: St,
    Tenant(t): Tenant,
    Path((room, file)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (found, path) = finished(&s, &t, &room, &file).await?;
    let opened = tokio::fs::File::open(&path)
        .await
        .map_err(|err| ApiError::internal(format!("cannot open the recording: {err}")))?;
    let content_type = if found.source == "microphone" {
        "audio/webm"
    } else {
        "video/webm"
    };
    let chunks = futures_util::stream::unfold(opened, |mut file| async move {
        let mut buf = vec![0u8; CHUNK];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(bytes::Bytes::from(buf)), file))
            }
            Err(err) => Some((Err(err), file)),
        }
    });
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (header::CONTENT_LENGTH, found.bytes.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{}\"", found.file),
            ),
        ],
        axum::body::Body::from_stream(chunks),
    )
        .into_response())
}
