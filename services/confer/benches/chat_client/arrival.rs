//! A client's TCP stream that keeps when its latest bytes reached the socket: the
//! kernel's software receive timestamp (`SO_TIMESTAMPING`), read with each `recvmsg`.
//! A delivery's latency to that point is the servers' and the network's; the time from
//! there to the client's own read is the client's, which on one shared machine is the
//! load generator's lag.

use std::io::{self, IoSliceMut};
use std::os::fd::AsRawFd as _;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll, ready};

use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, TimestampingFlag, Timestamps, recvmsg, setsockopt, sockopt,
};
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

/// When the bytes of a stream's latest read reached its socket, µs since the Unix
/// epoch (0 before the first timestamped read).
pub(crate) type Arrival = Arc<AtomicU64>;

pub(crate) struct ArrivalStream {
    tcp: TcpStream,
    latest: Arrival,
    control: Vec<u8>,
}

impl ArrivalStream {
    /// `tcp` with receive timestamps on, and where its latest one is kept.
    pub(crate) fn new(tcp: TcpStream) -> io::Result<(Self, Arrival)> {
        setsockopt(
            &tcp,
            sockopt::Timestamping,
            &(TimestampingFlag::SOF_TIMESTAMPING_SOFTWARE
                | TimestampingFlag::SOF_TIMESTAMPING_RX_SOFTWARE),
        )?;
        let latest = Arrival::default();
        let stream = Self {
            tcp,
            latest: latest.clone(),
            control: nix::cmsg_space!(Timestamps),
        };
        Ok((stream, latest))
    }
}

/// Reads into `buf`; the receive timestamp of the last bytes read, µs since the Unix
/// epoch, if the kernel gave one. The bytes read are returned even when the control
/// message is unreadable, which then only costs the timestamp.
fn read_stamped(fd: i32, buf: &mut [u8], control: &mut [u8]) -> io::Result<(usize, Option<u64>)> {
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<()>(fd, &mut iov, Some(control), MsgFlags::empty())?;
    let stamp = msg.cmsgs().ok().and_then(|mut cmsgs| {
        cmsgs.find_map(|cmsg| match cmsg {
            ControlMessageOwned::ScmTimestampsns(stamps) => {
                let at = stamps.system;
                Some(at.tv_sec() as u64 * 1_000_000 + at.tv_nsec() as u64 / 1_000)
            }
            _ => None,
        })
    });
    Ok((msg.bytes, stamp))
}

impl AsyncRead for ArrivalStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let Self {
            tcp,
            latest,
            control,
        } = self.get_mut();
        let fd = tcp.as_raw_fd();
        loop {
            ready!(tcp.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            match tcp.try_io(Interest::READABLE, || read_stamped(fd, unfilled, control)) {
                Ok((n, stamp)) => {
                    if let Some(us) = stamp.filter(|_| n > 0) {
                        latest.store(us, Relaxed);
                    }
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
                Err(err) => return Poll::Ready(Err(err)),
            }
        }
    }
}

impl AsyncWrite for ArrivalStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}
