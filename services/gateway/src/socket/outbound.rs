//! What the gateway writes to one client: frames go straight to the socket from
//! whoever sends them (the session, or the chat hub for a whole lane of a room), with
//! no writer task to wake, as long as the socket takes them. Only what the socket's
//! buffer cannot take waits here, in order, for the connection's flusher, and every
//! send after it queues behind it, so frames never pass each other.
//!
//! A client that reads nothing while [`MAX_WAITING`] bytes pile up is cut off: it is
//! gone or too slow to follow, and a reconnect resumes its chat from its last seq.

use std::io::{self, IoSlice};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::{Buf as _, BytesMut};
use confer_proto::signal::{ServerMessage, encode_server_message};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Notify;

use super::frame;
use crate::chat::HandOffWrites;

/// Bytes that may wait for a client before it is cut off.
pub(crate) const MAX_WAITING: usize = 4 << 20;

pub(crate) struct Outbound {
    socket: OwnedWriteHalf,
    queue: Mutex<Queue>,
    /// Bytes wait: the flusher has work.
    queued: Notify,
    /// The connection broke or was cut off: the session ends.
    broke: Notify,
}

#[derive(Default)]
struct Queue {
    /// Accepted but not yet written: the socket's buffer was full.
    waiting: BytesMut,
    /// Chat hand-offs with bytes in `waiting`, held until they are written.
    hand_offs: Vec<Arc<HandOffWrites>>,
    condition: Condition,
}

#[derive(Default, Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Condition {
    #[default]
    Open,
    /// The close frame is queued: nothing more goes out.
    Closing,
    /// The socket failed.
    Broken,
    /// Cut off: more than [`MAX_WAITING`] bytes waited.
    TooSlow,
}

/// What one attempt to write what waits did.
enum Drain {
    /// Nothing waits (any more).
    Empty,
    /// The socket's buffer is full.
    Blocked,
    /// The connection is over.
    Over,
}

impl Outbound {
    pub(crate) fn new(socket: OwnedWriteHalf) -> Self {
        Self {
            socket,
            queue: Mutex::default(),
            queued: Notify::new(),
            broke: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends `msg` as one text frame; false once the connection is closing or over.
    pub(crate) fn message(&self, msg: &ServerMessage) -> bool {
        self.text(&encode_server_message(msg), None)
    }

    /// Sends `text` as one text frame; a chat `hand_off` is held until it is written.
    pub(crate) fn text(&self, text: &str, hand_off: Option<&Arc<HandOffWrites>>) -> bool {
        let (head, used) = frame::text_header(text.len());
        self.send(&[&head[..used], text.as_bytes()], hand_off)
    }

    /// Sends whole frames made beforehand (a room's entries, framed once for all its
    /// members); `hand_off` is held until they are written.
    pub(crate) fn frames(&self, framed: &[u8], hand_off: Option<&Arc<HandOffWrites>>) -> bool {
        self.send(&[framed], hand_off)
    }

    /// Sends a ping, which a live client answers with a pong.
    pub(crate) fn ping(&self) -> bool {
        self.send(&[&frame::PING], None)
    }

    /// Sends the close frame (normal closure); nothing goes out after it, and the
    /// flusher ends once what waits is written.
    pub(crate) fn close(&self) {
        self.send(&[&frame::close_frame(1000)], None);
        self.closed_by_peer();
    }

    /// The client closed, and the protocol has answered its close frame: nothing
    /// more goes out, and the flusher ends once what waits is written.
    pub(crate) fn closed_by_peer(&self) {
        let mut queue = self.lock();
        if queue.condition == Condition::Open {
            queue.condition = Condition::Closing;
        }
        self.queued.notify_one();
    }

    /// How the connection stands.
    pub(crate) fn condition(&self) -> Condition {
        self.lock().condition
    }

    /// Returns once the connection broke or was cut off.
    pub(crate) async fn broken(&self) {
        loop {
            let notified = self.broke.notified();
            if matches!(self.condition(), Condition::Broken | Condition::TooSlow) {
                return;
            }
            notified.await;
        }
    }

    /// Writes `parts` now if nothing waits and the socket takes them; queues what it
    /// does not take, behind what waits.
    fn send(&self, parts: &[&[u8]], hand_off: Option<&Arc<HandOffWrites>>) -> bool {
        let mut queue = self.lock();
        if queue.condition != Condition::Open {
            return false;
        }
        let total: usize = parts.iter().map(|part| part.len()).sum();
        let mut written = 0;
        if queue.waiting.is_empty() {
            match self.try_write(parts) {
                Ok(n) => written = n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => {
                    self.end(&mut queue, Condition::Broken);
                    return false;
                }
            }
        }
        if written == total {
            return true;
        }
        if queue.waiting.len() + (total - written) > MAX_WAITING {
            self.end(&mut queue, Condition::TooSlow);
            return false;
        }
        for part in parts {
            let skip = written.min(part.len());
            written -= skip;
            queue.waiting.extend_from_slice(&part[skip..]);
        }
        queue.hand_offs.extend(hand_off.cloned());
        self.queued.notify_one();
        true
    }

    fn try_write(&self, parts: &[&[u8]]) -> io::Result<usize> {
        match parts {
            [one] => self.socket.try_write(one),
            // A session's message: its frame header and text.
            [head, text] => self
                .socket
                .try_write_vectored(&[IoSlice::new(head), IoSlice::new(text)]),
            _ => {
                let slices: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
                self.socket.try_write_vectored(&slices)
            }
        }
    }

    /// The connection is over: nothing waits, nothing more is sent, and the session
    /// and the flusher hear of it.
    fn end(&self, queue: &mut Queue, condition: Condition) {
        queue.condition = condition;
        queue.waiting = BytesMut::new();
        queue.hand_offs.clear();
        self.broke.notify_one();
        self.queued.notify_one();
    }

    /// Writes what waits, as far as the socket takes it.
    fn drain(&self) -> Drain {
        let mut queue = self.lock();
        while !queue.waiting.is_empty() {
            match self.socket.try_write(&queue.waiting) {
                Ok(n) => queue.waiting.advance(n),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Drain::Blocked,
                Err(_) => {
                    self.end(&mut queue, Condition::Broken);
                    return Drain::Over;
                }
            }
        }
        queue.hand_offs.clear();
        match queue.condition {
            Condition::Open => Drain::Empty,
            _ => Drain::Over,
        }
    }
}

/// The connection's flusher: writes what waits whenever the socket takes more, until
/// the connection is closed (and its close frame written) or over.
pub(crate) async fn flush_waiting(out: Arc<Outbound>) {
    loop {
        out.queued.notified().await;
        loop {
            match out.drain() {
                Drain::Empty => break,
                Drain::Over => return,
                Drain::Blocked => {
                    if out.socket.writable().await.is_err() {
                        let mut queue = out.lock();
                        out.end(&mut queue, Condition::Broken);
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::mpsc;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

    use super::super::testing::connected;
    use super::*;

    fn hand_off(
        id: u64,
    ) -> (
        Arc<HandOffWrites>,
        mpsc::UnboundedReceiver<crate::chat::Written>,
    ) {
        let (report, reported) = mpsc::unbounded_channel();
        (
            Arc::new(HandOffWrites::new("t/room".into(), id, report)),
            reported,
        )
    }

    #[tokio::test]
    async fn frames_reach_the_client_whole_and_in_order_then_the_close() {
        let (out, mut client) = connected().await;
        assert!(out.text("one", None));
        assert!(out.frames(&frame::text_frames(["two", "three"]), None));
        let (writes, mut reported) = hand_off(1);
        assert!(out.frames(&frame::text_frames(["four"]), Some(&writes)));
        drop(writes);
        assert!(reported.try_recv().is_ok(), "written at once: not held");
        let big = "x".repeat(70_000);
        assert!(out.text(&big, None));
        out.close();
        assert!(
            !out.text("after the close", None),
            "nothing after the close"
        );

        let read = tokio::task::spawn_blocking(move || {
            let texts: Vec<String> = (0..5).map(|_| client.text().to_string()).collect();
            (texts, client.next())
        });
        let (texts, close) = read.await.expect("reader");
        assert_eq!(texts[..4], ["one", "two", "three", "four"]);
        assert_eq!(texts[4], big);
        let Message::Close(Some(close)) = close else {
            panic!("a close frame, got {close:?}");
        };
        assert_eq!(close.code, CloseCode::Normal);
    }

    #[tokio::test]
    async fn what_the_socket_cannot_take_waits_in_order_and_holds_its_hand_off() {
        let (out, mut client) = connected().await;
        // The client reads nothing yet: fill the socket's buffers until bytes wait.
        let chunk = "y".repeat(16 * 1024);
        let mut sent = 0;
        while out.lock().waiting.is_empty() {
            assert!(out.text(&format!("{sent}:{chunk}"), None));
            sent += 1;
        }
        let (writes, mut reported) = hand_off(2);
        assert!(out.text(&format!("{sent}:last"), Some(&writes)));
        drop(writes);
        assert!(reported.try_recv().is_err(), "held while its bytes wait");

        let read = tokio::task::spawn_blocking(move || {
            (0..=sent)
                .map(|_| client.text().to_string())
                .collect::<Vec<_>>()
        });
        let texts = read.await.expect("reader");
        for (i, text) in texts.iter().enumerate() {
            assert!(text.starts_with(&format!("{i}:")), "frame {i} in its place");
        }
        assert_eq!(texts[sent], format!("{sent}:last"));
        let written = tokio::time::timeout(Duration::from_secs(10), reported.recv()).await;
        assert!(matches!(written, Ok(Some(_))), "reported once written");
        assert_eq!(out.condition(), Condition::Open);
    }

    #[tokio::test]
    async fn a_client_that_reads_nothing_is_cut_off() {
        let (out, _client) = connected().await;
        let chunk = "z".repeat(64 * 1024);
        let mut sends = 0;
        while out.text(&chunk, None) {
            sends += 1;
            assert!(sends < 10_000, "never cut off");
        }
        assert_eq!(out.condition(), Condition::TooSlow);
        assert!(out.lock().waiting.is_empty(), "what waited is dropped");
        let broken = tokio::time::timeout(Duration::from_secs(10), out.broken()).await;
        assert!(broken.is_ok(), "the session hears of it");
        assert!(!out.text("more", None));
    }
}
