//! WebSocket frames as the gateway writes them (RFC 6455 §5.2): final, unmasked
//! (servers never mask), a text frame per message, so a message made once can be
//! framed once and the same bytes written to every member of a room.

use bytes::{BufMut as _, Bytes, BytesMut};

const FIN: u8 = 0x80;
const TEXT: u8 = 0x1;
const CLOSE: u8 = 0x8;
const PING_OPCODE: u8 = 0x9;

/// The longest frame header: 2 bytes and a 64-bit length.
const MAX_HEADER: usize = 10;

/// A frame header for `len` payload bytes of `opcode`; returns it and its length.
fn header(opcode: u8, len: usize) -> ([u8; MAX_HEADER], usize) {
    let mut out = [0; MAX_HEADER];
    out[0] = FIN | opcode;
    let used = match len {
        0..=125 => {
            out[1] = len as u8;
            2
        }
        126..=0xFFFF => {
            out[1] = 126;
            out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            4
        }
        _ => {
            out[1] = 127;
            out[2..10].copy_from_slice(&(len as u64).to_be_bytes());
            10
        }
    };
    (out, used)
}

/// The header of a text frame carrying `len` bytes, to write before them.
pub(crate) fn text_header(len: usize) -> ([u8; MAX_HEADER], usize) {
    header(TEXT, len)
}

/// Text frames, one per message of `texts`, back to back.
pub(crate) fn text_frames<'a>(texts: impl IntoIterator<Item = &'a str>) -> Bytes {
    let mut out = BytesMut::new();
    for text in texts {
        let (head, used) = text_header(text.len());
        out.reserve(used + text.len());
        out.put_slice(&head[..used]);
        out.put_slice(text.as_bytes());
    }
    out.freeze()
}

/// A ping frame with no payload: a live client answers it with a pong.
pub(crate) const PING: [u8; 2] = [FIN | PING_OPCODE, 0];

/// A close frame with status `code` (1000: normal closure) and no reason.
pub(crate) fn close_frame(code: u16) -> Bytes {
    let (head, used) = header(CLOSE, 2);
    let mut out = BytesMut::with_capacity(used + 2);
    out.put_slice(&head[..used]);
    out.put_u16(code);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_take_the_shortest_of_the_three_encodings() {
        for (len, expected) in [
            (0, vec![0x81, 0]),
            (125, vec![0x81, 125]),
            (126, vec![0x81, 126, 0, 126]),
            (0xFFFF, vec![0x81, 126, 0xFF, 0xFF]),
            (0x1_0000, vec![0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
        ] {
            let (head, used) = text_header(len);
            assert_eq!(&head[..used], expected.as_slice(), "{len} bytes");
        }
    }

    #[test]
    fn frames_follow_each_other_whole() {
        let frames = text_frames(["hi", "there"]);
        assert_eq!(&frames[..], b"\x81\x02hi\x81\x05there");
        assert_eq!(&close_frame(1000)[..], [0x88, 2, 0x03, 0xE8]);
    }
}
