//! Bad input on every door: malformed signalling, bad tokens, garbage on the media port.
//! Each gets a clear error and loses nothing: the connection stays usable.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use confer_auth::{Claims, TokenKey, VideoGrant};
use confer_e2e::server::{TOKEN_SECRET, TestServer, metric};
use confer_e2e::signal::{SignalClient, client_offer};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(5);

async fn error_code(client: &mut SignalClient) -> anyhow::Result<String> {
    let reply = client.recv_kind("error", WAIT).await?;
    Ok(reply["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned())
}

async fn still_usable(client: &mut SignalClient) -> anyhow::Result<()> {
    client.send(&json!({"request_id": "p", "ping": {}})).await?;
    let pong = client.recv_kind("pong", WAIT).await?;
    assert_eq!(pong["request_id"], "p");
    Ok(())
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

fn token(room: &str, nbf: u64, exp: u64, secret: &str) -> String {
    TokenKey::new("dev", secret.as_bytes()).sign(&Claims {
        iss: "dev".into(),
        sub: "ada".into(),
        name: "Ada".into(),
        nbf,
        exp,
        kind: Default::default(),
        video: VideoGrant::join(room),
    })
}

fn join(token: &str, sdp: &str) -> Value {
    json!({"request_id": "j", "join": {"room": "standup", "name": "Ada", "token": token, "offer": {"type": "offer", "sdp": sdp}}})
}

#[tokio::test]
async fn malformed_and_unknown_messages_get_coded_errors() -> anyhow::Result<()> {
    let server = TestServer::start(false).await?;
    let mut client = SignalClient::connect(&server.signal_url()).await?;
    let cases: [(&str, &str); 6] = [
        ("{not json", "malformed_message"),
        ("[1, 2, 3]", "malformed_message"),
        (r#"{"request_id":"1","teleport":{}}"#, "unknown_message"),
        (r#"{"request_id":"1"}"#, "unknown_message"),
        (
            r#"{"chat":{"text":"hi","colour":"red"}}"#,
            "invalid_message",
        ),
        (r#"{"chat":{"text":"hi"}}"#, "not_joined"),
    ];
    for (frame, expected) in cases {
        client.send_text(frame).await?;
        assert_eq!(error_code(&mut client).await?, expected, "reply to {frame}");
        still_usable(&mut client).await?;
    }
    let oversized = format!(r#"{{"chat":{{"text":"{}"}}}}"#, "x".repeat(70_000));
    client.send_text(&oversized).await?;
    assert_eq!(error_code(&mut client).await?, "message_too_large");
    still_usable(&mut client).await?;
    Ok(())
}

#[tokio::test]
async fn bad_tokens_are_refused_with_a_reason() -> anyhow::Result<()> {
    let server = TestServer::start(true).await?;
    let offer = client_offer(2)?;
    let now = now();
    let cases = [
        (String::new(), "token_required"),
        ("not.a.token".to_owned(), "token_malformed"),
        (
            token("standup", now, now + 600, "some other secret"),
            "token_invalid",
        ),
        (
            token("standup", now - 7200, now - 3600, TOKEN_SECRET),
            "token_expired",
        ),
        (
            token("standup", now + 3600, now + 7200, TOKEN_SECRET),
            "token_not_yet_valid",
        ),
        (
            token("retro", now, now + 600, TOKEN_SECRET),
            "token_room_mismatch",
        ),
    ];
    let mut client = SignalClient::connect(&server.signal_url()).await?;
    for (token, expected) in cases {
        client.send(&join(&token, &offer)).await?;
        let reply = client.recv_kind("error", WAIT).await?;
        assert_eq!(reply["error"]["code"], expected, "reply {reply}");
        assert!(
            !reply["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .is_empty()
        );
        still_usable(&mut client).await?;
    }
    // The same connection can still join with a good token: a guest of a room with
    // the default waiting room waits for a host.
    client
        .send(&join(
            &token("standup", now, now + 600, TOKEN_SECRET),
            &offer,
        ))
        .await?;
    let waiting = client.recv_kind("waiting", WAIT).await?;
    assert_eq!(waiting["waiting"]["you"]["name"], "Ada");
    assert_eq!(waiting["waiting"]["you"]["role"], "participant");
    Ok(())
}

#[tokio::test]
async fn an_invalid_offer_is_refused_and_nothing_is_left_behind() -> anyhow::Result<()> {
    let server = TestServer::start(false).await?;
    let mut client = SignalClient::connect(&server.signal_url()).await?;
    client.send(&join("", "v=0\r\nthis is not sdp\r\n")).await?;
    assert_eq!(error_code(&mut client).await?, "invalid_sdp");
    still_usable(&mut client).await?;
    assert_eq!(server.sfu.occupancy().await?.peers, 0);
    let metrics = server.metrics().await?;
    assert_eq!(metric(&metrics, "confer_gateway_participants"), Some(0));
    Ok(())
}

#[tokio::test]
async fn garbage_on_the_media_port_is_dropped_and_counted() -> anyhow::Result<()> {
    let server = TestServer::start(false).await?;
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    let garbage: [&[u8]; 4] = [
        b"hello",
        &[0x80, 0x60, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0, 1],
        &[
            0x00, 0x01, 0x00, 0x08, 0x21, 0x12, 0xA4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
        ],
        &[0x16, 0xfe, 0xfd, 0, 0],
    ];
    for datagram in garbage {
        socket.send_to(datagram, server.sfu.media_addr()).await?;
    }
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let counted = metric(
            &server.metrics().await?,
            "confer_sfu_datagrams_unroutable_total",
        );
        if counted == Some(4) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "unroutable count is {counted:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The SFU still answers joins afterwards.
    let mut client = SignalClient::connect(&server.signal_url()).await?;
    client.send(&join("", &client_offer(1)?)).await?;
    client.recv_kind("joined", WAIT).await?;
    Ok(())
}
