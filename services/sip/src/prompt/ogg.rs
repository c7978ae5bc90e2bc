//! Reading an Ogg Opus file (RFC 7845) into its audio packets: the container the
//! prompts are kept in. Pages are checked (capture pattern, version, CRC) and packets
//! put together across pages; the identification and comment headers are checked and
//! left out.

/// Why bytes are not an Ogg Opus file we read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OggError {
    #[error("a page does not start with OggS")]
    NotOgg,
    #[error("a page of an Ogg version other than 0")]
    Version,
    #[error("a page ends before its header or segments do")]
    Truncated,
    #[error("a page's CRC does not match its bytes")]
    Crc,
    #[error("the first packet is not an OpusHead")]
    NotOpus,
    #[error("the file ends inside a packet")]
    UnfinishedPacket,
    #[error("audio packet {0} is not Opus: its TOC gives no length")]
    NotOpusAudio(usize),
}

/// The audio packets of an Ogg Opus file with one logical stream, in order.
pub fn opus_packets(file: &[u8]) -> Result<Vec<Vec<u8>>, OggError> {
    let mut packets = Vec::new();
    let mut partial: Vec<u8> = Vec::new();
    let mut rest = file;
    while !rest.is_empty() {
        let page = page(rest)?;
        let mut at = 0;
        for &lacing in page.segments {
            let len = usize::from(lacing);
            partial.extend_from_slice(&page.data[at..at + len]);
            at += len;
            if lacing < 255 {
                packets.push(std::mem::take(&mut partial));
            }
        }
        rest = page.after;
    }
    if !partial.is_empty() {
        return Err(OggError::UnfinishedPacket);
    }
    let mut packets = packets.into_iter();
    if !packets
        .next()
        .is_some_and(|head| head.starts_with(b"OpusHead"))
    {
        return Err(OggError::NotOpus);
    }
    // The comment header (OpusTags); audio follows.
    packets.next();
    Ok(packets.filter(|p| !p.is_empty()).collect())
}

/// One page read off the start of a file.
struct Page<'a> {
    /// Its lacing values: each segment's length (255: the packet goes on).
    segments: &'a [u8],
    data: &'a [u8],
    /// The bytes after it.
    after: &'a [u8],
}

/// The page at the start of `bytes`, checked.
fn page(bytes: &[u8]) -> Result<Page<'_>, OggError> {
    const HEADER: usize = 27;
    if bytes.len() < 4 || &bytes[..4] != b"OggS" {
        return Err(OggError::NotOgg);
    }
    let header = bytes.get(..HEADER).ok_or(OggError::Truncated)?;
    if header[4] != 0 {
        return Err(OggError::Version);
    }
    let count = usize::from(header[26]);
    let segments = bytes
        .get(HEADER..HEADER + count)
        .ok_or(OggError::Truncated)?;
    let data_len: usize = segments.iter().map(|&s| usize::from(s)).sum();
    let end = HEADER + count + data_len;
    let whole = bytes.get(..end).ok_or(OggError::Truncated)?;
    let stated = u32::from_le_bytes([header[22], header[23], header[24], header[25]]);
    if crc(whole) != stated {
        return Err(OggError::Crc);
    }
    Ok(Page {
        segments,
        data: &whole[HEADER + count..],
        after: &bytes[end..],
    })
}

/// Ogg's CRC-32 (polynomial 0x04c11db7, not reflected, starting at 0) of a page, its
/// CRC field read as zeros.
fn crc(page: &[u8]) -> u32 {
    page.iter().enumerate().fold(0u32, |crc, (i, &byte)| {
        let byte = if (22..26).contains(&i) { 0 } else { byte };
        (crc << 8) ^ CRC_TABLE[usize::from((crc >> 24) as u8 ^ byte)]
    })
}

const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut r = (i as u32) << 24;
        let mut bit = 0;
        while bit < 8 {
            r = if r & 0x8000_0000 != 0 {
                (r << 1) ^ 0x04c1_1db7
            } else {
                r << 1
            };
            bit += 1;
        }
        table[i] = r;
        i += 1;
    }
    table
};

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A page of `packets` (each under 255 bytes), its CRC filled in.
    fn page_of(packets: &[&[u8]], flags: u8, sequence: u32) -> Vec<u8> {
        let mut page = b"OggS".to_vec();
        page.extend_from_slice(&[0, flags]);
        page.extend_from_slice(&0u64.to_le_bytes());
        page.extend_from_slice(&1u32.to_le_bytes());
        page.extend_from_slice(&sequence.to_le_bytes());
        page.extend_from_slice(&[0; 4]);
        page.push(packets.len() as u8);
        page.extend(packets.iter().map(|p| p.len() as u8));
        for packet in packets {
            page.extend_from_slice(packet);
        }
        let crc = crc(&page);
        page[22..26].copy_from_slice(&crc.to_le_bytes());
        page
    }

    /// An Ogg Opus file of `audio` packets (each under 255 bytes).
    pub(crate) fn file(audio: &[&[u8]]) -> Vec<u8> {
        let mut file = page_of(&[b"OpusHead\x01\x01\x38\x01\x80\xbb\0\0\0\0\0"], 2, 0);
        file.extend(page_of(&[b"OpusTags\0\0\0\0\0\0\0\0"], 0, 1));
        file.extend(page_of(audio, 4, 2));
        file
    }

    #[test]
    fn a_files_audio_packets_are_read_in_order_without_the_headers() {
        let packets = opus_packets(&file(&[b"\x48one", b"\x48two", b"\x48three"]));
        assert_eq!(
            packets,
            Ok(vec![
                b"\x48one".to_vec(),
                b"\x48two".to_vec(),
                b"\x48three".to_vec()
            ])
        );
    }

    #[test]
    fn a_packet_spanning_pages_is_put_together() {
        let long = vec![0x48; 300];
        let mut bytes = page_of(&[b"OpusHead\x01\x01\x38\x01\x80\xbb\0\0\0\0\0"], 2, 0);
        bytes.extend(page_of(&[b"OpusTags\0\0\0\0\0\0\0\0"], 0, 1));
        // 300 bytes: a 255 lacing value ends the first page; 45 more on the next.
        let mut first = b"OggS".to_vec();
        first.extend_from_slice(&[0, 0]);
        first.extend_from_slice(&[0; 8]);
        first.extend_from_slice(&1u32.to_le_bytes());
        first.extend_from_slice(&2u32.to_le_bytes());
        first.extend_from_slice(&[0; 4]);
        first.extend_from_slice(&[1, 255]);
        first.extend_from_slice(&long[..255]);
        let sum = crc(&first);
        first[22..26].copy_from_slice(&sum.to_le_bytes());
        bytes.extend(first);
        bytes.extend(page_of(&[&long[255..]], 1 | 4, 3));
        assert_eq!(opus_packets(&bytes), Ok(vec![long]));
    }

    #[test]
    fn damaged_files_are_refused_with_their_reason() {
        let good = file(&[b"\x48one"]);
        assert_eq!(opus_packets(b"RIFF...."), Err(OggError::NotOgg));
        assert_eq!(opus_packets(&good[..20]), Err(OggError::Truncated));
        assert_eq!(
            opus_packets(&good[..good.len() - 1]),
            Err(OggError::Truncated)
        );
        let mut flipped = good.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert_eq!(opus_packets(&flipped), Err(OggError::Crc));
        let mut version = good.clone();
        version[4] = 1;
        assert_eq!(opus_packets(&version), Err(OggError::Version));
        let vorbis = page_of(&[b"\x01vorbis"], 2, 0);
        assert_eq!(opus_packets(&vorbis), Err(OggError::NotOpus));
    }

    #[test]
    fn the_crc_is_oggs() {
        // The CRC of "123456789" under Ogg's parameters: CRC-32/CKSUM's check value
        // (0x765e7680) without that CRC's final inversion.
        let table_check = b"123456789".iter().fold(0u32, |crc, &b| {
            (crc << 8) ^ CRC_TABLE[usize::from((crc >> 24) as u8 ^ b)]
        });
        assert_eq!(table_check, 0x89a1_897f);
    }

    proptest! {
        #[test]
        fn any_bytes_are_read_or_refused_without_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = opus_packets(&bytes);
        }

        #[test]
        fn a_damaged_file_is_read_or_refused_without_a_panic(
            cut in 0usize..200, flips in proptest::collection::vec((0usize..200, any::<u8>()), 0..4)
        ) {
            let mut bytes = file(&[b"\x48one", &[0x48; 120], b"\x48three"]);
            for (at, byte) in flips {
                let at = at % bytes.len();
                bytes[at] ^= byte;
            }
            bytes.truncate(bytes.len().saturating_sub(cut % 40));
            let _ = opus_packets(&bytes);
        }

        #[test]
        fn any_packets_come_back_as_they_went_in(
            audio in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..254), 1..40)
        ) {
            let slices: Vec<&[u8]> = audio.iter().map(Vec::as_slice).collect();
            prop_assert_eq!(opus_packets(&file(&slices)), Ok(audio.clone()));
        }
    }
}
