//! What the chat service refuses, with a stable code. Plain data, so it crosses gRPC
//! intact and reaches the client as the signalling error's code.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    Invalid,
    Forbidden,
    NotFound,
    Unavailable,
    Internal,
}

impl ErrorKind {
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::Invalid => 400,
            ErrorKind::Forbidden => 403,
            ErrorKind::NotFound => 404,
            ErrorKind::Unavailable => 503,
            ErrorKind::Internal => 500,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ChatError {
    pub kind: ErrorKind,
    /// Stable machine-readable code, e.g. `chat_unavailable`, `not_author`.
    pub code: String,
    pub message: String,
}

pub type ChatResult<T> = Result<T, ChatError>;

impl ChatError {
    pub fn new(kind: ErrorKind, code: &str, message: impl Into<String>) -> Self {
        Self {
            kind,
            code: code.to_owned(),
            message: message.into(),
        }
    }

    pub fn invalid(code: &str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, code, message)
    }

    pub fn forbidden(code: &str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, code, message)
    }

    pub fn not_found(code: &str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, code, message)
    }

    pub fn internal(err: impl std::fmt::Display) -> Self {
        Self::new(ErrorKind::Internal, "internal", err.to_string())
    }

    /// The history store could not be reached or failed: nothing was stored.
    pub fn store(err: impl std::fmt::Display) -> Self {
        Self::new(
            ErrorKind::Unavailable,
            "chat_unavailable",
            format!("chat history is unavailable, nothing was stored: {err}"),
        )
    }
}
