use super::*;
use crate::signal::client_message::Msg;
use crate::signal::server_message;
use proptest::prelude::*;

#[test]
fn decodes_a_join_with_an_offer() {
    let frame = br#"{"request_id":"7","join":{"room":"standup","name":"Ada","offer":{"type":"offer","sdp":"v=0"}}}"#;
    let message = decode_client_message(frame).expect("a well-formed join decodes");
    assert_eq!(message.request_id, "7");
    let Some(Msg::Join(join)) = message.msg else {
        panic!("expected a join, got {:?}", message.msg);
    };
    assert_eq!(join.room, "standup");
    assert_eq!(join.offer.map(|offer| offer.sdp), Some("v=0".to_owned()));
}

#[test]
fn decodes_messages_without_a_request_id() {
    let message = decode_client_message(br#"{"ping":{}}"#).expect("ping decodes");
    assert_eq!(message.msg, Some(Msg::Ping(crate::signal::Ping {})));
}

#[test]
fn rejects_an_unknown_type_by_name() {
    let err = decode_client_message(br#"{"request_id":"1","dance":{}}"#).unwrap_err();
    assert_eq!(err, DecodeError::UnknownType("dance".into()));
    assert_eq!(err.code(), "unknown_message");
}

#[test]
fn rejects_unknown_fields_inside_a_message() {
    let err = decode_client_message(br#"{"chat":{"text":"hi","colour":"red"}}"#).unwrap_err();
    assert!(
        matches!(err, DecodeError::InvalidBody { ref kind, .. } if kind == "chat"),
        "{err}"
    );
    assert_eq!(err.code(), "invalid_message");
}

#[test]
fn rejects_two_types_at_once() {
    let err = decode_client_message(br#"{"ping":{},"leave":{}}"#).unwrap_err();
    assert!(matches!(err, DecodeError::SeveralTypes(_)), "{err}");
}

#[test]
fn rejects_wrong_field_types() {
    let err = decode_client_message(br#"{"mute":{"kind":"audio","muted":"yes"}}"#).unwrap_err();
    assert!(matches!(err, DecodeError::InvalidBody { .. }), "{err}");
}

#[test]
fn rejects_non_objects_and_broken_json() {
    assert_eq!(
        decode_client_message(b"[1,2]").unwrap_err(),
        DecodeError::NotAnObject
    );
    assert_eq!(
        decode_client_message(b"{").unwrap_err().code(),
        "malformed_message"
    );
    assert_eq!(
        decode_client_message(b"\xff\xfe").unwrap_err(),
        DecodeError::NotUtf8
    );
    assert_eq!(
        decode_client_message(b"{}").unwrap_err(),
        DecodeError::MissingType
    );
}

#[test]
fn rejects_oversized_frames_before_parsing() {
    let frame = vec![b' '; MAX_MESSAGE_BYTES + 1];
    assert_eq!(
        decode_client_message(&frame).unwrap_err(),
        DecodeError::TooLarge(MAX_MESSAGE_BYTES + 1)
    );
}

#[test]
fn server_messages_flatten_their_type_and_omit_an_empty_request_id() {
    let message = ServerMessage {
        request_id: String::new(),
        msg: Some(server_message::Msg::Error(crate::signal::Error {
            code: "unknown_message".into(),
            message: "unknown message type `dance`".into(),
            retry_after_ms: 0,
        })),
    };
    let json = encode_server_message(&message);
    assert_eq!(
        json,
        r#"{"error":{"code":"unknown_message","message":"unknown message type `dance`"}}"#
    );
    let limited = ServerMessage {
        request_id: "7".into(),
        msg: Some(server_message::Msg::Error(crate::signal::Error {
            code: "chat_rate_limited".into(),
            message: "slow down".into(),
            retry_after_ms: 150,
        })),
    };
    assert_eq!(
        encode_server_message(&limited),
        r#"{"error":{"code":"chat_rate_limited","message":"slow down","retry_after_ms":150},"request_id":"7"}"#
    );
}

fn chat_entry(seq: u64, text: &str) -> crate::signal::ChatMessage {
    crate::signal::ChatMessage {
        seq,
        participant_id: "p1".into(),
        name: "Ada \"the\" first".into(),
        text: text.into(),
        kind: "text".into(),
        ..Default::default()
    }
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).expect("valid JSON")
}

#[test]
fn chat_frames_built_from_encoded_entries_are_the_server_messages() {
    let entries = [chat_entry(7, "hello, \u{1F600}"), chat_entry(8, "]}\"{")];
    let encoded: Vec<String> = entries.iter().map(encode_chat_entry).collect();
    let one = ServerMessage {
        request_id: String::new(),
        msg: Some(server_message::Msg::Chat(entries[0].clone())),
    };
    assert_eq!(
        json(&chat_text(&encoded[0])),
        json(&encode_server_message(&one))
    );
    let batch = ServerMessage {
        request_id: String::new(),
        msg: Some(server_message::Msg::ChatBatch(crate::signal::ChatBatch {
            entries: entries.to_vec(),
        })),
    };
    assert_eq!(
        json(&chat_batch_text(encoded.iter().map(String::as_str))),
        json(&encode_server_message(&batch))
    );
    assert_eq!(
        json(&chat_batch_text(encoded.iter().map(String::as_str)))["chat_batch"]["entries"][1]["text"],
        "]}\"{"
    );
}

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[test]
fn a_valid_traceparent_is_kept_and_anything_else_ignored() {
    let frame = format!(r#"{{"request_id":"1","traceparent":"{TRACEPARENT}","ping":{{}}}}"#);
    let message = decode_client_message(frame.as_bytes()).expect("decodes");
    assert_eq!(message.traceparent, TRACEPARENT);
    for bad in [
        "",
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
    ] {
        let frame = serde_json::json!({"traceparent": bad, "ping": {}}).to_string();
        let message = decode_client_message(frame.as_bytes()).expect("still decodes");
        assert_eq!(message.traceparent, "", "{bad:?} is ignored");
    }
    let err = decode_client_message(br#"{"traceparent":7,"ping":{}}"#).unwrap_err();
    assert_eq!(err.code(), "invalid_message");
}

proptest! {
    #[test]
    fn any_traceparent_text_is_kept_only_when_valid(value in "\\PC{0,80}") {
        let frame = serde_json::json!({"traceparent": value, "ping": {}}).to_string();
        let message = decode_client_message(frame.as_bytes()).expect("decodes");
        prop_assert!(message.traceparent.is_empty() || crate::signal::is_traceparent(&message.traceparent));
        prop_assert!(message.traceparent.len() <= 55);
    }

    #[test]
    fn never_panics_on_arbitrary_bytes(frame in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_client_message(&frame);
    }

    #[test]
    fn never_panics_on_json_shaped_input(
        key in "[a-z_]{0,12}",
        inner in "[\\{\\}\\[\\]\":,a-z0-9 ]{0,64}",
    ) {
        let frame = format!("{{\"{key}\":{inner}}}");
        match decode_client_message(frame.as_bytes()) {
            Ok(message) => prop_assert!(message.msg.is_some()),
            Err(err) => prop_assert!(!err.code().is_empty()),
        }
    }

    #[test]
    fn chat_text_round_trips(text in "\\PC{0,200}") {
        let frame = serde_json::json!({"request_id": "r", "chat": {"text": text}}).to_string();
        let message = decode_client_message(frame.as_bytes()).expect("valid chat decodes");
        prop_assert_eq!(message.msg, Some(Msg::Chat(crate::signal::SendChat { text, ..Default::default() })));
    }
}
