//! One error type for everything the room service refuses, with a stable code and the
//! HTTP status the tenant API answers with. It is plain data so it crosses gRPC intact.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    Invalid,
    Unauthorized,
    Forbidden,
    NotFound,
    Conflict,
    RateLimited,
    Unavailable,
    Internal,
}

impl ErrorKind {
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::Invalid => 400,
            ErrorKind::Unauthorized => 401,
            ErrorKind::Forbidden => 403,
            ErrorKind::NotFound => 404,
            ErrorKind::Conflict => 409,
            ErrorKind::RateLimited => 429,
            ErrorKind::Unavailable => 503,
            ErrorKind::Internal => 500,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct RoomError {
    pub kind: ErrorKind,
    /// Stable machine-readable code, e.g. `token_expired`, `not_host`.
    pub code: String,
    pub message: String,
}

pub type RoomResult<T> = Result<T, RoomError>;

impl RoomError {
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

    pub fn unavailable(err: impl std::fmt::Display) -> Self {
        Self::new(
            ErrorKind::Unavailable,
            "store_unavailable",
            format!("state store unavailable: {err}"),
        )
    }

    pub fn internal(err: impl std::fmt::Display) -> Self {
        Self::new(ErrorKind::Internal, "internal", err.to_string())
    }

    pub fn rate_limited(what: &str) -> Self {
        Self::new(
            ErrorKind::RateLimited,
            "rate_limited",
            format!("too many {what}; try again shortly"),
        )
    }
}

impl From<confer_auth::TokenError> for RoomError {
    fn from(err: confer_auth::TokenError) -> Self {
        let kind = match err {
            confer_auth::TokenError::RoomMismatch { .. }
            | confer_auth::TokenError::MissingGrant(_) => ErrorKind::Forbidden,
            _ => ErrorKind::Unauthorized,
        };
        RoomError::new(kind, err.code(), err.to_string())
    }
}

impl From<sqlx::Error> for RoomError {
    fn from(err: sqlx::Error) -> Self {
        match err {
            sqlx::Error::RowNotFound => RoomError::not_found("not_found", "no such record"),
            other => RoomError::unavailable(other),
        }
    }
}

impl From<redis::RedisError> for RoomError {
    fn from(err: redis::RedisError) -> Self {
        RoomError::unavailable(err)
    }
}
