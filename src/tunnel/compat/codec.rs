//! The seed's binary tunnel frame (ws-stream-tunnel 0.4.12–0.4.29, `SubStream.frame`/`frameParser`): one
//! WebSocket binary message is one frame, `[type:3 | reserved:2 | idBytes:3] [sid: idBytes, big-endian]
//! [payload]`, plus the variable-length credit number carried by `read` frames.
//!
//! The seed *sends* 2-byte sids for every sid below 16 777 216 (a truncation bug: sids 65 536 and up are
//! misrouted), but *parses* 2- and 4-byte sids correctly. So we decode whatever it sends and encode the
//! correct width: 0 bytes for sid 0, 2 bytes below 65 536, 4 bytes otherwise.

use bytes::Bytes;

/// What a frame does (its 3-bit type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameType {
    /// 0: stream bytes.
    Data,
    /// 1: open a stream with this sid.
    Start,
    /// 2: close the stream (the seed has no half-close: both directions end).
    Close,
    /// 3: unused by the seed; ignored.
    Unused,
    /// 4: answer to `Start`: the stream is open.
    Started,
    /// 5: answer to `Close`.
    Closed,
    /// 6: the stream failed; the payload is a UTF-8 message (empty when a `Start` is refused).
    Error,
    /// 7: flow-control credit: the peer may send this many more bytes on the stream.
    Read,
}

impl FrameType {
    fn from_bits(bits: u8) -> FrameType {
        match bits & 0b111 {
            0 => FrameType::Data,
            1 => FrameType::Start,
            2 => FrameType::Close,
            3 => FrameType::Unused,
            4 => FrameType::Started,
            5 => FrameType::Closed,
            6 => FrameType::Error,
            _ => FrameType::Read,
        }
    }

    fn bits(self) -> u8 {
        match self {
            FrameType::Data => 0,
            FrameType::Start => 1,
            FrameType::Close => 2,
            FrameType::Unused => 3,
            FrameType::Started => 4,
            FrameType::Closed => 5,
            FrameType::Error => 6,
            FrameType::Read => 7,
        }
    }
}

/// One decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The frame type.
    pub kind: FrameType,
    /// The stream id.
    pub sid: u32,
    /// Everything after the sid (a slice of the received message, not a copy).
    pub payload: Bytes,
}

/// A binary message that is not a frame.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A zero-length binary message.
    #[error("empty frame")]
    Empty,
    /// The header announces more sid bytes than the message holds.
    #[error("frame shorter than its {0}-byte stream id")]
    Truncated(usize),
}

/// Decodes one binary message. Like the seed's parser, an idBytes value other than 2 or 4 yields sid 0
/// but its bytes are still skipped.
pub fn decode(msg: Bytes) -> Result<Frame, DecodeError> {
    let first = *msg.first().ok_or(DecodeError::Empty)?;
    let id_bytes = usize::from(first & 0b111);
    if msg.len() < 1 + id_bytes {
        return Err(DecodeError::Truncated(id_bytes));
    }
    let sid = match id_bytes {
        2 => u32::from(u16::from_be_bytes([msg[1], msg[2]])),
        4 => u32::from_be_bytes([msg[1], msg[2], msg[3], msg[4]]),
        _ => 0,
    };
    Ok(Frame { kind: FrameType::from_bits(first >> 5), sid, payload: msg.slice(1 + id_bytes..) })
}

/// How many bytes the header of a frame for `sid` takes when we send it.
pub fn header_len(sid: u32) -> usize {
    match sid {
        0 => 1,
        1..=0xFFFF => 3,
        _ => 5,
    }
}

/// Writes the header for (`kind`, `sid`) into the first [`header_len`] bytes of `buf`.
pub fn write_header(buf: &mut [u8], kind: FrameType, sid: u32) {
    let len = header_len(sid);
    let id_bytes = (len - 1) as u8;
    buf[0] = (kind.bits() << 5) | id_bytes;
    match id_bytes {
        2 => buf[1..3].copy_from_slice(&(sid as u16).to_be_bytes()),
        4 => buf[1..5].copy_from_slice(&sid.to_be_bytes()),
        _ => {}
    }
}

/// Encodes a whole frame (copies `payload`; the relay builds data frames in place instead).
pub fn encode(kind: FrameType, sid: u32, payload: &[u8]) -> Bytes {
    let hl = header_len(sid);
    let mut buf = vec![0u8; hl + payload.len()];
    write_header(&mut buf, kind, sid);
    buf[hl..].copy_from_slice(payload);
    Bytes::from(buf)
}

/// Largest credit a `read` frame can carry (6 bytes: the seed reads it with `readUIntBE`, max 6 bytes).
pub const MAX_CREDIT: u64 = (1 << 48) - 1;

/// The payload of a `read` frame granting `credit` bytes: minimal big-endian, empty for 0 (as the seed
/// writes it). Values above [`MAX_CREDIT`] are clamped.
pub fn encode_credit(credit: u64) -> Vec<u8> {
    let credit = credit.min(MAX_CREDIT);
    let bytes = credit.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    bytes[skip..].to_vec()
}

/// The credit in a `read` frame's payload: an unsigned big-endian integer of 0–6 bytes (empty = 0).
/// `None` for longer payloads, which the seed itself cannot parse.
pub fn decode_credit(payload: &[u8]) -> Option<u64> {
    if payload.len() > 6 {
        return None;
    }
    Some(payload.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transcript_frames_decode() {
        // From the captured seed transcript (docs: ws-stream-tunnel-protocol.md).
        let f = decode(Bytes::from_static(&[0x22, 0x00, 0x01])).unwrap();
        assert_eq!((f.kind, f.sid, f.payload.len()), (FrameType::Start, 1, 0));
        let f = decode(Bytes::from_static(&[0x02, 0x00, 0x01, b'p', b'i', b'n', b'g'])).unwrap();
        assert_eq!((f.kind, f.sid, &f.payload[..]), (FrameType::Data, 1, &b"ping"[..]));
        let f = decode(Bytes::from_static(&[0xe2, 0x00, 0x01, 0x50, 0x00, 0x00])).unwrap();
        assert_eq!((f.kind, decode_credit(&f.payload)), (FrameType::Read, Some(5 << 20)));
        let f = decode(Bytes::from_static(&[0x40])).unwrap();
        assert_eq!((f.kind, f.sid), (FrameType::Close, 0));
    }

    #[test]
    fn transcript_frames_encode() {
        assert_eq!(&encode(FrameType::Started, 1, &[])[..], &[0x82, 0x00, 0x01]);
        assert_eq!(&encode(FrameType::Closed, 1, &[])[..], &[0xa2, 0x00, 0x01]);
        assert_eq!(
            &encode(FrameType::Read, 1, &encode_credit(5 << 20))[..],
            &[0xe2, 0x00, 0x01, 0x50, 0x00, 0x00]
        );
        assert_eq!(&encode(FrameType::Started, 0, &[])[..], &[0x80]);
        assert_eq!(&encode(FrameType::Read, 0, &encode_credit(5 << 20))[..], &[0xe0, 0x50, 0x00, 0x00]);
    }

    #[test]
    fn sid_widths_we_send_are_correct() {
        assert_eq!(&encode(FrameType::Data, 65535, b"")[..], &[0x02, 0xff, 0xff]);
        // The seed would send 70000 as `02 11 70` (truncated); we use 4 bytes, which it parses properly.
        assert_eq!(&encode(FrameType::Data, 70000, b"x")[..], &[0x04, 0x00, 0x01, 0x11, 0x70, b'x']);
        assert_eq!(decode(encode(FrameType::Close, u32::MAX, b"")).unwrap().sid, u32::MAX);
    }

    #[test]
    fn seed_truncated_sid_is_parsed_as_sent() {
        // What the seed puts on the wire for sid 70000: idBytes=2, value 70000 mod 65536.
        assert_eq!(decode(Bytes::from_static(&[0x02, 0x11, 0x70])).unwrap().sid, 4464);
    }

    #[test]
    fn odd_id_widths_and_bad_input() {
        let f = decode(Bytes::from_static(&[0x03, 1, 2, 3, b'z'])).unwrap();
        assert_eq!((f.sid, &f.payload[..]), (0, &b"z"[..]));
        assert_eq!(decode(Bytes::new()), Err(DecodeError::Empty));
        assert_eq!(decode(Bytes::from_static(&[0x04, 1, 2])), Err(DecodeError::Truncated(4)));
        assert_eq!(decode(Bytes::from_static(&[0x07])), Err(DecodeError::Truncated(7)));
    }

    #[test]
    fn credit_numbers() {
        assert_eq!(encode_credit(0), Vec::<u8>::new());
        assert_eq!(encode_credit(1), vec![1]);
        assert_eq!(encode_credit(0x0102), vec![1, 2]);
        assert_eq!(encode_credit(u64::MAX), vec![0xff; 6]);
        assert_eq!(decode_credit(&[]), Some(0));
        assert_eq!(decode_credit(&[0xff; 6]), Some(MAX_CREDIT));
        assert_eq!(decode_credit(&[1; 7]), None);
    }
}
