//! A signalling client whose connection died without a close (it reads nothing and
//! answers no ping) is let go once it has been silent for the gateway's `silent_for`,
//! and its participant leaves the room; a client that answers the gateway's pings
//! stays, however long it says nothing else.

use std::time::{Duration, Instant};

use confer_e2e::server::{Options, TestServer, metric};
use confer_e2e::signal::SignalClient;
use serde_json::{Value, json};

const SILENT_FOR: Duration = Duration::from_millis(900);
const WAIT: Duration = Duration::from_secs(5);

async fn join(server: &TestServer, name: &str) -> anyhow::Result<(SignalClient, String)> {
    let mut client = SignalClient::connect(&server.signal_url()).await?;
    client
        .send(&json!({"request_id": "j", "join": {"room": "quiet", "name": name}}))
        .await?;
    let joined = client.recv_kind("joined", WAIT).await?;
    let id = joined["joined"]["you"]["id"].as_str().unwrap_or_default();
    Ok((client, id.to_owned()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_is_let_go_and_leaves_while_one_that_answers_pings_stays()
-> anyhow::Result<()> {
    let server = TestServer::start_with(Options::liveness(SILENT_FOR)).await?;
    let (mut ada, _) = join(&server, "Ada").await?;
    let (bob, bob_id) = join(&server, "Bob").await?;
    ada.recv_kind("participant_joined", WAIT).await?;

    // From here Bob reads nothing, so he answers no ping (a client answers them as it
    // reads), as a connection that died would. Ada reads, and sends nothing.
    let silent_since = Instant::now();
    let left = ada.recv_kind("participant_left", WAIT).await?;
    assert_eq!(
        left["participant_left"]["participant_id"],
        Value::from(bob_id)
    );
    assert_eq!(
        left["participant_left"]["reason"], "connection_lost",
        "a silent connection is a lost one: Bob may come back as he was"
    );
    assert!(
        silent_since.elapsed() >= SILENT_FOR / 2,
        "let go only after a silence: {:?}",
        silent_since.elapsed()
    );

    // Ada has answered pings all along: after three times the silence, she is still in.
    let quiet_until = Instant::now() + SILENT_FOR * 3;
    while Instant::now() < quiet_until {
        match ada.recv(quiet_until - Instant::now()).await {
            Ok(message) => anyhow::ensure!(
                message.get("participant_left").is_none(),
                "no one else left: {message}"
            ),
            Err(err) if err.to_string().starts_with("no message") => break,
            Err(err) => return Err(err),
        }
    }
    let answer = ada.request("p", json!({"ping": {}}), WAIT).await?;
    assert!(
        answer.get("pong").is_some(),
        "Ada is still connected: {answer}"
    );
    assert_eq!(
        metric(
            &server.metrics().await?,
            "confer_gateway_clients_silent_total"
        ),
        Some(1)
    );
    drop(bob);
    Ok(())
}
