//! Bad datagrams never crash or stall the SFU.
//!
//! A real WebRTC client (webrtc-rs `rtc`) connects to the sans-IO core over the
//! testkit's in-memory wire: ICE, DTLS, then SRTP video and SRTCP. Everything it sent is
//! recorded, and each property case replays, truncates and corrupts those datagrams and
//! mixes in random bytes, from the client's address and from strangers. Then the call
//! must go on: the peer is still there, the client stays connected, and fresh media is
//! accepted. RTCP reaching the stack is parsed by `rtc::rtcp`; its parser gets random
//! and truncated compound packets directly as well.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use confer_testkit::{ClientKind, Wire};
use proptest::prelude::*;

/// A client connected to the SFU, with some media sent; recording what it sent.
fn connected_publisher() -> anyhow::Result<Wire> {
    let mut wire = Wire::new();
    wire.record = true;
    wire.join("fuzz", ClientKind::Publisher)?;
    wire.connect_all(2_000)?;
    for i in 0..400 {
        let now = wire.now;
        wire.clients[0].send_video(now, i % 50 == 0, 200);
        wire.step();
    }
    wire.record = false;
    Ok(wire)
}

fn inject(wire: &mut Wire, from: SocketAddr, datagram: &[u8]) {
    wire.now += Duration::from_micros(200);
    wire.sfu.handle_datagram(wire.now, from, datagram);
    // What the SFU says back goes nowhere: an attacker's address, or noise.
    while wire.sfu.poll_transmit().is_some() {}
}

/// A change to a recorded datagram, or noise.
#[derive(Debug, Clone)]
enum Mutation {
    Replay(usize),
    Truncate(usize, usize),
    FlipBit(usize, usize, u8),
    Random(Vec<u8>),
    /// A recorded datagram from an address that is not the client's.
    FromStranger(usize, u16),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::Replay),
        (any::<usize>(), any::<usize>()).prop_map(|(i, n)| Mutation::Truncate(i, n)),
        (any::<usize>(), any::<usize>(), 0u8..8).prop_map(|(i, p, b)| Mutation::FlipBit(i, p, b)),
        proptest::collection::vec(any::<u8>(), 0..1500).prop_map(Mutation::Random),
        (any::<usize>(), 1024u16..u16::MAX).prop_map(|(i, port)| Mutation::FromStranger(i, port)),
    ]
}

fn apply(wire: &mut Wire, corpus: &[Vec<u8>], mutation: &Mutation) {
    let pick = |i: &usize| corpus[i % corpus.len()].clone();
    let client = wire.clients[0].addr;
    match mutation {
        Mutation::Replay(i) => inject(wire, client, &pick(i)),
        Mutation::Truncate(i, n) => {
            let datagram = pick(i);
            let cut = n % (datagram.len() + 1);
            inject(wire, client, &datagram[..cut]);
        }
        Mutation::FlipBit(i, p, bit) => {
            let mut datagram = pick(i);
            if !datagram.is_empty() {
                let at = p % datagram.len();
                datagram[at] ^= 1 << bit;
            }
            inject(wire, client, &datagram);
        }
        Mutation::Random(bytes) => inject(wire, client, bytes),
        Mutation::FromStranger(i, port) => {
            inject(wire, SocketAddr::from(([10, 9, 8, 7], *port)), &pick(i));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn bad_datagrams_neither_crash_nor_stall_a_call(
        mutations in proptest::collection::vec(mutation(), 1..120)
    ) {
        let mut wire = connected_publisher().expect("the client connects over the wire");
        let corpus = wire.recorded.clone();
        prop_assert!(
            corpus.iter().any(|d| d.len() > 1 && (200..=206).contains(&d[1])),
            "RTCP in the corpus"
        );
        for mutation in &mutations {
            apply(&mut wire, &corpus, mutation);
        }
        prop_assert_eq!(wire.sfu.n_peers(), 1, "the peer survived");
        // The call goes on: seconds of consent checks and fresh media are accepted.
        let before = wire.stats.snapshot();
        for _ in 0..600 {
            let now = wire.now;
            wire.clients[0].send_video(now, false, 200);
            wire.step();
        }
        let after = wire.stats.snapshot();
        prop_assert!(wire.clients[0].connected, "the client is still connected");
        prop_assert!(after.datagrams_received >= before.datagrams_received + 600);
        prop_assert_eq!(after.datagrams_rejected, before.datagrams_rejected, "fresh media was refused");
    }

    #[test]
    fn the_rtcp_parser_takes_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let mut buf = BytesMut::from(&bytes[..]).freeze();
        let _ = rtc::rtcp::packet::unmarshal(&mut buf);
    }

    #[test]
    fn the_rtcp_parser_takes_truncated_compound_packets(cut in 0usize..64) {
        // A receiver report followed by a PLI, cut anywhere.
        let compound: [u8; 44] = [
            0x81, 0xc9, 0x00, 0x07, 0x00, 0x00, 0x00, 0x01, 0x12, 0x34, 0x56, 0x78, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x81, 0xce, 0x00, 0x02, 0x00, 0x00, 0x00, 0x01, 0x12, 0x34,
            0x56, 0x78,
        ];
        let mut buf = bytes::Bytes::copy_from_slice(&compound[..cut.min(compound.len())]);
        let _ = rtc::rtcp::packet::unmarshal(&mut buf);
    }
}
