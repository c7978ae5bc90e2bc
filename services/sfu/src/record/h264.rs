//! H.264 access units from RTP (RFC 6184, packetization mode 1: single NAL units,
//! STAP-A and FU-A), as Matroska keeps them: each NAL unit behind its 4-byte length
//! (ISO/IEC 14496-15 "AVC sample" form), and the track's codec data an
//! `AVCDecoderConfigurationRecord` made from the sequence and picture parameter sets.
//!
//! Parameter sets stay in the frames as well (as Chromium's own recorder writes them),
//! so a switch to another simulcast layer, with another picture size, decodes.
//!
//! Payloads come from the network: anything malformed is [`Broken`], never a panic.

/// A payload that cannot be part of a decodable access unit.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Broken;

const IDR: u8 = 5;
const SPS: u8 = 7;
const PPS: u8 = 8;
const AUD: u8 = 9;
const STAP_A: u8 = 24;
const FU_A: u8 = 28;

/// One access unit being put together from its packets' payloads.
#[derive(Debug, Default)]
pub(super) struct Unit {
    /// Length-prefixed NAL units.
    pub(super) data: Vec<u8>,
    /// A fragmented NAL unit not yet ended: its header and the fragments so far.
    fragment: Option<Vec<u8>>,
    /// Holds an IDR slice.
    pub(super) idr: bool,
    pub(super) sps: Option<Vec<u8>>,
    pub(super) pps: Option<Vec<u8>>,
}

impl Unit {
    /// Adds one packet's payload.
    pub(super) fn add(&mut self, payload: &[u8]) -> Result<(), Broken> {
        let &header = payload.first().ok_or(Broken)?;
        if header & 0x80 != 0 {
            return Err(Broken); // forbidden_zero_bit
        }
        match header & 0x1f {
            1..=23 => {
                self.no_fragment_open()?;
                self.nal(payload);
            }
            STAP_A => {
                self.no_fragment_open()?;
                let mut rest = &payload[1..];
                if rest.is_empty() {
                    return Err(Broken);
                }
                while !rest.is_empty() {
                    let [hi, lo, body @ ..] = rest else {
                        return Err(Broken);
                    };
                    let len = usize::from(u16::from_be_bytes([*hi, *lo]));
                    let nal = body
                        .get(..len)
                        .filter(|nal| !nal.is_empty())
                        .ok_or(Broken)?;
                    if nal[0] & 0x80 != 0 {
                        return Err(Broken);
                    }
                    self.nal(nal);
                    rest = &body[len..];
                }
            }
            FU_A => {
                let &fu = payload.get(1).ok_or(Broken)?;
                let body = &payload[2..];
                let (start, end) = (fu & 0x80 != 0, fu & 0x40 != 0);
                if start {
                    self.no_fragment_open()?;
                    self.fragment = Some(vec![(header & 0xe0) | (fu & 0x1f)]);
                }
                let fragment = self.fragment.as_mut().ok_or(Broken)?;
                fragment.extend_from_slice(body);
                if end {
                    let nal = self.fragment.take().unwrap_or_default();
                    self.nal(&nal);
                }
            }
            // STAP-B, MTAP and FU-B belong to interleaved mode, which is not
            // negotiated; 0, 30 and 31 are undefined.
            _ => return Err(Broken),
        }
        Ok(())
    }

    /// The unit is whole: no fragment left open, and something in it.
    pub(super) fn finish(&self) -> Result<(), Broken> {
        self.no_fragment_open()?;
        if self.data.is_empty() {
            return Err(Broken);
        }
        Ok(())
    }

    fn no_fragment_open(&self) -> Result<(), Broken> {
        match self.fragment {
            Some(_) => Err(Broken),
            None => Ok(()),
        }
    }

    fn nal(&mut self, nal: &[u8]) {
        match nal[0] & 0x1f {
            IDR => self.idr = true,
            SPS => self.sps = Some(nal.to_vec()),
            PPS => self.pps = Some(nal.to_vec()),
            _ => {}
        }
        self.data
            .extend_from_slice(&(nal.len() as u32).to_be_bytes());
        self.data.extend_from_slice(nal);
    }
}

/// Whether a packet can only be the first of its access unit: an access unit
/// delimiter or a sequence parameter set comes first (RFC 6184 §5.4 orders NAL units
/// in decoding order; H.264 §7.4.1.2.3 puts these before any slice).
pub(super) fn opens_unit(payload: &[u8]) -> bool {
    let first_nal = match payload.first().map(|h| h & 0x1f) {
        Some(STAP_A) => payload.get(3),
        Some(FU_A) => return false,
        _ => payload.first(),
    };
    first_nal.is_some_and(|h| matches!(h & 0x1f, SPS | AUD))
}

/// The `AVCDecoderConfigurationRecord` (ISO/IEC 14496-15 §5.2.4.1) for one SPS and one
/// PPS, with 4-byte NAL unit lengths.
pub(super) fn decoder_config(sps: &[u8], pps: &[u8]) -> Option<Vec<u8>> {
    let profile = sps.get(1..4)?;
    let sps_len = u16::try_from(sps.len()).ok()?;
    let pps_len = u16::try_from(pps.len()).ok()?;
    let mut config = Vec::with_capacity(11 + sps.len() + pps.len());
    config.push(1); // configurationVersion
    config.extend_from_slice(profile); // profile, compatibility, level
    config.push(0xfc | 3); // lengthSizeMinusOne
    config.push(0xe0 | 1); // one SPS
    config.extend_from_slice(&sps_len.to_be_bytes());
    config.extend_from_slice(sps);
    config.push(1); // one PPS
    config.extend_from_slice(&pps_len.to_be_bytes());
    config.extend_from_slice(pps);
    Some(config)
}
