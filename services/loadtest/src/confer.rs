//! Joining a Confer room the way the web client does: the signalling WebSocket,
//! `join`, then `offer` → `answer`.

use std::time::Duration;

use anyhow::Context as _;
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// How long one answer may take.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(15);
/// How often a join refused for the join rate is tried again.
const RATE_LIMIT_RETRY: Duration = Duration::from_millis(250);
const RATE_LIMIT_TRIES: usize = 200;

/// Joins `room` as `name` (with a token from `key` when given) and negotiates
/// `offer_sdp`; returns the answer. The session stays open (its messages read and
/// dropped) until `stop`.
pub async fn join(
    signal_url: &str,
    key: Option<&confer_auth::TokenKey>,
    room: &str,
    name: &str,
    offer_sdp: &str,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<String> {
    let token = key.map(|key| self::token(key, room, name));
    let token = token.as_deref();
    let mut tries = 0;
    let mut ws = loop {
        match join_once(signal_url, room, name, token).await {
            Err(err) if is_rate_limited(&err) && tries < RATE_LIMIT_TRIES => {
                tries += 1;
                tokio::time::sleep(RATE_LIMIT_RETRY).await;
            }
            other => break other?,
        }
    };
    send(
        &mut ws,
        json!({"request_id": "offer", "offer": {"sdp": offer_sdp}}),
    )
    .await?;
    let answer = reply(&mut ws, "offer").await?;
    let sdp = answer
        .pointer("/answer/sdp")
        .and_then(Value::as_str)
        .context("the answer to the offer carries no SDP")?
        .to_owned();
    tokio::spawn(hold(ws, stop));
    Ok(sdp)
}

/// An access token for `identity` in `room`, valid for a day.
fn token(key: &confer_auth::TokenKey, room: &str, identity: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    key.sign(&confer_auth::Claims {
        iss: key.issuer().to_owned(),
        sub: identity.to_owned(),
        name: identity.to_owned(),
        nbf: now.saturating_sub(60),
        exp: now + 24 * 60 * 60,
        kind: Default::default(),
        video: confer_auth::VideoGrant::join(room),
    })
}

fn is_rate_limited(err: &anyhow::Error) -> bool {
    let text = err.to_string();
    text.contains("rate_limited") || text.contains("unavailable")
}

async fn join_once(
    signal_url: &str,
    room: &str,
    name: &str,
    token: Option<&str>,
) -> anyhow::Result<Ws> {
    let (mut ws, _) =
        tokio_tungstenite::connect_async_with_config(signal_url, Some(small_reads()), true)
            .await
            .with_context(|| format!("failed to open {signal_url}"))?;
    let join = json!({
        "request_id": "join",
        "join": {"room": room, "name": name, "token": token.unwrap_or_default()},
    });
    send(&mut ws, join).await?;
    reply(&mut ws, "join").await?;
    Ok(ws)
}

async fn send(ws: &mut Ws, message: Value) -> anyhow::Result<()> {
    ws.send(Message::Text(message.to_string().into()))
        .await
        .context("signalling send failed")
}

/// Waits for the server's reply to `request_id`; an `error` reply is an error.
async fn reply(ws: &mut Ws, request_id: &str) -> anyhow::Result<Value> {
    let wait = async {
        loop {
            let frame = ws.next().await.context("signalling closed")??;
            let Message::Text(text) = frame else { continue };
            let message: Value = serde_json::from_str(&text).context("signalling sent non-JSON")?;
            if message.get("request_id").and_then(Value::as_str) != Some(request_id) {
                continue;
            }
            if let Some(error) = message.get("error") {
                anyhow::bail!("{request_id} refused: {error}");
            }
            return Ok(message);
        }
    };
    tokio::time::timeout(ANSWER_TIMEOUT, wait)
        .await
        .with_context(|| format!("no reply to {request_id} in {ANSWER_TIMEOUT:?}"))?
}

/// Keeps the session open, reading what the server pushes, until `stop`; then leaves.
async fn hold(mut ws: Ws, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            frame = ws.next() => if !matches!(frame, Some(Ok(_))) { return },
        }
    }
    let _ = send(&mut ws, json!({"request_id": "leave", "leave": {}})).await;
    let _ = ws.close(None).await;
}

/// A WebSocket client reading 4 KiB at a time: the library zero-fills its whole read
/// buffer (128 KiB by default) before every read, which at thousands of clients costs
/// more CPU than the messages themselves.
fn small_reads() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default().read_buffer_size(4096)
}
