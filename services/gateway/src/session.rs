//! One signalling connection: decode, act, answer. A bad message gets an `error`
//! reply with a code and the connection carries on.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use confer_proto::signal::{
    self, ClientMessage, Join, Participant, ServerMessage, client_message, server_message::Msg,
};
use confer_proto::signal::{MAX_MESSAGE_BYTES, decode_client_message, encode_server_message};
use confer_sfu::{ParticipantId, RoomId, SfuError};
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::sync::mpsc;
use tracing::{debug, info};

use crate::AppState;
use crate::rooms::Outbox;

const MAX_CHAT_CHARS: usize = 4000;
const MAX_NAME_CHARS: usize = 64;
const MAX_ROOM_CHARS: usize = 64;

pub(crate) async fn upgrade(State(state): State<Arc<AppState>>, ws: WebSocketUpgrade) -> Response {
    // Frames up to 4x the limit reach the decoder, which answers `message_too_large`;
    // larger ones close the connection at the protocol level.
    ws.max_message_size(4 * MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| serve(state, socket))
}

/// A reply the session sends: an error with a code, or a message.
struct Reject {
    code: &'static str,
    message: String,
}

impl Reject {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl From<SfuError> for Reject {
    fn from(err: SfuError) -> Self {
        Reject::new(err.code(), err.to_string())
    }
}

struct Session {
    state: Arc<AppState>,
    outbox: Outbox,
    joined: Option<ParticipantId>,
}

async fn serve(state: Arc<AppState>, socket: WebSocket) {
    let (mut sink, mut stream) = socket.split();
    let (outbox, mut outgoing) = mpsc::unbounded_channel::<ServerMessage>();
    let writer = tokio::spawn(async move {
        while let Some(msg) = outgoing.recv().await {
            let text = encode_server_message(&msg);
            if sink.send(Message::Text(text.into())).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });
    let mut session = Session {
        state,
        outbox,
        joined: None,
    };
    while let Some(frame) = stream.next().await {
        let bytes = match frame {
            Ok(Message::Text(text)) => text.as_bytes().to_vec(),
            Ok(Message::Binary(bytes)) => bytes.to_vec(),
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => continue,
        };
        match decode_client_message(&bytes) {
            Ok(message) => {
                if session.handle(message).await.is_break() {
                    break;
                }
            }
            Err(err) => {
                session.reply_error(String::new(), Reject::new(err.code(), err.to_string()))
            }
        }
    }
    session.leave().await;
    drop(session);
    let _ = writer.await;
}

impl Session {
    fn send(&self, request_id: String, msg: Msg) {
        let _ = self.outbox.send(ServerMessage {
            request_id,
            msg: Some(msg),
        });
    }

    fn reply_error(&self, request_id: String, reject: Reject) {
        self.state.metrics.signal_errors.fetch_add(1, Relaxed);
        debug!(code = reject.code, message = %reject.message, "signalling error");
        self.send(
            request_id,
            Msg::Error(signal::Error {
                code: reject.code.to_owned(),
                message: reject.message,
            }),
        );
    }

    async fn handle(&mut self, message: ClientMessage) -> std::ops::ControlFlow<()> {
        use client_message::Msg as In;
        let request_id = message.request_id;
        let Some(msg) = message.msg else {
            return std::ops::ControlFlow::Continue(());
        };
        let result = match msg {
            In::Join(join) => self.join(&request_id, join).await,
            In::Trickle(trickle) => self.trickle(trickle).await,
            In::Chat(chat) => self.chat(chat.text),
            In::Mute(mute) => self.mute(&mute.kind, mute.muted),
            In::Ping(_) => {
                self.send(request_id.clone(), Msg::Pong(signal::Pong {}));
                Ok(())
            }
            In::Leave(_) => {
                self.leave().await;
                return std::ops::ControlFlow::Break(());
            }
        };
        if let Err(reject) = result {
            self.reply_error(request_id, reject);
        }
        std::ops::ControlFlow::Continue(())
    }

    fn participant(&self) -> Result<&ParticipantId, Reject> {
        self.joined
            .as_ref()
            .ok_or_else(|| Reject::new("not_joined", "join a room first"))
    }

    async fn join(&mut self, request_id: &str, join: Join) -> Result<(), Reject> {
        let result = self.try_join(request_id, join).await;
        let counter = match result {
            Ok(()) => &self.state.metrics.joins,
            Err(_) => &self.state.metrics.join_failures,
        };
        counter.fetch_add(1, Relaxed);
        result
    }

    async fn try_join(&mut self, request_id: &str, join: Join) -> Result<(), Reject> {
        if self.joined.is_some() {
            return Err(Reject::new(
                "already_joined",
                "this connection is already in a room",
            ));
        }
        let room = validate_room(&join.room)?;
        let mut name = join.name.trim().to_owned();
        if !join.token.is_empty() || self.state.config.require_token {
            if join.token.is_empty() {
                return Err(Reject::new(
                    "token_required",
                    "this server requires an access token",
                ));
            }
            let claims = self
                .state
                .config
                .token_key
                .verify_join(&join.token, &room, unix_now().as_secs())
                .map_err(|err| Reject::new(err.code(), err.to_string()))?;
            if !claims.name.is_empty() {
                name = claims.name;
            }
        }
        let name = validate_name(&name)?;
        let offer = join
            .offer
            .filter(|offer| offer.r#type == "offer" && !offer.sdp.is_empty())
            .ok_or_else(|| Reject::new("invalid_sdp", "join needs an SDP offer"))?;
        let id = ParticipantId::new(new_participant_id());
        let info = Participant {
            id: id.to_string(),
            name,
            audio_muted: false,
            video_muted: false,
        };
        // Enter the room before the SFU answers, so track assignments made while the
        // peer is created find this participant.
        let (others, chat_history) =
            self.state
                .rooms
                .enter(&room, id.clone(), info.clone(), self.outbox.clone());
        let answer = match self
            .state
            .sfu
            .create_peer(RoomId::new(room.clone()), id.clone(), offer.sdp)
            .await
        {
            Ok(answer) => answer,
            Err(err) => {
                self.state.rooms.leave(&id);
                return Err(err.into());
            }
        };
        info!(participant = %id, room = %room, "joined");
        self.joined = Some(id);
        self.send(
            request_id.to_owned(),
            Msg::Joined(signal::Joined {
                room,
                you: Some(info),
                answer: Some(signal::SessionDescription {
                    r#type: "answer".into(),
                    sdp: answer,
                }),
                participants: others,
                chat_history,
            }),
        );
        Ok(())
    }

    async fn trickle(&self, trickle: signal::Trickle) -> Result<(), Reject> {
        let participant = self.participant()?.clone();
        if trickle.candidate.is_empty() {
            // End-of-candidates: nothing to do for an ICE-lite server.
            return Ok(());
        }
        let candidate = confer_sfu::control::IceCandidate {
            candidate: trickle.candidate,
            sdp_mid: Some(trickle.sdp_mid).filter(|mid| !mid.is_empty()),
            sdp_mline_index: u16::try_from(trickle.sdp_mline_index).ok(),
        };
        self.state
            .sfu
            .add_ice_candidate(participant, candidate)
            .await
            .map_err(Reject::from)
    }

    fn chat(&self, text: String) -> Result<(), Reject> {
        let participant = self.participant()?;
        let text = text.trim().to_owned();
        if text.is_empty() {
            return Err(Reject::new("invalid_message", "chat text is empty"));
        }
        if text.chars().count() > MAX_CHAT_CHARS {
            return Err(Reject::new(
                "message_too_large",
                format!("chat text is longer than {MAX_CHAT_CHARS} characters"),
            ));
        }
        let now_ms = u64::try_from(unix_now().as_millis()).unwrap_or(u64::MAX);
        self.state
            .rooms
            .chat(participant, text, now_ms, self.state.config.chat_history)
            .ok_or_else(|| Reject::new("not_joined", "join a room first"))?;
        self.state.metrics.chat_messages.fetch_add(1, Relaxed);
        Ok(())
    }

    fn mute(&self, kind: &str, muted: bool) -> Result<(), Reject> {
        let participant = self.participant()?;
        if !matches!(kind, "audio" | "video") {
            return Err(Reject::new(
                "invalid_message",
                format!("unknown track kind `{kind}`"),
            ));
        }
        self.state.rooms.set_muted(participant, kind, muted);
        Ok(())
    }

    async fn leave(&mut self) {
        let Some(id) = self.joined.take() else {
            return;
        };
        self.state.rooms.leave(&id);
        // The peer may already be gone (its connection died first).
        let _ = self.state.sfu.remove_peer(id.clone()).await;
        info!(participant = %id, "left");
    }
}

fn validate_room(room: &str) -> Result<String, Reject> {
    let valid = !room.is_empty()
        && room.chars().count() <= MAX_ROOM_CHARS
        && room
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    if !valid {
        return Err(Reject::new(
            "invalid_room",
            format!(
                "room names are 1-{MAX_ROOM_CHARS} characters of letters, digits, '-', '_' and '.'"
            ),
        ));
    }
    Ok(room.to_owned())
}

fn validate_name(name: &str) -> Result<String, Reject> {
    if name.is_empty()
        || name.chars().count() > MAX_NAME_CHARS
        || name.chars().any(char::is_control)
    {
        return Err(Reject::new(
            "invalid_name",
            format!("display names are 1-{MAX_NAME_CHARS} printable characters"),
        ));
    }
    Ok(name.to_owned())
}

fn new_participant_id() -> String {
    format!("p-{:016x}", rand::random::<u64>())
}

fn unix_now() -> std::time::Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names_are_checked() {
        assert!(validate_room("standup-2").is_ok());
        assert_eq!(
            validate_room("").err().map(|r| r.code),
            Some("invalid_room")
        );
        assert_eq!(
            validate_room("a/b").err().map(|r| r.code),
            Some("invalid_room")
        );
        assert!(validate_room(&"x".repeat(65)).is_err());
    }

    #[test]
    fn display_names_are_checked() {
        assert!(validate_name("Ada Lovelace").is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name("bell\u{7}").is_err());
        assert!(validate_name(&"n".repeat(65)).is_err());
    }
}
