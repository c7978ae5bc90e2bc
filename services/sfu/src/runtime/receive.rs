//! Reading a datagram together with how long it waited in the socket's receive queue
//! (the kernel's arrival stamp, `SO_TIMESTAMPNS`), so that forwarding delay counts from
//! the packet's arrival at the host, not from when a busy worker got to it.

use std::io;
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg, setsockopt, sockopt,
};
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// A queue wait longer than this is a wall-clock step, not a wait: counted as none.
const MAX_CREDIBLE_WAIT: Duration = Duration::from_secs(1);

/// Asks the kernel to stamp every datagram with its arrival time.
pub(super) fn stamp_arrivals(socket: &std::net::UdpSocket) -> io::Result<()> {
    setsockopt(socket, sockopt::ReceiveTimestampns, &true).map_err(io::Error::from)
}

/// A datagram read from the socket.
pub(super) struct Received {
    pub(super) len: usize,
    pub(super) from: SocketAddr,
    /// How long it sat in the receive queue (zero when the kernel gave no stamp).
    pub(super) waited: Duration,
}

/// Room for the arrival stamp's control message; made once, reused for every read.
pub(super) fn control_buffer() -> Vec<u8> {
    nix::cmsg_space!(nix::sys::time::TimeSpec)
}

/// Reads one datagram into `buf` without waiting (`WouldBlock` when there is none);
/// `control` is a [`control_buffer`].
pub(super) fn try_receive(
    socket: &UdpSocket,
    buf: &mut [u8],
    control: &mut [u8],
) -> io::Result<Received> {
    socket.try_io(Interest::READABLE, || {
        let mut iov = [io::IoSliceMut::new(&mut *buf)];
        let message = recvmsg::<SockaddrStorage>(
            socket.as_raw_fd(),
            &mut iov,
            Some(&mut *control),
            MsgFlags::empty(),
        )
        .map_err(io::Error::from)?;
        let from = message
            .address
            .as_ref()
            .and_then(socket_addr)
            .ok_or_else(|| io::Error::other("datagram without a source address"))?;
        let arrived = message.cmsgs().ok().and_then(|mut cmsgs| {
            cmsgs.find_map(|cmsg| match cmsg {
                ControlMessageOwned::ScmTimestampns(at) => Some(Duration::new(
                    u64::try_from(at.tv_sec()).ok()?,
                    u32::try_from(at.tv_nsec()).ok()?,
                )),
                _ => None,
            })
        });
        Ok(Received {
            len: message.bytes,
            from,
            waited: arrived.map_or(Duration::ZERO, waited_since),
        })
    })
}

/// Time since `arrived` (since the Unix epoch) by the wall clock, which is what the
/// kernel stamps with.
fn waited_since(arrived: Duration) -> Duration {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Some(now.saturating_sub(arrived))
        .filter(|waited| *waited <= MAX_CREDIBLE_WAIT)
        .unwrap_or_default()
}

fn socket_addr(address: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = address.as_sockaddr_in() {
        return Some(SocketAddr::V4(SocketAddrV4::from(*v4)));
    }
    let v6 = address.as_sockaddr_in6()?;
    Some(SocketAddr::V6(SocketAddrV6::from(*v6)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_datagram_reports_its_source_and_how_long_it_waited() {
        let std_socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        std_socket.set_nonblocking(true).expect("non-blocking");
        stamp_arrivals(&std_socket).expect("SO_TIMESTAMPNS");
        let receiver = UdpSocket::from_std(std_socket).expect("tokio socket");
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let mut buf = [0u8; 64];
        let mut control = control_buffer();
        assert_eq!(
            try_receive(&receiver, &mut buf, &mut control)
                .err()
                .map(|e| e.kind()),
            Some(io::ErrorKind::WouldBlock)
        );

        sender
            .send_to(b"hello", receiver.local_addr().expect("addr"))
            .expect("send");
        // Loopback may hand the datagram over later (the kernel defers the delivery on
        // a busy machine), and the stamp is taken when it arrives: wait until it is in
        // the queue, then leave it there.
        let mut peek = [0u8; 8];
        receiver.peek_from(&mut peek).await.expect("queued");
        std::thread::sleep(Duration::from_millis(30));
        receiver.readable().await.expect("readable");
        let received = try_receive(&receiver, &mut buf, &mut control).expect("a datagram");
        assert_eq!(&buf[..received.len], b"hello");
        assert_eq!(received.from, sender.local_addr().expect("addr"));
        // It sat in the queue through the sleep.
        assert!(
            received.waited >= Duration::from_millis(25) && received.waited < MAX_CREDIBLE_WAIT,
            "waited {:?}",
            received.waited
        );
    }

    #[test]
    fn a_stamp_from_the_future_or_far_past_counts_as_no_wait() {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
        assert_eq!(waited_since(now + Duration::from_secs(5)), Duration::ZERO);
        assert_eq!(waited_since(now - Duration::from_secs(50)), Duration::ZERO);
        let recent = waited_since(now - Duration::from_millis(3));
        assert!(recent >= Duration::from_millis(3) && recent < Duration::from_millis(500));
    }
}
