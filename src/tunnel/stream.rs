//! [`TunnelStream`]: one stream of a tunnel, as tokio's `AsyncRead` + `AsyncWrite`.
//!
//! Writes are accepted up to the stream's credit and queued in the session (copied once, straight into the
//! frame that will go on the wire); reads drain what the link delivered and return credit to the peer.
//! Shutdown sends FIN (half-close). Dropping the handle finishes our direction and resets the stream if
//! the peer may still be sending. When the tunnel ends, reads and writes fail with
//! `ConnectionAborted`: never a clean EOF, which would be silent truncation.
//!
//! To `net::relay` a stream is also a [`ChunkEnd`]: the relay takes what arrived as the slices of the
//! WebSocket reader's buffer it already is, and reads a socket straight into DATA frames. Through
//! `AsyncRead`/`AsyncWrite` each byte would be copied once more, into or out of the relay's buffer.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::frame::HEADER_LEN;
use super::session::Session;
use crate::net::relay::{ChunkEnd, RelayEnd};

/// A bidirectional byte stream carried by a tunnel.
pub struct TunnelStream {
    session: Arc<Session>,
    id: u32,
    target: String,
}

impl std::fmt::Debug for TunnelStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunnelStream").field("id", &self.id).field("target", &self.target).finish()
    }
}

impl TunnelStream {
    /// The handle of stream `id` of `session` (opened by us, or accepted from the peer).
    pub(crate) fn new(session: Arc<Session>, id: u32, target: String) -> Self {
        TunnelStream { session, id, target }
    }

    /// The stream id (odd: opened by the client, even: by the server).
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The target named when the stream was opened (`host:port`, or `listen:<id>` for `-R` streams).
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Received bytes waiting to be read (at most one credit window).
    pub fn buffered(&self) -> usize {
        self.session.buffered(self.id)
    }

    /// Accepting side: tells the opener that the target was reached.
    pub fn confirm(&self) {
        self.session.confirm(self.id);
    }

    /// Ends the stream with an error the peer sees (`code` from [`rst`](super::wire::rst)).
    pub fn reset(&self, code: u16, reason: &str) {
        self.session.reset_stream(self.id, code, reason);
    }

    /// Opening side: waits until the accepting side reached the target, or fails with the reason it could
    /// not (policy refusal, dial failure, timeout).
    pub async fn connected(&self) -> io::Result<()> {
        poll_fn(|cx| self.session.poll_connected(self.id, cx.waker())).await
    }
}

impl AsyncRead for TunnelStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        self.session.read_into(self.id, buf, cx.waker())
    }
}

impl AsyncWrite for TunnelStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.session.write_from(self.id, buf, cx.waker())
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.session.shutdown_stream(self.id);
        Poll::Ready(Ok(()))
    }
}

impl RelayEnd for TunnelStream {
    fn chunks(&mut self) -> Option<&mut dyn ChunkEnd> {
        Some(self)
    }
}

impl ChunkEnd for TunnelStream {
    fn poll_read_chunk(&mut self, cx: &mut Context<'_>, max: usize) -> Poll<io::Result<Option<Bytes>>> {
        self.session.read_chunk(self.id, max, cx.waker())
    }

    fn poll_write_room(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        self.session.write_room(self.id, cx.waker())
    }

    fn head_room(&self) -> usize {
        HEADER_LEN
    }

    fn write_chunk(&mut self, chunk: BytesMut) -> io::Result<()> {
        self.session.queue_frame(self.id, chunk)
    }
}

impl Drop for TunnelStream {
    fn drop(&mut self) {
        self.session.detach(self.id);
    }
}
