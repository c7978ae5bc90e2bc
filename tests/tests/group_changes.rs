//! A host's change to many participants at once (mute everyone, lower every hand)
//! through the real signalling path: it is one room event for the gateway, one
//! `participants_changed` message for a client that joined with
//! `participant_batches`, and one `participant_updated` per participant for a client
//! that did not; both kinds of client end up knowing the same.

use std::collections::BTreeSet;

use anyhow::Context as _;

use confer_e2e::joins::{
    WAIT, connect, guest_token, host_control, host_token, open_room, reply, send_join, you_id,
};
use confer_e2e::server::TestServer;
use confer_e2e::signal::SignalClient;
use confer_room::RoomApi as _;
use serde_json::{Value, json};

/// Guests in the room; every other one reads `participants_changed`.
const GUESTS: usize = 12;

struct Member {
    client: SignalClient,
    id: String,
    batches: bool,
}

/// Joins `room` as `identity` (a host or a guest), reading batches or not.
async fn join(
    server: &TestServer,
    room: &str,
    token: String,
    batches: bool,
) -> anyhow::Result<Member> {
    let mut client = connect(server).await?;
    send_join(
        &mut client,
        json!({"room": room, "token": token, "participant_batches": batches}),
    )
    .await?;
    let joined = reply(&mut client, "join").await?;
    let id = you_id(&joined, "joined");
    anyhow::ensure!(!id.is_empty(), "not joined: {joined}");
    Ok(Member {
        client,
        id,
        batches,
    })
}

/// What `member` is told of the change to `changed`, up to its answer to a ping sent
/// once it has heard of every one of them: the batch and the single updates, so a
/// test sees both what came and that nothing else did.
async fn told(member: &mut Member, changed: &BTreeSet<String>) -> anyhow::Result<Vec<Value>> {
    let mut heard = BTreeSet::new();
    let mut messages = Vec::new();
    while heard != *changed {
        let message = member.client.recv(WAIT).await?;
        if let Some(batch) = message.get("participants_changed") {
            for id in batch["participant_ids"].as_array().into_iter().flatten() {
                heard.insert(id.as_str().unwrap_or_default().to_owned());
            }
            messages.push(message);
        } else if let Some(update) = message.get("participant_updated") {
            let id = &update["participant"]["id"];
            heard.insert(id.as_str().unwrap_or_default().to_owned());
            messages.push(message);
        }
    }
    member
        .client
        .send(&json!({"request_id": "after", "ping": {}}))
        .await?;
    loop {
        let message = member.client.recv(WAIT).await?;
        if message["request_id"] == "after" {
            return Ok(messages);
        }
        if message.get("participants_changed").is_some()
            || message.get("participant_updated").is_some()
        {
            messages.push(message);
        }
    }
}

/// Checks what `member` was told of `change` to `changed`: one batch naming them all,
/// or one update each carrying the change, by what it reads.
fn check_told(member: &Member, messages: &[Value], changed: &BTreeSet<String>, change: &Value) {
    if member.batches {
        assert_eq!(messages.len(), 1, "one message: {messages:?}");
        let batch = &messages[0]["participants_changed"];
        assert_eq!(batch["change"], *change, "{batch}");
        let ids: Vec<&str> = batch["participant_ids"]
            .as_array()
            .expect("ids")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(ids.len(), changed.len(), "each named once: {batch}");
        return;
    }
    assert_eq!(
        messages.len(),
        changed.len(),
        "one update each: {messages:?}"
    );
    for message in messages {
        let p = &message["participant_updated"]["participant"];
        assert!(
            changed.contains(p["id"].as_str().unwrap_or_default()),
            "{p}"
        );
        for (field, value) in change.as_object().expect("fields") {
            let held = match (&p[field], value) {
                // Left out of a participant's JSON while it is 0 (a lowered hand).
                (Value::Null, Value::Number(n)) if n.as_u64() == Some(0) => json!(0),
                (held, _) => held.clone(),
            };
            assert_eq!(held, *value, "{field} of {p}");
        }
    }
}

#[tokio::test]
async fn a_host_mutes_everyone_and_lowers_every_hand_in_one_message_to_clients_that_read_batches()
-> anyhow::Result<()> {
    let server = TestServer::start(true).await?;
    open_room(&server, "town-hall").await?;
    let mut host = join(&server, "town-hall", host_token("town-hall", "hana"), true).await?;
    let mut guests = Vec::new();
    for i in 0..GUESTS {
        let token = guest_token("town-hall", &format!("guest-{i}"));
        guests.push(join(&server, "town-hall", token, i % 2 == 0).await?);
    }
    let everyone: BTreeSet<String> = guests.iter().map(|g| g.id.clone()).collect();

    let before = server.room.notifications();
    let muted = host_control(&mut host.client, "mute_all", "", "audio").await?;
    assert!(muted.get("ack").is_some(), "{muted}");
    assert_eq!(
        server.room.notifications() - before,
        1,
        "one room event for the one gateway, not one per muted participant"
    );
    let change = json!({"audio_muted": true, "audio_blocked": true});
    for member in guests.iter_mut().chain([&mut host]) {
        let messages = told(member, &everyone)
            .await
            .with_context(|| format!("{} told of the mute", member.id))?;
        check_told(member, &messages, &everyone, &change);
    }

    // Four hands go up; the host lowers them all.
    let raised: BTreeSet<String> = guests[..4].iter().map(|g| g.id.clone()).collect();
    for guest in &mut guests[..4] {
        let raise = json!({"request_id": "hand", "raise_hand": {"raised": true}});
        guest.client.send(&raise).await?;
    }
    for member in guests.iter_mut().chain([&mut host]) {
        // Each raise is its own update, and a raiser's is answered too.
        let mut answered = !raised.contains(&member.id);
        let mut up = BTreeSet::new();
        while up != raised || !answered {
            let message = member.client.recv(WAIT).await?;
            if message["request_id"] == "hand" {
                assert!(message.get("ack").is_some(), "{message}");
                answered = true;
            }
            let p = &message["participant_updated"]["participant"];
            if p["hand_raised_at"].as_u64().is_some_and(|at| at > 0) {
                up.insert(p["id"].as_str().unwrap_or_default().to_owned());
            }
        }
    }
    let before = server.room.notifications();
    let lowered = host_control(&mut host.client, "lower_all_hands", "", "").await?;
    assert!(lowered.get("ack").is_some(), "{lowered}");
    assert_eq!(server.room.notifications() - before, 1);
    let change = json!({"hand_raised_at": 0});
    for member in guests.iter_mut().chain([&mut host]) {
        let messages = told(member, &raised)
            .await
            .with_context(|| format!("{} told of the hands", member.id))?;
        check_told(member, &messages, &raised, &change);
    }

    // The room holds what both kinds of client were told.
    let listed = server
        .room
        .list_participants("dev".into(), "town-hall".into())
        .await?;
    for p in listed.iter().filter(|p| everyone.contains(&p.id)) {
        assert!(p.audio_muted && p.audio_blocked, "{p:?}");
        assert_eq!(p.hand_raised_at, None, "{p:?}");
    }
    Ok(())
}
