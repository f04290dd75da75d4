//! The client side of a proxy connection: a plain TCP socket, TLS over one when the proxy port
//! is served with `--tls-cert`/`--tls-key`, or, inside an intercepted CONNECT (`--intercept`), the
//! TLS the proxy terminated over either of those.
//!
//! An enum rather than a `Box<dyn AsyncRead + AsyncWrite>`: the plain path, which most deployments
//! run, pays one predictable branch per poll instead of an indirect call, and nothing is
//! allocated per connection unless TLS is on (the TLS state, about 1 KiB plus buffers, is boxed so
//! a plain connection's future does not carry its size).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use crate::net::{Prefixed, RelayEnd};

/// A client connection's byte stream.
#[derive(Debug)]
pub(super) enum ClientStream {
    /// HTTP straight over TCP.
    Plain(TcpStream),
    /// HTTP inside TLS (the handshake is done).
    Tls(Box<TlsStream<TcpStream>>),
    /// HTTPS decrypted by the proxy, over the connection that sent the CONNECT (whose bytes read
    /// past the CONNECT head come first).
    Intercepted(Box<TlsStream<Prefixed<ClientStream>>>),
}

impl RelayEnd for ClientStream {
    fn tcp(&self) -> Option<&TcpStream> {
        match self {
            ClientStream::Plain(s) => Some(s),
            ClientStream::Tls(_) | ClientStream::Intercepted(_) => None,
        }
    }
}

impl AsyncRead for ClientStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            ClientStream::Intercepted(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            ClientStream::Intercepted(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
            ClientStream::Intercepted(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            ClientStream::Plain(s) => s.is_write_vectored(),
            ClientStream::Tls(s) => s.is_write_vectored(),
            ClientStream::Intercepted(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            ClientStream::Intercepted(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    /// For TLS this sends close_notify first, so the client can tell our close from a truncation.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            ClientStream::Intercepted(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
