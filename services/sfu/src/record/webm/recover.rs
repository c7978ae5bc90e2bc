//! Finishing a file its recorder never finished (the SFU stopped mid-recording, and
//! the gateways' sweep found the file abandoned): the blocks up to the last whole
//! one are kept, whatever follows (a block cut off mid-write) is cut away, and the
//! duration is filled in from the last block's time, as [`super::Webm::finish`]
//! would have done, so players show the length and can seek.
//!
//! The file is read once, front to back, element by element (a recording may be
//! large): the segment and its clusters have no size written, so every block is
//! stepped over.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::Path;

use super::{CLUSTER, DURATION, EBML, INFO, SEGMENT, SIMPLE_BLOCK, TIMESTAMP};

/// What [`recover`] made of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recovered {
    /// The last whole block's time, ms from the start: the duration filled in.
    pub duration_ms: u64,
    /// The file's length now (the end of its last whole element).
    pub length: u64,
    /// Bytes cut from the end (an element cut off mid-write).
    pub cut: u64,
}

/// Finishes the WebM file at `path` in place. A file that is not one of ours up to its
/// track header (no duration to fill in) is left as it is, and refused.
pub fn recover(path: &Path) -> io::Result<Recovered> {
    let mut file = File::options().read(true).write(true).open(path)?;
    let total = file.metadata()?.len();
    let scan = scan(BufReader::with_capacity(64 * 1024, &mut file))?;
    let duration_at = scan.duration_at.ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidData, "no segment duration to fill in")
    })?;
    if scan.good_end < total {
        file.set_len(scan.good_end)?;
    }
    file.seek(SeekFrom::Start(duration_at))?;
    file.write_all(&(scan.last_ms as f64).to_be_bytes())?;
    file.flush()?;
    Ok(Recovered {
        duration_ms: scan.last_ms,
        length: scan.good_end,
        cut: total - scan.good_end,
    })
}

/// The largest segment information read (ours is well under 100 bytes).
const MAX_INFO: u64 = 64 * 1024;

/// What one pass over a file found.
#[derive(Debug, Default)]
struct Scan {
    /// Where the duration's 8-byte float is.
    duration_at: Option<u64>,
    /// The last block's time, ms.
    last_ms: u64,
    /// The end of the last whole element.
    good_end: u64,
}

/// Reads element headers and steps over their bodies, counting where it is.
struct Reader<R> {
    inner: R,
    at: u64,
}

impl<R: Read> Reader<R> {
    /// The next element's id and size (`None`: unknown), or `None` at the end of the
    /// bytes (or where an element header is cut off).
    fn header(&mut self) -> io::Result<Option<(u32, Option<u64>)>> {
        let Some(first) = self.byte()? else {
            return Ok(None);
        };
        let id_len = first.leading_zeros() as usize + 1;
        if id_len > 4 {
            return Err(invalid("an element id longer than 4 bytes"));
        }
        let Some(id) = self.vint(first, id_len)? else {
            return Ok(None);
        };
        let Some(marker) = self.byte()? else {
            return Ok(None);
        };
        let size_len = marker.leading_zeros() as usize + 1;
        if size_len > 8 {
            return Err(invalid("an element size longer than 8 bytes"));
        }
        let Some(value) = self.vint(marker, size_len)? else {
            return Ok(None);
        };
        let all_ones = (1u64 << (7 * size_len)) - 1;
        let value = value & all_ones;
        Ok(Some((id as u32, (value != all_ones).then_some(value))))
    }

    /// A variable-length integer of `len` bytes whose first is `first` (its length
    /// marker kept); `None` when the bytes end first.
    fn vint(&mut self, first: u8, len: usize) -> io::Result<Option<u64>> {
        let mut value = u64::from(first);
        for _ in 1..len {
            let Some(b) = self.byte()? else {
                return Ok(None);
            };
            value = (value << 8) | u64::from(b);
        }
        Ok(Some(value))
    }

    fn byte(&mut self) -> io::Result<Option<u8>> {
        let mut b = [0u8];
        match self.inner.read(&mut b)? {
            0 => Ok(None),
            _ => {
                self.at += 1;
                Ok(Some(b[0]))
            }
        }
    }

    /// Reads `len` bytes; `None` when the file ends first.
    fn take(&mut self, len: u64) -> io::Result<Option<Vec<u8>>> {
        let mut data = Vec::with_capacity(usize::try_from(len.min(4096)).unwrap_or(0));
        let read = (&mut self.inner).take(len).read_to_end(&mut data)? as u64;
        self.at += read;
        Ok((read == len).then_some(data))
    }

    /// Steps over `len` bytes; `false` when the file ends first.
    fn skip(&mut self, len: u64) -> io::Result<bool> {
        let skipped = io::copy(&mut (&mut self.inner).take(len), &mut io::sink())?;
        self.at += skipped;
        Ok(skipped == len)
    }
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

/// One pass: the EBML header, the segment's information (where its duration is), then
/// every cluster's timestamp and blocks, until the bytes end or an element is cut off.
fn scan(inner: impl Read) -> io::Result<Scan> {
    let mut reader = Reader { inner, at: 0 };
    let mut scan = Scan::default();
    match reader.header()? {
        Some((EBML, Some(size))) if reader.skip(size)? => {}
        _ => return Err(invalid("not a WebM file")),
    }
    match reader.header()? {
        Some((SEGMENT, _)) => {}
        _ => return Err(invalid("no segment after the EBML header")),
    }
    scan.good_end = reader.at;
    let mut cluster_ms: Option<u64> = None;
    while let Some((id, size)) = reader.header()? {
        let body_at = reader.at;
        match (id, size) {
            // A cluster's size is not known: its children follow, up to the next one.
            (CLUSTER, None) => cluster_ms = None,
            // Sizes no writer of ours gives (a damaged header) end the scan there,
            // rather than read the rest of a large file as one element.
            (INFO, Some(size)) if size > MAX_INFO => break,
            (TIMESTAMP, Some(size)) if size > 8 => break,
            (INFO, Some(size)) => {
                let Some(info) = reader.take(size)? else {
                    break;
                };
                scan.duration_at = duration_in(&info).map(|offset| body_at + offset);
            }
            (TIMESTAMP, Some(size)) => {
                let Some(data) = reader.take(size)? else {
                    break;
                };
                cluster_ms = Some(data.iter().fold(0u64, |v, b| (v << 8) | u64::from(*b)));
            }
            (SIMPLE_BLOCK, Some(size)) => {
                let Some(block) = reader.take(size.min(4))? else {
                    break;
                };
                if size > 4 && !reader.skip(size - 4)? {
                    break;
                }
                // Track number 1 (one byte), then the time from the cluster's.
                if let ([0x81, high, low, ..], Some(cluster)) = (block.as_slice(), cluster_ms) {
                    let relative = i16::from_be_bytes([*high, *low]);
                    let at = cluster.saturating_add_signed(i64::from(relative));
                    scan.last_ms = scan.last_ms.max(at);
                }
            }
            (_, Some(size)) => {
                if !reader.skip(size)? {
                    break;
                }
            }
            (_, None) => return Err(invalid("an element of unknown size that holds no blocks")),
        }
        scan.good_end = reader.at;
    }
    Ok(scan)
}

/// Where the duration's 8-byte float is within the segment information `info`.
fn duration_in(info: &[u8]) -> Option<u64> {
    let mut rest = info;
    while !rest.is_empty() {
        let (field, len, after) = super::read_element(rest)?;
        let len = usize::try_from(len?).ok()?;
        if field == DURATION && len == 8 {
            return Some((info.len() - after.len()) as u64);
        }
        rest = after.get(len..)?;
    }
    None
}

#[cfg(test)]
mod tests;
