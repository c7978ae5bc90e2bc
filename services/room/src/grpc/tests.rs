use serde_json::json;

use super::watch_items;
use crate::api::{GatewayCommand, GroupChange, RoomEvent, Watched};
use crate::model::{ParticipantInfo, TrackKind};

fn someone(id: &str) -> ParticipantInfo {
    serde_json::from_value(json!({
        "id": id, "identity": id, "name": id, "role": "participant",
        "permissions": {}, "metadata": "", "state": "active",
        "audio_muted": true, "video_muted": false,
        "audio_blocked": true, "video_blocked": false, "pending_name": null,
        "joined_at": 1, "gateway": "g1"
    }))
    .expect("a participant")
}

fn muted_all(ids: &[&str]) -> GatewayCommand {
    GatewayCommand::Notify {
        recipients: vec!["PA_h".into(), "PA_1".into()],
        event: RoomEvent::ParticipantsChanged {
            change: GroupChange::Blocked {
                kind: TrackKind::Audio,
            },
            participants: ids.iter().map(|id| someone(id)).collect(),
        },
    }
}

fn watched(cursor: &str, command: Option<GatewayCommand>) -> Watched {
    Watched {
        cursor: cursor.into(),
        command,
    }
}

fn read(item: &confer_proto::room::GatewayCommand) -> GatewayCommand {
    serde_json::from_slice(&item.body).expect("a command")
}

#[test]
fn a_gateway_that_reads_batches_gets_a_change_to_many_as_one_command() {
    let mut before = String::new();
    let start = watch_items(&mut before, watched("c0", None), true);
    assert_eq!((start.len(), start[0].body.is_empty()), (1, true));
    let items = watch_items(
        &mut before,
        watched("c1", Some(muted_all(&["PA_1", "PA_2", "PA_3"]))),
        true,
    );
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].cursor, "c1");
    assert_eq!(read(&items[0]), muted_all(&["PA_1", "PA_2", "PA_3"]));
}

/// An older gateway, which reads no batches, gets one update per participant; all
/// but the last carry the cursor before the command, so a watch broken among them
/// takes them up again rather than losing the rest.
#[test]
fn a_gateway_that_reads_no_batches_gets_one_update_per_participant() {
    let mut before = String::new();
    watch_items(&mut before, watched("c0", None), false);
    let items = watch_items(
        &mut before,
        watched("c1", Some(muted_all(&["PA_1", "PA_2", "PA_3"]))),
        false,
    );
    let cursors: Vec<&str> = items.iter().map(|i| i.cursor.as_str()).collect();
    assert_eq!(cursors, ["c0", "c0", "c1"]);
    for (item, id) in items.iter().zip(["PA_1", "PA_2", "PA_3"]) {
        assert_eq!(
            read(item),
            GatewayCommand::Notify {
                recipients: vec!["PA_h".into(), "PA_1".into()],
                event: RoomEvent::ParticipantUpdated {
                    participant: someone(id),
                },
            }
        );
    }
    // Any other command goes as it is, under its own cursor.
    let removal = GatewayCommand::Move {
        participant: "PA_1".into(),
    };
    let items = watch_items(&mut before, watched("c2", Some(removal.clone())), false);
    assert_eq!(items.len(), 1);
    assert_eq!((items[0].cursor.as_str(), read(&items[0])), ("c2", removal));
}
