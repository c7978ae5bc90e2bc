//! A session's place in its room's chat: the last seq its client was sent. Shared with
//! the hub, so that an entry that comes next goes straight to the client's writer
//! without waking the session; anything else (a gap to fill from history, a shared
//! file whose link is signed per member) takes the session's own path.
//!
//! Every send of an entry happens under the cursor's lock and only for `seen + 1`, so
//! whichever path sends, the client gets each entry once and in order.

use std::sync::{Mutex, MutexGuard, PoisonError};

#[derive(Default)]
pub(crate) struct ChatCursor(Mutex<Cursor>);

#[derive(Default)]
struct Cursor {
    seen: u64,
    /// The client has its join page: the hub may send to it directly.
    open: bool,
    /// The client reads `chat_batch` (it joined with `chat_batches`).
    batches: bool,
}

impl ChatCursor {
    fn lock(&self) -> MutexGuard<'_, Cursor> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The last seq the client was sent.
    pub(crate) fn seen(&self) -> u64 {
        self.lock().seen
    }

    /// The client entered a room: `send_joined` sends its join page, which ends at
    /// `seen`; from then on the hub may deliver (entries that go out together in one
    /// `chat_batch` if the client reads `batches`).
    pub(crate) fn open(&self, seen: u64, batches: bool, send_joined: impl FnOnce()) {
        let mut cursor = self.lock();
        cursor.seen = seen;
        cursor.batches = batches;
        send_joined();
        cursor.open = true;
    }

    /// The client left its room: the hub stops delivering.
    pub(crate) fn close(&self) {
        self.lock().open = false;
    }

    /// Runs `send` for entry `seq` if it is the next one the client is owed (from the
    /// hub: and the cursor is open); returns whether it ran.
    pub(crate) fn next(&self, seq: u64, from_hub: bool, send: impl FnOnce()) -> bool {
        let mut cursor = self.lock();
        if seq != cursor.seen + 1 || (from_hub && !cursor.open) {
            return false;
        }
        cursor.seen = seq;
        send();
        true
    }

    /// As [`ChatCursor::next`] for the consecutive entries `first..=last` at once;
    /// `send` is told whether the client reads them as one `chat_batch`.
    pub(crate) fn next_run(
        &self,
        first: u64,
        last: u64,
        from_hub: bool,
        send: impl FnOnce(bool),
    ) -> bool {
        let mut cursor = self.lock();
        if first != cursor.seen + 1 || last < first || (from_hub && !cursor.open) {
            return false;
        }
        cursor.seen = last;
        send(cursor.batches);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_go_once_in_order_and_the_hub_waits_for_the_join_page() {
        let cursor = ChatCursor::default();
        let mut sent = Vec::new();
        assert!(!cursor.next(1, true, || sent.push(1)), "closed to the hub");
        cursor.open(4, false, || sent.push(0));
        assert!(!cursor.next(4, true, || sent.push(4)), "in the join page");
        assert!(!cursor.next(6, true, || sent.push(6)), "a gap");
        assert!(cursor.next(5, true, || sent.push(5)));
        assert!(!cursor.next(5, false, || sent.push(5)), "sent once");
        assert!(cursor.next(6, false, || sent.push(6)));
        cursor.close();
        assert!(!cursor.next(7, true, || sent.push(7)), "left the room");
        assert!(cursor.next(7, false, || sent.push(7)));
        assert_eq!(sent, [0, 5, 6, 7]);
        assert_eq!(cursor.seen(), 7);
    }

    #[test]
    fn a_run_goes_whole_only_to_a_client_owed_its_first_entry() {
        let cursor = ChatCursor::default();
        let mut sent = Vec::new();
        assert!(
            !cursor.next_run(1, 3, true, |_| sent.push((1, 3))),
            "closed to the hub"
        );
        cursor.open(2, true, || {});
        assert!(
            !cursor.next_run(1, 3, true, |_| sent.push((1, 3))),
            "overlaps the join page"
        );
        assert!(!cursor.next_run(4, 5, true, |_| sent.push((4, 5))), "a gap");
        assert!(
            !cursor.next_run(3, 2, true, |_| sent.push((3, 2))),
            "an empty run"
        );
        let mut batched = None;
        assert!(cursor.next_run(3, 5, true, |batches| {
            sent.push((3, 5));
            batched = Some(batches);
        }));
        assert_eq!(batched, Some(true), "the client reads batches");
        assert_eq!(cursor.seen(), 5);
        assert!(!cursor.next(5, false, || sent.push((5, 5))), "sent once");
        assert!(cursor.next(6, true, || sent.push((6, 6))));
        assert_eq!(sent, [(3, 5), (6, 6)]);
    }
}
