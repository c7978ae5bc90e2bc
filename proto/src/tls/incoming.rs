//! The connections an internal gRPC server accepts: TCP with TCP_NODELAY (calls are
//! small messages; Nagle's algorithm would hold an answer back until the peer
//! acknowledges the previous one), then, with TLS, a handshake. Handshakes run
//! side by side and each has a deadline, so a slow or silent peer holds up no one; a
//! failed one is logged and dropped.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::{Stream, StreamExt as _};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// Most handshakes in progress at once.
const HANDSHAKES: usize = 64;
/// The longest a peer may take over its handshake.
const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);

/// An accepted connection, plain or over TLS.
pub enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

pub(super) fn plain(listener: TcpListener) -> impl Stream<Item = io::Result<Conn>> {
    accepted(listener).map(|tcp| Ok(Conn::Plain(tcp)))
}

pub(super) fn tls(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
) -> impl Stream<Item = io::Result<Conn>> {
    let acceptor = TlsAcceptor::from(config);
    accepted(listener)
        .map(move |tcp| {
            let acceptor = acceptor.clone();
            async move {
                let peer = tcp.peer_addr().ok();
                match tokio::time::timeout(HANDSHAKE_DEADLINE, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => Some(Ok(Conn::Tls(Box::new(tls)))),
                    Ok(Err(err)) => {
                        tracing::debug!(?peer, %err, "gRPC TLS handshake refused");
                        None
                    }
                    Err(_) => {
                        tracing::debug!(?peer, "gRPC TLS handshake timed out");
                        None
                    }
                }
            }
        })
        .buffer_unordered(HANDSHAKES)
        .filter_map(std::future::ready)
}

/// Accepted TCP connections, with TCP_NODELAY; accept errors are logged and skipped.
fn accepted(listener: TcpListener) -> impl Stream<Item = TcpStream> {
    tokio_stream::wrappers::TcpListenerStream::new(listener).filter_map(|tcp| {
        std::future::ready(
            match tcp.and_then(|tcp| tcp.set_nodelay(true).map(|()| tcp)) {
                Ok(tcp) => Some(tcp),
                Err(err) => {
                    tracing::debug!(%err, "gRPC accept failed");
                    None
                }
            },
        )
    })
}

impl Connected for Conn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        match self {
            Conn::Plain(tcp) => tcp.connect_info(),
            Conn::Tls(tls) => tls.get_ref().0.connect_info(),
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Conn::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Conn::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(tcp) => Pin::new(tcp).poll_write_vectored(cx, bufs),
            Conn::Tls(tls) => Pin::new(tls.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(tcp) => tcp.is_write_vectored(),
            Conn::Tls(tls) => tls.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Conn::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Conn::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }
}
