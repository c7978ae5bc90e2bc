//! How fast a member may post in a room's chat: `joined` says the limit, posts over it
//! (sends, edits, file shares) are refused with `chat_rate_limited` and when to retry,
//! and nothing refused is stored. Deletes and other members are never held, and a post
//! that waited as long as it was told goes through.

use std::time::Duration;

use confer_chat::{ChatApi as _, Page};
use confer_e2e::server::{DEV_TENANT, Options, TestServer, metric};
use confer_e2e::signal::SignalClient;
use confer_gateway::ChatRate;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(5);

/// Two posts a second, three at once: a limit a test can cross in milliseconds.
const RATE: ChatRate = ChatRate {
    per_second: 2,
    burst: 3,
};

async fn join(server: &TestServer, name: &str) -> anyhow::Result<(SignalClient, Value)> {
    let mut client = SignalClient::connect(&server.signal_url()).await?;
    client
        .send(&json!({"request_id": "j", "join": {"room": "paced", "name": name}}))
        .await?;
    let joined = client.recv_kind("joined", WAIT).await?;
    Ok((client, joined["joined"].clone()))
}

async fn request(client: &mut SignalClient, id: &str, body: Value) -> anyhow::Result<Value> {
    client.request(id, body, WAIT).await
}

fn send(id: &str, text: &str) -> Value {
    json!({"chat": {"text": text, "client_id": id}})
}

/// The seq a `chat_sent` answer names; fails on anything else.
fn stored(reply: &Value) -> anyhow::Result<u64> {
    reply["chat_sent"]["seq"]
        .as_u64()
        .ok_or_else(|| anyhow::anyhow!("not stored: {reply}"))
}

/// The `retry_after_ms` of a `chat_rate_limited` error; fails on anything else.
fn refused(reply: &Value) -> anyhow::Result<u64> {
    anyhow::ensure!(
        reply["error"]["code"] == "chat_rate_limited",
        "not refused: {reply}"
    );
    let message = reply["error"]["message"].as_str().unwrap_or_default();
    anyhow::ensure!(
        message.contains("2 a second, 3 at once"),
        "the limit is not named: {reply}"
    );
    reply["error"]["retry_after_ms"]
        .as_u64()
        .ok_or_else(|| anyhow::anyhow!("no retry_after_ms: {reply}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posts_over_the_chat_rate_are_refused_with_when_to_retry_and_not_stored()
-> anyhow::Result<()> {
    let server = TestServer::start_with(Options::chat_rate(RATE)).await?;
    let (mut ada, joined) = join(&server, "Ada").await?;
    assert_eq!(joined["chat_limit"], json!({"per_second": 2, "burst": 3}));
    let (mut bob, _) = join(&server, "Bob").await?;

    // The burst goes through at once; the next post, an edit and a file share do not.
    let first = stored(&request(&mut ada, "a0", send("a0", "hi")).await?)?;
    for id in ["a1", "a2"] {
        stored(&request(&mut ada, id, send(id, "hi")).await?)?;
    }
    let retry = refused(&request(&mut ada, "a3", send("a3", "too soon")).await?)?;
    assert!((1..=500).contains(&retry), "retry in {retry} ms");
    refused(
        &request(
            &mut ada,
            "e",
            json!({"chat_edit": {"seq": first, "text": "edited"}}),
        )
        .await?,
    )?;
    let upload = json!({"file_upload": {"name": "a.png", "content_type": "image/png", "size": 10}});
    refused(&request(&mut ada, "f", upload).await?)?;

    // Another member is not held by Ada's posts, and Ada may take her words back.
    stored(&request(&mut bob, "b0", send("b0", "mine")).await?)?;
    let deleted = request(&mut ada, "d", json!({"chat_delete": {"seq": first}})).await?;
    stored(&deleted)?;

    // Refused posts counted for nothing: after the wait she was told, a post goes.
    let retry = refused(&request(&mut ada, "a4", send("a4", "still too soon")).await?)?;
    tokio::time::sleep(Duration::from_millis(retry)).await;
    stored(&request(&mut ada, "a5", send("a5", "on time")).await?)?;

    let page = server
        .chat
        .history(
            format!("{DEV_TENANT}/paced"),
            Page::Before {
                before: 0,
                limit: 50,
            },
        )
        .await?;
    let texts: Vec<&str> = page.entries.iter().map(|e| e.text.as_str()).collect();
    assert_eq!(
        page.entries.len(),
        6,
        "three posts, Bob's, the delete and the one on time: {texts:?}"
    );
    assert!(
        !texts.iter().any(|t| t.contains("soon") || *t == "edited"),
        "a refused post was stored: {texts:?}"
    );
    let metrics = server.metrics().await?;
    assert_eq!(
        metric(&metrics, "confer_gateway_chat_rate_limited_total"),
        Some(4),
        "the send, the edit, the share and the early resend"
    );
    Ok(())
}

#[tokio::test]
async fn the_default_limit_is_announced_and_none_when_posts_are_not_limited() -> anyhow::Result<()>
{
    let server = TestServer::start(false).await?;
    let (_, joined) = join(&server, "Ada").await?;
    assert_eq!(
        joined["chat_limit"],
        json!({"per_second": ChatRate::DEFAULT.per_second, "burst": ChatRate::DEFAULT.burst})
    );
    let unlimited = TestServer::start_with(Options::chat_rate(ChatRate::UNLIMITED)).await?;
    let (mut ada, joined) = join(&unlimited, "Ada").await?;
    assert!(joined.get("chat_limit").is_none(), "{joined}");
    for i in 0..50 {
        stored(&request(&mut ada, &format!("u{i}"), send(&format!("u{i}"), "fast")).await?)?;
    }
    Ok(())
}
