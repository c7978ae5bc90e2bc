//! The gateway's HTTP/1.1 server: each accepted connection is served by hyper with
//! upgrades, so that an upgraded signalling connection is the accepted TCP stream
//! itself (see [`crate::socket`]). Requests carry their peer's address
//! (`ConnectInfo`). On shutdown it stops accepting, lets each connection finish the
//! request it is on, and returns once they have.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tower_service::Service as _;

/// Serves `app` on `listener` until `shutdown` fires.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    // Dropped to tell connections to finish; each holds `open` until it has.
    let (finish, finishing) = watch::channel(());
    let (open, all_closed) = watch::channel(());
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => break,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                wait_after_accept_error(&err).await;
                continue;
            }
        };
        // Signalling replies are small writes in quick succession: without
        // TCP_NODELAY, Nagle's algorithm holds each back until the last is acknowledged.
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::debug!(%err, "cannot set TCP_NODELAY");
        }
        tokio::spawn(connection(
            tcp,
            peer,
            app.clone(),
            finishing.clone(),
            all_closed.clone(),
        ));
    }
    drop(finish);
    drop(all_closed);
    open.closed().await;
    Ok(())
}

/// Serves one connection until it closes or, once `finishing` ends, its request is done.
async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    app: Router,
    mut finishing: watch::Receiver<()>,
    _open: watch::Receiver<()>,
) {
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        app.clone().call(request)
    });
    // With a timer, a client gets 30 s (hyper's default) to send a request's headers.
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .serve_connection(TokioIo::new(tcp), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(err) = result {
                tracing::trace!(%err, "connection ended");
            }
        }
        _ = finishing.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// After a failed accept: a connection that failed on its own is no reason to wait;
/// anything else (out of file descriptors, say) is logged and waited out for a second.
async fn wait_after_accept_error(err: &std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        err.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(%err, "cannot accept a connection");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::routing::get;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    /// One request on `conn`, kept alive; returns the response's head and body.
    async fn get_on(conn: &mut TcpStream, path: &str) -> String {
        let request = format!("GET {path} HTTP/1.1\r\nhost: gateway\r\n\r\n");
        conn.write_all(request.as_bytes()).await.expect("write");
        let mut response = vec![0; 4096];
        let n = conn.read(&mut response).await.expect("read");
        String::from_utf8_lossy(&response[..n]).into_owned()
    }

    #[tokio::test]
    async fn requests_carry_their_peer_and_shutdown_waits_only_for_requests_in_flight() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let app = Router::new().route(
            "/peer",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
        );
        let (stop, stopped) = watch::channel(false);
        let server = tokio::spawn(serve(listener, app, stopped));

        let mut idle = TcpStream::connect(address).await.expect("connect");
        let response = get_on(&mut idle, "/peer").await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        let local = idle.local_addr().expect("local address");
        assert!(response.ends_with(&local.to_string()), "{response}");
        assert!(
            get_on(&mut idle, "/nowhere")
                .await
                .starts_with("HTTP/1.1 404"),
            "the connection is kept alive"
        );

        // An idle kept-alive connection does not hold the shutdown up.
        stop.send(true).expect("the server listens");
        let done = tokio::time::timeout(Duration::from_secs(10), server).await;
        assert!(matches!(done, Ok(Ok(Ok(())))), "{done:?}");
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(10), idle.read_to_end(&mut rest));
        assert!(
            matches!(closed.await, Ok(Ok(0))),
            "the idle connection is closed"
        );
        assert!(
            TcpStream::connect(address).await.is_err(),
            "no longer accepting"
        );
    }
}
