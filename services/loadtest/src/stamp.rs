//! The stamp a synthetic publisher puts at the end of every RTP payload, so a
//! subscriber can tell which packet of which publisher it got and when it was sent.
//!
//! Layout (big-endian), in the last [`STAMP_LEN`] bytes of the payload:
//! `magic u32 | publisher u32 | counter u64 | sent_us u64`. Sending and receiving
//! clients run in one process, so `sent_us` is read off one clock.

/// Bytes the stamp takes at the end of a payload.
pub const STAMP_LEN: usize = 24;
const MAGIC: u32 = 0xC0FE_57A9;

/// Which packet, from whom, sent when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub publisher: u32,
    /// The publisher's packet number, from 0, one per RTP packet it sends.
    pub counter: u64,
    /// Microseconds since the load test's epoch.
    pub sent_us: u64,
}

impl Stamp {
    /// Writes the stamp over the last [`STAMP_LEN`] bytes of `payload`.
    ///
    /// # Panics
    /// When `payload` is shorter than [`STAMP_LEN`]: payload sizes are set up front.
    pub fn write(&self, payload: &mut [u8]) {
        let at = payload.len() - STAMP_LEN;
        let out = &mut payload[at..];
        out[0..4].copy_from_slice(&MAGIC.to_be_bytes());
        out[4..8].copy_from_slice(&self.publisher.to_be_bytes());
        out[8..16].copy_from_slice(&self.counter.to_be_bytes());
        out[16..24].copy_from_slice(&self.sent_us.to_be_bytes());
    }

    /// Reads a stamp off the end of a received payload; `None` when it carries none.
    pub fn read(payload: &[u8]) -> Option<Self> {
        let at = payload.len().checked_sub(STAMP_LEN)?;
        let stamp: &[u8; STAMP_LEN] = payload[at..].try_into().ok()?;
        let (magic, rest) = stamp.split_first_chunk::<4>()?;
        let (publisher, rest) = rest.split_first_chunk::<4>()?;
        let (counter, sent_us) = rest.split_first_chunk::<8>()?;
        if u32::from_be_bytes(*magic) != MAGIC {
            return None;
        }
        Some(Self {
            publisher: u32::from_be_bytes(*publisher),
            counter: u64::from_be_bytes(*counter),
            sent_us: u64::from_be_bytes(sent_us.try_into().ok()?),
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn a_written_stamp_reads_back(publisher: u32, counter: u64, sent_us: u64, head in proptest::collection::vec(any::<u8>(), 0..1200)) {
            let stamp = Stamp { publisher, counter, sent_us };
            let mut payload = head.clone();
            payload.resize(head.len() + STAMP_LEN, 0);
            stamp.write(&mut payload);
            prop_assert_eq!(Stamp::read(&payload), Some(stamp));
            prop_assert_eq!(&payload[..head.len()], &head[..]);
        }

        #[test]
        fn any_bytes_read_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            let read = Stamp::read(&bytes);
            if bytes.len() < STAMP_LEN {
                prop_assert_eq!(read, None);
            }
        }
    }

    #[test]
    fn a_payload_without_the_magic_has_no_stamp() {
        assert_eq!(Stamp::read(&[0u8; 64]), None);
    }
}
