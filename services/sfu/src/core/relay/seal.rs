//! The relay's envelope: every datagram between two SFUs is sealed with AES-128-GCM
//! under the key the *receiving* SFU chose for the link.
//!
//! ```text
//! 0xFF | version | link id (8, the receiver's) | salt (4) | counter (8) | ciphertext | tag (16)
//! ```
//!
//! The header is the associated data. The nonce is salt ‖ counter: the sender draws a
//! fresh salt whenever it starts sending on a link, so a restarted sender never repeats
//! a nonce under the same key. The receiver refuses replays: a sliding window of 64
//! counters per salt, and salts it has moved on from.

use bytes::BytesMut;
use ring::aead::{AES_128_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

/// First byte of a relay datagram: outside the ranges RFC 7983 gives STUN (0–3),
/// DTLS (20–63) and RTP/RTCP (128–191), so it never reaches a peer's stack.
pub(crate) const RELAY_MARK: u8 = 0xFF;
const VERSION: u8 = 1;
pub(crate) const HEADER_LEN: usize = 22;
const TAG_LEN: usize = 16;
/// Key length of AES-128.
pub(crate) const KEY_LEN: usize = 16;
/// Salts remembered after moving on, so an old session's datagrams cannot be replayed.
const OLD_SALTS: usize = 8;

/// Why a relay datagram was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum OpenError {
    #[error("not a relay datagram of a known version")]
    Malformed,
    #[error("authentication failed")]
    Forged,
    #[error("replayed")]
    Replayed,
}

/// The link id a relay datagram is addressed to, if it is one.
pub(crate) fn link_id(datagram: &[u8]) -> Option<u64> {
    if datagram.len() < HEADER_LEN + TAG_LEN || datagram[0] != RELAY_MARK || datagram[1] != VERSION
    {
        return None;
    }
    Some(u64::from_be_bytes(datagram[2..10].try_into().ok()?))
}

fn key(bytes: &[u8; KEY_LEN]) -> LessSafeKey {
    // AES-128 takes any 16 bytes; `new` fails only on a wrong length.
    #[allow(clippy::expect_used)]
    LessSafeKey::new(UnboundKey::new(&AES_128_GCM, bytes).expect("16-byte AES-128 key"))
}

fn nonce(salt: u32, counter: u64) -> Nonce {
    let mut bytes = [0u8; 12];
    bytes[..4].copy_from_slice(&salt.to_be_bytes());
    bytes[4..].copy_from_slice(&counter.to_be_bytes());
    Nonce::assume_unique_for_key(bytes)
}

/// The sending half of a link.
pub(crate) struct Sealer {
    key: LessSafeKey,
    key_bytes: [u8; KEY_LEN],
    link_id: u64,
    salt: u32,
    counter: u64,
}

impl Sealer {
    pub(crate) fn new(key_bytes: &[u8; KEY_LEN], link_id: u64, salt: u32) -> Self {
        Self {
            key: key(key_bytes),
            key_bytes: *key_bytes,
            link_id,
            salt,
            counter: 0,
        }
    }

    /// Whether this sender seals for `link_id` with `key_bytes`.
    pub(crate) fn matches(&self, key_bytes: &[u8; KEY_LEN], link_id: u64) -> bool {
        self.link_id == link_id && self.key_bytes == *key_bytes
    }

    /// `plaintext` sealed into a datagram (built in the buffer it is sent from).
    pub(crate) fn seal(&mut self, plaintext: &[u8]) -> BytesMut {
        let counter = self.counter;
        self.counter += 1;
        let mut out = BytesMut::with_capacity(HEADER_LEN + plaintext.len() + TAG_LEN);
        out.extend_from_slice(&[RELAY_MARK, VERSION]);
        out.extend_from_slice(&self.link_id.to_be_bytes());
        out.extend_from_slice(&self.salt.to_be_bytes());
        out.extend_from_slice(&counter.to_be_bytes());
        out.extend_from_slice(plaintext);
        let (header, body) = out.split_at_mut(HEADER_LEN);
        let tag = self.key.seal_in_place_separate_tag(
            nonce(self.salt, counter),
            Aad::from(&*header),
            body,
        );
        match tag {
            Ok(tag) => out.extend_from_slice(tag.as_ref()),
            // Sealing fails only past 2^36 bytes in one call; a datagram is never that big.
            Err(_) => out.clear(),
        }
        out
    }
}

/// The receiving half of a link.
pub(crate) struct Opener {
    key: LessSafeKey,
    salt: Option<u32>,
    old_salts: Vec<u32>,
    highest: u64,
    /// Bit `i` set: counter `highest - i` was seen.
    window: u64,
}

impl Opener {
    pub(crate) fn new(key_bytes: &[u8; KEY_LEN]) -> Self {
        Self {
            key: key(key_bytes),
            salt: None,
            old_salts: Vec::new(),
            highest: 0,
            window: 0,
        }
    }

    /// The plaintext of `datagram`, checked for authenticity and replay.
    pub(crate) fn open(&mut self, datagram: &[u8]) -> Result<Vec<u8>, OpenError> {
        link_id(datagram).ok_or(OpenError::Malformed)?;
        let header = &datagram[..HEADER_LEN];
        let salt = u32::from_be_bytes([header[10], header[11], header[12], header[13]]);
        let mut counter_bytes = [0u8; 8];
        counter_bytes.copy_from_slice(&header[14..22]);
        let counter = u64::from_be_bytes(counter_bytes);
        if self.old_salts.contains(&salt) {
            return Err(OpenError::Replayed);
        }
        if self.salt == Some(salt) && self.seen(counter) {
            return Err(OpenError::Replayed);
        }
        let mut body = datagram[HEADER_LEN..].to_vec();
        let plaintext_len = self
            .key
            .open_in_place(nonce(salt, counter), Aad::from(header), &mut body)
            .map_err(|_| OpenError::Forged)?
            .len();
        body.truncate(plaintext_len);
        if self.salt != Some(salt) {
            // The sender started over (a new session): only authentic datagrams get here.
            if let Some(old) = self.salt.replace(salt) {
                self.old_salts.push(old);
                if self.old_salts.len() > OLD_SALTS {
                    self.old_salts.remove(0);
                }
            }
            self.highest = counter;
            self.window = 1;
        } else {
            self.mark(counter);
        }
        Ok(body)
    }

    fn seen(&self, counter: u64) -> bool {
        if counter > self.highest {
            return false;
        }
        let age = self.highest - counter;
        age >= 64 || self.window & (1 << age) != 0
    }

    fn mark(&mut self, counter: u64) {
        if counter > self.highest {
            let shift = counter - self.highest;
            self.window = if shift >= 64 { 0 } else { self.window << shift };
            self.highest = counter;
            self.window |= 1;
        } else {
            self.window |= 1 << (self.highest - counter);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; KEY_LEN] = [7; KEY_LEN];

    #[test]
    fn sealed_datagrams_open_once_and_in_any_order() {
        let mut sealer = Sealer::new(&KEY, 42, 9);
        let mut opener = Opener::new(&KEY);
        let sealed: Vec<BytesMut> = (0..5u8).map(|i| sealer.seal(&[i; 30])).collect();
        assert_eq!(link_id(&sealed[0]), Some(42));
        for i in [0usize, 3, 1, 4, 2] {
            assert_eq!(opener.open(&sealed[i]).as_deref(), Ok(&[i as u8; 30][..]));
        }
        for datagram in &sealed {
            assert_eq!(opener.open(datagram), Err(OpenError::Replayed));
        }
    }

    #[test]
    fn a_wrong_key_or_a_flipped_bit_is_refused() {
        let mut sealer = Sealer::new(&KEY, 1, 1);
        let datagram = sealer.seal(b"hello");
        assert_eq!(
            Opener::new(&[8; KEY_LEN]).open(&datagram),
            Err(OpenError::Forged)
        );
        for i in 2..datagram.len() {
            let mut flipped = datagram.clone();
            flipped[i] ^= 1;
            assert!(Opener::new(&KEY).open(&flipped).is_err(), "byte {i}");
        }
        assert_eq!(
            Opener::new(&KEY).open(&datagram[..20]),
            Err(OpenError::Malformed)
        );
    }

    #[test]
    fn a_restarted_sender_is_accepted_and_the_old_session_cannot_be_replayed() {
        let mut opener = Opener::new(&KEY);
        let old = Sealer::new(&KEY, 1, 100).seal(b"old");
        assert!(opener.open(&old).is_ok());
        let new = Sealer::new(&KEY, 1, 200).seal(b"new");
        assert_eq!(opener.open(&new).as_deref(), Ok(&b"new"[..]));
        assert_eq!(opener.open(&old), Err(OpenError::Replayed));
    }

    #[test]
    fn counters_far_behind_the_window_are_refused() {
        let mut sealer = Sealer::new(&KEY, 1, 5);
        let mut opener = Opener::new(&KEY);
        let first = sealer.seal(b"0");
        assert!(opener.open(&first).is_ok());
        for _ in 0..100 {
            let datagram = sealer.seal(b"x");
            assert!(opener.open(&datagram).is_ok());
        }
        assert_eq!(opener.open(&first), Err(OpenError::Replayed));
    }
}
