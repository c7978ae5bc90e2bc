//! The OpenAPI 3.0 document of the tenant API, built from [`super::ROUTES`] so that
//! every route is documented and nothing undocumented is served.

use axum::Json;
use serde_json::{Value, json};

use super::ROUTES;

fn schema(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn array_of(name: &str) -> Value {
    json!({"type": "array", "items": schema(name)})
}

/// (request body schema, success status, response schema) per operation.
fn io(operation: &str) -> (Option<Value>, &'static str, Option<Value>) {
    match operation {
        "listRooms" => (None, "200", Some(array_of("Room"))),
        "createRoom" => (Some(schema("CreateRoom")), "201", Some(schema("Room"))),
        "getRoom" => (None, "200", Some(schema("Room"))),
        "updateRoom" => (Some(schema("UpdateRoom")), "200", Some(schema("Room"))),
        "listParticipants" => (None, "200", Some(array_of("Participant"))),
        "getParticipant" => (None, "200", Some(schema("Participant"))),
        "updateParticipant" => (
            Some(schema("UpdateParticipant")),
            "200",
            Some(schema("Participant")),
        ),
        "muteTrack" => (
            Some(schema("MuteTrack")),
            "200",
            Some(schema("Participant")),
        ),
        "sendData" => (Some(schema("SendData")), "202", None),
        "listWebhooks" => (None, "200", Some(array_of("Webhook"))),
        "createWebhook" => (
            Some(schema("CreateWebhook")),
            "201",
            Some(schema("Webhook")),
        ),
        "listDeadLetters" => (None, "200", Some(array_of("DeadLetter"))),
        "exportChat" => (None, "200", Some(schema("ChatExport"))),
        "listRecordings" => (None, "200", Some(schema("RecordingList"))),
        "getRecording" => (
            None,
            "200",
            Some(json!({"type": "string", "format": "binary"})),
        ),
        "getChatRetention" | "clearChatRetention" => (None, "200", Some(schema("RetentionNow"))),
        "setChatRetention" => (
            Some(schema("ChatRetention")),
            "200",
            Some(schema("RetentionNow")),
        ),
        "openapi" => (None, "200", Some(json!({"type": "object"}))),
        _ => (None, "204", None),
    }
}

fn path_parameters(path: &str) -> Vec<Value> {
    path.split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
        .collect()
}

/// Query parameters per operation.
fn query_parameters(operation: &str) -> Vec<Value> {
    let int = |name: &str, description: &str| json!({"name": name, "in": "query", "required": false, "description": description, "schema": {"type": "integer", "minimum": 0}});
    match operation {
        "exportChat" => vec![
            int(
                "after",
                "Only entries after this seq (the previous page's next_after)",
            ),
            int("limit", "Entries per page, 1 to 1000 (default 1000)"),
        ],
        _ => Vec::new(),
    }
}

fn error_response(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema("Error")}}})
}

pub fn build() -> Value {
    let mut paths = serde_json::Map::new();
    for (method, path, operation, summary) in ROUTES {
        let (request, status, response) = io(operation);
        let mut op = json!({
            "operationId": operation,
            "summary": summary,
            "parameters": path_parameters(path).into_iter().chain(query_parameters(operation)).collect::<Vec<_>>(),
            "responses": {
                *status: match response {
                    Some(body) => json!({"description": "Success", "content": {"application/json": {"schema": body}}}),
                    None => json!({"description": "Success"}),
                },
                "400": error_response("Malformed JSON, unknown fields or invalid values"),
                "401": error_response("Missing or wrong API key and secret"),
                "404": error_response("No such room, participant or webhook"),
            },
        });
        if *operation == "openapi" {
            op["security"] = json!([]);
        }
        if let Some(body) = request {
            op["requestBody"] =
                json!({"required": true, "content": {"application/json": {"schema": body}}});
        }
        let entry = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        entry[*method] = op;
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Confer tenant API",
            "version": "1.0.0",
            "description": "Rooms, participants, data messages, chat export and retention, and webhooks. Authenticate with HTTP Basic: API key as user name, API secret as password. Errors are {\"error\": {\"code\", \"message\"}}.",
        },
        "servers": [{"url": "/"}],
        "security": [{"basic": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"basic": {"type": "http", "scheme": "basic"}},
            "schemas": schemas(),
        },
    })
}

fn schemas() -> Value {
    let string = json!({"type": "string"});
    let boolean = json!({"type": "boolean"});
    let int = json!({"type": "integer", "minimum": 0});
    json!({
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {
            "type": "object", "required": ["code", "message"],
            "properties": {"code": string, "message": string}}}},
        "RoomSettings": {"type": "object", "additionalProperties": false, "properties": {
            "waiting_room": boolean, "locked": boolean,
            "max_participants": {"type": "integer", "minimum": 1},
            "allow_screen_share": boolean, "allow_self_unmute": boolean,
            "allow_chat": {"type": "boolean", "description": "Participants may post in the chat; when false only hosts may (everyone still reads it)"},
            "chat_slow_mode_secs": {"type": "integer", "minimum": 0, "maximum": 3600, "description": "Slow mode: seconds each participant or viewer waits between chat messages (0: off; hosts never wait)"},
            "recording": {"type": "boolean", "description": "What participants publish is recorded, each track to its own WebM file (listed under the room's recordings); everyone in the room is told"},
            "name_changes_need_approval": boolean, "empty_timeout_secs": int,
            "sip_dial_in": {"type": "boolean", "description": "Callers may dial in over SIP (default true); when false the SIP bridge's calls are refused with 403"},
            "region": string,
            "regions": {"type": "array", "maxItems": 8, "items": {"type": "string", "minLength": 1, "maxLength": 64},
                "description": "Further regions the room spans; participants there join an SFU in their region, linked by relays"},
            "metadata": {"type": "string", "maxLength": 4096}}},
        "CreateRoom": {"type": "object", "additionalProperties": false, "required": ["name"], "properties": {
            "name": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"},
            "settings": schema("RoomSettings"),
            "password": {"type": "string", "nullable": true, "maxLength": 128}}},
        "UpdateRoom": {"type": "object", "additionalProperties": false,
            "description": "Fields present are changed; within settings, only the settings named (the others, such as a host's lock, stay)",
            "properties": {
            "settings": schema("RoomSettings"),
            "password": {"type": "string", "nullable": true, "description": "Empty removes the password"}}},
        "Placement": {"type": "object", "properties": {"region": string, "sfu": string, "control": string}},
        "Room": {"type": "object", "properties": {
            "name": string, "settings": schema("RoomSettings"), "has_password": boolean,
            "created_at": int, "active": boolean, "num_participants": int,
            "placement": {"allOf": [schema("Placement")], "nullable": true},
            "placements": {"type": "array", "items": schema("Placement")}}},
        "Permissions": {"type": "object", "additionalProperties": false, "properties": {
            "can_publish": boolean, "can_subscribe": boolean, "can_publish_data": boolean,
            "can_publish_sources": {"type": "array", "items": {"type": "string", "enum": ["camera", "microphone", "screen_share"]}},
            "hidden": boolean}},
        "Participant": {"type": "object", "properties": {
            "id": string, "identity": string, "name": string,
            "role": {"type": "string", "enum": ["host", "participant", "viewer"]},
            "permissions": schema("Permissions"), "metadata": string,
            "state": {"type": "string", "enum": ["waiting", "active"]},
            "audio_muted": boolean, "video_muted": boolean,
            "audio_blocked": boolean, "video_blocked": boolean,
            "pending_name": {"type": "string", "nullable": true},
            "tracks": {"type": "array", "items": {"type": "string", "enum": ["audio", "video"]}},
            "sources": {"type": "array", "items": {"type": "string", "enum": ["microphone", "camera", "screen_share"]},
                "description": "What the participant is sending from: a screen only while it shares one"},
            "joined_at": int, "gateway": string,
            "kind": {"type": "string", "enum": ["sip"], "description": "Present for a caller dialled in over SIP"},
            "previous_id": {"type": "string", "description": "Present for a participant that came back after a lost connection: the id it had before (its participant_left came with that id)"},
            "hand_raised_at": {"type": "integer", "format": "int64", "description": "Present while its hand is raised: when it went up (Unix milliseconds; the earliest is first in line)"}}},
        "UpdateParticipant": {"type": "object", "additionalProperties": false, "properties": {
            "permissions": schema("Permissions"), "metadata": string,
            "role": {"type": "string", "enum": ["host", "participant", "viewer"]}, "name": string}},
        "MuteTrack": {"type": "object", "additionalProperties": false, "required": ["kind", "muted"], "properties": {
            "kind": {"type": "string", "enum": ["audio", "video"]}, "muted": boolean}},
        "SendData": {"type": "object", "additionalProperties": false, "required": ["payload"], "properties": {
            "payload": string, "topic": string, "destination": {"type": "array", "items": string}}},
        "CreateWebhook": {"type": "object", "additionalProperties": false, "required": ["url"], "properties": {
            "url": {"type": "string", "format": "uri"}}},
        "Webhook": {"type": "object", "properties": {
            "id": string, "url": string, "created_at": int,
            "secret": {"type": "string", "description": "Only in the answer to the creation"}}},
        "ChatMessage": {"type": "object", "properties": {
            "seq": int, "kind": {"type": "string", "enum": ["text", "edit", "delete"]},
            "participant_id": string, "name": string, "text": string,
            "identity": {"type": "string", "description": "The sender's identity (the access token's subject), the same across its connections; empty for messages stored before it was recorded"},
            "reply_to": int, "target_seq": int, "sent_at_ms": int,
            "edited": boolean, "deleted": boolean}},
        "Recording": {"type": "object", "required": ["file", "participant_id", "source", "started_at_ms", "bytes", "complete"], "properties": {
            "file": {"type": "string", "description": "The name to download it by"},
            "participant_id": string,
            "source": {"type": "string", "enum": ["microphone", "camera", "screen_share"]},
            "started_at_ms": {"type": "integer", "minimum": 0, "description": "When its first frame was taken, ms since the Unix epoch: line files of one room up by it"},
            "bytes": int,
            "complete": {"type": "boolean", "description": "False while it is still being written"},
            "duration_ms": {"type": "integer", "nullable": true, "minimum": 0, "description": "Its length as written into the finished file; null while it is being written"}}},
        "RecordingList": {"type": "object", "required": ["recordings"], "properties": {
            "recordings": array_of("Recording")}},
        "ChatExport": {"type": "object", "properties": {
            "messages": array_of("ChatMessage"), "more": boolean,
            "next_after": {"type": "integer", "minimum": 0, "description": "Pass as `after` for the next page"}}},
        "ChatRetention": {"type": "object", "additionalProperties": false, "required": ["seconds"], "properties": {
            "seconds": {"type": "integer", "minimum": 0, "description": "0 keeps the chat as long as the room exists"}}},
        "RetentionNow": {"type": "object", "required": ["seconds", "source"], "properties": {
            "seconds": {"type": "integer", "minimum": 0, "description": "0 keeps the chat as long as the room exists"},
            "source": {"enum": ["room", "default"], "description": "the room's own setting, or the deployment's default (a room whose retention was never set, or was cleared)"}}},
        "DeadLetter": {"type": "object", "properties": {
            "event_id": string, "webhook_id": string, "event": string, "room": string,
            "attempts": int, "last_error": string, "created_at": int}},
    })
}

pub(crate) async fn document() -> Json<Value> {
    Json(build())
}
