//! One place per identity, through the real signalling path: a token's identity that
//! joins a room it is already in (a second tab, another device, a page reloaded
//! without leaving) takes its own place, past the lock and the waiting room, keeping
//! a host's mutes; the connection it replaces is told `replaced`.

use std::time::Duration;

use confer_e2e::joins::{
    WAIT, connect, create_room, host_control, host_token, join_host, reply, send_join, you_id,
};
use confer_e2e::rejoins::{LOST, admitted_guest, as_heard, join_again, sees_leave};
use confer_e2e::server::TestServer;
use confer_e2e::signal::SignalClient;
use confer_room::RoomApi as _;
use confer_room::model::RoomSettings;
use serde_json::{Value, json};

/// Waits for the error `client` is sent without asking, and for its connection to
/// close after it: the error.
async fn told_and_closed(client: &mut SignalClient) -> anyhow::Result<Value> {
    let deadline = std::time::Instant::now() + WAIT;
    let mut told = None;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match client.recv(left).await {
            Ok(message) if message.get("error").is_some() => told = Some(message),
            Ok(_) => {}
            Err(_) => break,
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the connection stays open"
        );
    }
    told.ok_or_else(|| anyhow::anyhow!("closed without an error"))
}

/// The identities listed in `room` of the dev tenant.
async fn listed(server: &TestServer, room: &str) -> anyhow::Result<Vec<(String, String)>> {
    let participants = server
        .room
        .list_participants("dev".into(), room.into())
        .await?;
    Ok(participants
        .into_iter()
        .map(|p| (p.identity, p.id))
        .collect())
}

/// A room with a waiting room where a host's mutes hold.
async fn strict_room(server: &TestServer, name: &str) -> anyhow::Result<()> {
    let settings = RoomSettings {
        allow_self_unmute: false,
        ..RoomSettings::default()
    };
    create_room(server, name, settings).await
}

#[tokio::test]
async fn an_identity_that_joins_again_takes_its_own_place() -> anyhow::Result<()> {
    let server = TestServer::start(true).await?;
    strict_room(&server, "desk").await?;
    let (mut host, _) = join_host(&server, "desk").await?;
    let (mut first_tab, gus, _) = admitted_guest(&server, &mut host, "desk", "gus").await?;
    host_control(&mut host, "mute", &gus, "audio").await?;
    host_control(&mut host, "lock", "", "").await?;

    // A second tab, no ticket: straight in past the lock and the waiting room, the
    // host's mute still on.
    let (_second_tab, joined) = join_again(&server, "desk", "gus", None).await?;
    let you = &joined["joined"]["you"];
    let second = you["id"].as_str().unwrap_or_default().to_owned();
    assert!(!second.is_empty() && second != gus, "{joined}");
    assert_eq!(you["previous_id"], gus.as_str(), "{joined}");
    assert_eq!(
        you["audio_blocked"], true,
        "the host's mute holds: {joined}"
    );
    assert_eq!(you["role"], "participant");

    // The first tab is told why, and closed.
    let told = told_and_closed(&mut first_tab).await?;
    assert_eq!(told["error"]["code"], "replaced", "{told}");
    // The others see Gus come back, in his tile.
    assert_eq!(as_heard(&sees_leave(&mut host, &gus).await?), LOST);
    let seen = host.recv_kind("participant_joined", WAIT).await?;
    assert_eq!(
        seen["participant_joined"]["participant"]["id"],
        second.as_str()
    );
    assert_eq!(
        seen["participant_joined"]["participant"]["previous_id"],
        gus.as_str()
    );
    let gus_listed: Vec<_> = listed(&server, "desk")
        .await?
        .into_iter()
        .filter(|(identity, _)| identity == "gus")
        .collect();
    assert_eq!(gus_listed, [("gus".to_owned(), second.clone())], "once");
    assert_eq!(server.room.takeovers(), 1, "counted for /metrics");

    // Someone else is still kept out by the lock.
    let (_, refused) = join_again(&server, "desk", "lea", None).await?;
    assert_eq!(refused["error"]["code"], "room_locked", "{refused}");
    Ok(())
}

#[tokio::test]
async fn a_lost_place_is_taken_by_the_identity_under_its_new_token() -> anyhow::Result<()> {
    let server = TestServer::start(true).await?;
    strict_room(&server, "desk").await?;
    let (mut host, _) = join_host(&server, "desk").await?;
    let (laptop, gus, _) = admitted_guest(&server, &mut host, "desk", "gus").await?;
    host_control(&mut host, "mute", &gus, "audio").await?;
    host_control(&mut host, "lock", "", "").await?;
    drop(laptop);
    assert_eq!(as_heard(&sees_leave(&mut host, &gus).await?), LOST);

    // The phone, with a host's token for the same identity: in at once, under the
    // new token's role, the mute a host put on Gus still on.
    let mut phone = connect(&server).await?;
    send_join(
        &mut phone,
        json!({"room": "desk", "token": host_token("desk", "gus")}),
    )
    .await?;
    let joined = reply(&mut phone, "join").await?;
    let you = &joined["joined"]["you"];
    assert_eq!(you["previous_id"], gus.as_str(), "{joined}");
    assert_eq!(you["role"], "host", "the new token's role: {joined}");
    assert_eq!(you["audio_blocked"], true, "{joined}");
    let seen = host.recv_kind("participant_joined", WAIT).await?;
    assert_eq!(
        seen["participant_joined"]["participant"]["previous_id"],
        gus.as_str()
    );
    // The place is taken: nothing is kept of it any more.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let identities: Vec<String> = listed(&server, "desk")
        .await?
        .into_iter()
        .map(|(identity, _)| identity)
        .collect();
    assert_eq!(identities.iter().filter(|i| *i == "gus").count(), 1);
    assert_eq!(server.room.takeovers(), 1);
    Ok(())
}

#[tokio::test]
async fn a_second_connection_waiting_to_be_let_in_replaces_the_first() -> anyhow::Result<()> {
    let server = TestServer::start(true).await?;
    let (mut host, _) = join_host(&server, "hall").await?;
    let (mut first, answer) = join_again(&server, "hall", "lea", None).await?;
    let lea = you_id(&answer, "waiting");
    assert!(!lea.is_empty(), "{answer}");
    host.recv_kind("knock", WAIT).await?;

    let (_second, answer) = join_again(&server, "hall", "lea", None).await?;
    let again = you_id(&answer, "waiting");
    assert!(
        !again.is_empty() && again != lea,
        "it waits again: {answer}"
    );
    let told = told_and_closed(&mut first).await?;
    assert_eq!(told["error"]["code"], "replaced", "{told}");
    let resolved = host.recv_kind("knock_resolved", WAIT).await?;
    assert_eq!(resolved["knock_resolved"]["participant_id"], lea.as_str());
    let knock = host.recv_kind("knock", WAIT).await?;
    assert_eq!(knock["knock"]["participant"]["id"], again.as_str());
    let waiting: Vec<String> = listed(&server, "hall")
        .await?
        .into_iter()
        .filter(|(identity, _)| identity == "lea")
        .map(|(_, id)| id)
        .collect();
    assert_eq!(waiting, [again]);
    assert_eq!(
        server.room.takeovers(),
        0,
        "a waiting place is no place to take"
    );
    Ok(())
}
