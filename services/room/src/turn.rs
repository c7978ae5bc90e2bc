//! Ephemeral TURN credentials in coturn's shared-secret scheme (`use-auth-secret`,
//! the "TURN REST API"): username `<expiry>:<participant>`, password
//! `base64(HMAC-SHA1(secret, username))`. coturn refuses them after `expiry`.

use base64::Engine as _;
use ring::hmac;

use crate::model::IceServer;

/// The TURN servers to hand out and the secret they share with coturn.
#[derive(Clone)]
pub struct TurnConfig {
    /// `turn:` / `turns:` / `stun:` URLs.
    pub urls: Vec<String>,
    pub secret: String,
    /// Lifetime of a credential, seconds.
    pub ttl_secs: u64,
}

impl std::fmt::Debug for TurnConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnConfig")
            .field("urls", &self.urls)
            .field("ttl_secs", &self.ttl_secs)
            .finish_non_exhaustive()
    }
}

impl TurnConfig {
    /// Credentials for `participant`, valid until `now + ttl`.
    pub fn ice_server(&self, participant: &str, now: u64) -> IceServer {
        credentials(&self.urls, &self.secret, participant, now + self.ttl_secs)
    }
}

/// Credentials valid until `expiry` (seconds since the Unix epoch).
pub fn credentials(urls: &[String], secret: &str, participant: &str, expiry: u64) -> IceServer {
    let username = format!("{expiry}:{participant}");
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret.as_bytes());
    let tag = hmac::sign(&key, username.as_bytes());
    IceServer {
        urls: urls.to_vec(),
        username,
        credential: base64::engine::general_purpose::STANDARD.encode(tag.as_ref()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_follow_the_turn_rest_scheme() {
        // Reference value: printf '1700000000:alice' | openssl dgst -sha1 -hmac secret -binary | base64
        let server = credentials(&["turn:t:3478".into()], "secret", "alice", 1_700_000_000);
        assert_eq!(server.username, "1700000000:alice");
        assert_eq!(server.credential, "d8soP47RbdIKLDUOpnJPVQyq5Ts=");
    }

    #[test]
    fn expiry_is_now_plus_ttl() {
        let config = TurnConfig {
            urls: vec!["turn:t:3478".into()],
            secret: "s".into(),
            ttl_secs: 600,
        };
        assert!(config.ice_server("p", 1000).username.starts_with("1600:"));
    }
}
