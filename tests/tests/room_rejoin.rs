//! Coming back after a lost connection, through the real signalling path: a client
//! that shows its rejoin ticket comes back as it was (name, role, host blocks), past
//! the lock and the waiting room; a participant that left or was removed has nothing
//! to come back to.

use std::time::Duration;

use confer_chat::ChatApi as _;
use confer_e2e::joins::{
    WAIT, connect, error_of, host_control, join_host, now, reply, send_join, you_id,
};
use confer_e2e::rejoins::{GONE, LOST, admitted_guest, as_heard, join_again, sees_leave, ticket};
use confer_e2e::server::{Options, TestServer};
use confer_room::api::CreateRoom;
use confer_room::model::RoomSettings;
use confer_room::{RoomApi as _, RoomConfig};
use serde_json::json;

#[tokio::test]
async fn a_lost_connection_comes_back_as_it_was_past_the_lock_and_the_waiting_room()
-> anyhow::Result<()> {
    let server = TestServer::start(true).await?;
    // Hosts' mutes hold: no one unmutes what a host muted.
    let settings = RoomSettings {
        allow_self_unmute: false,
        ..RoomSettings::default()
    };
    let board = CreateRoom {
        name: "board".into(),
        settings,
        password: None,
    };
    server.room.create_room("dev".into(), board).await?;
    let (mut host, _) = join_host(&server, "board").await?;
    let (guest, gus, joined) = admitted_guest(&server, &mut host, "board", "gus").await?;
    let gus_ticket = ticket(&joined);
    assert!(
        host_control(&mut host, "mute", &gus, "audio")
            .await?
            .get("ack")
            .is_some()
    );
    assert!(
        host_control(&mut host, "lock", "", "")
            .await?
            .get("ack")
            .is_some()
    );

    // The connection drops without a leave.
    drop(guest);
    let heard = sees_leave(&mut host, &gus).await?;
    assert_eq!(as_heard(&heard), LOST, "the others keep its place");
    // The lock holds for everyone else.
    let (_, refused) = join_again(&server, "board", "lea", None).await?;
    assert_eq!(refused["error"]["code"], "room_locked", "{refused}");
    // With the ticket, the same person comes back at once, as it was.
    let (mut back, rejoined) = join_again(&server, "board", "gus", Some(&gus_ticket)).await?;
    let you = &rejoined["joined"]["you"];
    assert_eq!(you["identity"], "gus", "{rejoined}");
    assert_eq!(you["role"], "participant");
    assert_eq!(you["audio_blocked"], true, "the host's mute still holds");
    let new_id = you["id"].as_str().unwrap_or_default().to_owned();
    assert_ne!(new_id, gus, "a new connection, a new id");
    let seen = host.recv_kind("participant_joined", WAIT).await?;
    assert_eq!(
        seen["participant_joined"]["participant"]["id"],
        new_id.as_str()
    );
    assert_eq!(
        seen["participant_joined"]["participant"]["audio_blocked"],
        true
    );
    assert_eq!(
        seen["participant_joined"]["participant"]["previous_id"],
        gus.as_str(),
        "the others can tell who came back"
    );
    let unmute = json!({"request_id": "unmute", "mute": {"kind": "audio", "muted": false}});
    back.send(&unmute).await?;
    assert_eq!(error_of(&mut back, "unmute").await?, "muted_by_host");

    // The new connection's own ticket is another. (A ticket brings its participant
    // back once: `an_anonymous_guests_ticket_brings_it_back_once`; a token's identity
    // takes its own place even without one: the `room_identity` suite.)
    assert_ne!(ticket(&rejoined), gus_ticket);
    Ok(())
}

#[tokio::test]
async fn a_leave_or_a_hosts_removal_is_final() -> anyhow::Result<()> {
    let server = TestServer::start(true).await?;
    let (mut host, _) = join_host(&server, "final").await?;
    let (mut leaver, leaver_id, joined) =
        admitted_guest(&server, &mut host, "final", "lea").await?;
    let leaver_ticket = ticket(&joined);
    let (removed, removed_id, joined) = admitted_guest(&server, &mut host, "final", "rex").await?;
    let removed_ticket = ticket(&joined);
    host_control(&mut host, "lock", "", "").await?;

    leaver.send(&json!({"leave": {}})).await?;
    let heard = sees_leave(&mut host, &leaver_id).await?;
    assert_eq!(as_heard(&heard), GONE, "a leave");
    host_control(&mut host, "remove", &removed_id, "").await?;
    let heard = sees_leave(&mut host, &removed_id).await?;
    assert_eq!(as_heard(&heard), GONE, "a removal");
    drop(removed);

    for (identity, ticket) in [("lea", &leaver_ticket), ("rex", &removed_ticket)] {
        let (_, answer) = join_again(&server, "final", identity, Some(ticket)).await?;
        assert_eq!(
            answer["error"]["code"], "room_locked",
            "{identity}: {answer}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_ticket_is_for_its_own_room_person_and_time() -> anyhow::Result<()> {
    let server = TestServer::start_with(Options {
        require_token: true,
        room: RoomConfig {
            rejoin_grace: Duration::from_millis(600),
            ..RoomConfig::default()
        },
        ..Options::default()
    })
    .await?;
    let (mut host, _) = join_host(&server, "one").await?;
    let (mut other_host, _) = join_host(&server, "two").await?;
    host_control(&mut other_host, "lock", "", "").await?;
    let (guest, gus, joined) = admitted_guest(&server, &mut host, "one", "gus").await?;
    let gus_ticket = ticket(&joined);
    host_control(&mut host, "lock", "", "").await?;
    drop(guest);
    sees_leave(&mut host, &gus).await?;

    // Not for another room, not forged: each a plain join (the rooms are locked),
    // and the ticket is still good after them. (A forged ticket is shown by someone
    // else: Gus's own token would take his place by itself, as the `room_identity`
    // suite shows.)
    let (_, answer) = join_again(&server, "two", "gus", Some(&gus_ticket)).await?;
    assert_eq!(answer["error"]["code"], "room_locked", "{answer}");
    let (_, answer) = join_again(&server, "one", "mallory", Some("not a ticket")).await?;
    assert_eq!(answer["error"]["code"], "room_locked", "{answer}");
    let (back, rejoined) = join_again(&server, "one", "gus", Some(&gus_ticket)).await?;
    let back_id = you_id(&rejoined, "joined");
    assert!(!back_id.is_empty(), "{rejoined}");

    // Not for another person: shown with someone else's token, the ticket lets no
    // one in, and is still its own participant's.
    let back_ticket = ticket(&rejoined);
    drop(back);
    sees_leave(&mut host, &back_id).await?;
    let (_, answer) = join_again(&server, "one", "mallory", Some(&back_ticket)).await?;
    assert_eq!(answer["error"]["code"], "room_locked", "{answer}");
    let (again, answer) = join_again(&server, "one", "gus", Some(&back_ticket)).await?;
    let again_id = you_id(&answer, "joined");
    assert!(!again_id.is_empty(), "{answer}");
    drop(again);
    sees_leave(&mut host, &again_id).await?;

    // Past the grace, nothing is kept.
    host_control(&mut host, "unlock", "", "").await?;
    let (guest, gil, joined) = admitted_guest(&server, &mut host, "one", "gil").await?;
    let late_ticket = ticket(&joined);
    host_control(&mut host, "lock", "", "").await?;
    drop(guest);
    let heard = sees_leave(&mut host, &gil).await?;
    assert_eq!(
        as_heard(&heard),
        ("connection_lost", 600),
        "the others keep its place for the room service's grace"
    );
    tokio::time::sleep(Duration::from_millis(900)).await;
    let (_, answer) = join_again(&server, "one", "gil", Some(&late_ticket)).await?;
    assert_eq!(answer["error"]["code"], "room_locked", "{answer}");
    Ok(())
}

#[tokio::test]
async fn a_ticket_shown_while_the_old_connection_is_listed_replaces_it() -> anyhow::Result<()> {
    let server = TestServer::start(true).await?;
    let (mut host, _) = join_host(&server, "swap").await?;
    let (mut old, gus, joined) = admitted_guest(&server, &mut host, "swap", "gus").await?;
    host_control(&mut host, "lock", "", "").await?;

    // Shown with someone else's token, the ticket ends no one's connection.
    let (_, plain) = join_again(&server, "swap", "mallory", Some(&ticket(&joined))).await?;
    assert_eq!(plain["error"]["code"], "room_locked", "{plain}");
    let listed = server
        .room
        .list_participants("dev".into(), "swap".into())
        .await?;
    assert!(listed.iter().any(|p| p.id == gus), "Gus is still in");

    // Its gateway still lists the old connection (as when a gateway went away and its
    // lease has not run out): the new one takes its place, the old one is closed.
    let (_back, rejoined) = join_again(&server, "swap", "gus", Some(&ticket(&joined))).await?;
    let new_id = rejoined["joined"]["you"]["id"].as_str().unwrap_or_default();
    assert!(!new_id.is_empty() && new_id != gus, "{rejoined}");
    let heard = sees_leave(&mut host, &gus).await?;
    assert_eq!(as_heard(&heard), LOST, "coming back right now");
    let seen = host.recv_kind("participant_joined", WAIT).await?;
    assert_eq!(seen["participant_joined"]["participant"]["id"], new_id);
    let listed = server
        .room
        .list_participants("dev".into(), "swap".into())
        .await?;
    let ids: Vec<&str> = listed.iter().map(|p| p.id.as_str()).collect();
    assert!(
        ids.contains(&new_id) && !ids.contains(&gus.as_str()),
        "{ids:?}"
    );
    // The old connection ends without an error: its client would join again.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        match old
            .recv(deadline.saturating_duration_since(std::time::Instant::now()))
            .await
        {
            Err(_) => break,
            Ok(message) => assert!(message.get("error").is_none(), "{message}"),
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the old connection is closed"
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_message_resent_after_coming_back_is_stored_once_and_still_ones_own() -> anyhow::Result<()>
{
    let server = TestServer::start(true).await?;
    let (mut host, _) = join_host(&server, "notes").await?;
    let (mut guest, gus, joined) = admitted_guest(&server, &mut host, "notes", "gus").await?;
    let post = json!({"request_id": "post", "chat": {"text": "minutes", "client_id": "c-1"}});
    guest.send(&post).await?;
    let seq = reply(&mut guest, "post").await?["chat_sent"]["seq"].clone();
    assert!(seq.as_u64().is_some_and(|s| s > 0), "stored: {seq}");

    // Its answer is lost with the connection: the client resends once it is back.
    drop(guest);
    sees_leave(&mut host, &gus).await?;
    let (mut back, _) = join_again(&server, "notes", "gus", Some(&ticket(&joined))).await?;
    back.send(&post).await?;
    let again = reply(&mut back, "post").await?;
    assert_eq!(again["chat_sent"]["seq"], seq, "the same message: {again}");
    let fix = json!({"request_id": "fix", "chat_edit": {"seq": seq, "text": "the minutes"}});
    back.send(&fix).await?;
    assert!(reply(&mut back, "fix").await?.get("chat_sent").is_some());

    let history = server
        .chat
        .history(
            "dev/notes".into(),
            confer_chat::Page::After {
                after: 0,
                limit: 10,
            },
        )
        .await?;
    let texts: Vec<&str> = history
        .entries
        .iter()
        .filter(|e| e.kind == confer_chat::EntryKind::Text)
        .map(|e| e.text.as_str())
        .collect();
    assert_eq!(texts, ["the minutes"], "stored once, edited by its author");
    Ok(())
}

/// A guest's token for `room` that expires at `exp`.
fn expiring_token(room: &str, identity: &str, exp: u64) -> String {
    confer_auth::TokenKey::new("dev", confer_e2e::server::TOKEN_SECRET.as_bytes()).sign(
        &confer_auth::Claims {
            iss: "dev".into(),
            sub: identity.into(),
            name: identity.into(),
            nbf: 0,
            exp,
            kind: Default::default(),
            video: confer_auth::VideoGrant::join(room),
        },
    )
}

#[tokio::test]
async fn a_token_that_ran_out_during_the_call_still_brings_its_holder_back() -> anyhow::Result<()> {
    let server = TestServer::start(true).await?;
    let open = CreateRoom {
        name: "short".into(),
        settings: RoomSettings {
            waiting_room: false,
            ..RoomSettings::default()
        },
        password: None,
    };
    server.room.create_room("dev".into(), open).await?;
    let (mut host, _) = join_host(&server, "short").await?;
    // Accepted at join within the clock-skew leeway, expired two seconds later.
    let token = expiring_token("short", "gus", now() - confer_auth::LEEWAY_SECS + 1);
    let mut guest = connect(&server).await?;
    send_join(&mut guest, json!({"room": "short", "token": token})).await?;
    let joined = reply(&mut guest, "join").await?;
    let gus = you_id(&joined, "joined");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    drop(guest);
    sees_leave(&mut host, &gus).await?;

    // Expired, the token lets no one in by itself; with the ticket it brings Gus back.
    let mut again = connect(&server).await?;
    send_join(&mut again, json!({"room": "short", "token": token})).await?;
    assert_eq!(error_of(&mut again, "join").await?, "token_expired");
    let rejoin = json!({"room": "short", "token": token, "rejoin": ticket(&joined)});
    send_join(&mut again, rejoin).await?;
    let back = reply(&mut again, "join").await?;
    let back_id = you_id(&back, "joined");
    assert!(!back_id.is_empty(), "{back}");

    // A token that had run out before Gus joined does not bring him back.
    drop(again);
    sees_leave(&mut host, &back_id).await?;
    let stale = expiring_token("short", "gus", now() - confer_auth::LEEWAY_SECS - 600);
    let mut late = connect(&server).await?;
    send_join(
        &mut late,
        json!({"room": "short", "token": stale, "rejoin": ticket(&back)}),
    )
    .await?;
    assert_eq!(error_of(&mut late, "join").await?, "token_expired");
    Ok(())
}

#[tokio::test]
async fn an_anonymous_guests_ticket_brings_it_back_once() -> anyhow::Result<()> {
    let server = TestServer::start(false).await?;
    // The first in an anonymous room is its host.
    let mut host = connect(&server).await?;
    send_join(&mut host, json!({"room": "open", "name": "Ann"})).await?;
    assert_eq!(
        reply(&mut host, "join").await?["joined"]["you"]["role"],
        "host"
    );
    let mut guest = connect(&server).await?;
    send_join(&mut guest, json!({"room": "open", "name": "Gus"})).await?;
    let joined = reply(&mut guest, "join").await?;
    let gus = you_id(&joined, "joined");
    host_control(&mut host, "lock", "", "").await?;
    drop(guest);
    let heard = sees_leave(&mut host, &gus).await?;
    assert_eq!(as_heard(&heard), LOST);

    let rejoin = json!({"room": "open", "name": "Gus", "rejoin": ticket(&joined)});
    let mut back = connect(&server).await?;
    send_join(&mut back, rejoin.clone()).await?;
    let rejoined = reply(&mut back, "join").await?;
    assert_eq!(
        rejoined["joined"]["you"]["previous_id"],
        gus.as_str(),
        "back past the lock: {rejoined}"
    );
    // The same ticket again is a plain join, and the room is locked.
    let mut again = connect(&server).await?;
    send_join(&mut again, rejoin).await?;
    assert_eq!(error_of(&mut again, "join").await?, "room_locked");
    Ok(())
}
