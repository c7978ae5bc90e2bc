//! One handler per tenant API route; each authenticates the tenant and calls the room
//! service.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use confer_chat::Page;
use confer_room::api::{CreateRoom, CreateWebhook, SendData, UpdateParticipant, UpdateRoom};
use confer_room::model::TrackKind;
use serde::Deserialize;
use serde_json::json;

use super::extract::{ApiError, Body, Tenant};
use crate::AppState;

type Result<T> = std::result::Result<T, ApiError>;
pub(crate) type St = State<Arc<AppState>>;

pub(crate) async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no_such_route", "no such API route")
}

pub(crate) async fn list_rooms(State(s): St, Tenant(t): Tenant) -> Result<Response> {
    Ok(Json(s.room.list_rooms(t).await?).into_response())
}

pub(crate) async fn create_room(
    State(s): St,
    Tenant(t): Tenant,
    Body(req): Body<CreateRoom>,
) -> Result<Response> {
    super::recordings::allows(&s, req.settings.recording)?;
    let room = s.room.create_room(t, req).await?;
    Ok((StatusCode::CREATED, Json(room)).into_response())
}

pub(crate) async fn get_room(
    State(s): St,
    Tenant(t): Tenant,
    Path(room): Path<String>,
) -> Result<Response> {
    Ok(Json(s.room.get_room(t, room).await?).into_response())
}

pub(crate) async fn update_room(
    State(s): St,
    Tenant(t): Tenant,
    Path(room): Path<String>,
    Body(req): Body<UpdateRoom>,
) -> Result<Response> {
    let recording = req
        .settings
        .as_ref()
        .and_then(|changes| changes.get("recording"))
        == Some(&serde_json::Value::Bool(true));
    super::recordings::allows(&s, recording)?;
    Ok(Json(s.room.update_room(t, room, req).await?).into_response())
}

pub(crate) async fn delete_room(
    State(s): St,
    Tenant(t): Tenant,
    Path(room): Path<String>,
) -> Result<Response> {
    s.room.delete_room(t.clone(), room.clone()).await?;
    // The room is gone; its chat goes with it (a failure leaves it to retention).
    match s.chat.api.delete_room(chat_key(&t, &room)).await {
        // Its shared files' bytes go next.
        Ok(()) => s.sweep_files.wake(),
        Err(err) => tracing::warn!(%err, room, "room deleted but its chat was not"),
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The chat service's name for a tenant's room, as sessions use it.
fn chat_key(tenant: &str, room: &str) -> String {
    confer_chat::api::room_key(tenant, room)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExportQuery {
    #[serde(default)]
    after: u64,
    #[serde(default)]
    limit: Option<u32>,
}

/// Most entries in one export page.
const EXPORT_PAGE: u32 = 1000;

pub(crate) async fn export_chat(
    State(s): St,
    Tenant(t): Tenant,
    Path(room): Path<String>,
    Query(query): Query<ExportQuery>,
) -> Result<Response> {
    // The room must be the tenant's.
    s.room.get_room(t.clone(), room.clone()).await?;
    let limit = query.limit.unwrap_or(EXPORT_PAGE).clamp(1, EXPORT_PAGE);
    let mut messages = Vec::new();
    let mut after = query.after;
    let mut more = true;
    // The chat service pages by up to 200; an export page gathers several.
    while more && messages.len() < limit as usize {
        let want = (limit as usize - messages.len()).min(confer_chat::api::MAX_PAGE as usize);
        let page = s
            .chat
            .api
            .history(
                chat_key(&t, &room),
                Page::After {
                    after,
                    limit: want as u32,
                },
            )
            .await?;
        more = page.more;
        let Some(last) = page.entries.last() else {
            break;
        };
        after = last.seq;
        messages.extend(page.entries.into_iter().map(exported));
    }
    Ok(Json(json!({"messages": messages, "more": more, "next_after": after})).into_response())
}

fn exported(entry: confer_chat::ChatEntry) -> serde_json::Value {
    json!({
        "seq": entry.seq,
        "kind": entry.kind.as_str(),
        "participant_id": entry.sender_id,
        "name": entry.sender_name,
        "identity": entry.sender_identity,
        "text": entry.text,
        "reply_to": entry.reply_to,
        "target_seq": entry.target_seq,
        "sent_at_ms": entry.sent_at_ms,
        "edited": entry.edited,
        "deleted": entry.deleted,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChatRetention {
    seconds: u64,
}

pub(crate) async fn set_chat_retention(
    State(s): St,
    Tenant(t): Tenant,
    Path(room): Path<String>,
    Body(req): Body<ChatRetention>,
) -> Result<Response> {
    s.room.get_room(t.clone(), room.clone()).await?;
    let key = chat_key(&t, &room);
    s.chat.api.set_retention(key.clone(), req.seconds).await?;
    retention_now(&s, key).await
}

pub(crate) async fn get_chat_retention(
    State(s): St,
    Tenant(t): Tenant,
    Path(room): Path<String>,
) -> Result<Response> {
    s.room.get_room(t.clone(), room.clone()).await?;
    retention_now(&s, chat_key(&t, &room)).await
}

pub(crate) async fn clear_chat_retention(
    State(s): St,
    Tenant(t): Tenant,
    Path(room): Path<String>,
) -> Result<Response> {
    s.room.get_room(t.clone(), room.clone()).await?;
    let key = chat_key(&t, &room);
    s.chat.api.clear_retention(key.clone()).await?;
    retention_now(&s, key).await
}

/// How long the room's chat is kept now, and whether that is its own setting or the
/// deployment's default.
async fn retention_now(s: &AppState, key: String) -> Result<Response> {
    let now = s.chat.api.retention(key).await?;
    let source = if now.own { "room" } else { "default" };
    Ok(Json(json!({"seconds": now.seconds, "source": source})).into_response())
}

pub(crate) async fn list_participants(
    State(s): St,
    Tenant(t): Tenant,
    Path(room): Path<String>,
) -> Result<Response> {
    Ok(Json(s.room.list_participants(t, room).await?).into_response())
}

pub(crate) async fn get_participant(
    State(s): St,
    Tenant(t): Tenant,
    Path((room, participant)): Path<(String, String)>,
) -> Result<Response> {
    Ok(Json(s.room.get_participant(t, room, participant).await?).into_response())
}

pub(crate) async fn update_participant(
    State(s): St,
    Tenant(t): Tenant,
    Path((room, participant)): Path<(String, String)>,
    Body(req): Body<UpdateParticipant>,
) -> Result<Response> {
    Ok(Json(s.room.update_participant(t, room, participant, req).await?).into_response())
}

pub(crate) async fn remove_participant(
    State(s): St,
    Tenant(t): Tenant,
    Path((room, participant)): Path<(String, String)>,
) -> Result<Response> {
    s.room.remove_participant(t, room, participant).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /v1/rooms/{room}/participants/{participant}/mute`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MuteTrack {
    kind: TrackKind,
    muted: bool,
}

pub(crate) async fn mute_track(
    State(s): St,
    Tenant(t): Tenant,
    Path((room, participant)): Path<(String, String)>,
    Body(req): Body<MuteTrack>,
) -> Result<Response> {
    let info = s
        .room
        .mute_track(t, room, participant, req.kind, req.muted)
        .await?;
    Ok(Json(info).into_response())
}

pub(crate) async fn send_data(
    State(s): St,
    Tenant(t): Tenant,
    Path(room): Path<String>,
    Body(req): Body<SendData>,
) -> Result<Response> {
    s.room.send_data(t, room, req).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

pub(crate) async fn list_webhooks(State(s): St, Tenant(t): Tenant) -> Result<Response> {
    Ok(Json(s.room.list_webhooks(t).await?).into_response())
}

pub(crate) async fn create_webhook(
    State(s): St,
    Tenant(t): Tenant,
    Body(req): Body<CreateWebhook>,
) -> Result<Response> {
    let webhook = s.room.create_webhook(t, req).await?;
    Ok((StatusCode::CREATED, Json(webhook)).into_response())
}

pub(crate) async fn delete_webhook(
    State(s): St,
    Tenant(t): Tenant,
    Path(webhook): Path<String>,
) -> Result<Response> {
    s.room.delete_webhook(t, webhook).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(crate) async fn dead_letters(State(s): St, Tenant(t): Tenant) -> Result<Response> {
    Ok(Json(s.room.dead_letters(t).await?).into_response())
}
