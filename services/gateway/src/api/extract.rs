//! Request extraction for the tenant API: Basic-auth tenants, strict JSON bodies, and
//! errors as JSON.

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use confer_room::RoomError;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::AppState;

/// Largest request body accepted.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// An API error: status and `{"error": {"code", "message"}}`.
pub(crate) struct ApiError {
    status: StatusCode,
    code: String,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_owned(),
            message: message.into(),
        }
    }

    /// Something on this side failed (storage, a task).
    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl From<confer_chat::ChatError> for ApiError {
    fn from(err: confer_chat::ChatError) -> Self {
        Self {
            status: StatusCode::from_u16(err.kind.http_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            code: err.code,
            message: err.message,
        }
    }
}

impl From<RoomError> for ApiError {
    fn from(err: RoomError) -> Self {
        Self {
            status: StatusCode::from_u16(err.kind.http_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            code: err.code,
            message: err.message,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code, "message": self.message}});
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Basic realm=\"confer\""),
            );
        }
        response
    }
}

/// The tenant an API key and secret (HTTP Basic) belong to.
pub(crate) struct Tenant(pub String);

impl FromRequestParts<Arc<AppState>> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let unauthorized = || {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "authenticate with HTTP Basic: API key and secret",
            )
        };
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(unauthorized)?;
        let encoded = header.strip_prefix("Basic ").ok_or_else(unauthorized)?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(unauthorized)?;
        let (key, secret) = decoded.split_once(':').ok_or_else(unauthorized)?;
        let tenant = state
            .room
            .authenticate(key.to_owned(), secret.to_owned())
            .await?;
        Ok(Tenant(tenant))
    }
}

/// A JSON body of `T`, refused with a 400 and a reason when it is not exactly that.
pub(crate) struct Body<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Arc<AppState>> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send Content-Type: application/json",
            ));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|err| {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", err.to_string())
            })?;
        if bytes.len() > MAX_BODY_BYTES {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("request bodies are limited to {MAX_BODY_BYTES} bytes"),
            ));
        }
        serde_json::from_slice(&bytes)
            .map(Body)
            .map_err(|err| ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", err.to_string()))
    }
}
