//! The head of one WebSocket frame (RFC 6455 §5.2): decoded from the bytes that start a frame, encoded
//! in front of a payload, and the masking that client frames carry. Everything that reads or writes
//! frames by hand uses this one decoder: the tunnel's link (`tunnel::ws`), the cluster's look at a first
//! frame (`tunnel::first_frame`) and the inspector's tap on upgraded connections.

/// Opcodes of RFC 6455 §5.2.
pub mod opcode {
    pub const CONTINUATION: u8 = 0x0;
    pub const TEXT: u8 = 0x1;
    pub const BINARY: u8 = 0x2;
    pub const CLOSE: u8 = 0x8;
    pub const PING: u8 = 0x9;
    pub const PONG: u8 = 0xA;
}

/// The longest head: 2 bytes, a 64-bit length and a masking key.
pub const MAX_HEAD_LEN: usize = 14;

/// One frame's head, as it was on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHead {
    pub fin: bool,
    /// RSV1–3 as they came (bits 6–4 of the first byte); non-zero only with a negotiated extension.
    pub rsv: u8,
    pub opcode: u8,
    pub mask: Option<[u8; 4]>,
    pub payload_len: u64,
}

/// What the bytes at the start of a buffer are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded {
    /// Not enough bytes for the whole head yet.
    Partial,
    /// A head of `len` bytes; the payload follows it.
    Head { head: FrameHead, len: usize },
}

impl FrameHead {
    /// Decodes the head that starts `buf`. Any 64-bit length is returned as sent; the caller bounds it.
    pub fn decode(buf: &[u8]) -> Decoded {
        if buf.len() < 2 {
            return Decoded::Partial;
        }
        let (b0, b1) = (buf[0], buf[1]);
        let (payload_len, mut at) = match b1 & 0x7f {
            126 if buf.len() < 4 => return Decoded::Partial,
            126 => (u16::from_be_bytes([buf[2], buf[3]]) as u64, 4),
            127 if buf.len() < 10 => return Decoded::Partial,
            127 => (u64::from_be_bytes(buf[2..10].try_into().expect("8 bytes")), 10),
            n => (n as u64, 2),
        };
        let mask = if b1 & 0x80 != 0 {
            if buf.len() < at + 4 {
                return Decoded::Partial;
            }
            at += 4;
            Some([buf[at - 4], buf[at - 3], buf[at - 2], buf[at - 1]])
        } else {
            None
        };
        let head =
            FrameHead { fin: b0 & 0x80 != 0, rsv: (b0 >> 4) & 0x7, opcode: b0 & 0x0f, mask, payload_len };
        Decoded::Head { head, len: at }
    }

    /// Whether this is a control frame (close, ping, pong, or a reserved control opcode).
    pub fn is_control(&self) -> bool {
        self.opcode & 0x8 != 0
    }

    /// Appends the encoded head to `out`, with the shortest length form.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut buf = [0u8; MAX_HEAD_LEN];
        let n = self.encode_into(&mut buf);
        out.extend_from_slice(&buf[..n]);
    }

    /// Writes the encoded head into `buf` and returns its length.
    pub fn encode_into(&self, buf: &mut [u8; MAX_HEAD_LEN]) -> usize {
        buf[0] = (u8::from(self.fin) << 7) | ((self.rsv & 0x7) << 4) | (self.opcode & 0x0f);
        let masked = if self.mask.is_some() { 0x80 } else { 0 };
        let mut at = match self.payload_len {
            n @ 0..=125 => {
                buf[1] = masked | n as u8;
                2
            }
            n @ 126..=0xffff => {
                buf[1] = masked | 126;
                buf[2..4].copy_from_slice(&(n as u16).to_be_bytes());
                4
            }
            n => {
                buf[1] = masked | 127;
                buf[2..10].copy_from_slice(&n.to_be_bytes());
                10
            }
        };
        if let Some(key) = self.mask {
            buf[at..at + 4].copy_from_slice(&key);
            at += 4;
        }
        at
    }
}

/// Writes `src` masked with `key` into `dst` (the same length), in one pass: a client's frame is
/// masked on its way into the output buffer instead of being copied there and masked again.
pub fn mask_copy(dst: &mut [u8], src: &[u8], key: [u8; 4]) {
    assert_eq!(dst.len(), src.len(), "mask_copy needs equal lengths");
    let word = u64::from_ne_bytes([key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3]]);
    let mut d = dst.chunks_exact_mut(8);
    let mut s = src.chunks_exact(8);
    for (dc, sc) in (&mut d).zip(&mut s) {
        let v = u64::from_ne_bytes(sc.try_into().expect("8 bytes")) ^ word;
        dc.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, (db, sb)) in d.into_remainder().iter_mut().zip(s.remainder()).enumerate() {
        *db = sb ^ key[i % 4];
    }
}

/// XORs `buf` with the masking key, `buf[0]` being payload byte `offset` (masking is its own inverse).
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: u64) {
    let mut key = key;
    key.rotate_left((offset % 4) as usize);
    // Eight bytes at a time: the key repeats every four, so one word serves every aligned chunk.
    let word = u64::from_ne_bytes([key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3]]);
    let mut chunks = buf.chunks_exact_mut(8);
    for c in &mut chunks {
        let v = u64::from_ne_bytes(c.try_into().expect("8 bytes")) ^ word;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= key[i % 4];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_copy_is_apply_mask_on_a_copy_at_every_length() {
        let key = [0x12, 0x34, 0x56, 0x78];
        for len in [0usize, 1, 7, 8, 9, 63, 64, 65, 1000] {
            let src: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let mut expected = src.clone();
            apply_mask(&mut expected, key, 0);
            let mut dst = vec![0xAA; len];
            mask_copy(&mut dst, &src, key);
            assert_eq!(dst, expected, "length {len}");
        }
    }

    fn head(fin: bool, opcode: u8, mask: Option<[u8; 4]>, payload_len: u64) -> FrameHead {
        FrameHead { fin, rsv: 0, opcode, mask, payload_len }
    }

    #[test]
    fn every_length_form_round_trips_and_partial_heads_ask_for_more() {
        for len in [0u64, 1, 125, 126, 127, 0xffff, 0x1_0000, 1 << 40] {
            for mask in [None, Some([1, 2, 3, 4])] {
                let h = head(len % 2 == 0, opcode::BINARY, mask, len);
                let mut bytes = Vec::new();
                h.encode(&mut bytes);
                let expected = 2
                    + [0, 2, 8][(len > 125) as usize + (len > 0xffff) as usize]
                    + 4 * mask.is_some() as usize;
                assert_eq!(bytes.len(), expected, "length {len}");
                assert_eq!(FrameHead::decode(&bytes), Decoded::Head { head: h, len: bytes.len() });
                for cut in 0..bytes.len() {
                    assert_eq!(FrameHead::decode(&bytes[..cut]), Decoded::Partial, "{len} cut at {cut}");
                }
            }
        }
    }

    #[test]
    fn known_bytes_decode_with_flags() {
        // RFC 6455 §5.7: a single-frame masked text message "Hello".
        let bytes = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
        let Decoded::Head { head, len } = FrameHead::decode(&bytes) else { panic!("partial") };
        assert_eq!((head.fin, head.opcode, head.payload_len, len), (true, opcode::TEXT, 5, 6));
        let mut payload = bytes[len..].to_vec();
        apply_mask(&mut payload, head.mask.unwrap(), 0);
        assert_eq!(payload, b"Hello");
        let Decoded::Head { head, .. } = FrameHead::decode(&[0x49, 0x00]) else { panic!("partial") };
        assert!(!head.fin && head.rsv == 4 && head.is_control());
    }

    #[test]
    fn masking_matches_the_bytewise_rule_at_any_offset_and_length() {
        let key = [0x12, 0x34, 0x56, 0x78];
        let data: Vec<u8> = (0..100u32).map(|i| (i * 7) as u8).collect();
        for offset in 0..8u64 {
            for len in 0..data.len() {
                let mut fast = data[..len].to_vec();
                apply_mask(&mut fast, key, offset);
                let slow: Vec<u8> =
                    data[..len].iter().enumerate().map(|(i, b)| b ^ key[(i + offset as usize) % 4]).collect();
                assert_eq!(fast, slow, "offset {offset} len {len}");
            }
        }
    }
}
