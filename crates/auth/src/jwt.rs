//! Compact JWS (HS256) encoding and verification.

use crate::Claims;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;

/// Longest token accepted; keeps hostile input from costing more than a few microseconds.
const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY_SECS: u64 = 30;
const HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("token is malformed: {0}")]
    Malformed(&'static str),
    #[error("token uses algorithm `{0}`; only HS256 is accepted")]
    UnsupportedAlgorithm(String),
    #[error("token signature does not match")]
    BadSignature,
    #[error("token was issued by `{0}`, which this server does not know")]
    UnknownIssuer(String),
    #[error("token expired at {exp} (now {now})")]
    Expired { exp: u64, now: u64 },
    #[error("token is not valid before {nbf} (now {now})")]
    NotYetValid { nbf: u64, now: u64 },
    #[error("token is for room `{granted}`, not `{requested}`")]
    RoomMismatch { granted: String, requested: String },
    #[error("token lacks the `{0}` grant")]
    MissingGrant(&'static str),
}

impl TokenError {
    /// Stable code for clients and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::Malformed(_) | TokenError::UnsupportedAlgorithm(_) => "token_malformed",
            TokenError::BadSignature | TokenError::UnknownIssuer(_) => "token_invalid",
            TokenError::Expired { .. } => "token_expired",
            TokenError::NotYetValid { .. } => "token_not_yet_valid",
            TokenError::RoomMismatch { .. } => "token_room_mismatch",
            TokenError::MissingGrant(_) => "token_missing_grant",
        }
    }
}

/// An HMAC key with the API key name (`iss`) it belongs to.
pub struct TokenKey {
    issuer: String,
    key: hmac::Key,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKey")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl TokenKey {
    pub fn new(issuer: impl Into<String>, secret: &[u8]) -> Self {
        Self {
            issuer: issuer.into(),
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        }
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Signs `claims` into a compact JWT.
    pub fn sign(&self, claims: &Claims) -> String {
        // Claims are plain strings, integers and booleans: serialising them cannot fail.
        let payload = serde_json::to_vec(claims).unwrap_or_default();
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(HEADER),
            URL_SAFE_NO_PAD.encode(payload)
        );
        let tag = hmac::sign(&self.key, signing_input.as_bytes());
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    /// Verifies `token` for joining `room` at `now` (seconds since the Unix epoch).
    pub fn verify_join(&self, token: &str, room: &str, now: u64) -> Result<Claims, TokenError> {
        check_join(self.verify(token, now)?, room)
    }

    /// As [`Self::verify_join`], but a token past its `exp` is not refused for it: for
    /// a participant coming back to a call it joined while the token was valid (the
    /// caller checks that), never for a new one.
    pub fn verify_join_lapsed(
        &self,
        token: &str,
        room: &str,
        now: u64,
    ) -> Result<Claims, TokenError> {
        check_join(self.verify_at(token, now, Expiry::Ignored)?, room)
    }

    /// The `iss` claim of a token, read without verifying anything, to find the key
    /// that verifies it.
    pub fn peek_issuer(token: &str) -> Result<String, TokenError> {
        #[derive(serde::Deserialize)]
        struct Issuer {
            iss: String,
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Malformed("longer than 8 KiB"));
        }
        let payload = token
            .split('.')
            .nth(1)
            .ok_or(TokenError::Malformed("expected three dot-separated parts"))?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| TokenError::Malformed("payload is not base64url"))?;
        serde_json::from_slice::<Issuer>(&payload)
            .map(|claims| claims.iss)
            .map_err(|_| TokenError::Malformed("payload has no `iss`"))
    }

    /// Verifies signature, issuer and time window.
    pub fn verify(&self, token: &str, now: u64) -> Result<Claims, TokenError> {
        self.verify_at(token, now, Expiry::Checked)
    }

    fn verify_at(&self, token: &str, now: u64, expiry: Expiry) -> Result<Claims, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Malformed("longer than 8 KiB"));
        }
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed("expected three dot-separated parts"));
        };
        check_header(header)?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| TokenError::Malformed("signature is not base64url"))?;
        let signing_input = &token[..header.len() + 1 + payload.len()];
        hmac::verify(&self.key, signing_input.as_bytes(), &signature)
            .map_err(|_| TokenError::BadSignature)?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| TokenError::Malformed("payload is not base64url"))?;
        let claims: Claims = serde_json::from_slice(&payload)
            .map_err(|_| TokenError::Malformed("payload is not a claims object"))?;
        if claims.iss != self.issuer {
            return Err(TokenError::UnknownIssuer(claims.iss));
        }
        if expiry == Expiry::Checked && now > claims.exp.saturating_add(LEEWAY_SECS) {
            return Err(TokenError::Expired {
                exp: claims.exp,
                now,
            });
        }
        if claims.nbf > now.saturating_add(LEEWAY_SECS) {
            return Err(TokenError::NotYetValid {
                nbf: claims.nbf,
                now,
            });
        }
        Ok(claims)
    }
}

/// Whether a token's `exp` is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    Checked,
    Ignored,
}

fn check_join(claims: Claims, room: &str) -> Result<Claims, TokenError> {
    if !claims.video.room_join {
        return Err(TokenError::MissingGrant("roomJoin"));
    }
    if claims.video.room != room {
        return Err(TokenError::RoomMismatch {
            granted: claims.video.room,
            requested: room.to_owned(),
        });
    }
    Ok(claims)
}

fn check_header(header: &str) -> Result<(), TokenError> {
    #[derive(serde::Deserialize)]
    struct Header {
        alg: String,
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| TokenError::Malformed("header is not base64url"))?;
    let header: Header = serde_json::from_slice(&bytes)
        .map_err(|_| TokenError::Malformed("header is not a JSON object with `alg`"))?;
    if header.alg != "HS256" {
        return Err(TokenError::UnsupportedAlgorithm(header.alg));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
