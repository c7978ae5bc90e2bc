//! Joining rooms over signalling as the room suites do: access tokens of the dev
//! tenant, joins, replies and host controls.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use confer_auth::{Claims, TokenKey, VideoGrant};
use confer_room::RoomApi as _;
use confer_room::api::CreateRoom;
use confer_room::model::RoomSettings;
use serde_json::{Value, json};

use crate::server::{TOKEN_SECRET, TestServer};
use crate::signal::{SignalClient, client_offer};

/// How long a reply or push is waited for.
pub const WAIT: Duration = Duration::from_secs(5);

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// An access token of `issuer` for `identity` with `grant`, valid for 10 minutes.
pub fn sign(issuer: &str, secret: &str, identity: &str, grant: VideoGrant) -> String {
    TokenKey::new(issuer, secret.as_bytes()).sign(&Claims {
        iss: issuer.into(),
        sub: identity.into(),
        name: identity.into(),
        nbf: now(),
        exp: now() + 600,
        kind: Default::default(),
        video: grant,
    })
}

/// A host's token for `room` from the dev tenant.
pub fn host_token(room: &str, identity: &str) -> String {
    sign(
        "dev",
        TOKEN_SECRET,
        identity,
        VideoGrant {
            room_admin: true,
            ..VideoGrant::join(room)
        },
    )
}

/// A guest's token for `room` from the dev tenant.
pub fn guest_token(room: &str, identity: &str) -> String {
    sign("dev", TOKEN_SECRET, identity, VideoGrant::join(room))
}

/// Creates room `name` of the dev tenant with `settings`, as its tenant would.
pub async fn create_room(
    server: &TestServer,
    name: &str,
    settings: RoomSettings,
) -> anyhow::Result<()> {
    let room = CreateRoom {
        name: name.into(),
        settings,
        password: None,
    };
    server.room.create_room("dev".into(), room).await?;
    Ok(())
}

/// A room of the dev tenant that lets guests in without a host's admission.
pub async fn open_room(server: &TestServer, name: &str) -> anyhow::Result<()> {
    let settings = RoomSettings {
        waiting_room: false,
        ..RoomSettings::default()
    };
    create_room(server, name, settings).await
}

pub async fn connect(server: &TestServer) -> anyhow::Result<SignalClient> {
    SignalClient::connect(&server.signal_url()).await
}

/// Sends `join` under the request id `join`.
pub async fn send_join(client: &mut SignalClient, join: Value) -> anyhow::Result<()> {
    client
        .send(&json!({"request_id": "join", "join": join}))
        .await
}

/// The next reply to `request_id` (skipping pushes).
pub async fn reply(client: &mut SignalClient, request_id: &str) -> anyhow::Result<Value> {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let message = client.recv(left).await?;
        if message["request_id"] == request_id {
            return Ok(message);
        }
    }
}

/// The participant id a `waiting` or `joined` reply gives its client.
pub fn you_id(message: &Value, kind: &str) -> String {
    message[kind]["you"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The error code of the reply to `request_id` (`none` when it is no error).
pub async fn error_of(client: &mut SignalClient, request_id: &str) -> anyhow::Result<String> {
    let message = reply(client, request_id).await?;
    Ok(message["error"]["code"]
        .as_str()
        .unwrap_or("none")
        .to_owned())
}

/// Sends a host control and waits for its reply.
pub async fn host_control(
    client: &mut SignalClient,
    action: &str,
    participant: &str,
    kind: &str,
) -> anyhow::Result<Value> {
    client
        .send(&json!({"request_id": "host", "host": {"action": action, "participant_id": participant, "kind": kind}}))
        .await?;
    reply(client, "host").await
}

/// A host in `room`, joined with an offer.
pub async fn join_host(server: &TestServer, room: &str) -> anyhow::Result<(SignalClient, String)> {
    let mut host = connect(server).await?;
    let offer = client_offer(2)?;
    send_join(&mut host, json!({"room": room, "token": host_token(room, "hana"), "offer": {"type": "offer", "sdp": offer}})).await?;
    let joined = reply(&mut host, "join").await?;
    assert_eq!(joined["joined"]["you"]["role"], "host", "{joined}");
    let id = you_id(&joined, "joined");
    Ok((host, id))
}
