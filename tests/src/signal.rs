//! A signalling client over a real WebSocket, and SDP offers made by a real WebRTC stack.

use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use rtc::peer_connection::RTCPeerConnectionBuilder;
use rtc::peer_connection::configuration::media_engine::MediaEngine;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub struct SignalClient {
    socket: Socket,
}

impl SignalClient {
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        // TCP_NODELAY, as browsers do: pipelined requests go out at once.
        let (socket, _) =
            tokio_tungstenite::connect_async_with_config(url, Some(small_reads()), true).await?;
        Ok(Self { socket })
    }

    pub async fn send_text(&mut self, text: &str) -> anyhow::Result<()> {
        self.socket.send(Message::Text(text.into())).await?;
        Ok(())
    }

    /// A binary frame: how a client sends bytes that are not text.
    pub async fn send_binary(&mut self, bytes: Vec<u8>) -> anyhow::Result<()> {
        self.socket.send(Message::Binary(bytes.into())).await?;
        Ok(())
    }

    pub async fn send(&mut self, message: &Value) -> anyhow::Result<()> {
        self.send_text(&message.to_string()).await
    }

    /// Leaves the room, and waits (up to 5 s) until the server has ended the
    /// connection: a client that closed its socket right after the leave, with pushes
    /// still unread, would reset the connection, and the leave could be lost with it.
    pub async fn leave(mut self) -> anyhow::Result<()> {
        self.send(&serde_json::json!({"leave": {}})).await?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            match tokio::time::timeout_at(deadline, self.socket.next()).await {
                Err(_) => anyhow::bail!("the server did not end the connection after a leave"),
                Ok(None | Some(Err(_) | Ok(Message::Close(_)))) => return Ok(()),
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    /// The next JSON message from the server, within `timeout` (the gateway's pings,
    /// answered as they are read, do not extend it).
    pub async fn recv(&mut self, timeout: Duration) -> anyhow::Result<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .map_err(|_| anyhow::anyhow!("no message within {timeout:?}"))?
                .ok_or_else(|| anyhow::anyhow!("connection closed"))??;
            if let Message::Text(text) = frame {
                return Ok(serde_json::from_str(&text)?);
            }
        }
    }

    /// Sends `body` as request `id` and returns the server's answer to it (an answer or
    /// an error), skipping what is pushed meanwhile.
    pub async fn request(
        &mut self,
        id: &str,
        mut body: Value,
        timeout: Duration,
    ) -> anyhow::Result<Value> {
        body["request_id"] = Value::from(id);
        self.send(&body).await?;
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let message = self.recv(left).await?;
            if message["request_id"] == id {
                return Ok(message);
            }
        }
    }

    /// Skips server pushes until a message with `key` arrives.
    pub async fn recv_kind(&mut self, key: &str, timeout: Duration) -> anyhow::Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let message = self.recv(left).await?;
            if message.get(key).is_some() {
                return Ok(message);
            }
        }
    }
}

/// An SDP offer shaped like the web app's: one sendonly audio and video m-line, then
/// `slots` recvonly m-lines of each kind. (The stack refuses a sendonly transceiver
/// without a track, so the publishing m-lines are flipped in the text.)
pub fn client_offer(slots: usize) -> anyhow::Result<String> {
    let mut media_engine = MediaEngine::default();
    media_engine.register_default_codecs()?;
    let mut pc = RTCPeerConnectionBuilder::new()
        .with_media_engine(media_engine)
        .build(Instant::now())?;
    for kind in [RtpCodecKind::Audio, RtpCodecKind::Video] {
        for _ in 0..=slots {
            pc.add_transceiver_from_kind(
                kind,
                Some(RTCRtpTransceiverInit {
                    direction: RTCRtpTransceiverDirection::Recvonly,
                    streams: Vec::new(),
                    send_encodings: Vec::new(),
                }),
            )?;
        }
    }
    let sdp = pc.create_offer(None)?.sdp;
    let mut sections: Vec<String> = sdp.split("\nm=").map(str::to_owned).collect();
    for kind in ["audio ", "video "] {
        if let Some(section) = sections.iter_mut().skip(1).find(|s| s.starts_with(kind)) {
            *section = section.replacen("a=recvonly", "a=sendonly", 1);
        }
    }
    Ok(sections.join("\nm="))
}

/// A WebSocket client reading 4 KiB at a time: the library zero-fills its whole read
/// buffer (128 KiB by default) before every read, which at thousands of clients costs
/// more CPU than the messages themselves.
fn small_reads() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default().read_buffer_size(4096)
}
