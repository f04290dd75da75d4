//! Write deadlines: a socket whose writes may make no progress for at most the idle timeout.
//!
//! The balancer never cuts a connection for being quiet (long polls and Socket.IO's pings pace
//! themselves), but a peer that stops reading, a client that never reads its response or a
//! backend that never reads an upload, would otherwise hold the connection, its buffers and a
//! `--max-connections` slot forever. [`DeadlineIo`] fails a write that stays blocked for
//! `--idle-timeout` with `TimedOut`, which ends the connection and whatever was relayed over it.
//! A client socket also carries its `--max-connections` slot, so the slot is freed only when the
//! socket closes, after a WebSocket tunnel on it as well.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::client::legacy::connect::{Connected, Connection};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, Sleep};

/// A stream whose blocked writes fail after `idle` without progress.
pub struct DeadlineIo<S> {
    inner: S,
    idle: Duration,
    /// The timer of the write blocked now, if any; kept (and reset) so a stall costs no allocation
    /// after the first.
    stall: Option<Pin<Box<Sleep>>>,
    stalled: bool,
    /// The `--max-connections` slot this connection holds, released when the socket is dropped.
    _slot: Option<OwnedSemaphorePermit>,
}

impl<S> DeadlineIo<S> {
    /// Wraps `inner`; a write blocked for `idle` fails.
    pub fn new(inner: S, idle: Duration) -> Self {
        DeadlineIo { inner, idle, stall: None, stalled: false, _slot: None }
    }

    /// Holds `slot` until the socket is dropped.
    pub fn holding(mut self, slot: OwnedSemaphorePermit) -> Self {
        self._slot = Some(slot);
        self
    }

    /// Passes a write-side result through: progress disarms the timer; a block arms it, and
    /// fails once it has run out.
    fn bound<T>(&mut self, cx: &mut Context<'_>, result: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if result.is_ready() {
            self.stalled = false;
            return result;
        }
        let deadline = Instant::now() + self.idle;
        let sleep = self.stall.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if !self.stalled {
            self.stalled = true;
            sleep.as_mut().reset(deadline);
        }
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("peer read nothing for {:?} (--idle-timeout)", self.idle),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for DeadlineIo<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for DeadlineIo<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.bound(cx, r)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.bound(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_flush(cx);
        this.bound(cx, r)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.bound(cx, r)
    }
}

/// Backend sockets keep what hyper's pool needs to know about them.
impl<S: Connection> Connection for DeadlineIo<S> {
    fn connected(&self) -> Connected {
        self.inner.connected()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_write_nobody_reads_fails_after_the_idle_timeout() {
        let (a, mut b) = tokio::io::duplex(1024);
        let mut a = DeadlineIo::new(a, Duration::from_millis(100));
        let started = std::time::Instant::now();
        let chunk = [7u8; 512];
        let err = loop {
            if let Err(e) = a.write_all(&chunk).await {
                break e;
            }
        };
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(
            started.elapsed() >= Duration::from_millis(100) && started.elapsed() < Duration::from_secs(2)
        );
        // Reads are untouched.
        b.write_all(b"hi").await.unwrap();
        let mut got = [0u8; 2];
        a.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hi");
    }

    #[tokio::test]
    async fn a_slow_reader_that_keeps_reading_is_not_cut() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut a = DeadlineIo::new(a, Duration::from_millis(200));
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 64];
            let mut total = 0;
            // Reads a little every 20 ms: each blocked write makes progress well within 200 ms,
            // though the whole transfer takes far longer.
            while total < 2048 {
                tokio::time::sleep(Duration::from_millis(20)).await;
                total += b.read(&mut buf).await.unwrap();
            }
        });
        a.write_all(&[1u8; 2048]).await.expect("progress keeps the writer alive");
        reader.await.unwrap();
    }
}
