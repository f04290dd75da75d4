//! What an end of the relay may offer beyond `AsyncRead`/`AsyncWrite`, so that bytes need not be
//! copied through the relay's own buffer:
//! - [`RelayEnd::tcp`]: the plain kernel socket behind it, which the relay splices to and from;
//! - [`RelayEnd::chunks`]: buffers of its own ([`ChunkEnd`]), which the relay moves as they are.
//!
//! A tunnel stream is the one [`ChunkEnd`]: it keeps what arrived as slices of the WebSocket
//! reader's buffer, and what it sends as frames it must keep whole for a replay. Through
//! `AsyncRead`/`AsyncWrite` each of those bytes would be copied once more, into or out of the
//! relay's buffer. A dialer hands such a stream over boxed in a [`ChunkStream`], so that it still shows
//! its buffers from behind a [`BoxStream`].

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
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

    fn chunks(&mut self) -> Option<&mut dyn ChunkEnd> {
        let stream = (**self).as_any_mut().downcast_mut::<ChunkStream>()?;
        Some(&mut *stream.0)
    }
}

/// A stream that keeps its own buffers, as a dialer returns it: boxed into a [`BoxStream`], whose
/// concrete type the relay can then find (`RelayEnd for BoxStream`) and whose buffers it moves as
/// they are. `ws-client --socks` dials tunnel streams for the SOCKS5 server this way; a plain
/// `Box<TunnelStream>` would be copied, since `net` cannot name the tunnel's type.
pub struct ChunkStream(Box<dyn ChunkIo>);

/// What a [`ChunkStream`] holds: a byte stream that is also a [`ChunkEnd`].
pub trait ChunkIo: AsyncRead + AsyncWrite + ChunkEnd + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + ChunkEnd + Send + Unpin + 'static> ChunkIo for T {}

impl ChunkStream {
    /// `io`, ready to be boxed as a [`BoxStream`].
    pub fn new(io: impl ChunkIo) -> Self {
        ChunkStream(Box::new(io))
    }
}

impl AsyncRead for ChunkStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for ChunkStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.get_mut().0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream with nothing in it, that says it keeps its own buffers.
    struct Owned;

    impl AsyncRead for Owned {
        fn poll_read(self: Pin<&mut Self>, _: &mut Context<'_>, _: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncWrite for Owned {
        fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    impl ChunkEnd for Owned {
        fn poll_read_chunk(&mut self, _: &mut Context<'_>, _: usize) -> Poll<io::Result<Option<Bytes>>> {
            Poll::Ready(Ok(None))
        }
        fn poll_write_room(&mut self, _: &mut Context<'_>) -> Poll<io::Result<usize>> {
            Poll::Ready(Ok(1))
        }
        fn head_room(&self) -> usize {
            7
        }
        fn write_chunk(&mut self, _: BytesMut) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_boxed_chunk_stream_lends_its_buffers_and_other_boxes_do_not() {
        let mut lending: BoxStream = Box::new(ChunkStream::new(Owned));
        assert_eq!(lending.chunks().map(|c| c.head_room()), Some(7));
        assert!(lending.tcp().is_none());
        // The same stream boxed as it is is only a byte stream to the relay.
        let mut plain: BoxStream = Box::new(Owned);
        assert!(plain.chunks().is_none());
    }
}
