//! What one loop pass sends, grouped for UDP GSO: a publisher's frame arrives as a
//! burst of packets, and each subscriber's copies of it can leave in one `sendmsg`
//! (`UDP_SEGMENT`) instead of one system call per packet.
//!
//! A group is packets to one destination, in the order they were queued, all of one
//! size except a shorter last one (the kernel cuts the buffer into segments of the
//! first packet's size). Packets to other destinations queued in between do not break
//! a group: order matters per destination only. Groups go out in the order of their
//! first packet.

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::core::Transmit;

/// Segments in one GSO send (the kernel allows 64 on every version with GSO).
pub(super) const MAX_SEGMENTS: usize = 64;
/// Bytes in one GSO send: a UDP datagram's payload limit over IPv6, the smaller one.
const MAX_GROUP_BYTES: usize = 65_000;

/// Packets queued in one pass and the groups they form. Kept across passes, so the
/// buffers are reused rather than allocated per pass.
#[derive(Debug, Default)]
pub(super) struct Outbox {
    transmits: Vec<Transmit>,
    /// For each transmit, the next one of its group.
    next: Vec<Option<usize>>,
    groups: Vec<Group>,
    /// Each destination's group that may still grow.
    open: HashMap<SocketAddr, usize>,
}

/// Packets to one destination that can leave in one send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Group {
    pub(super) to: SocketAddr,
    /// The size of every packet but the last.
    pub(super) segment: usize,
    pub(super) first: usize,
    last: usize,
    pub(super) count: usize,
    bytes: usize,
    /// Ended by a shorter packet: nothing more may follow it.
    closed: bool,
}

impl Outbox {
    /// Queues a packet; `gso` false makes every packet a group of its own.
    pub(super) fn push(&mut self, transmit: Transmit, gso: bool) {
        let index = self.transmits.len();
        let len = transmit.bytes.len();
        let to = transmit.to;
        self.transmits.push(transmit);
        self.next.push(None);
        if gso
            && let Some(&g) = self.open.get(&to)
            && self.groups[g].admits(len)
        {
            let group = &mut self.groups[g];
            self.next[group.last] = Some(index);
            group.last = index;
            group.count += 1;
            group.bytes += len;
            group.closed = len < group.segment;
            return;
        }
        self.open.insert(to, self.groups.len());
        self.groups.push(Group {
            to,
            segment: len,
            first: index,
            last: index,
            count: 1,
            bytes: len,
            closed: false,
        });
    }

    pub(super) fn groups(&self) -> &[Group] {
        &self.groups
    }

    /// The group's packets, in order.
    pub(super) fn members(&self, group: &Group) -> impl Iterator<Item = &Transmit> {
        std::iter::successors(Some(group.first), |&i| self.next[i]).map(|i| &self.transmits[i])
    }

    pub(super) fn is_empty(&self) -> bool {
        self.transmits.is_empty()
    }

    /// Empties the outbox for the next pass, keeping its buffers.
    pub(super) fn clear(&mut self) {
        self.transmits.clear();
        self.next.clear();
        self.groups.clear();
        self.open.clear();
    }
}

impl Group {
    fn admits(&self, len: usize) -> bool {
        !self.closed
            && len <= self.segment
            && len > 0
            && self.count < MAX_SEGMENTS
            && self.bytes + len <= MAX_GROUP_BYTES
    }
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use proptest::prelude::*;

    use super::*;

    fn transmit(to: u16, len: usize, tag: u8) -> Transmit {
        Transmit {
            to: SocketAddr::from(([127, 0, 0, 1], to)),
            bytes: BytesMut::from(&vec![tag; len][..]),
            rtp_since: None,
        }
    }

    /// (port, sizes) of each group, in sending order.
    fn shapes(outbox: &Outbox) -> Vec<(u16, Vec<usize>)> {
        outbox
            .groups()
            .iter()
            .map(|g| {
                (
                    g.to.port(),
                    outbox.members(g).map(|t| t.bytes.len()).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn a_frame_to_each_subscriber_becomes_one_group_each() {
        let mut outbox = Outbox::default();
        let mut tag = 0;
        // Three packets of a frame, each copied to three subscribers in turn, the
        // last packet shorter.
        for len in [1200, 1200, 900] {
            for port in [1, 2, 3] {
                outbox.push(transmit(port, len, tag), true);
                tag += 1;
            }
        }
        assert_eq!(
            shapes(&outbox),
            vec![
                (1, vec![1200, 1200, 900]),
                (2, vec![1200, 1200, 900]),
                (3, vec![1200, 1200, 900]),
            ]
        );
    }

    #[test]
    fn a_longer_packet_or_one_after_a_shorter_starts_a_new_group() {
        let mut outbox = Outbox::default();
        for len in [1000, 1001, 1001, 990, 990, 990] {
            outbox.push(transmit(7, len, 0), true);
        }
        assert_eq!(
            shapes(&outbox),
            vec![
                (7, vec![1000]),
                (7, vec![1001, 1001, 990]),
                (7, vec![990, 990])
            ]
        );
    }

    #[test]
    fn without_gso_every_packet_is_its_own_group() {
        let mut outbox = Outbox::default();
        for _ in 0..3 {
            outbox.push(transmit(1, 100, 0), false);
        }
        assert_eq!(shapes(&outbox), vec![(1, vec![100]); 3]);
        outbox.clear();
        assert!(outbox.is_empty() && outbox.groups().is_empty());
    }

    #[test]
    fn groups_stop_at_the_segment_and_byte_limits() {
        let mut outbox = Outbox::default();
        for _ in 0..MAX_SEGMENTS + 1 {
            outbox.push(transmit(1, 10, 0), true);
        }
        for _ in 0..60 {
            outbox.push(transmit(2, 1200, 0), true);
        }
        let counts: Vec<(u16, usize)> = outbox
            .groups()
            .iter()
            .map(|g| (g.to.port(), g.count))
            .collect();
        assert_eq!(counts, vec![(1, MAX_SEGMENTS), (1, 1), (2, 54), (2, 6)]);
    }

    proptest! {
        /// Whatever is queued: every packet is in exactly one group, each
        /// destination's packets keep their order across its groups, and every group
        /// is sendable (one size, a shorter last, within the limits).
        #[test]
        fn groups_keep_every_packet_once_and_in_order(
            packets in prop::collection::vec((0u16..4, prop::sample::select(vec![1, 500, 1199, 1200])), 0..300),
            gso in any::<bool>(),
        ) {
            let mut outbox = Outbox::default();
            for (i, (port, len)) in packets.iter().enumerate() {
                outbox.push(transmit(*port, *len, (i % 251) as u8), gso);
            }
            let mut sent: HashMap<u16, Vec<(usize, u8)>> = HashMap::new();
            let mut total = 0;
            for group in outbox.groups() {
                let members: Vec<&Transmit> = outbox.members(group).collect();
                prop_assert_eq!(members.len(), group.count);
                prop_assert!(group.count <= MAX_SEGMENTS);
                prop_assert!(members.iter().map(|t| t.bytes.len()).sum::<usize>() <= MAX_GROUP_BYTES);
                for (k, t) in members.iter().enumerate() {
                    prop_assert_eq!(t.to, group.to);
                    let len = t.bytes.len();
                    if k + 1 < members.len() {
                        prop_assert_eq!(len, group.segment);
                    } else {
                        prop_assert!(len <= group.segment);
                    }
                    sent.entry(t.to.port()).or_default().push((len, t.bytes[0]));
                }
                total += members.len();
            }
            prop_assert_eq!(total, packets.len());
            for port in 0u16..4 {
                let queued: Vec<(usize, u8)> = packets
                    .iter()
                    .enumerate()
                    .filter(|(_, (p, _))| *p == port)
                    .map(|(i, (_, len))| (*len, (i % 251) as u8))
                    .collect();
                prop_assert_eq!(sent.remove(&port).unwrap_or_default(), queued);
            }
        }
    }
}
