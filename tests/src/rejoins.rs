//! Leaving and coming back over signalling, as the rejoin and identity suites do: a
//! guest let through the waiting room, a join again (with a ticket or without), and
//! what the others hear when someone leaves.

use serde_json::{Value, json};

use crate::joins::{WAIT, connect, guest_token, host_control, reply, send_join, you_id};
use crate::server::TestServer;
use crate::signal::SignalClient;

/// The rejoin ticket of a `joined` reply.
pub fn ticket(joined: &Value) -> String {
    let ticket = joined["joined"]["rejoin"].as_str().unwrap_or_default();
    assert!(
        !ticket.is_empty(),
        "joined carries a rejoin ticket: {joined}"
    );
    ticket.to_owned()
}

/// `identity` joins `room`, which has a waiting room, and `host` admits it: its
/// connection, its id and its `joined` reply.
pub async fn admitted_guest(
    server: &TestServer,
    host: &mut SignalClient,
    room: &str,
    identity: &str,
) -> anyhow::Result<(SignalClient, String, Value)> {
    let mut guest = connect(server).await?;
    send_join(
        &mut guest,
        json!({"room": room, "token": guest_token(room, identity)}),
    )
    .await?;
    let id = you_id(&reply(&mut guest, "join").await?, "waiting");
    host.recv_kind("knock", WAIT).await?;
    host_control(host, "admit", &id, "").await?;
    let joined = reply(&mut guest, "join").await?;
    assert_eq!(joined["joined"]["you"]["id"], id.as_str(), "{joined}");
    Ok((guest, id, joined))
}

/// Waits until `client` hears that `participant` left: why, and for how many
/// milliseconds the others keep its place (0 when it will not come back).
pub async fn sees_leave(
    client: &mut SignalClient,
    participant: &str,
) -> anyhow::Result<(String, u64)> {
    loop {
        let left = client.recv_kind("participant_left", WAIT).await?;
        let left = &left["participant_left"];
        if left["participant_id"] == participant {
            let reason = left["reason"].as_str().unwrap_or_default().to_owned();
            return Ok((reason, left["rejoin_within_ms"].as_u64().unwrap_or(0)));
        }
    }
}

/// The others hear that a lost participant may come back, for as long as it may.
pub const LOST: (&str, u64) = ("connection_lost", 120_000);
/// The others hear that it is gone for good.
pub const GONE: (&str, u64) = ("left", 0);

pub fn as_heard((reason, within): &(String, u64)) -> (&str, u64) {
    (reason.as_str(), *within)
}

/// A new connection's join of `room` as `identity`, with `ticket` when given: its
/// connection and the join's reply.
pub async fn join_again(
    server: &TestServer,
    room: &str,
    identity: &str,
    ticket: Option<&str>,
) -> anyhow::Result<(SignalClient, Value)> {
    let mut client = connect(server).await?;
    let mut join = json!({"room": room, "token": guest_token(room, identity)});
    if let Some(ticket) = ticket {
        join["rejoin"] = json!(ticket);
    }
    send_join(&mut client, join).await?;
    let answer = reply(&mut client, "join").await?;
    Ok((client, answer))
}
