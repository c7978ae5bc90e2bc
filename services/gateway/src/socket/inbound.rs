//! The read side of a client's connection, as the WebSocket protocol library sees it:
//! it reads the socket, and what the protocol writes itself (a pong, the answer to a
//! close) goes out through the connection's [`Outbound`], in order with the rest.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::tcp::OwnedReadHalf;

use super::outbound::Outbound;

pub(crate) struct Inbound {
    read: OwnedReadHalf,
    out: Arc<Outbound>,
}

impl Inbound {
    pub(crate) fn new(read: OwnedReadHalf, out: Arc<Outbound>) -> Self {
        Self { read, out }
    }
}

impl AsyncRead for Inbound {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.read).poll_read(cx, buf)
    }
}

impl AsyncWrite for Inbound {
    /// The protocol writes whole frames; each is taken whole, or refused once the
    /// connection is over.
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(if self.out.frames(buf, None) {
            Ok(buf.len())
        } else {
            Err(io::ErrorKind::BrokenPipe.into())
        })
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
