//! WHIP (RFC 9725): a broadcaster (OBS, a hardware encoder, a browser page) publishes
//! into a room with one HTTP request, no signalling client of its own; and WHEP (its
//! playback twin, `POST /v1/whep/{room}` with a receive-only offer): a player watches
//! the room the same way, its slots filled as a web client's are.
//!
//! `POST /v1/whip/{room}` with an access token (`Authorization: Bearer`) and an SDP
//! offer (`application/sdp`) joins the room as a participant of that token, exactly
//! as a web client does: the gateway opens a signalling session to itself, so the
//! token, the room's lock, waiting room, capacity, host controls, recording and
//! placement all apply, and answers `201 Created` with the SDP answer, the session's
//! URL in `Location` and the room's ICE servers as `Link: rel="ice-server"` headers.
//! The participant stays while that session lasts: `DELETE` on the session's URL (with
//! the same token) leaves the room; a host's removal, the room's end or the media
//! connection's loss end it too. Offers carry their candidates (the answer carries the
//! SFU's); trickle over `PATCH` is answered 405, as the RFC allows.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tracing::{debug, info, warn};

use crate::AppState;

/// The header that marks the gateway's own signalling sessions, with the key only this
/// process knows: their `X-Forwarded-For` names the publisher.
pub(crate) const INTERNAL_HEADER: &str = "x-confer-internal";

/// Whether a signalling connection is one this gateway opened for a WHIP publisher:
/// from loopback, with this process's key.
pub(crate) fn is_own(state: &AppState, peer: IpAddr, headers: &HeaderMap) -> bool {
    peer.is_loopback()
        && headers
            .get(INTERNAL_HEADER)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|key| same(key, &state.internal_key))
}

/// How long a publish waits for the room: the join itself, or a host letting the
/// publisher in from the waiting room.
const ADMISSION_WAIT: Duration = Duration::from_secs(30);

/// How often a held session says it is alive (well within the gateway's 45 s).
const PING_EVERY: Duration = Duration::from_secs(10);

/// Largest offer taken (a browser's with every codec is a few KiB).
const MAX_OFFER_BYTES: usize = 64 * 1024;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Which way a session's media goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    /// WHIP: the client publishes.
    Publish,
    /// WHEP: the client plays the room.
    Play,
}

impl Direction {
    /// The protocol's path segment.
    fn path(self) -> &'static str {
        match self {
            Direction::Publish => "whip",
            Direction::Play => "whep",
        }
    }
}

/// The WHIP and WHEP sessions this gateway holds, by participant id.
#[derive(Default)]
pub(crate) struct Sessions(Mutex<HashMap<String, Held>>);

struct Held {
    room: String,
    token: String,
    direction: Direction,
    /// Ends the session (`DELETE`).
    stop: oneshot::Sender<()>,
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Held>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sessions held now whose media goes `direction`.
    pub(crate) fn count(&self, direction: Direction) -> usize {
        self.lock()
            .values()
            .filter(|held| held.direction == direction)
            .count()
    }
}

pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/whip/{room}", post(publish).options(options))
        .route(
            "/v1/whip/{room}/{session}",
            delete(stop_publishing).patch(no_trickle).options(options),
        )
        .route("/v1/whep/{room}", post(play).options(options))
        .route(
            "/v1/whep/{room}/{session}",
            delete(stop_playing).patch(no_trickle).options(options),
        )
}

/// A WHIP error: its status and a JSON body with the signalling error's code.
fn refuse(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({"error": {"code": code, "message": message}}).to_string();
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    cors(headers);
    if status == StatusCode::UNAUTHORIZED {
        headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

/// Browser pages elsewhere may publish (the token is the credential, not a cookie).
fn cors(headers: &mut HeaderMap) {
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("Location, Link"),
    );
}

async fn options() -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    cors(headers);
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST, DELETE, PATCH, OPTIONS"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Authorization, Content-Type"),
    );
    headers.insert("accept-post", HeaderValue::from_static("application/sdp"));
    response
}

async fn no_trickle() -> Response {
    let mut response = refuse(
        StatusCode::METHOD_NOT_ALLOWED,
        "trickle_not_supported",
        "send every candidate in the offer",
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("DELETE, OPTIONS"));
    response
}

/// The bearer token of a request.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|token| !token.is_empty())
}

/// The HTTP status a signalling error stands for.
fn status_of(code: &str) -> StatusCode {
    match code {
        "token_required"
        | "token_malformed"
        | "token_invalid"
        | "token_expired"
        | "token_not_yet_valid"
        | "token_wrong_tenant" => StatusCode::UNAUTHORIZED,
        "token_room_mismatch"
        | "token_missing_grant"
        | "password_required"
        | "password_invalid"
        | "room_locked"
        | "admission_denied"
        | "permission_denied"
        | "dial_in_disabled" => StatusCode::FORBIDDEN,
        "invalid_room" | "invalid_name" | "invalid_sdp" | "invalid_message" => {
            StatusCode::BAD_REQUEST
        }
        "rate_limited" => StatusCode::TOO_MANY_REQUESTS,
        "room_full" | "room_service_unavailable" | "media_unavailable" | "node_draining" => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        _ => StatusCode::BAD_GATEWAY,
    }
}

async fn publish(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(room): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    start(&state, peer, &room, &headers, &body, Direction::Publish).await
}

async fn play(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(room): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    start(&state, peer, &room, &headers, &body, Direction::Play).await
}

/// A WHIP or WHEP `POST`: the offer checked, the room joined, `201` or a refusal.
async fn start(
    state: &Arc<AppState>,
    peer: SocketAddr,
    room: &str,
    headers: &HeaderMap,
    body: &[u8],
    direction: Direction,
) -> Response {
    let Some(token) = bearer(headers) else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "token_required",
            "send an access token: Authorization: Bearer <token>",
        );
    };
    let sdp_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().map(str::trim) == Some("application/sdp"));
    if !sdp_type {
        return refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_sdp",
            "the offer is sent as application/sdp",
        );
    }
    if body.len() > MAX_OFFER_BYTES {
        return refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_sdp",
            "the offer is larger than 64 KiB",
        );
    }
    let offer = match std::str::from_utf8(body) {
        Ok(offer) if offer.starts_with("v=0") => offer,
        _ => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "invalid_sdp",
                "the body is not an SDP offer",
            );
        }
    };
    let client = crate::client_addr::client_addr(peer.ip(), headers, &state.config.trusted_proxies);
    match join(state, client, room, token, offer, direction).await {
        Ok(joined) => created(state, room, token, joined, direction),
        Err(Refusal(status, code, message)) => refuse(status, &code, &message),
    }
}

/// A session refused: its status, code and message.
struct Refusal(StatusCode, String, String);

impl Refusal {
    fn unavailable(message: impl Into<String>) -> Self {
        Self(
            StatusCode::SERVICE_UNAVAILABLE,
            "media_unavailable".into(),
            message.into(),
        )
    }
}

/// The room as a publisher or player entered it.
struct Joined {
    ws: Ws,
    participant: String,
    answer: String,
    ice_servers: Vec<Value>,
}

/// Joins `room` for `client` with `token` and `offer` over a signalling session to
/// this gateway, waiting for a host if the room has a waiting room; a publisher must
/// be allowed to publish.
async fn join(
    state: &AppState,
    client: IpAddr,
    room: &str,
    token: &str,
    offer: &str,
    direction: Direction,
) -> Result<Joined, Refusal> {
    let mut ws = connect(state, client).await?;
    let join = json!({
        "request_id": "whip",
        "join": {"room": room, "token": token, "offer": {"type": "offer", "sdp": offer}},
    });
    ws.send(WsMessage::text(join.to_string()))
        .await
        .map_err(|err| Refusal::unavailable(format!("signalling failed: {err}")))?;
    let joined = tokio::time::timeout(ADMISSION_WAIT, admitted(&mut ws)).await;
    let joined = match joined {
        Ok(Ok(joined)) => joined,
        Ok(Err(refusal)) => {
            // Refused in the room (an offer the SFU could not take) is a leave too, not
            // a lost connection the room would keep a place for.
            leave(&mut ws).await;
            return Err(refusal);
        }
        Err(_) => {
            leave(&mut ws).await;
            return Err(Refusal(
                StatusCode::FORBIDDEN,
                "admission_denied".into(),
                "no host let the session in from the waiting room in time".into(),
            ));
        }
    };
    let you = &joined["you"];
    let (allowed, refused) = match direction {
        Direction::Publish => (
            you["role"] != "viewer" && you["can_publish"] == true,
            "this token does not let its participant publish",
        ),
        Direction::Play => (
            you["can_subscribe"] == true,
            "this token does not let its participant receive others' media",
        ),
    };
    let answer = joined["answer"]["sdp"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let participant = you["id"].as_str().unwrap_or_default().to_owned();
    if !allowed {
        leave(&mut ws).await;
        return Err(Refusal(
            StatusCode::FORBIDDEN,
            "permission_denied".into(),
            refused.into(),
        ));
    }
    if answer.is_empty() || participant.is_empty() {
        leave(&mut ws).await;
        return Err(Refusal(
            StatusCode::BAD_GATEWAY,
            "internal".into(),
            "the room was joined without an answer to the offer".into(),
        ));
    }
    let ice_servers = joined["ice_servers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    Ok(Joined {
        ws,
        participant,
        answer,
        ice_servers,
    })
}

/// A signalling session to this gateway on behalf of `client`.
async fn connect(state: &AppState, client: IpAddr) -> Result<Ws, Refusal> {
    let mut request = state
        .whip_url
        .as_str()
        .into_client_request()
        .map_err(|err| Refusal::unavailable(err.to_string()))?;
    let headers = request.headers_mut();
    let key = HeaderValue::from_str(&state.internal_key)
        .map_err(|err| Refusal::unavailable(err.to_string()))?;
    headers.insert(INTERNAL_HEADER, key);
    if let Ok(client) = HeaderValue::from_str(&client.to_string()) {
        headers.insert("x-forwarded-for", client);
    }
    let (ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .map_err(|err| Refusal::unavailable(format!("signalling unreachable: {err}")))?;
    Ok(ws)
}

/// Reads the session until the join's `joined` (after `waiting`, if any) or error.
async fn admitted(ws: &mut Ws) -> Result<Value, Refusal> {
    while let Some(message) = ws.next().await {
        let Ok(WsMessage::Text(text)) = message else {
            if matches!(message, Ok(WsMessage::Close(_)) | Err(_)) {
                break;
            }
            continue;
        };
        let Ok(message) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        if message["request_id"] != "whip" {
            continue;
        }
        if let Some(error) = message.get("error") {
            let code = error["code"].as_str().unwrap_or("internal");
            return Err(Refusal(
                status_of(code),
                code.to_owned(),
                error["message"].as_str().unwrap_or_default().to_owned(),
            ));
        }
        if let Some(joined) = message.get("joined") {
            return Ok(joined.clone());
        }
    }
    Err(Refusal::unavailable("the signalling session closed"))
}

async fn leave(ws: &mut Ws) {
    let _ = ws
        .send(WsMessage::text(
            json!({"request_id": "leave", "leave": {}}).to_string(),
        ))
        .await;
    // The gateway closes once the room has the leave.
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(message)) = ws.next().await {
            if matches!(message, WsMessage::Close(_)) {
                break;
            }
        }
    })
    .await;
}

/// `201 Created`: the answer, the session's URL and the ICE servers; the session is
/// kept until it ends.
fn created(
    state: &Arc<AppState>,
    room: &str,
    token: &str,
    joined: Joined,
    direction: Direction,
) -> Response {
    let Joined {
        ws,
        participant,
        answer,
        ice_servers,
    } = joined;
    let (stop, stopped) = oneshot::channel();
    state.whip.lock().insert(
        participant.clone(),
        Held {
            room: room.to_owned(),
            token: token.to_owned(),
            direction,
            stop,
        },
    );
    info!(%participant, room, protocol = direction.path(), "session held over HTTP");
    tokio::spawn(hold(
        Arc::downgrade(state),
        participant.clone(),
        ws,
        stopped,
    ));
    let mut response = (StatusCode::CREATED, answer).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/sdp"),
    );
    let location = format!("/v1/{}/{room}/{participant}", direction.path());
    if let Ok(location) = HeaderValue::from_str(&location) {
        headers.insert(header::LOCATION, location);
    }
    for link in ice_links(&ice_servers) {
        if let Ok(link) = HeaderValue::from_str(&link) {
            headers.append(header::LINK, link);
        }
    }
    cors(headers);
    response
}

/// The ICE servers as RFC 9725 §4.6 `Link` header values.
fn ice_links(servers: &[Value]) -> Vec<String> {
    let mut links = Vec::new();
    for server in servers {
        let username = server["username"].as_str().unwrap_or_default();
        let credential = server["credential"].as_str().unwrap_or_default();
        for url in server["urls"].as_array().into_iter().flatten() {
            let Some(url) = url.as_str() else { continue };
            let mut link = format!("<{url}>; rel=\"ice-server\"");
            if !username.is_empty() {
                link.push_str(&format!(
                    "; username=\"{username}\"; credential=\"{credential}\"; credential-type=\"password\""
                ));
            }
            links.push(link);
        }
    }
    links
}

/// Keeps a publisher's signalling session (reading what it is told, so its pings are
/// answered) until the session ends, its media connection is lost (the encoder
/// stopped without a `DELETE`: a web client would join again, a WHIP publisher posts
/// again), or it is stopped.
async fn hold(
    state: std::sync::Weak<AppState>,
    participant: String,
    mut ws: Ws,
    mut stopped: oneshot::Receiver<()>,
) {
    // The session's own liveness: a signalling `ping` now and then, besides answering
    // the gateway's WebSocket pings as they are read.
    let mut pings = tokio::time::interval(PING_EVERY);
    pings.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = pings.tick() => {
                let ping = json!({"request_id": "ping", "ping": {}}).to_string();
                if ws.send(WsMessage::text(ping)).await.is_err() {
                    break;
                }
            }
            message = ws.next() => match message {
                Some(Ok(WsMessage::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(WsMessage::Text(text))) if ends_session(&text) => {
                    // Final: the room keeps no place for a publisher to come back to.
                    leave(&mut ws).await;
                    break;
                }
                Some(Ok(_)) => {}
            },
            _ = &mut stopped => {
                leave(&mut ws).await;
                break;
            }
        }
    }
    debug!(%participant, "WHIP session over");
    if let Some(state) = state.upgrade() {
        state.whip.lock().remove(&participant);
    }
}

/// A pushed error after which the publisher is out of the room.
fn ends_session(text: &str) -> bool {
    let Ok(message) = serde_json::from_str::<Value>(text) else {
        return false;
    };
    matches!(
        message["error"]["code"].as_str(),
        Some("media_disconnected" | "node_draining" | "removed" | "replaced")
    )
}

async fn stop_publishing(
    State(state): State<Arc<AppState>>,
    Path((room, session)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    stop(&state, &room, &session, &headers, Direction::Publish)
}

async fn stop_playing(
    State(state): State<Arc<AppState>>,
    Path((room, session)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    stop(&state, &room, &session, &headers, Direction::Play)
}

/// `DELETE` on a session's URL: ends it, with the token that started it.
fn stop(
    state: &AppState,
    room: &str,
    session: &str,
    headers: &HeaderMap,
    direction: Direction,
) -> Response {
    let Some(token) = bearer(headers) else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "token_required",
            "end the session with the token that started it",
        );
    };
    let held = {
        let mut sessions = state.whip.lock();
        match sessions.get(session) {
            Some(held) if held.room != room || held.direction != direction => None,
            Some(held) if same(&held.token, token) => sessions.remove(session),
            Some(_) => {
                return refuse(
                    StatusCode::FORBIDDEN,
                    "token_invalid",
                    "not the token that started this session",
                );
            }
            None => None,
        }
    };
    let Some(held) = held else {
        return refuse(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such session (it may have ended)",
        );
    };
    if held.stop.send(()).is_err() {
        warn!(participant = %session, "session already over");
    }
    let mut response = StatusCode::OK.into_response();
    cors(response.headers_mut());
    response
}

/// Compares two tokens in time that does not depend on where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |diff, (x, y)| diff | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signalling_errors_map_to_http_statuses() {
        assert_eq!(status_of("token_expired"), StatusCode::UNAUTHORIZED);
        assert_eq!(status_of("room_locked"), StatusCode::FORBIDDEN);
        assert_eq!(status_of("invalid_sdp"), StatusCode::BAD_REQUEST);
        assert_eq!(status_of("rate_limited"), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(status_of("room_full"), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(status_of("something_new"), StatusCode::BAD_GATEWAY);
    }

    #[test]
    fn ice_servers_become_link_headers() {
        let servers = vec![
            json!({"urls": ["stun:stun.example.net"]}),
            json!({"urls": ["turn:turn.example.net?transport=udp"], "username": "u", "credential": "p"}),
        ];
        assert_eq!(
            ice_links(&servers),
            [
                "<stun:stun.example.net>; rel=\"ice-server\"",
                "<turn:turn.example.net?transport=udp>; rel=\"ice-server\"; username=\"u\"; credential=\"p\"; credential-type=\"password\"",
            ]
        );
    }

    #[test]
    fn tokens_are_compared_whole() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "abcd"));
    }

    #[test]
    fn only_bearer_tokens_are_read() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer(&headers), None);
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic eDp5"),
        );
        assert_eq!(bearer(&headers), None);
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer  t0k "),
        );
        assert_eq!(bearer(&headers), Some("t0k"));
    }
}
