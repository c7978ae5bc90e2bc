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
