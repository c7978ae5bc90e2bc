//! The last packets sent on one outgoing stream, by sequence number, to answer NACKs.
//!
//! A ring of [`SENT_PACKETS`] slots indexed by the sequence number's low bits. A slot
//! remembers its packet's full sequence number, so a NACK for a packet the ring has
//! already overwritten (or never held) finds nothing rather than a stranger. Storing a
//! copy costs no allocation: the payload is shared and the SFU strips header extensions
//! on the way in. The ring itself (some 100 KiB) is made with the stream's first
//! packet: a receive slot that nothing is assigned to, most of a big room's, costs
//! nothing.

use rtc::rtp::Packet;

/// Packets kept per outgoing stream (a power of two). A subscriber asks for a lost
/// packet within a few round trips; at 2,000 packets a second this is half a second.
pub(crate) const SENT_PACKETS: usize = 1024;

/// Empty until the first packet is kept.
#[derive(Default)]
pub(crate) struct SentPackets {
    slots: Vec<Option<Packet>>,
}

impl SentPackets {
    fn index(sequence: u16) -> usize {
        usize::from(sequence) & (SENT_PACKETS - 1)
    }

    /// Keeps `packet`, in place of whatever shared its slot.
    pub(crate) fn keep(&mut self, packet: &Packet) {
        if self.slots.is_empty() {
            self.slots = vec![None; SENT_PACKETS];
        }
        self.slots[Self::index(packet.header.sequence_number)] = Some(packet.clone());
    }

    /// The packet sent as `sequence`, if it is still kept.
    pub(crate) fn get(&self, sequence: u16) -> Option<&Packet> {
        self.slots
            .get(Self::index(sequence))?
            .as_ref()
            .filter(|packet| packet.header.sequence_number == sequence)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rtc::rtp::header::Header;

    fn packet(sequence: u16, byte: u8) -> Packet {
        Packet {
            header: Header {
                version: 2,
                sequence_number: sequence,
                ..Header::default()
            },
            payload: vec![byte; 3].into(),
        }
    }

    #[test]
    fn finds_what_it_keeps_and_forgets_what_was_overwritten() {
        let mut sent = SentPackets::default();
        assert!(sent.get(0).is_none(), "nothing sent yet");
        assert_eq!(sent.slots.capacity(), 0, "no ring before the first packet");
        sent.keep(&packet(65_535, 1));
        sent.keep(&packet(0, 2));
        assert_eq!(sent.get(65_535).map(|p| p.payload[0]), Some(1));
        assert_eq!(sent.get(0).map(|p| p.payload[0]), Some(2));
        assert!(sent.get(1).is_none(), "never sent");
        // 1,024 later the same slot holds another packet.
        sent.keep(&packet(1_024, 3));
        assert!(sent.get(0).is_none(), "overwritten");
        assert_eq!(sent.get(1_024).map(|p| p.payload[0]), Some(3));
    }

    proptest! {
        /// Against a plain model: whatever was sent, a lookup returns exactly the last
        /// packet sent under that number while no later packet has taken its slot.
        #[test]
        fn agrees_with_a_model(sends in proptest::collection::vec((any::<u16>(), any::<u8>()), 1..3_000),
                               asks in proptest::collection::vec(any::<u16>(), 1..200)) {
            let mut sent = SentPackets::default();
            let mut model: Vec<(u16, u8)> = Vec::new();
            for &(sequence, byte) in &sends {
                sent.keep(&packet(sequence, byte));
                model.push((sequence, byte));
            }
            for ask in asks.into_iter().chain(sends.iter().map(|&(s, _)| s)) {
                let slot = SentPackets::index(ask);
                let expected = model
                    .iter()
                    .rev()
                    .find(|(s, _)| SentPackets::index(*s) == slot)
                    .filter(|(s, _)| *s == ask)
                    .map(|&(_, byte)| byte);
                prop_assert_eq!(sent.get(ask).map(|p| p.payload[0]), expected);
            }
        }
    }
}
