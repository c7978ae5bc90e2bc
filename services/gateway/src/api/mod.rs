//! The tenant REST API under `/v1/`: rooms, participants, data messages, chat export
//! and retention, recordings, webhooks.
//! Authentication is HTTP Basic with an API key and secret. Every error is a JSON body
//! `{"error": {"code", "message"}}`; malformed JSON and unknown fields are 400s.
//! [`openapi`] documents exactly the routes [`ROUTES`] lists.

mod extract;
mod handlers;
pub(crate) mod openapi;
mod recordings;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};

use crate::AppState;

/// Every route: (method, path as OpenAPI writes it, operation id, summary).
pub const ROUTES: &[(&str, &str, &str, &str)] = &[
    ("get", "/v1/rooms", "listRooms", "List the tenant's rooms"),
    (
        "post",
        "/v1/rooms",
        "createRoom",
        "Create a room with its settings",
    ),
    ("get", "/v1/rooms/{room}", "getRoom", "Get a room"),
    (
        "patch",
        "/v1/rooms/{room}",
        "updateRoom",
        "Change a room's settings or password",
    ),
    (
        "delete",
        "/v1/rooms/{room}",
        "deleteRoom",
        "End a room: disconnect everyone and delete it",
    ),
    (
        "get",
        "/v1/rooms/{room}/participants",
        "listParticipants",
        "List participants, including those waiting",
    ),
    (
        "get",
        "/v1/rooms/{room}/participants/{participant}",
        "getParticipant",
        "Get a participant",
    ),
    (
        "patch",
        "/v1/rooms/{room}/participants/{participant}",
        "updateParticipant",
        "Change a participant's permissions, role, name or metadata",
    ),
    (
        "delete",
        "/v1/rooms/{room}/participants/{participant}",
        "removeParticipant",
        "Remove a participant from the room",
    ),
    (
        "post",
        "/v1/rooms/{room}/participants/{participant}/mute",
        "muteTrack",
        "Stop or resume forwarding a participant's audio or video",
    ),
    (
        "post",
        "/v1/rooms/{room}/data",
        "sendData",
        "Send a data message to the room or some participants",
    ),
    (
        "get",
        "/v1/rooms/{room}/chat",
        "exportChat",
        "Export the room's chat history, oldest first, a page at a time",
    ),
    (
        "get",
        "/v1/rooms/{room}/chat/retention",
        "getChatRetention",
        "How long the room's chat is kept: its own setting or the deployment's default",
    ),
    (
        "put",
        "/v1/rooms/{room}/chat/retention",
        "setChatRetention",
        "Keep the room's chat for so many seconds (0: as long as the room exists)",
    ),
    (
        "delete",
        "/v1/rooms/{room}/chat/retention",
        "clearChatRetention",
        "Drop the room's own retention: its chat is kept for the deployment's default",
    ),
    (
        "get",
        "/v1/rooms/{room}/recordings",
        "listRecordings",
        "The room's recordings: one WebM file per recorded track, oldest first",
    ),
    (
        "get",
        "/v1/rooms/{room}/recordings/{file}",
        "getRecording",
        "Download one finished recording (audio/webm or video/webm)",
    ),
    (
        "delete",
        "/v1/rooms/{room}/recordings/{file}",
        "deleteRecording",
        "Remove one finished recording for good",
    ),
    (
        "get",
        "/v1/webhooks",
        "listWebhooks",
        "List webhook endpoints",
    ),
    (
        "post",
        "/v1/webhooks",
        "createWebhook",
        "Add a webhook endpoint; its signing secret is shown once",
    ),
    (
        "delete",
        "/v1/webhooks/{webhook}",
        "deleteWebhook",
        "Remove a webhook endpoint",
    ),
    (
        "get",
        "/v1/webhooks/dead-letters",
        "listDeadLetters",
        "Events that ran out of delivery attempts",
    ),
    ("get", "/v1/openapi.json", "openapi", "This document"),
];

pub(crate) fn routes() -> Router<Arc<AppState>> {
    use handlers::*;
    Router::new()
        .route("/rooms", get(list_rooms).post(create_room))
        .route(
            "/rooms/{room}",
            get(get_room).patch(update_room).delete(delete_room),
        )
        .route("/rooms/{room}/participants", get(list_participants))
        .route(
            "/rooms/{room}/participants/{participant}",
            get(get_participant)
                .patch(update_participant)
                .delete(remove_participant),
        )
        .route(
            "/rooms/{room}/participants/{participant}/mute",
            post(mute_track),
        )
        .route("/rooms/{room}/data", post(send_data))
        .route("/rooms/{room}/chat", get(export_chat))
        .route(
            "/rooms/{room}/chat/retention",
            get(get_chat_retention)
                .put(set_chat_retention)
                .delete(clear_chat_retention),
        )
        .route("/rooms/{room}/recordings", get(recordings::list_recordings))
        .route(
            "/rooms/{room}/recordings/{file}",
            get(recordings::get_recording).delete(recordings::delete_recording),
        )
        .route("/webhooks", get(list_webhooks).post(create_webhook))
        .route("/webhooks/dead-letters", get(dead_letters))
        .route("/webhooks/{webhook}", axum::routing::delete(delete_webhook))
        .route("/openapi.json", get(openapi::document))
        .fallback(not_found)
}
