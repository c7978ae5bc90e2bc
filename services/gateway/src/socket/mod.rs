//! A client's signalling connection, owned whole: the WebSocket upgrade (RFC 6455
//! §4.2) is answered here, and the upgraded TCP stream is split in two. The read side
//! goes through the WebSocket protocol library ([`Inbound`]); the write side is the
//! gateway's own ([`Outbound`]): frames made once are written straight to the socket by
//! whoever sends them, so the chat hub writes a lane of a room without waking a task
//! per member.

mod frame;
mod inbound;
mod outbound;

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

pub(crate) use frame::text_frames;
pub(crate) use inbound::Inbound;
pub(crate) use outbound::{Condition, MAX_WAITING, Outbound};

/// A client's connection: the frames it sends, and the way back to it.
pub(crate) struct Socket {
    pub(crate) inbound: WebSocketStream<Inbound>,
    pub(crate) out: Arc<Outbound>,
}

/// A request to upgrade to a WebSocket, checked.
pub(crate) struct Upgrade {
    key: HeaderValue,
    on_upgrade: hyper::upgrade::OnUpgrade,
}

/// Why a request is not a WebSocket upgrade.
#[derive(Debug)]
pub(crate) struct NotUpgrade(StatusCode, &'static str);

impl IntoResponse for NotUpgrade {
    fn into_response(self) -> Response {
        let mut response = (self.0, self.1).into_response();
        if self.0 == StatusCode::UPGRADE_REQUIRED {
            response.headers_mut().insert(
                header::SEC_WEBSOCKET_VERSION,
                HeaderValue::from_static("13"),
            );
        }
        response
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Upgrade {
    type Rejection = NotUpgrade;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, NotUpgrade> {
        let key = check_headers(&parts.headers)?;
        let on_upgrade = parts
            .extensions
            .remove::<hyper::upgrade::OnUpgrade>()
            .ok_or(NotUpgrade(
                StatusCode::UPGRADE_REQUIRED,
                "this connection cannot be upgraded",
            ))?;
        Ok(Self { key, on_upgrade })
    }
}

/// The upgrade's headers as RFC 6455 §4.2.1 asks; returns the client's key.
fn check_headers(headers: &HeaderMap) -> Result<HeaderValue, NotUpgrade> {
    let bad = |what| NotUpgrade(StatusCode::BAD_REQUEST, what);
    if !has_token(headers, header::CONNECTION, "upgrade") {
        return Err(bad(
            "not a WebSocket upgrade: `Connection` does not name `upgrade`",
        ));
    }
    if !has_token(headers, header::UPGRADE, "websocket") {
        return Err(bad("not a WebSocket upgrade: `Upgrade` is not `websocket`"));
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|version| version != "13")
    {
        return Err(NotUpgrade(
            StatusCode::UPGRADE_REQUIRED,
            "WebSocket version 13 is the one spoken here",
        ));
    }
    headers
        .get(header::SEC_WEBSOCKET_KEY)
        .filter(|key| !key.is_empty())
        .cloned()
        .ok_or(bad("a WebSocket upgrade needs `Sec-WebSocket-Key`"))
}

/// Whether a comma-separated header lists `token` (case-insensitive).
fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|value| {
        value.to_str().is_ok_and(|value| {
            value
                .split(',')
                .any(|item| item.trim().eq_ignore_ascii_case(token))
        })
    })
}

impl Upgrade {
    /// Answers the upgrade and, once the connection is switched, runs `serve` with it.
    pub(crate) fn on_upgrade<F, Fut>(self, config: WebSocketConfig, serve: F) -> Response
    where
        F: FnOnce(Socket) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let on_upgrade = self.on_upgrade;
        tokio::spawn(async move {
            let upgraded = match on_upgrade.await {
                Ok(upgraded) => upgraded,
                Err(err) => {
                    tracing::debug!(%err, "the WebSocket upgrade did not complete");
                    return;
                }
            };
            let Ok(parts) = upgraded.downcast::<TokioIo<TcpStream>>() else {
                tracing::error!("an upgraded connection is not a plain TCP stream");
                return;
            };
            let (read, write) = parts.io.into_inner().into_split();
            let out = Arc::new(Outbound::new(write));
            tokio::spawn(outbound::flush_waiting(out.clone()));
            let inbound = WebSocketStream::from_partially_read(
                Inbound::new(read, out.clone()),
                parts.read_buf.to_vec(),
                Role::Server,
                Some(config),
            )
            .await;
            serve(Socket { inbound, out }).await;
        });
        let accept = derive_accept_key(self.key.as_bytes());
        let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        if let Ok(accept) = HeaderValue::from_str(&accept) {
            headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                header::HeaderName::from_bytes(name.as_bytes()).expect("name"),
                HeaderValue::from_str(value).expect("value"),
            );
        }
        map
    }

    const GOOD: [(&str, &str); 4] = [
        ("connection", "keep-alive, Upgrade"),
        ("upgrade", "WebSocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];

    #[test]
    fn an_upgrade_needs_each_header_rfc_6455_asks_for() {
        let key = check_headers(&headers(&GOOD)).expect("a good upgrade");
        assert_eq!(key, "dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(
            derive_accept_key(key.as_bytes()),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
            "RFC 6455's own example"
        );
        for (missing, status) in [
            ("connection", StatusCode::BAD_REQUEST),
            ("upgrade", StatusCode::BAD_REQUEST),
            ("sec-websocket-version", StatusCode::UPGRADE_REQUIRED),
            ("sec-websocket-key", StatusCode::BAD_REQUEST),
        ] {
            let without: Vec<_> = GOOD.into_iter().filter(|(n, _)| *n != missing).collect();
            let Err(refused) = check_headers(&headers(&without)) else {
                panic!("an upgrade without {missing} is refused");
            };
            assert_eq!(refused.0, status, "without {missing}");
        }
        let mut old = GOOD;
        old[2] = ("sec-websocket-version", "8");
        let response = check_headers(&headers(&old))
            .expect_err("refused")
            .into_response();
        assert_eq!(response.status(), StatusCode::UPGRADE_REQUIRED);
        assert_eq!(response.headers()[header::SEC_WEBSOCKET_VERSION], "13");
        let mut not_upgrade = GOOD;
        not_upgrade[0] = ("connection", "keep-alive");
        assert!(check_headers(&headers(&not_upgrade)).is_err());
    }
}

/// A client at the other end of a loopback connection, for tests: it reads what the
/// gateway writes with the WebSocket protocol library, as a client would.
#[cfg(test)]
pub(crate) mod testing {
    use std::net::{TcpListener, TcpStream};
    use std::sync::Arc;

    use tokio_tungstenite::tungstenite::protocol::{Role, WebSocket};
    use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

    use super::Outbound;

    pub(crate) struct Client(WebSocket<TcpStream>);

    /// An [`Outbound`] to a new [`Client`], known to be writable (as an accepted
    /// connection is by the time it is upgraded), and the connection's flusher running.
    pub(crate) async fn connected() -> (Arc<Outbound>, Client) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("address")).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        server.set_nonblocking(true).expect("non-blocking");
        let server = tokio::net::TcpStream::from_std(server).expect("in the runtime");
        server.writable().await.expect("writable");
        let (_, write) = server.into_split();
        let out = Arc::new(Outbound::new(write));
        tokio::spawn(super::outbound::flush_waiting(out.clone()));
        client
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .expect("timeout");
        (
            out,
            Client(WebSocket::from_raw_socket(client, Role::Client, None)),
        )
    }

    impl Client {
        /// The next message the gateway wrote.
        pub(crate) fn next(&mut self) -> Message {
            self.0.read().expect("a WebSocket message")
        }

        /// The next message, which must be text.
        pub(crate) fn text(&mut self) -> Utf8Bytes {
            match self.next() {
                Message::Text(text) => text,
                other => panic!("expected text, got {other:?}"),
            }
        }
    }
}
