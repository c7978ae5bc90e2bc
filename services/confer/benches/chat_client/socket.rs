//! A bench member's WebSocket, read with as little of the machine as reading can take.
//!
//! The load generator's 1,000 members share the machine's two cores with the servers
//! they measure, so every cycle a member spends reading is one the gateways do not get;
//! a real member's browser reads on its own machine. So a member here does only what
//! the bench needs: the upgrade written by hand, then each `recvmsg` straight into one
//! buffer that was zeroed once, and frames found in place, with no copy, no UTF-8
//! check and no per-frame allocation. The servers see the same bytes as from any
//! WebSocket client.
//!
//! Each read also keeps when its bytes reached the socket: the kernel's software
//! receive timestamp (`SO_TIMESTAMPING`). A delivery's latency to that point is the
//! servers' and the network's; the time from there to the member's read is the
//! member's, which on one shared machine is the load generator's lag.

use std::io::{self, IoSliceMut};
use std::os::fd::AsRawFd as _;

use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, TimestampingFlag, Timestamps, recvmsg, setsockopt, sockopt,
};
use tokio::io::{AsyncWriteExt as _, Interest};
use tokio::net::TcpStream;

/// A frame the server sent, as it lies in the read buffer.
pub(crate) struct Frame<'a> {
    /// A text frame's payload; `None` for a frame of another kind.
    pub(crate) text: Option<&'a [u8]>,
    /// When the bytes of the read that completed it reached the socket, µs since the
    /// Unix epoch (0 if the kernel gave no timestamp).
    pub(crate) arrived_us: u64,
}

pub(crate) struct MemberSocket {
    tcp: TcpStream,
    control: Vec<u8>,
    /// Bytes read and not yet taken are `buf[start..end]`.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// The receive timestamp of the latest read.
    arrived_us: u64,
    closed: bool,
    /// The server pinged: a pong is owed (the gateway lets a silent client go).
    pong_owed: bool,
    /// Frames not yet taken by the socket (a pong), sent before anything else.
    unsent: Vec<u8>,
}

/// A member's read buffer; it grows for a longer frame (a join's history page).
const BUF: usize = 16 * 1024;

/// Any key will do: the bench checks the upgrade's status, not its accept header.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

impl MemberSocket {
    /// Connects to `host` and upgrades `path` to a WebSocket.
    pub(crate) async fn connect(host: &str, path: &str) -> anyhow::Result<Self> {
        let tcp = TcpStream::connect(host).await?;
        tcp.set_nodelay(true)?;
        setsockopt(
            &tcp,
            sockopt::Timestamping,
            &(TimestampingFlag::SOF_TIMESTAMPING_SOFTWARE
                | TimestampingFlag::SOF_TIMESTAMPING_RX_SOFTWARE),
        )?;
        let mut socket = Self {
            tcp,
            control: nix::cmsg_space!(Timestamps),
            buf: vec![0; BUF],
            start: 0,
            end: 0,
            arrived_us: 0,
            closed: false,
            pong_owed: false,
            unsent: Vec::new(),
        };
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        socket.tcp.write_all(request.as_bytes()).await?;
        let head_end = loop {
            let read = &socket.buf[..socket.end];
            if let Some(at) = memchr::memmem::find(read, b"\r\n\r\n") {
                break at + 4;
            }
            anyhow::ensure!(socket.read_more().await?, "closed during the upgrade");
        };
        let head = &socket.buf[..head_end];
        anyhow::ensure!(
            head.starts_with(b"HTTP/1.1 101"),
            "upgrade refused: {}",
            String::from_utf8_lossy(head)
        );
        socket.start = head_end;
        Ok(socket)
    }

    /// Sends the `join` request and reads until it is answered: `Ok(())` once joined,
    /// else the error reply. Frames after `joined` in the same read (presence) go
    /// unread.
    pub(crate) async fn join(
        &mut self,
        join: &serde_json::Value,
    ) -> anyhow::Result<Result<(), serde_json::Value>> {
        self.send_text(&join.to_string()).await?;
        loop {
            let mut answer = None;
            let open = self
                .read_frames(|frame| {
                    let Some(text) = frame.text.filter(|_| answer.is_none()) else {
                        return;
                    };
                    answer = match serde_json::from_slice::<serde_json::Value>(text) {
                        Ok(reply) if reply.get("joined").is_some() => Some(Ok(())),
                        Ok(reply) if reply.get("error").is_some() => Some(Err(reply)),
                        _ => None,
                    };
                })
                .await?;
            match answer {
                Some(answer) => return Ok(answer),
                None => anyhow::ensure!(open, "closed before the join was answered"),
            }
        }
    }

    /// Sends `text` as one masked text frame, as a client must.
    pub(crate) async fn send_text(&mut self, text: &str) -> io::Result<()> {
        let frame = client_frame(OP_TEXT, text.as_bytes(), rand::random());
        if !self.unsent.is_empty() {
            self.tcp.write_all(&self.unsent).await?;
            self.unsent.clear();
        }
        self.tcp.write_all(&frame).await
    }

    /// Hands `each` every complete frame, in order: those already read, or else those
    /// that one more read completes (waiting until the socket is readable). False once
    /// the server has closed. Cancel-safe: nothing is read until the socket is ready,
    /// and nothing is awaited after.
    pub(crate) async fn read_frames(&mut self, each: impl FnMut(Frame<'_>)) -> io::Result<bool> {
        if self.closed {
            return Ok(false);
        }
        if frame_at(&self.buf[self.start..self.end])?.is_none() && !self.read_more().await? {
            return Ok(false);
        }
        let open = self.take_frames(each)?;
        if std::mem::take(&mut self.pong_owed) {
            // The gateway's pings carry nothing, and so does the answer.
            self.unsent
                .extend(client_frame(OP_PONG, &[], rand::random()));
            self.write_unsent()?;
        }
        Ok(open)
    }

    /// Writes what the socket takes now of the bytes still to be sent (a pong),
    /// without waiting: a read never awaits a write.
    fn write_unsent(&mut self) -> io::Result<()> {
        while !self.unsent.is_empty() {
            match self.tcp.try_write(&self.unsent) {
                Ok(n) => {
                    self.unsent.drain(..n);
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    fn take_frames(&mut self, mut each: impl FnMut(Frame<'_>)) -> io::Result<bool> {
        while let Some(at) = frame_at(&self.buf[self.start..self.end])? {
            let payload = self.start + at.payload.start..self.start + at.payload.end;
            self.start += at.len;
            let text = match at.opcode {
                OP_TEXT => Some(&self.buf[payload]),
                OP_CLOSE => {
                    self.closed = true;
                    return Ok(false);
                }
                OP_PING => {
                    self.pong_owed = true;
                    None
                }
                _ => None,
            };
            each(Frame {
                text,
                arrived_us: self.arrived_us,
            });
        }
        Ok(true)
    }

    /// Reads once into the free end of the buffer, making room first; false at the
    /// end of the stream.
    async fn read_more(&mut self) -> io::Result<bool> {
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        }
        if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                (self.start, self.end) = (0, self.end - self.start);
            } else {
                self.buf.resize(self.buf.len() * 2, 0);
            }
        }
        let fd = self.tcp.as_raw_fd();
        loop {
            self.tcp.readable().await?;
            let (free, control) = (&mut self.buf[self.end..], &mut self.control);
            let room = free.len();
            // A read that did not fill the buffer took everything the socket had: the
            // socket's readiness is cleared with it (as tokio's own reads do), so the
            // next read waits for more instead of first finding nothing in a system
            // call of its own. Tokio keeps the readiness if more came meanwhile.
            let mut short = None;
            let read = self.tcp.try_io(Interest::READABLE, || {
                let (n, stamp) = read_stamped(fd, free, control)?;
                if n > 0 && n < room {
                    short = Some((n, stamp));
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Ok((n, stamp))
            });
            match short.map_or(read, Ok) {
                Ok((0, _)) => return Ok(false),
                Ok((n, stamp)) => {
                    self.end += n;
                    if let Some(us) = stamp {
                        self.arrived_us = us;
                    }
                    return Ok(true);
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
                Err(err) => return Err(err),
            }
        }
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

const OP_TEXT: u8 = 0x1;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// Where a complete frame lies at the start of some bytes.
struct FrameAt {
    opcode: u8,
    payload: std::ops::Range<usize>,
    /// Header and payload.
    len: usize,
}

/// The complete frame at the start of `bytes`, `None` while it is still arriving. A
/// server's frame is never masked, and this server never fragments a message; either
/// is refused rather than misread.
fn frame_at(bytes: &[u8]) -> io::Result<Option<FrameAt>> {
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    let [first, second, rest @ ..] = bytes else {
        return Ok(None);
    };
    if first & 0x80 == 0 || first & 0x0f == 0 {
        return Err(invalid("a fragmented message"));
    }
    if second & 0x80 != 0 {
        return Err(invalid("a masked frame from the server"));
    }
    let (header, len) = match second & 0x7f {
        126 => match rest {
            [a, b, ..] => (4, usize::from(u16::from_be_bytes([*a, *b]))),
            _ => return Ok(None),
        },
        127 => match rest.first_chunk::<8>() {
            Some(len) => (
                10,
                usize::try_from(u64::from_be_bytes(*len))
                    .map_err(|_| invalid("a frame too long"))?,
            ),
            None => return Ok(None),
        },
        short => (2, usize::from(short)),
    };
    if bytes.len() - header < len {
        return Ok(None);
    }
    Ok(Some(FrameAt {
        opcode: first & 0x0f,
        payload: header..header + len,
        len: header + len,
    }))
}

/// One final frame of `opcode` from a client, masked with `mask`.
fn client_frame(opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(payload.len() + 14);
    frame.push(0x80 | opcode);
    match payload.len() {
        len @ 0..=125 => frame.push(0x80 | len as u8),
        len @ 126..=0xffff => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
    frame
}
