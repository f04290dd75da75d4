//! What an end of the relay may offer beyond `AsyncRead`/`AsyncWrite`, so that bytes need not be
//! copied through the relay's own buffer:
//! - [`RelayEnd::tcp`]: the plain kernel socket behind it, which the relay splices to and from;
//! - [`RelayEnd::chunks`]: buffers of its own ([`ChunkEnd`]), which the relay moves as they are.
//!
//! A tunnel stream is the one [`ChunkEnd`]: it keeps what arrived as slices of the WebSocket
//! reader's buffer, and what it sends as frames it must keep whole for a replay. Through
//! `AsyncRead`/`AsyncWrite` each of those bytes would be copied once more, into or out of the
//! relay's buffer.

use std::io;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use tokio::net::TcpStream;

use crate::net::{BoxStream, Prefixed};

/// An end of a relay. Every method has a default meaning "nothing more than the byte stream", so
/// an end implements only what it has.
pub trait RelayEnd {
    /// The socket to splice from and to, when bytes can go straight to it. Anything with bytes of
    /// its own in user space (TLS, a tunnel stream, a stream with a prefix still to yield) answers
    /// `None` and is copied.
    fn tcp(&self) -> Option<&TcpStream> {
        None
    }

    /// The end's own buffers, when it has them.
    fn chunks(&mut self) -> Option<&mut dyn ChunkEnd> {
        None
    }
}

/// An end that keeps bytes in buffers of its own, and hands them to the relay (reading) or takes
/// them from it (writing) instead of copying through a slice.
pub trait ChunkEnd {
    /// The next bytes received, at most `max`, as the end holds them; `None` at the clean end of
    /// the stream. Taking them is reading them (flow control counts them as read). An error is
    /// final: every later call fails too, so the relay may write what it took before meeting it.
    fn poll_read_chunk(&mut self, cx: &mut Context<'_>, max: usize) -> Poll<io::Result<Option<Bytes>>>;

    /// Waits until the end takes bytes; how many it takes now (at least one).
    fn poll_write_room(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>>;

    /// How many bytes the end writes in front of each chunk it is given (its frame header).
    fn head_room(&self) -> usize;

    /// Takes `chunk`: [`head_room`](Self::head_room) bytes for the end to fill, then the payload,
    /// no more than the last [`poll_write_room`](Self::poll_write_room) allowed.
    fn write_chunk(&mut self, chunk: BytesMut) -> io::Result<()>;
}

impl RelayEnd for TcpStream {
    fn tcp(&self) -> Option<&TcpStream> {
        Some(self)
    }
}

impl<S: RelayEnd> RelayEnd for Prefixed<S> {
    fn tcp(&self) -> Option<&TcpStream> {
        // Until the bytes put back are read, reads must go through the prefix.
        if self.prefix().is_empty() {
            self.get_ref().tcp()
        } else {
            None
        }
    }
}

impl RelayEnd for BoxStream {
    fn tcp(&self) -> Option<&TcpStream> {
        // `**self`: the boxed stream, not the box (which is a `Stream` too).
        let any = (**self).as_any();
        // A dialer's socket, or one behind a proxy's CONNECT answer (`client::ProxyDialer`).
        if let Some(tcp) = any.downcast_ref::<TcpStream>() {
            return Some(tcp);
        }
        if let Some(p) = any.downcast_ref::<Prefixed<TcpStream>>() {
            return p.tcp();
        }
        any.downcast_ref::<Prefixed<BoxStream>>().and_then(|p| p.tcp())
    }
}
