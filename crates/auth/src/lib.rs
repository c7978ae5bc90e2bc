//! Access tokens: compact JWTs signed with HMAC-SHA256, carrying a room grant.
//!
//! A token names who joins (`sub`, `name`), until when (`exp`, `nbf`) and what they
//! may do in which room ([`VideoGrant`]). [`TokenKey::verify`] checks signature,
//! time window and grant and answers with a specific [`TokenError`] for each way a
//! token can be wrong. Time is passed in, never read here.
//!
//! Not here: where keys come from (tenants, configuration) or what a grant unlocks
//! beyond joining; those belong to the services that hold the keys.

mod grant;
mod jwt;

pub use grant::{Claims, ParticipantKind, VideoGrant};
pub use jwt::{LEEWAY_SECS, TokenError, TokenKey};
