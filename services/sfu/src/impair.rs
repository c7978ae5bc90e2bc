//! Fault injection on the media socket: drops a share of RTP datagrams on their way in
//! or out, like `tc netem` on the SFU's link, so loss recovery can be tested and
//! measured without a network namespace. Off unless configured; production never sets it.

use rand::{RngExt as _, SeedableRng as _, rngs::SmallRng};

/// Shares (0.0 to 1.0) of RTP datagrams to drop. RTCP, STUN and DTLS always pass, as
/// the interesting failure is lost media, not a lost handshake.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Impairment {
    pub inbound_rtp_loss: f64,
    pub outbound_rtp_loss: f64,
    /// Seed of the drop decisions, so a run can be repeated.
    pub seed: u64,
}

impl Impairment {
    pub fn is_active(&self) -> bool {
        self.inbound_rtp_loss > 0.0 || self.outbound_rtp_loss > 0.0
    }
}

pub(crate) struct Impairer {
    config: Impairment,
    rng: SmallRng,
}

impl Impairer {
    pub(crate) fn new(config: Impairment) -> Self {
        Self {
            config,
            rng: SmallRng::seed_from_u64(config.seed),
        }
    }

    pub(crate) fn drop_inbound(&mut self, datagram: &[u8]) -> bool {
        self.drop(self.config.inbound_rtp_loss, datagram)
    }

    pub(crate) fn drop_outbound(&mut self, datagram: &[u8]) -> bool {
        self.drop(self.config.outbound_rtp_loss, datagram)
    }

    fn drop(&mut self, share: f64, datagram: &[u8]) -> bool {
        share > 0.0 && is_rtp(datagram) && self.rng.random_bool(share.min(1.0))
    }
}

/// RFC 7983 / RFC 5761: first byte 128..=191 is RTP or RTCP; RTCP packet types are
/// 192..=223 in the second byte.
fn is_rtp(datagram: &[u8]) -> bool {
    match datagram {
        [first, second, ..] => (128..=191).contains(first) && !(192..=223).contains(second),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_about_the_configured_share_of_rtp_only() {
        let mut impairer = Impairer::new(Impairment {
            inbound_rtp_loss: 0.05,
            outbound_rtp_loss: 0.0,
            seed: 7,
        });
        let rtp = [0x80, 96, 0, 1];
        let rtcp = [0x81, 201, 0, 1];
        let dropped = (0..10_000).filter(|_| impairer.drop_inbound(&rtp)).count();
        assert!((350..650).contains(&dropped), "dropped {dropped} of 10000");
        assert!((0..1000).all(|_| !impairer.drop_inbound(&rtcp)));
        assert!((0..1000).all(|_| !impairer.drop_outbound(&rtp)));
        assert!(!impairer.drop_inbound(&[0x00, 0x01]));
    }
}
