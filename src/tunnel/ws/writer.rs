//! The sending half of a tunnel's WebSocket: each tunnel frame goes out as one binary message.
//!
//! A server's messages are unmasked, so their bytes go out as they are: one vectored write of every
//! message's head and payload, no copy (the session keeps the same bytes for replay). A client must
//! mask (RFC 6455 §5.3) with a fresh key per frame and must not change the session's bytes, so it masks
//! each payload on its way into an output buffer: one pass, reading the frame and writing the buffer. The
//! buffer's bytes stay initialised between writes (only `filled` moves), so that pass is the only one. A
//! socket that cannot write vectored (`is_write_vectored` false) takes the copy too, so one message is
//! never many small writes.

use std::io::{self, IoSlice};

use bytes::Bytes;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::http::ws_frame::{mask_copy, opcode, FrameHead, MAX_HEAD_LEN};

/// Messages per vectored write: two slices each, within any system's `IOV_MAX` (1024 on Linux).
const MESSAGES_PER_WRITE: usize = 256;
/// Output buffered before a copy-path write, and the capacity kept between writes.
const OUT_LIMIT: usize = 256 * 1024;

/// Writes messages to `W`.
pub struct WsWriter<W> {
    io: W,
    mask: bool,
    /// The output buffer: `out[..filled]` waits to be written; the rest is initialised room.
    out: Vec<u8>,
    filled: usize,
    heads: Vec<([u8; MAX_HEAD_LEN], usize)>,
}

impl<W: AsyncWrite + Unpin> WsWriter<W> {
    pub(super) fn new(io: W, mask: bool) -> Self {
        WsWriter { io, mask, out: Vec::new(), filled: 0, heads: Vec::new() }
    }

    /// Sends each of `messages` as one binary message, all written before it returns.
    pub async fn send(&mut self, messages: &[Bytes]) -> io::Result<()> {
        if self.mask || !self.io.is_write_vectored() {
            for m in messages {
                self.buffer(opcode::BINARY, m);
                if self.filled >= OUT_LIMIT {
                    self.write_out().await?;
                }
            }
            return self.write_out().await;
        }
        for group in messages.chunks(MESSAGES_PER_WRITE) {
            self.heads.clear();
            for m in group {
                let head = FrameHead {
                    fin: true,
                    rsv: 0,
                    opcode: opcode::BINARY,
                    mask: None,
                    payload_len: m.len() as u64,
                };
                let mut bytes = [0u8; MAX_HEAD_LEN];
                let n = head.encode_into(&mut bytes);
                self.heads.push((bytes, n));
            }
            let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(group.len() * 2);
            for ((bytes, n), m) in self.heads.iter().zip(group) {
                slices.push(IoSlice::new(&bytes[..*n]));
                slices.push(IoSlice::new(m));
            }
            let mut rest = &mut slices[..];
            while !rest.is_empty() {
                let n = self.io.write_vectored(rest).await?;
                if n == 0 {
                    return Err(io::ErrorKind::WriteZero.into());
                }
                IoSlice::advance_slices(&mut rest, n);
            }
        }
        Ok(())
    }

    /// Answers a ping with its payload.
    pub async fn pong(&mut self, payload: &[u8]) -> io::Result<()> {
        self.buffer(opcode::PONG, payload);
        self.write_out().await
    }

    /// Sends a close frame with `code` and `reason` (cut to what fits in a control frame), then ends our
    /// direction of the connection.
    pub async fn close(&mut self, code: u16, reason: &str) -> io::Result<()> {
        let mut cut = reason.len().min(123);
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        let mut body = code.to_be_bytes().to_vec();
        body.extend_from_slice(&reason.as_bytes()[..cut]);
        self.buffer(opcode::CLOSE, &body);
        self.write_out().await?;
        self.io.shutdown().await
    }

    /// Appends one final frame to the output buffer, masked when we are the client.
    fn buffer(&mut self, op: u8, payload: &[u8]) {
        let mask = self.mask.then(rand::random::<[u8; 4]>);
        let head = FrameHead { fin: true, rsv: 0, opcode: op, mask, payload_len: payload.len() as u64 };
        let end = self.filled + MAX_HEAD_LEN + payload.len();
        if self.out.len() < end {
            // Zeroed once as the buffer grows, never again per message.
            self.out.resize(end, 0);
        }
        let head_room =
            (&mut self.out[self.filled..self.filled + MAX_HEAD_LEN]).try_into().expect("room for a head");
        self.filled += head.encode_into(head_room);
        let room = &mut self.out[self.filled..self.filled + payload.len()];
        match mask {
            Some(key) => mask_copy(room, payload, key),
            None => room.copy_from_slice(payload),
        }
        self.filled += payload.len();
    }

    async fn write_out(&mut self) -> io::Result<()> {
        self.io.write_all(&self.out[..self.filled]).await?;
        self.filled = 0;
        if self.out.len() > OUT_LIMIT + OUT_LIMIT / 2 {
            // One huge replay batch must not keep its buffer for the connection's life.
            self.out.truncate(OUT_LIMIT);
            self.out.shrink_to_fit();
        }
        Ok(())
    }
}
