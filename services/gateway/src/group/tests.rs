use confer_proto::signal::{self, server_message::Msg};
use confer_room::api::GroupChange;
use confer_room::model::{ParticipantInfo, TrackKind};

use super::GroupUpdate;
use crate::convert;

fn someone(id: &str) -> ParticipantInfo {
    let mut p: ParticipantInfo = serde_json::from_value(serde_json::json!({
        "id": id, "identity": id, "name": id, "role": "participant",
        "permissions": {}, "metadata": "", "state": "active",
        "audio_muted": false, "video_muted": false,
        "audio_blocked": false, "video_blocked": false, "pending_name": null,
        "joined_at": 1, "gateway": "g1"
    }))
    .expect("a participant");
    p.hand_raised_at = Some(1_700_000_000_000);
    p
}

/// What a client that reads `participants_changed` holds after taking `change`.
fn taken(
    mut before: signal::Participant,
    change: &signal::ParticipantChange,
) -> signal::Participant {
    let set = |field: &mut bool, value: Option<bool>| {
        if let Some(value) = value {
            *field = value;
        }
    };
    set(&mut before.audio_muted, change.audio_muted);
    set(&mut before.audio_blocked, change.audio_blocked);
    set(&mut before.video_muted, change.video_muted);
    set(&mut before.video_blocked, change.video_blocked);
    if let Some(at) = change.hand_raised_at {
        before.hand_raised_at = at;
    }
    before
}

/// Whichever form a client reads, it ends up holding the same participants.
#[test]
fn both_forms_leave_a_client_with_the_same_participants() {
    let changes = [
        GroupChange::Blocked {
            kind: TrackKind::Audio,
        },
        GroupChange::Blocked {
            kind: TrackKind::Video,
        },
        GroupChange::HandsLowered,
    ];
    for change in changes {
        let before: Vec<ParticipantInfo> = ["PA_1", "PA_2", "PA_3"].map(someone).into();
        let after: Vec<ParticipantInfo> = before
            .iter()
            .cloned()
            .map(|mut p| {
                match change {
                    GroupChange::Blocked {
                        kind: TrackKind::Audio,
                    } => (p.audio_muted, p.audio_blocked) = (true, true),
                    GroupChange::Blocked {
                        kind: TrackKind::Video,
                    } => (p.video_muted, p.video_blocked) = (true, true),
                    GroupChange::HandsLowered => p.hand_raised_at = None,
                }
                p
            })
            .collect();
        let update = GroupUpdate::new(change, &after);
        let Some(Msg::ParticipantsChanged(batch)) = &update.batch.msg else {
            panic!("not a batch: {:?}", update.batch);
        };
        let ids: Vec<&str> = after.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(batch.participant_ids, ids, "{change:?}");
        let fields = batch.change.as_ref().expect("the change");
        assert_eq!(update.each.len(), after.len());
        for ((was, one), p) in before.iter().zip(&update.each).zip(&after) {
            let Some(Msg::ParticipantUpdated(updated)) = &one.msg else {
                panic!("not an update: {one:?}");
            };
            let updated = updated.participant.clone().expect("the participant");
            assert_eq!(updated, convert::participant(p), "{change:?}");
            assert_eq!(
                taken(convert::participant(was), fields),
                updated,
                "{change:?}: the batch's fields applied to each one as it was"
            );
        }
    }
}

/// On the wire the batch names only the fields that changed.
#[test]
fn a_batch_carries_only_the_changed_fields() {
    let update = GroupUpdate::new(GroupChange::HandsLowered, &[someone("PA_1")]);
    let json: serde_json::Value =
        serde_json::from_str(&confer_proto::signal::encode_server_message(&update.batch))
            .expect("json");
    assert_eq!(
        json,
        serde_json::json!({"participants_changed": {
            "participant_ids": ["PA_1"],
            "change": {"hand_raised_at": 0},
        }})
    );
}
