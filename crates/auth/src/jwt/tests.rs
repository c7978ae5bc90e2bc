use super::*;
use crate::VideoGrant;
use proptest::prelude::*;

const NOW: u64 = 1_800_000_000;

fn key() -> TokenKey {
    TokenKey::new("dev", b"a secret of reasonable length")
}

fn claims(room: &str) -> Claims {
    Claims {
        iss: "dev".into(),
        sub: "ada".into(),
        name: "Ada".into(),
        nbf: NOW - 10,
        exp: NOW + 600,
        kind: Default::default(),
        video: VideoGrant::join(room),
    }
}

#[test]
fn a_signed_token_verifies_for_its_room() {
    let token = key().sign(&claims("standup"));
    let verified = key()
        .verify_join(&token, "standup", NOW)
        .expect("valid token");
    assert_eq!(verified, claims("standup"));
}

#[test]
fn a_tampered_payload_fails_the_signature() {
    let token = key().sign(&claims("standup"));
    let forged_payload = URL_SAFE_NO_PAD.encode(
        serde_json::to_vec(&Claims {
            video: VideoGrant {
                room_admin: true,
                ..VideoGrant::join("standup")
            },
            ..claims("standup")
        })
        .expect("claims serialise"),
    );
    let mut parts: Vec<&str> = token.split('.').collect();
    parts[1] = &forged_payload;
    let forged = parts.join(".");
    assert_eq!(key().verify(&forged, NOW), Err(TokenError::BadSignature));
}

#[test]
fn another_secret_fails_the_signature() {
    let token = TokenKey::new("dev", b"another secret").sign(&claims("standup"));
    assert_eq!(key().verify(&token, NOW), Err(TokenError::BadSignature));
}

#[test]
fn expiry_and_not_before_are_enforced_with_leeway() {
    let token = key().sign(&claims("standup"));
    assert!(key().verify(&token, NOW + 600 + LEEWAY_SECS).is_ok());
    assert_eq!(
        key().verify(&token, NOW + 601 + LEEWAY_SECS),
        Err(TokenError::Expired {
            exp: NOW + 600,
            now: NOW + 601 + LEEWAY_SECS
        })
    );
    let early = key().verify(&token, NOW - 11 - LEEWAY_SECS).unwrap_err();
    assert_eq!(early.code(), "token_not_yet_valid");
}

#[test]
fn a_lapsed_token_verifies_only_past_its_expiry_and_nothing_else() {
    let token = key().sign(&claims("standup"));
    let later = NOW + 3600;
    assert_eq!(
        key().verify_join_lapsed(&token, "standup", later),
        Ok(claims("standup"))
    );
    assert_eq!(
        key()
            .verify_join(&token, "standup", later)
            .unwrap_err()
            .code(),
        "token_expired"
    );
    // Its signature, room and start are still checked.
    let other = TokenKey::new("dev", b"another secret").sign(&claims("standup"));
    assert_eq!(
        key().verify_join_lapsed(&other, "standup", later),
        Err(TokenError::BadSignature)
    );
    let err = key()
        .verify_join_lapsed(&token, "retro", later)
        .unwrap_err();
    assert_eq!(err.code(), "token_room_mismatch");
    let early = key()
        .verify_join_lapsed(&token, "standup", NOW - 11 - LEEWAY_SECS)
        .unwrap_err();
    assert_eq!(early.code(), "token_not_yet_valid");
}

#[test]
fn room_and_grant_are_checked_on_join() {
    let token = key().sign(&claims("standup"));
    let err = key().verify_join(&token, "retro", NOW).unwrap_err();
    assert_eq!(err.code(), "token_room_mismatch");
    let no_join = key().sign(&Claims {
        kind: Default::default(),
        video: VideoGrant {
            room_join: false,
            ..VideoGrant::join("standup")
        },
        ..claims("standup")
    });
    assert_eq!(
        key().verify_join(&no_join, "standup", NOW),
        Err(TokenError::MissingGrant("roomJoin"))
    );
}

#[test]
fn other_algorithms_are_refused_before_the_signature() {
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims("standup")).expect("json"));
    let token = format!("{header}.{payload}.");
    assert_eq!(
        key().verify(&token, NOW),
        Err(TokenError::UnsupportedAlgorithm("none".into()))
    );
}

#[test]
fn an_unknown_issuer_is_named() {
    let other = TokenKey::new("acme", b"a secret of reasonable length");
    let token = other.sign(&Claims {
        iss: "acme".into(),
        ..claims("standup")
    });
    assert_eq!(
        key().verify(&token, NOW),
        Err(TokenError::UnknownIssuer("acme".into()))
    );
}

proptest! {
    #[test]
    fn arbitrary_strings_never_verify(token in "\\PC{0,300}") {
        prop_assert!(key().verify(&token, NOW).is_err());
    }

    #[test]
    fn dotted_garbage_never_verifies(a in "[A-Za-z0-9_-]{0,40}", b in "[A-Za-z0-9_-]{0,80}", c in "[A-Za-z0-9_-]{0,43}") {
        let token = format!("{a}.{b}.{c}");
        prop_assert!(key().verify(&token, NOW).is_err());
    }
}

#[test]
fn a_participant_kind_travels_in_the_token_and_an_unknown_one_is_refused() {
    let sip = Claims {
        kind: crate::ParticipantKind::Sip,
        ..claims("standup")
    };
    let token = key().sign(&sip);
    assert_eq!(key().verify_join(&token, "standup", NOW), Ok(sip));
    // A standard participant's token does not name its kind.
    let payload = token_payload(&key().sign(&claims("standup")));
    assert!(payload.get("kind").is_none(), "{payload}");

    let mut payload = token_payload(&token);
    payload["kind"] = "robot".into();
    let odd = signed_json(&payload);
    assert_eq!(
        key().verify(&odd, NOW),
        Err(TokenError::Malformed("payload is not a claims object"))
    );
}

fn token_payload(token: &str) -> serde_json::Value {
    let payload = token.split('.').nth(1).expect("three parts");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64")).expect("JSON")
}

/// A token signed with `key()` over any JSON payload.
fn signed_json(payload: &serde_json::Value) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(HEADER),
        URL_SAFE_NO_PAD.encode(payload.to_string())
    );
    let tag = hmac::sign(&key().key, input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}
