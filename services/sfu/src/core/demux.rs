//! Which peer a datagram belongs to.
//!
//! Every peer shares one UDP port (ICE-lite). A peer's first datagram is a STUN
//! binding request whose USERNAME is `<our ufrag>:<their ufrag>`; our ufrag is unique
//! per peer, so it names the peer, and the source address is then cached so that
//! DTLS, SRTP and SRTCP from the same address find the peer with one hash lookup.
//!
//! Anything else from an unknown address is unroutable and dropped by the caller.

use std::collections::HashMap;
use std::net::SocketAddr;

use super::PeerKey;

const STUN_MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
const STUN_HEADER_LEN: usize = 20;
const ATTR_USERNAME: u16 = 0x0006;

#[derive(Debug, Default)]
pub(crate) struct Demux {
    by_ufrag: HashMap<String, PeerKey>,
    by_addr: HashMap<SocketAddr, PeerKey>,
}

impl Demux {
    pub(crate) fn add_peer(&mut self, ufrag: String, peer: PeerKey) {
        self.by_ufrag.insert(ufrag, peer);
    }

    pub(crate) fn remove_peer(&mut self, ufrag: &str, peer: PeerKey) {
        self.by_ufrag.remove(ufrag);
        self.by_addr.retain(|_, owner| *owner != peer);
    }

    /// The peer `datagram` from `from` is for, learning the address when a STUN
    /// request names a peer by ufrag.
    pub(crate) fn route(&mut self, from: SocketAddr, datagram: &[u8]) -> Option<PeerKey> {
        if let Some(peer) = self.by_addr.get(&from) {
            return Some(*peer);
        }
        let username = stun_username(datagram)?;
        let local_ufrag = username
            .split_once(':')
            .map_or(username, |(local, _)| local);
        let peer = *self.by_ufrag.get(local_ufrag)?;
        self.by_addr.insert(from, peer);
        Some(peer)
    }

    #[cfg(test)]
    pub(crate) fn n_addresses(&self) -> usize {
        self.by_addr.len()
    }
}

/// The USERNAME attribute of a STUN message, if `datagram` is one and has it.
pub(crate) fn stun_username(datagram: &[u8]) -> Option<&str> {
    // RFC 7983: STUN starts with 0..=3; RFC 5389: two zero bits, cookie, 4-byte aligned length.
    if datagram.len() < STUN_HEADER_LEN || datagram[0] > 3 || datagram[4..8] != STUN_MAGIC_COOKIE {
        return None;
    }
    let body_len = usize::from(u16::from_be_bytes([datagram[2], datagram[3]]));
    let body = datagram.get(STUN_HEADER_LEN..STUN_HEADER_LEN + body_len)?;
    let mut rest = body;
    while rest.len() >= 4 {
        let kind = u16::from_be_bytes([rest[0], rest[1]]);
        let len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
        let value = rest.get(4..4 + len)?;
        if kind == ATTR_USERNAME {
            return std::str::from_utf8(value).ok();
        }
        let padded = (len + 3) & !3;
        rest = rest.get(4 + padded..)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn binding_request(username: &str) -> Vec<u8> {
        let mut attr = Vec::new();
        attr.extend_from_slice(&ATTR_USERNAME.to_be_bytes());
        attr.extend_from_slice(&(username.len() as u16).to_be_bytes());
        attr.extend_from_slice(username.as_bytes());
        while attr.len() % 4 != 0 {
            attr.push(0);
        }
        let mut msg = vec![0x00, 0x01];
        msg.extend_from_slice(&(attr.len() as u16).to_be_bytes());
        msg.extend_from_slice(&STUN_MAGIC_COOKIE);
        msg.extend_from_slice(&[7; 12]);
        msg.extend_from_slice(&attr);
        msg
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn a_binding_request_names_its_peer_and_pins_the_address() {
        let mut demux = Demux::default();
        demux.add_peer("abcd".into(), PeerKey(3));
        assert_eq!(
            demux.route(addr(5000), &binding_request("abcd:xyz")),
            Some(PeerKey(3))
        );
        // Later non-STUN datagrams from that address route by address alone.
        assert_eq!(
            demux.route(addr(5000), &[0x80, 0x60, 0, 1]),
            Some(PeerKey(3))
        );
        assert_eq!(demux.route(addr(5001), &[0x80, 0x60, 0, 1]), None);
    }

    #[test]
    fn unknown_ufrags_and_removed_peers_do_not_route() {
        let mut demux = Demux::default();
        demux.add_peer("abcd".into(), PeerKey(3));
        assert_eq!(demux.route(addr(5000), &binding_request("zzzz:xyz")), None);
        assert_eq!(
            demux.route(addr(5000), &binding_request("abcd:xyz")),
            Some(PeerKey(3))
        );
        demux.remove_peer("abcd", PeerKey(3));
        assert_eq!(demux.route(addr(5000), &binding_request("abcd:xyz")), None);
        assert_eq!(demux.n_addresses(), 0);
    }

    #[test]
    fn truncated_stun_yields_no_username() {
        let full = binding_request("abcd:xyz");
        for len in 0..full.len() {
            assert_eq!(stun_username(&full[..len]), None, "prefix of {len} bytes");
        }
        assert_eq!(stun_username(&full), Some("abcd:xyz"));
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_datagrams(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut demux = Demux::default();
            demux.add_peer("abcd".into(), PeerKey(1));
            let _ = demux.route(addr(9), &bytes);
        }

        #[test]
        fn never_panics_on_stun_shaped_datagrams(mut tail in proptest::collection::vec(any::<u8>(), 0..128), len in any::<u16>()) {
            let mut msg = vec![0x00, 0x01];
            msg.extend_from_slice(&len.to_be_bytes());
            msg.extend_from_slice(&STUN_MAGIC_COOKIE);
            msg.extend_from_slice(&[0; 12]);
            msg.append(&mut tail);
            let _ = stun_username(&msg);
        }
    }
}
