//! The bridge's side of Confer's client signalling (docs/signalling.md): a WebSocket to
//! a gateway, `join` with a token the bridge signs, `offer` → `answer`, then the events
//! that decide what the caller hears (track assignments, the active speaker) or end
//! the call.

use std::net::IpAddr;

use anyhow::Context as _;
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// What the gateway said, as far as the bridge cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignalEvent {
    /// In the room, as participant `you`; whether the room has it muted (a host's mute
    /// kept from an earlier connection) and whether the room is being recorded.
    Joined {
        you: String,
        muted: bool,
        recording: bool,
    },
    /// The room has a waiting room; a host decides.
    Waiting,
    Answer {
        sdp: String,
    },
    TrackAssigned {
        mid: String,
        participant: String,
        kind: String,
    },
    TrackUnassigned {
        mid: String,
    },
    ActiveSpeaker {
        participant: String,
    },
    /// The room's settings changed: whether it is being recorded, now.
    RoomState {
        recording: bool,
    },
    /// A participant changed: whether it is muted (by itself or a host) and whether its
    /// hand is up, now.
    ParticipantUpdated {
        participant: String,
        audio_muted: bool,
        hand_raised: bool,
    },
    /// One change to many participants (a host muted everyone, lowered every hand):
    /// what it set, for each of `participants`.
    ParticipantsChanged {
        participants: Vec<String>,
        audio_muted: Option<bool>,
        hand_raised: Option<bool>,
    },
    /// An error: for the request `request_id`, or pushed (empty id).
    Error {
        request_id: String,
        code: String,
        message: String,
    },
    /// Anything else (participants, chat, ...).
    Other,
    /// The connection closed.
    Closed,
}

/// One signalling session.
pub struct Signal {
    ws: Ws,
}

impl Signal {
    /// Opens a session at `url` for a caller at `caller` (sent as `X-Forwarded-For`:
    /// a gateway that trusts the bridge applies its per-address limits to the caller,
    /// not to the bridge all calls come from).
    pub async fn connect(url: &str, caller: IpAddr) -> anyhow::Result<Self> {
        let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .read_buffer_size(4096);
        let mut request = url
            .into_client_request()
            .with_context(|| format!("not a WebSocket URL: {url}"))?;
        request
            .headers_mut()
            .insert("x-forwarded-for", caller.to_string().parse()?);
        let (ws, _) = tokio_tungstenite::connect_async_with_config(request, Some(config), true)
            .await
            .with_context(|| format!("failed to open the signalling WebSocket {url}"))?;
        Ok(Self { ws })
    }

    /// Asks to enter `room`; `traceparent` makes the gateway's join span a child of the
    /// caller's (the bridge's INVITE span).
    pub async fn join(
        &mut self,
        room: &str,
        name: &str,
        token: &str,
        password: &str,
        traceparent: Option<&str>,
    ) -> anyhow::Result<()> {
        let mut message = json!({
            "request_id": "join",
            "join": {"room": room, "name": name, "token": token, "password": password,
                     "participant_batches": true},
        });
        if let Some(traceparent) = traceparent {
            message["traceparent"] = traceparent.into();
        }
        self.send(message).await
    }

    pub async fn offer(&mut self, sdp: &str) -> anyhow::Result<()> {
        self.send(json!({"request_id": "offer", "offer": {"sdp": sdp}}))
            .await
    }

    pub async fn leave(&mut self) {
        // Leaving is best effort: the gateway also notices the closed connection.
        let _ = self.send(json!({"request_id": "leave", "leave": {}})).await;
        let _ = self.ws.close(None).await;
    }

    pub async fn ping(&mut self) -> anyhow::Result<()> {
        self.send(json!({"request_id": "ping", "ping": {}})).await
    }

    /// The caller muted or unmuted (`*6`); a refusal comes back as an error for the
    /// request `mute` (a host muted the caller, and the room does not let them undo it).
    pub async fn mute(&mut self, muted: bool) -> anyhow::Result<()> {
        self.send(json!({"request_id": "mute", "mute": {"kind": "audio", "muted": muted}}))
            .await
    }

    /// The caller raised or lowered their hand (`*9`).
    pub async fn raise_hand(&mut self, raised: bool) -> anyhow::Result<()> {
        self.send(json!({"request_id": "hand", "raise_hand": {"raised": raised}}))
            .await
    }

    async fn send(&mut self, message: Value) -> anyhow::Result<()> {
        self.ws
            .send(WsMessage::Text(message.to_string().into()))
            .await
            .context("signalling send failed")
    }

    /// The next event; [`SignalEvent::Closed`] once the connection is gone.
    pub async fn next(&mut self) -> SignalEvent {
        loop {
            match self.ws.next().await {
                Some(Ok(WsMessage::Text(text))) => return parse_event(&text),
                Some(Ok(WsMessage::Close(_))) | Some(Err(_)) | None => {
                    return SignalEvent::Closed;
                }
                Some(Ok(_)) => {}
            }
        }
    }
}

/// One server message as a [`SignalEvent`].
pub fn parse_event(text: &str) -> SignalEvent {
    let Ok(message) = serde_json::from_str::<Value>(text) else {
        return SignalEvent::Other;
    };
    let field = |path: &str| {
        message
            .pointer(path)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let flag = |path: &str| {
        message
            .pointer(path)
            .and_then(Value::as_bool)
            .unwrap_or_default()
    };
    if message.get("joined").is_some() {
        SignalEvent::Joined {
            you: field("/joined/you/id"),
            muted: flag("/joined/you/audio_muted"),
            recording: flag("/joined/room_state/recording"),
        }
    } else if message.get("room_state").is_some() {
        SignalEvent::RoomState {
            recording: flag("/room_state/recording"),
        }
    } else if message.get("waiting").is_some() {
        SignalEvent::Waiting
    } else if message.get("answer").is_some() {
        SignalEvent::Answer {
            sdp: field("/answer/sdp"),
        }
    } else if message.get("track_assigned").is_some() {
        SignalEvent::TrackAssigned {
            mid: field("/track_assigned/mid"),
            participant: field("/track_assigned/participant_id"),
            kind: field("/track_assigned/kind"),
        }
    } else if message.get("track_unassigned").is_some() {
        SignalEvent::TrackUnassigned {
            mid: field("/track_unassigned/mid"),
        }
    } else if message.get("active_speaker").is_some() {
        SignalEvent::ActiveSpeaker {
            participant: field("/active_speaker/participant_id"),
        }
    } else if message.get("participant_updated").is_some() {
        SignalEvent::ParticipantUpdated {
            participant: field("/participant_updated/participant/id"),
            audio_muted: flag("/participant_updated/participant/audio_muted"),
            hand_raised: message
                .pointer("/participant_updated/participant/hand_raised_at")
                .and_then(Value::as_u64)
                .is_some_and(|at| at > 0),
        }
    } else if message.get("participants_changed").is_some() {
        let change = |name: &str| message.pointer(&format!("/participants_changed/change/{name}"));
        SignalEvent::ParticipantsChanged {
            participants: message
                .pointer("/participants_changed/participant_ids")
                .and_then(Value::as_array)
                .map(|ids| {
                    ids.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            audio_muted: change("audio_muted").and_then(Value::as_bool),
            hand_raised: change("hand_raised_at")
                .and_then(Value::as_u64)
                .map(|at| at > 0),
        }
    } else if message.get("error").is_some() {
        SignalEvent::Error {
            request_id: field("/request_id"),
            code: field("/error/code"),
            message: field("/error/message"),
        }
    } else {
        SignalEvent::Other
    }
}
