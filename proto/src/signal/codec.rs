//! Decoding client signalling frames and encoding server ones.
//!
//! The decoder is the first thing that touches bytes from the internet, so it checks
//! the envelope by hand before serde sees it: a size bound, UTF-8, a JSON object,
//! at most one message key and no unknown ones. Every failure is a [`DecodeError`]
//! whose [`code`](DecodeError::code) the gateway sends back to the client.

use super::{ChatMessage, ClientMessage, ServerMessage, client_message};

/// Largest signalling frame accepted. An SDP offer with a few dozen m-lines is ~20 KiB.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// The keys a `ClientMessage` may carry besides `request_id`, one at a time.
const MESSAGE_KEYS: [&str; 16] = [
    "join",
    "trickle",
    "chat",
    "mute",
    "leave",
    "ping",
    "offer",
    "host",
    "set_name",
    "track_settings",
    "chat_edit",
    "chat_delete",
    "chat_history",
    "file_upload",
    "raise_hand",
    "send_data",
];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("message is {0} bytes, the limit is {MAX_MESSAGE_BYTES}")]
    TooLarge(usize),
    #[error("message is not valid UTF-8")]
    NotUtf8,
    #[error("message is not valid JSON: {0}")]
    Malformed(String),
    #[error("message must be a JSON object")]
    NotAnObject,
    #[error("message has no type: expected one of {}", MESSAGE_KEYS.join(", "))]
    MissingType,
    #[error("unknown message type `{0}`")]
    UnknownType(String),
    #[error("message has more than one type: {0}")]
    SeveralTypes(String),
    #[error("invalid `{kind}` message: {reason}")]
    InvalidBody { kind: String, reason: String },
}

impl DecodeError {
    /// The stable code sent to the client in an `error` message.
    pub fn code(&self) -> &'static str {
        match self {
            DecodeError::TooLarge(_) => "message_too_large",
            DecodeError::NotUtf8 | DecodeError::Malformed(_) | DecodeError::NotAnObject => {
                "malformed_message"
            }
            DecodeError::MissingType | DecodeError::UnknownType(_) => "unknown_message",
            DecodeError::SeveralTypes(_) | DecodeError::InvalidBody { .. } => "invalid_message",
        }
    }
}

/// Decodes one client frame. Never panics, whatever the input.
pub fn decode_client_message(frame: &[u8]) -> Result<ClientMessage, DecodeError> {
    if frame.len() > MAX_MESSAGE_BYTES {
        return Err(DecodeError::TooLarge(frame.len()));
    }
    let text = std::str::from_utf8(frame).map_err(|_| DecodeError::NotUtf8)?;
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|err| DecodeError::Malformed(err.to_string()))?;
    let serde_json::Value::Object(object) = &value else {
        return Err(DecodeError::NotAnObject);
    };
    let request_id = match object.get("request_id") {
        None => String::new(),
        Some(serde_json::Value::String(id)) => id.clone(),
        Some(_) => {
            return Err(DecodeError::InvalidBody {
                kind: "request_id".into(),
                reason: "must be a string".into(),
            });
        }
    };
    let traceparent = match object.get("traceparent") {
        None => String::new(),
        Some(serde_json::Value::String(value)) if is_traceparent(value) => value.clone(),
        Some(serde_json::Value::String(_)) => String::new(),
        Some(_) => {
            return Err(DecodeError::InvalidBody {
                kind: "traceparent".into(),
                reason: "must be a string".into(),
            });
        }
    };
    let mut kinds = object
        .keys()
        .filter(|key| *key != "request_id" && *key != "traceparent");
    let (kind, extra) = (kinds.next(), kinds.next());
    let Some(kind) = kind else {
        return Err(DecodeError::MissingType);
    };
    if !MESSAGE_KEYS.contains(&kind.as_str()) {
        return Err(DecodeError::UnknownType(kind.clone()));
    }
    if let Some(extra) = extra {
        if !MESSAGE_KEYS.contains(&extra.as_str()) {
            return Err(DecodeError::UnknownType(extra.clone()));
        }
        return Err(DecodeError::SeveralTypes(format!("{kind}, {extra}")));
    }
    let body = serde_json::json!({ kind.as_str(): object[kind] });
    let msg: client_message::Msg =
        serde_json::from_value(body).map_err(|err| DecodeError::InvalidBody {
            kind: kind.clone(),
            reason: err.to_string(),
        })?;
    Ok(ClientMessage {
        request_id,
        traceparent,
        msg: Some(msg),
    })
}

/// W3C Trace Context, version 00: `00-` 32 lowercase hex digits (not all zero) `-` 16
/// (not all zero) `-` 2. Anything else is ignored, as the specification asks, so a
/// client cannot make the gateway keep or forward arbitrary text.
pub fn is_traceparent(value: &str) -> bool {
    let parts: Vec<&str> = value.split('-').collect();
    let hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let nonzero = |s: &str| s.bytes().any(|b| b != b'0');
    matches!(parts.as_slice(), [version, trace, span, flags]
        if *version == "00"
            && hex(trace, 32) && nonzero(trace)
            && hex(span, 16) && nonzero(span)
            && hex(flags, 2))
}

/// One chat entry's JSON object, for [`chat_text`] and [`chat_batch_text`]: encoded
/// once, it goes to every member of the room.
pub fn encode_chat_entry(entry: &ChatMessage) -> String {
    // A generated struct of strings, numbers and booleans always serialises.
    serde_json::to_string(entry).unwrap_or_else(|_| "{}".to_owned())
}

/// The `chat` frame of one entry encoded by [`encode_chat_entry`].
pub fn chat_text(entry: &str) -> String {
    format!(r#"{{"chat":{entry}}}"#)
}

/// The `chat_batch` frame of consecutive entries encoded by [`encode_chat_entry`].
pub fn chat_batch_text<'a>(entries: impl IntoIterator<Item = &'a str>) -> String {
    let mut text = String::from(r#"{"chat_batch":{"entries":["#);
    for (i, entry) in entries.into_iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        text.push_str(entry);
    }
    text.push_str("]}}");
    text
}

/// Encodes one server frame as JSON text.
pub fn encode_server_message(message: &ServerMessage) -> String {
    // Serialising generated structs of strings, numbers and vectors cannot fail, and an
    // externally tagged enum always serialises to a one-key object.
    let mut object = match message.msg.as_ref().map(serde_json::to_value) {
        Some(Ok(serde_json::Value::Object(object))) => object,
        _ => serde_json::Map::new(),
    };
    if !message.request_id.is_empty() {
        object.insert(
            "request_id".into(),
            serde_json::Value::String(message.request_id.clone()),
        );
    }
    serde_json::Value::Object(object).to_string()
}

#[cfg(test)]
mod tests;
