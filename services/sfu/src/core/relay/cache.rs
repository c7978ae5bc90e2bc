//! The media a relay sent lately, per layer, so that what the far side reports missing
//! (`Nack`) is sent again. Kept only while the room has links (only then is anything
//! relayed); a layer holds its last [`PACKETS`] packets, about 1.5 s of a high layer.

use std::collections::{HashMap, HashSet};

/// Packets kept per layer (a power of two: slots are indexed by sequence number).
pub(crate) const PACKETS: usize = 256;

/// One layer's ring: slot `seq % PACKETS` holds the message of packet `seq`.
type Ring = Box<[Option<(u16, Vec<u8>)>]>;

#[derive(Default)]
pub(crate) struct SentCache {
    /// (publication number, SSRC) → its ring.
    layers: HashMap<(u32, u32), Ring>,
}

impl SentCache {
    /// Keeps `plaintext`, the relay message that carried packet `seq` of the layer.
    pub(crate) fn store(&mut self, track: u32, ssrc: u32, seq: u16, plaintext: &[u8]) {
        let slots = self
            .layers
            .entry((track, ssrc))
            .or_insert_with(|| vec![None; PACKETS].into_boxed_slice());
        let slot = &mut slots[usize::from(seq) % PACKETS];
        match slot {
            // Reuse the slot's buffer: no allocation once the ring has gone round.
            Some((held, bytes)) => {
                *held = seq;
                bytes.clear();
                bytes.extend_from_slice(plaintext);
            }
            None => *slot = Some((seq, plaintext.to_vec())),
        }
    }

    /// The message that carried packet `seq` of the layer, if still kept.
    pub(crate) fn get(&self, track: u32, ssrc: u32, seq: u16) -> Option<&[u8]> {
        let slots = self.layers.get(&(track, ssrc))?;
        match &slots[usize::from(seq) % PACKETS] {
            Some((held, bytes)) if *held == seq => Some(bytes),
            _ => None,
        }
    }

    /// Drops the layers of publications that are no longer relayed.
    pub(crate) fn retain_tracks(&mut self, live: &HashSet<u32>) {
        self.layers.retain(|(track, _), _| live.contains(track));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_packets_per_layer_and_forgets_older_ones() {
        let mut cache = SentCache::default();
        for seq in 0..300u16 {
            cache.store(1, 10, seq, &seq.to_be_bytes());
        }
        cache.store(1, 11, 5, b"other layer");
        assert_eq!(cache.get(1, 10, 299), Some(&299u16.to_be_bytes()[..]));
        assert_eq!(cache.get(1, 10, 44), Some(&44u16.to_be_bytes()[..]));
        assert_eq!(cache.get(1, 10, 43), None, "overwritten by 299");
        assert_eq!(cache.get(1, 11, 5), Some(&b"other layer"[..]));
        assert_eq!(cache.get(2, 10, 299), None);
        cache.retain_tracks(&HashSet::from([2]));
        assert_eq!(cache.get(1, 10, 299), None);
    }

    #[test]
    fn sequence_numbers_wrap() {
        let mut cache = SentCache::default();
        for seq in [65_534u16, 65_535, 0, 1] {
            cache.store(1, 1, seq, &[seq as u8]);
        }
        assert_eq!(cache.get(1, 1, 65_535), Some(&[255u8][..]));
        assert_eq!(cache.get(1, 1, 1), Some(&[1u8][..]));
    }
}
