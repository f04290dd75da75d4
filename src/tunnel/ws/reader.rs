//! The receiving half of a tunnel's WebSocket: whole binary messages out of the bytes the socket gives,
//! with no copy of a payload. The socket reads straight into the spare room of one `BytesMut` (never
//! zeroed first), each payload is split off it and unmasked in place, and the session keeps the very
//! bytes that were read. The room is large while the peer sends in bulk and 4 KiB while it is quiet, so
//! an idle tunnel does not keep its last burst's buffer. Fragmented messages are joined; pongs are dropped (the tunnel has its own
//! liveness check); everything RFC 6455 forbids is a [`WsError::Protocol`].

use std::future::poll_fn;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::AsyncRead;
use tokio::time::Instant;
use tokio_util::io::poll_read_buf;

use super::incoming::{Incoming, WsError};
use crate::http::ws_frame::{apply_mask, opcode, Decoded, FrameHead};

/// Room asked for before a read while the peer is sending in bulk: several full frames of the default
/// size, so one read takes what it has sent since the last one.
const READ_CHUNK: usize = 128 * 1024;
/// Less room than this left in the buffer, and a busy reader first makes [`READ_CHUNK`] of it.
const MIN_ROOM: usize = 16 * 1024;
/// Room asked for while the peer sends little (heartbeats, acks, a keystroke): an idle tunnel keeps a
/// buffer of this size, not the last burst's. A read that fills it makes the reader busy again.
const IDLE_CHUNK: usize = 4 * 1024;
/// How long after its last large read a reader counts as busy. Bulk transfers have short gaps (the
/// reader catches up with the peer and waits), which must not cost them their buffer.
const BUSY_FOR: Duration = Duration::from_secs(1);

/// Reads messages from `R`.
pub struct WsReader<R> {
    io: R,
    buf: BytesMut,
    /// A server takes only masked frames, a client only unmasked ones.
    masked_from_peer: bool,
    max_message: usize,
    /// A binary message whose final fragment has not come yet.
    partial: Option<BytesMut>,
    /// Until when the reader counts as busy: [`BUSY_FOR`] after a read of at least [`IDLE_CHUNK`].
    busy_until: Option<Instant>,
}

impl<R: AsyncRead + Unpin> WsReader<R> {
    pub(super) fn new(io: R, read_ahead: BytesMut, masked_from_peer: bool, max_message: usize) -> Self {
        WsReader { io, buf: read_ahead, masked_from_peer, max_message, partial: None, busy_until: None }
    }

    /// The next message; `None` when the peer closed the connection between messages.
    pub async fn next(&mut self) -> Result<Option<Incoming>, WsError> {
        loop {
            let want = match self.take_frame()? {
                Ok((head, payload)) => match self.assemble(head, payload)? {
                    Some(msg) => return Ok(Some(msg)),
                    None => continue,
                },
                Err(want) => want,
            };
            let n = poll_fn(|cx| self.poll_fill(cx, want)).await?;
            if n == 0 {
                if self.buf.is_empty() && self.partial.is_none() {
                    return Ok(None);
                }
                return Err(WsError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
            if n >= IDLE_CHUNK {
                self.busy_until = Some(Instant::now() + BUSY_FOR);
            }
        }
    }

    /// Reads into the buffer's spare room, made first if there is too little for `want` more bytes.
    /// A quiet connection that has to wait gives its large buffer back.
    fn poll_fill(&mut self, cx: &mut Context<'_>, want: usize) -> Poll<std::io::Result<usize>> {
        let room = self.buf.capacity() - self.buf.len();
        if room < want.max(MIN_ROOM) {
            if self.is_busy() {
                self.buf.reserve(want.max(READ_CHUNK));
            } else if room < want.max(1) {
                self.buf.reserve(want.max(IDLE_CHUNK));
            }
        }
        let polled = poll_read_buf(Pin::new(&mut self.io), cx, &mut self.buf);
        if polled.is_pending() && self.buf.is_empty() && self.buf.capacity() > IDLE_CHUNK && !self.is_busy() {
            self.buf = BytesMut::new();
        }
        polled
    }

    fn is_busy(&self) -> bool {
        self.busy_until.is_some_and(|t| Instant::now() < t)
    }

    /// The read buffer's size, for tests of what an idle connection holds.
    #[cfg(test)]
    pub(super) fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// The next whole frame in the buffer, unmasked; or how many more bytes it needs at least.
    fn take_frame(&mut self) -> Result<Result<(FrameHead, BytesMut), usize>, WsError> {
        let Decoded::Head { head, len } = FrameHead::decode(&self.buf) else {
            return Ok(Err(1));
        };
        self.check(&head)?;
        let total = len + head.payload_len as usize;
        if self.buf.len() < total {
            return Ok(Err(total - self.buf.len()));
        }
        self.buf.advance(len);
        let mut payload = self.buf.split_to(head.payload_len as usize);
        if let Some(key) = head.mask {
            apply_mask(&mut payload, key, 0);
        }
        Ok(Ok((head, payload)))
    }

    /// What RFC 6455 §5 requires of a frame's head, and our size bound.
    fn check(&self, head: &FrameHead) -> Result<(), WsError> {
        if head.rsv != 0 {
            return Err(WsError::Protocol("reserved bits set, no extension was negotiated"));
        }
        if !matches!(
            head.opcode,
            opcode::CONTINUATION
                | opcode::TEXT
                | opcode::BINARY
                | opcode::CLOSE
                | opcode::PING
                | opcode::PONG
        ) {
            return Err(WsError::Protocol("unknown opcode"));
        }
        if head.is_control() && (!head.fin || head.payload_len > 125) {
            return Err(WsError::Protocol("fragmented or oversized control frame"));
        }
        if head.mask.is_some() != self.masked_from_peer {
            return Err(WsError::Protocol(if self.masked_from_peer {
                "unmasked frame from a client"
            } else {
                "masked frame from a server"
            }));
        }
        let held = self.partial.as_ref().map_or(0, |p| p.len() as u64);
        if head.payload_len.saturating_add(held) > self.max_message as u64 {
            return Err(WsError::TooBig {
                size: head.payload_len.saturating_add(held),
                max: self.max_message,
            });
        }
        Ok(())
    }

    /// Turns a frame into a message, or keeps it as part of one (`None`).
    fn assemble(&mut self, head: FrameHead, payload: BytesMut) -> Result<Option<Incoming>, WsError> {
        match head.opcode {
            opcode::BINARY if self.partial.is_some() => {
                Err(WsError::Protocol("a new message began inside a fragmented one"))
            }
            opcode::BINARY if head.fin => Ok(Some(Incoming::Binary(payload.freeze()))),
            opcode::BINARY => {
                self.partial = Some(payload);
                Ok(None)
            }
            opcode::CONTINUATION => {
                let Some(mut partial) = self.partial.take() else {
                    return Err(WsError::Protocol("continuation frame with no message to continue"));
                };
                partial.unsplit(payload);
                if head.fin {
                    return Ok(Some(Incoming::Binary(partial.freeze())));
                }
                self.partial = Some(partial);
                Ok(None)
            }
            opcode::TEXT => Ok(Some(Incoming::Text)),
            opcode::PING => Ok(Some(Incoming::Ping(payload.freeze()))),
            opcode::CLOSE => close_payload(payload.freeze()).map(Some),
            _ => Ok(None), // a pong
        }
    }
}

/// A close frame's code and reason (RFC 6455 §5.5.1): none, or a code and UTF-8 text.
fn close_payload(p: Bytes) -> Result<Incoming, WsError> {
    match p.len() {
        0 => Ok(Incoming::Close { code: None, reason: String::new() }),
        1 => Err(WsError::Protocol("close frame with a one-byte body")),
        _ => {
            let code = u16::from_be_bytes([p[0], p[1]]);
            let reason =
                std::str::from_utf8(&p[2..]).map_err(|_| WsError::Protocol("close reason is not UTF-8"))?;
            Ok(Incoming::Close { code: Some(code), reason: reason.to_owned() })
        }
    }
}
