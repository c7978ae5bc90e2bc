//! Participants send each other data over signalling (`send_data`): everyone else in
//! the room gets it as `data` with the sender's id, or only those it names; not the
//! sender, and nobody in another room. Who may not send data, who has not joined,
//! oversized payloads, long topics, unknown fields and a flood are refused, each with
//! its own code (refused ones count against the sender's rate too).

use std::time::Duration;

use confer_auth::VideoGrant;
use confer_e2e::joins::{
    WAIT, connect, guest_token, join_host, open_room, reply, send_join, sign, you_id,
};
use confer_e2e::server::{TOKEN_SECRET, TestServer};
use confer_e2e::signal::SignalClient;
use serde_json::{Value, json};

/// Joins `room` with `token`; returns the client and its participant id.
async fn joined(
    server: &TestServer,
    room: &str,
    token: String,
) -> anyhow::Result<(SignalClient, String)> {
    let mut client = connect(server).await?;
    send_join(&mut client, json!({"room": room, "token": token})).await?;
    let joined = reply(&mut client, "join").await?;
    let id = you_id(&joined, "joined");
    anyhow::ensure!(!id.is_empty(), "not joined: {joined}");
    Ok((client, id))
}

/// Sends `body` as `send_data` request `id`; returns the reply, after checking that
/// nothing pushed to the sender before it was its own data.
async fn send_data(client: &mut SignalClient, id: &str, body: Value) -> anyhow::Result<Value> {
    client
        .send(&json!({"request_id": id, "send_data": body}))
        .await?;
    loop {
        let message = client.recv(WAIT).await?;
        anyhow::ensure!(
            message.get("data").is_none(),
            "the sender got data: {message}"
        );
        if message["request_id"] == id {
            return Ok(message);
        }
    }
}

/// The next `data` pushed to `client`.
async fn next_data(client: &mut SignalClient) -> anyhow::Result<Value> {
    Ok(client.recv_kind("data", WAIT).await?["data"].clone())
}

/// Fails if `client` is pushed any `data` within `wait`.
async fn no_data(client: &mut SignalClient, who: &str, wait: Duration) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let Ok(message) = client.recv(left).await else {
            return Ok(());
        };
        anyhow::ensure!(message.get("data").is_none(), "{who} got {message}");
    }
}

#[tokio::test]
async fn data_reaches_the_room_or_those_it_names_and_bad_data_is_refused() -> anyhow::Result<()> {
    let server = TestServer::start(true).await?;
    open_room(&server, "studio").await?;
    open_room(&server, "elsewhere").await?;
    let (mut ada, ada_id) = join_host(&server, "studio").await?;
    let (mut bob, _) = joined(&server, "studio", guest_token("studio", "bob")).await?;
    let (mut cyd, cyd_id) = joined(&server, "studio", guest_token("studio", "cyd")).await?;
    let (mut eve, _) = joined(&server, "elsewhere", guest_token("elsewhere", "eve")).await?;

    let sent = send_data(
        &mut ada,
        "r1",
        json!({"topic": "reaction", "payload": "👏"}),
    )
    .await?;
    assert!(sent.get("ack").is_some(), "{sent}");
    for client in [&mut bob, &mut cyd] {
        let data = next_data(client).await?;
        assert_eq!(
            (
                &data["from_participant_id"],
                &data["topic"],
                &data["payload"]
            ),
            (&json!(ada_id), &json!("reaction"), &json!("👏")),
            "{data}"
        );
    }
    // To Cyd alone.
    let to_cyd =
        json!({"topic": "cursor", "payload": "{\"x\":10,\"y\":20}", "destination": [cyd_id]});
    assert!(
        send_data(&mut ada, "c1", to_cyd)
            .await?
            .get("ack")
            .is_some()
    );
    let data = next_data(&mut cyd).await?;
    assert_eq!(
        (&data["topic"], &data["payload"]),
        (&json!("cursor"), &json!("{\"x\":10,\"y\":20}"))
    );
    no_data(&mut bob, "Bob", Duration::from_millis(500)).await?;
    no_data(&mut ada, "the sender", Duration::from_millis(100)).await?;
    no_data(&mut eve, "Eve, in another room", Duration::from_millis(100)).await?;

    let code = |reply: Value| reply["error"]["code"].as_str().unwrap_or("none").to_owned();
    let big = "x".repeat(15 * 1024 + 1);
    let refused = send_data(&mut bob, "big", json!({"topic": "t", "payload": big})).await?;
    assert_eq!(code(refused), "payload_too_large");
    let topic = "t".repeat(129);
    let refused = send_data(&mut bob, "topic", json!({"topic": topic, "payload": "p"})).await?;
    assert_eq!(code(refused), "topic_too_long");
    let many: Vec<String> = (0..101).map(|i| format!("p{i}")).collect();
    let refused = send_data(
        &mut bob,
        "many",
        json!({"topic": "t", "payload": "p", "destination": many}),
    )
    .await?;
    assert_eq!(code(refused), "too_many_destinations");
    let refused = send_data(
        &mut bob,
        "odd",
        json!({"topic": "t", "payload": "p", "to": "all"}),
    )
    .await?;
    assert_eq!(code(refused), "invalid_message");
    let mut stranger = connect(&server).await?;
    let refused = send_data(&mut stranger, "s", json!({"topic": "t", "payload": "p"})).await?;
    assert_eq!(code(refused), "not_joined");
    let mute = sign(
        "dev",
        TOKEN_SECRET,
        "dan",
        VideoGrant {
            can_publish_data: false,
            ..VideoGrant::join("studio")
        },
    );
    let (mut dan, _) = joined(&server, "studio", mute).await?;
    let refused = send_data(&mut dan, "d", json!({"topic": "t", "payload": "p"})).await?;
    assert_eq!(code(refused), "permission_denied");

    // A flood from Cyd, who sent nothing yet: 60 at once pass, then the rate holds.
    for i in 0..70 {
        cyd.send(
            &json!({"request_id": format!("f{i}"), "send_data": {"topic": "t", "payload": "p"}}),
        )
        .await?;
    }
    let mut limited = Vec::new();
    for i in 0..70 {
        let answer = reply(&mut cyd, &format!("f{i}")).await?;
        if answer["error"]["code"] == "data_rate_limited" {
            assert!(
                answer["error"]["retry_after_ms"].as_u64() > Some(0),
                "{answer}"
            );
            limited.push(i);
        } else {
            assert!(answer.get("ack").is_some(), "{answer}");
        }
    }
    assert!(
        (5..=10).contains(&limited.len()) && limited.iter().all(|&i| i >= 60),
        "refused: {limited:?}"
    );
    Ok(())
}
