//! The tunnel frame codec: one binary WebSocket message is one frame with the fixed 22-byte header described
//! in `docs/protocol.md` (type, flags, stream id, link sequence, cumulative ack) followed by the payload.
//!
//! This file owns the header: every offset into it is one of the `OFFSET_*` constants below, and code
//! that holds an encoded frame asks [`peek_kind`], [`peek_fin`] or [`payload_len`] instead of indexing
//! bytes. The payloads (HELLO's fields, OPEN's target, ...) are owned by [`super::wire`].

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Offset of the frame type byte.
pub const OFFSET_TYPE: usize = 0;
/// Offset of the flags byte.
pub const OFFSET_FLAGS: usize = 1;
/// Offset of the stream id (u32).
pub const OFFSET_STREAM: usize = 2;
/// Offset of the link sequence number (u64).
pub const OFFSET_SEQ: usize = 6;
/// Offset of the cumulative ack (u64).
pub const OFFSET_ACK: usize = 14;
/// Length of the fixed frame header in bytes (the payload starts here).
pub const HEADER_LEN: usize = 22;
/// Default cap on a frame's payload (bytes); keeps streams interleaved fairly.
pub const DEFAULT_MAX_FRAME: usize = 64 * 1024;
/// Flag bit: the sender will send no more bytes on this stream (half-close).
pub const FLAG_FIN: u8 = 0x01;

/// What a frame is for. The numbering is part of the wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameType {
    /// Client asks for a new tunnel.
    Hello = 0x01,
    /// Server grants a tunnel: id, resume secret, limits.
    Welcome = 0x02,
    /// Client reattaches to a broken tunnel.
    Resume = 0x03,
    /// Server accepted the resume.
    Resumed = 0x04,
    /// Server refused a hello or resume.
    Refused = 0x05,
    /// Open a stream to a target (optional 0-RTT data).
    Open = 0x10,
    /// Stream bytes.
    Data = 0x11,
    /// Credit for a stream's sender.
    Window = 0x12,
    /// Abort a stream with a reason.
    Rst = 0x13,
    /// Client asks the server to listen and open streams back (`-R`).
    Listen = 0x14,
    /// Server's answer to a `Listen`: bound address or refusal.
    Bound = 0x15,
    /// The accepting side reached the stream's target.
    Connected = 0x16,
    /// Bare cumulative ack.
    Ack = 0x20,
    /// Heartbeat request.
    Ping = 0x21,
    /// Heartbeat answer.
    Pong = 0x22,
    /// Orderly end of the tunnel.
    Close = 0x23,
}

impl FrameType {
    /// Decodes a type byte.
    pub fn from_u8(b: u8) -> Option<Self> {
        use FrameType::*;
        Some(match b {
            0x01 => Hello,
            0x02 => Welcome,
            0x03 => Resume,
            0x04 => Resumed,
            0x05 => Refused,
            0x10 => Open,
            0x11 => Data,
            0x12 => Window,
            0x13 => Rst,
            0x14 => Listen,
            0x15 => Bound,
            0x16 => Connected,
            0x20 => Ack,
            0x21 => Ping,
            0x22 => Pong,
            0x23 => Close,
            _ => return None,
        })
    }

    /// Whether frames of this type carry a link sequence number and are kept for replay.
    pub fn is_sequenced(self) -> bool {
        matches!(
            self,
            FrameType::Open
                | FrameType::Data
                | FrameType::Window
                | FrameType::Rst
                | FrameType::Listen
                | FrameType::Bound
                | FrameType::Connected
                | FrameType::Close
        )
    }
}

/// One decoded frame. The payload shares the WebSocket message's buffer (no copy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Frame type.
    pub kind: FrameType,
    /// Flags (`FLAG_FIN`).
    pub flags: u8,
    /// Stream id, 0 for link frames.
    pub stream: u32,
    /// Link sequence number (sequenced frames), else 0.
    pub seq: u64,
    /// Cumulative ack of the peer's frames.
    pub ack: u64,
    /// Type-specific payload.
    pub payload: Bytes,
}

/// Why bytes are not a valid frame.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    /// Fewer bytes than the header.
    #[error("frame shorter than its {HEADER_LEN}-byte header ({0} bytes)")]
    Short(usize),
    /// Unknown type byte.
    #[error("unknown frame type 0x{0:02x}")]
    UnknownType(u8),
    /// Payload above the negotiated cap.
    #[error("frame payload of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Payload length.
        len: usize,
        /// Limit.
        max: usize,
    },
}

impl Frame {
    /// A frame with no flags, seq or ack yet (the link fills those in when it sends).
    pub fn new(kind: FrameType, stream: u32, payload: Bytes) -> Self {
        Frame { kind, flags: 0, stream, seq: 0, ack: 0, payload }
    }

    /// Whether the FIN flag is set.
    pub fn fin(&self) -> bool {
        self.flags & FLAG_FIN != 0
    }

    /// Encoded size in bytes (what the replay buffer accounts).
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.payload.len()
    }

    /// Encodes into one buffer, ready to be a binary WebSocket message.
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(self.encoded_len());
        b.put_u8(self.kind as u8);
        b.put_u8(self.flags);
        b.put_u32(self.stream);
        b.put_u64(self.seq);
        b.put_u64(self.ack);
        b.put_slice(&self.payload);
        b.freeze()
    }

    /// Starts an encoded frame whose payload the caller appends: the header is written with `seq` and `ack`
    /// zero, to be filled in by [`stamp`] when the link sends it. Building the frame in its final buffer
    /// means stream bytes are copied once, from the application into the message.
    pub fn start(kind: FrameType, flags: u8, stream: u32, payload_capacity: usize) -> BytesMut {
        let mut b = BytesMut::with_capacity(HEADER_LEN + payload_capacity);
        b.put_bytes(0, HEADER_LEN);
        Frame::write_head(&mut b, kind, flags, stream);
        b
    }

    /// Writes a header with `seq` and `ack` zero (for [`stamp`]) into the first [`HEADER_LEN`] bytes
    /// of `encoded`, in front of a payload already there.
    pub fn write_head(encoded: &mut [u8], kind: FrameType, flags: u8, stream: u32) {
        encoded[OFFSET_TYPE] = kind as u8;
        encoded[OFFSET_FLAGS] = flags;
        encoded[OFFSET_STREAM..OFFSET_SEQ].copy_from_slice(&stream.to_be_bytes());
        stamp(encoded, 0, 0);
    }

    /// Decodes one message, rejecting payloads above `max_payload`.
    pub fn decode(mut msg: Bytes, max_payload: usize) -> Result<Frame, FrameError> {
        if msg.len() < HEADER_LEN {
            return Err(FrameError::Short(msg.len()));
        }
        let t = msg.get_u8();
        let kind = FrameType::from_u8(t).ok_or(FrameError::UnknownType(t))?;
        let flags = msg.get_u8();
        let stream = msg.get_u32();
        let seq = msg.get_u64();
        let ack = msg.get_u64();
        if msg.len() > max_payload {
            return Err(FrameError::TooLarge { len: msg.len(), max: max_payload });
        }
        Ok(Frame { kind, flags, stream, seq, ack, payload: msg })
    }
}

/// Writes the link sequence number and cumulative ack into an encoded frame's header. `encoded` comes
/// from [`Frame::start`] (our own bytes, never the peer's), so it always holds a whole header.
pub fn stamp(encoded: &mut [u8], seq: u64, ack: u64) {
    encoded[OFFSET_SEQ..OFFSET_ACK].copy_from_slice(&seq.to_be_bytes());
    encoded[OFFSET_ACK..HEADER_LEN].copy_from_slice(&ack.to_be_bytes());
}

/// The type of an encoded frame, `None` if the bytes are not a frame we know.
pub fn peek_kind(encoded: &[u8]) -> Option<FrameType> {
    encoded.get(OFFSET_TYPE).copied().and_then(FrameType::from_u8)
}

/// Whether an encoded frame carries the FIN flag.
pub fn peek_fin(encoded: &[u8]) -> bool {
    encoded.get(OFFSET_FLAGS).is_some_and(|f| f & FLAG_FIN != 0)
}

/// Payload bytes of an encoded frame (0 for bytes shorter than a header).
pub fn payload_len(encoded: &[u8]) -> usize {
    encoded.len().saturating_sub(HEADER_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_every_field() {
        let f = Frame {
            kind: FrameType::Data,
            flags: FLAG_FIN,
            stream: 7,
            seq: u64::MAX - 1,
            ack: 42,
            payload: Bytes::from_static(b"hello"),
        };
        let enc = f.encode();
        assert_eq!(enc.len(), HEADER_LEN + 5);
        assert_eq!(enc[OFFSET_TYPE], 0x11);
        assert_eq!(&enc[OFFSET_STREAM..OFFSET_SEQ], &7u32.to_be_bytes());
        assert_eq!(peek_kind(&enc), Some(FrameType::Data));
        assert!(peek_fin(&enc));
        assert_eq!(payload_len(&enc), 5);
        let dec = Frame::decode(enc, DEFAULT_MAX_FRAME).unwrap();
        assert_eq!(dec, f);
        assert!(dec.fin());
    }

    #[test]
    fn start_and_stamp_match_encode() {
        let mut b = Frame::start(FrameType::Data, FLAG_FIN, 9, 3);
        b.extend_from_slice(b"abc");
        stamp(&mut b, 5, 4);
        let f = Frame {
            kind: FrameType::Data,
            flags: FLAG_FIN,
            stream: 9,
            seq: 5,
            ack: 4,
            payload: "abc".into(),
        };
        assert_eq!(b.freeze(), f.encode());
    }

    #[test]
    fn rejects_short_unknown_and_oversized() {
        assert_eq!(Frame::decode(Bytes::from_static(&[0x11; 5]), 10), Err(FrameError::Short(5)));
        let mut bad = Frame::new(FrameType::Ack, 0, Bytes::new()).encode().to_vec();
        bad[0] = 0x99;
        assert_eq!(Frame::decode(bad.into(), 10), Err(FrameError::UnknownType(0x99)));
        let big = Frame::new(FrameType::Data, 1, Bytes::from(vec![0u8; 11])).encode();
        assert_eq!(Frame::decode(big, 10), Err(FrameError::TooLarge { len: 11, max: 10 }));
        assert_eq!(peek_kind(&[]), None);
        assert!(!peek_fin(&[0x11]));
        assert_eq!(payload_len(&[0x11; 3]), 0);
    }

    #[test]
    fn only_stream_and_close_frames_are_sequenced() {
        assert!(FrameType::Data.is_sequenced());
        assert!(FrameType::Close.is_sequenced());
        assert!(!FrameType::Ping.is_sequenced());
        assert!(!FrameType::Ack.is_sequenced());
    }
}
