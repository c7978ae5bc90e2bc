//! The same load against Janus's VideoRoom plugin, through Janus's HTTP API
//! (`janus.transport.http`): a session and a plugin handle per client, publishers
//! `join` + `publish` with an offer, subscribers `join` with the feeds they want and
//! answer Janus's offer with `start`. Janus answers plugin requests asynchronously;
//! the answers are long-polled from the session.

use std::time::Duration;

use anyhow::Context as _;
use serde_json::{Value, json};
use tokio::sync::watch;

const EVENT_TIMEOUT: Duration = Duration::from_secs(20);

/// One Janus session with one VideoRoom handle.
pub struct Session {
    http: reqwest::Client,
    session_url: String,
    handle_url: String,
    transaction: u64,
}

impl Session {
    /// Creates a session on the Janus at `base` (`http://host:port/janus`) and
    /// attaches the VideoRoom plugin.
    pub async fn open(http: &reqwest::Client, base: &str) -> anyhow::Result<Self> {
        let created = post(http, base, json!({"janus": "create", "transaction": "c"})).await?;
        let session = id_of(&created)?;
        let session_url = format!("{base}/{session}");
        let attached = post(
            http,
            &session_url,
            json!({"janus": "attach", "plugin": "janus.plugin.videoroom", "transaction": "a"}),
        )
        .await?;
        let handle = id_of(&attached)?;
        Ok(Self {
            http: http.clone(),
            handle_url: format!("{session_url}/{handle}"),
            session_url,
            transaction: 0,
        })
    }

    /// Creates room `room` for `publishers` publishers (VP8 only, no bitrate cap).
    pub async fn create_room(&mut self, room: u64, publishers: usize) -> anyhow::Result<()> {
        let body = json!({
            "request": "create", "room": room, "publishers": publishers,
            "bitrate": 0, "videocodec": "vp8", "audiocodec": "opus",
        });
        self.message(body, None).await?;
        Ok(())
    }

    /// Joins `room` as a publisher and publishes `offer_sdp`; returns the answer and
    /// the publisher's feed id.
    pub async fn publish(&mut self, room: u64, offer_sdp: &str) -> anyhow::Result<(String, u64)> {
        let joined = self
            .message(
                json!({"request": "join", "ptype": "publisher", "room": room}),
                None,
            )
            .await?;
        let feed = joined
            .pointer("/plugindata/data/id")
            .and_then(Value::as_u64)
            .context("Janus's joined event has no publisher id")?;
        let configured = self
            .message(
                json!({"request": "publish", "audio": false, "video": true}),
                Some(json!({"type": "offer", "sdp": offer_sdp})),
            )
            .await?;
        let answer = jsep_sdp(&configured, "answer")?;
        tracing::debug!(%offer_sdp, %answer, "Janus publisher negotiated");
        Ok((answer, feed))
    }

    /// Joins `room` as a subscriber of `feeds`; returns Janus's offer.
    pub async fn subscribe(&mut self, room: u64, feeds: &[u64]) -> anyhow::Result<String> {
        let streams: Vec<Value> = feeds.iter().map(|feed| json!({"feed": feed})).collect();
        let attached = self
            .message(
                json!({"request": "join", "ptype": "subscriber", "room": room, "streams": streams}),
                None,
            )
            .await?;
        jsep_sdp(&attached, "offer")
    }

    /// Starts the subscription with the answer to Janus's offer.
    pub async fn start(&mut self, answer_sdp: &str) -> anyhow::Result<()> {
        self.message(
            json!({"request": "start"}),
            Some(json!({"type": "answer", "sdp": answer_sdp})),
        )
        .await?;
        Ok(())
    }

    /// Keeps the session alive (long polls double as keepalives) until `stop`, then
    /// destroys it.
    pub async fn hold(self, mut stop: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                polled = self.poll() => if polled.is_err() {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                },
            }
        }
        let _ = post(
            &self.http,
            &self.session_url,
            json!({"janus": "destroy", "transaction": "d"}),
        )
        .await;
    }

    /// Sends a plugin message and returns Janus's answer to it: the synchronous
    /// `success`, or the event carrying the same transaction.
    async fn message(&mut self, body: Value, jsep: Option<Value>) -> anyhow::Result<Value> {
        self.transaction += 1;
        let transaction = format!("t{}", self.transaction);
        let mut request = json!({"janus": "message", "transaction": transaction, "body": body});
        if let Some(jsep) = jsep {
            request["jsep"] = jsep;
        }
        let reply = post(&self.http, &self.handle_url, request).await?;
        let reply = match reply.get("janus").and_then(Value::as_str) {
            Some("ack") => self.event_for(&transaction).await?,
            _ => reply,
        };
        if let Some(error) = reply.pointer("/plugindata/data/error") {
            anyhow::bail!("Janus VideoRoom refused {body}: {error}");
        }
        Ok(reply)
    }

    async fn event_for(&self, transaction: &str) -> anyhow::Result<Value> {
        let wait = async {
            loop {
                for event in self.poll().await? {
                    if event.get("transaction").and_then(Value::as_str) == Some(transaction) {
                        return Ok(event);
                    }
                }
            }
        };
        tokio::time::timeout(EVENT_TIMEOUT, wait)
            .await
            .with_context(|| format!("Janus sent no event for {transaction}"))?
    }

    /// One long poll: the events waiting on the session (none on a keepalive).
    async fn poll(&self) -> anyhow::Result<Vec<Value>> {
        let url = format!("{}?maxev=10", self.session_url);
        let value: Value = self.http.get(url).send().await?.json().await?;
        Ok(match value {
            Value::Array(events) => events,
            Value::Object(_) if value["janus"] == "keepalive" => Vec::new(),
            event => vec![event],
        })
    }
}

async fn post(http: &reqwest::Client, url: &str, body: Value) -> anyhow::Result<Value> {
    let reply: Value = http
        .post(url)
        .json(&body)
        .send()
        .await
        .with_context(|| format!("Janus at {url} unreachable"))?
        .json()
        .await
        .context("Janus answered with non-JSON")?;
    if reply.get("janus").and_then(Value::as_str) == Some("error") {
        anyhow::bail!("Janus refused {body}: {}", reply["error"]);
    }
    Ok(reply)
}

fn id_of(reply: &Value) -> anyhow::Result<u64> {
    reply
        .pointer("/data/id")
        .and_then(Value::as_u64)
        .with_context(|| format!("Janus reply without an id: {reply}"))
}

fn jsep_sdp(event: &Value, kind: &str) -> anyhow::Result<String> {
    let jsep = event
        .get("jsep")
        .with_context(|| format!("Janus event without the expected {kind}: {event}"))?;
    anyhow::ensure!(
        jsep["type"] == kind,
        "Janus sent a {} where an {kind} was due",
        jsep["type"]
    );
    jsep["sdp"]
        .as_str()
        .map(str::to_owned)
        .context("Janus's jsep has no SDP")
}
