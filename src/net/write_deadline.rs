//! A write side that gives up when the peer stops reading.
//!
//! A client that never reads its response, or an origin that never reads an upload, would otherwise
//! park a task and its buffers forever on a full socket buffer. [`WriteDeadline`] fails a write, flush
//! or shutdown with [`io::ErrorKind::TimedOut`] once it has made no progress for the limit: "no
//! progress for that long" is the rule, so a slow reader that keeps draining is never cut off. The
//! timer is armed only while a write is blocked (and reused across stalls), so the fast path costs
//! nothing. Reads pass through untouched: quiet peers are the read side's business (long polls and
//! idle tunnels are legitimate), a peer that stops reading is not.
//!
//! A stream can also carry its connection-limit slot ([`WriteDeadline::holding`]), released only when
//! the socket itself is dropped: after a hyper connection hands an upgraded socket to a relay, the
//! slot stays taken for as long as the relay runs.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, Sleep};

/// Wraps a writer so that a write blocked for `limit` fails with `TimedOut`.
pub struct WriteDeadline<W> {
    inner: W,
    limit: Duration,
    /// The stall timer, kept after the first stall so later ones cost no allocation.
    timer: Option<Pin<Box<Sleep>>>,
    /// True while a write is blocked and `timer` runs for it.
    stalled: bool,
    written: u64,
    _slot: Option<OwnedSemaphorePermit>,
}

impl<W> WriteDeadline<W> {
    /// `inner`, whose writes may block for at most `limit` without progress.
    pub fn new(inner: W, limit: Duration) -> Self {
        WriteDeadline { inner, limit, timer: None, stalled: false, written: 0, _slot: None }
    }

    /// Keeps `slot` (a `--max-connections` permit) until this stream is dropped.
    pub fn holding(mut self, slot: OwnedSemaphorePermit) -> Self {
        self._slot = Some(slot);
        self
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    /// The wrapped writer.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// Bytes accepted by the writer so far (lets a caller know whether anything reached the peer).
    pub fn written(&self) -> u64 {
        self.written
    }

    fn on_poll<T>(&mut self, cx: &mut Context<'_>, res: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if res.is_ready() {
            self.stalled = false;
            return res;
        }
        let deadline = Instant::now() + self.limit;
        let timer = self.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if !self.stalled {
            self.stalled = true;
            timer.as_mut().reset(deadline);
        }
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("peer read nothing for {:?}", self.limit),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<W: AsyncRead + Unpin> AsyncRead for WriteDeadline<W> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<W> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let res = Pin::new(&mut this.inner).poll_write(cx, buf);
        let res = this.on_poll(cx, res);
        if let Poll::Ready(Ok(n)) = res {
            this.written += n as u64;
        }
        res
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let res = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        let res = this.on_poll(cx, res);
        if let Poll::Ready(Ok(n)) = res {
            this.written += n as u64;
        }
        res
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let res = Pin::new(&mut this.inner).poll_flush(cx);
        this.on_poll(cx, res)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let res = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.on_poll(cx, res)
    }
}

/// Writes all of `data` to `w`, failing with `TimedOut` if the peer reads nothing for `limit`.
pub async fn write_all_within<W: AsyncWrite + Unpin>(
    w: &mut W,
    data: &[u8],
    limit: Duration,
) -> io::Result<()> {
    use tokio::io::AsyncWriteExt;
    WriteDeadline::new(w, limit).write_all(data).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_reads_nothing_times_out() {
        let (mut far, near) = duplex(1024);
        let mut w = WriteDeadline::new(near, Duration::from_secs(3));
        let err = w.write_all(&[0u8; 64 * 1024]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        // What did fit is there to read.
        let mut got = vec![0u8; 1024];
        far.read_exact(&mut got).await.unwrap();
        // Reads are untouched, and a later stall is timed afresh.
        far.write_all(b"hi").await.unwrap();
        let mut two = [0u8; 2];
        w.read_exact(&mut two).await.unwrap();
        assert_eq!(&two, b"hi");
        let err = w.write_all(&[0u8; 4096]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_reader_that_keeps_reading_is_not_cut_off() {
        let (mut far, near) = duplex(1024);
        let reader = tokio::spawn(async move {
            let mut total = 0;
            let mut buf = [0u8; 512];
            while total < 64 * 1024 {
                tokio::time::sleep(Duration::from_secs(1)).await;
                total += far.read(&mut buf).await.unwrap();
            }
            total
        });
        let mut w = WriteDeadline::new(near, Duration::from_secs(3));
        // 128 reads a second apart: far longer than the limit in total, never 3 s without progress.
        w.write_all(&[0u8; 64 * 1024]).await.unwrap();
        assert_eq!(reader.await.unwrap(), 64 * 1024);
    }
}
