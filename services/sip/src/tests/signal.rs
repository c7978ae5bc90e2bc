use crate::signal::{SignalEvent, parse_event};

#[test]
fn the_join_and_the_rooms_state_say_whether_it_records_and_whether_the_caller_is_muted() {
    let joined = r#"{"request_id":"join","joined":{"room":"r","you":{"id":"PA_1","audio_muted":true},
        "participants":[],"room_state":{"locked":false,"recording":true}}}"#;
    assert_eq!(
        parse_event(joined),
        SignalEvent::Joined {
            you: "PA_1".into(),
            muted: true,
            recording: true
        }
    );
    assert_eq!(
        parse_event(r#"{"joined":{"you":{"id":"PA_2"}}}"#),
        SignalEvent::Joined {
            you: "PA_2".into(),
            muted: false,
            recording: false
        },
        "fields left out read as false"
    );
    assert_eq!(
        parse_event(r#"{"room_state":{"recording":false,"locked":true}}"#),
        SignalEvent::RoomState { recording: false }
    );
    assert_eq!(
        parse_event(r#"{"room_state":{"recording":"yes"}}"#),
        SignalEvent::RoomState { recording: false },
        "a malformed flag is not a recording"
    );
    assert_eq!(parse_event("not json"), SignalEvent::Other);
}

#[test]
fn a_change_to_many_says_whom_and_only_what_it_set() {
    assert_eq!(
        parse_event(
            r#"{"participants_changed":{"participant_ids":["PA_1","PA_2"],
                "change":{"audio_muted":true,"audio_blocked":true}}}"#
        ),
        SignalEvent::ParticipantsChanged {
            participants: vec!["PA_1".into(), "PA_2".into()],
            audio_muted: Some(true),
            hand_raised: None,
        }
    );
    assert_eq!(
        parse_event(
            r#"{"participants_changed":{"participant_ids":["PA_1",7],"change":{"hand_raised_at":0}}}"#
        ),
        SignalEvent::ParticipantsChanged {
            participants: vec!["PA_1".into()],
            audio_muted: None,
            hand_raised: Some(false),
        },
        "an id that is no string names nobody"
    );
    assert_eq!(
        parse_event(
            r#"{"participants_changed":{"participant_ids":"PA_1","change":{"audio_muted":"yes"}}}"#
        ),
        SignalEvent::ParticipantsChanged {
            participants: vec![],
            audio_muted: None,
            hand_raised: None,
        },
        "malformed fields change nothing"
    );
}

proptest::proptest! {
    /// Whatever a gateway (or anything on its connection) sends reads as some event,
    /// never a panic; a message of any other shape is `Other`.
    #[test]
    fn any_text_reads_as_an_event(text in ".{0,400}") {
        let _ = parse_event(&text);
    }

    #[test]
    fn any_json_object_reads_as_an_event(
        key in "(joined|room_state|participant_updated|participants_changed|error|answer|track_assigned|[a-z_]{1,12})",
        value in proptest::prelude::any::<i64>(),
        inner in "[a-z_]{1,10}",
    ) {
        let message = serde_json::json!({ key.as_str(): { inner.as_str(): value, "you": value } });
        let event = parse_event(&message.to_string());
        const READ: [&str; 10] = [
            "joined", "waiting", "answer", "track_assigned", "track_unassigned",
            "active_speaker", "room_state", "participant_updated", "participants_changed",
            "error",
        ];
        if !READ.contains(&key.as_str()) {
            proptest::prop_assert_eq!(event, SignalEvent::Other);
        }
    }
}
