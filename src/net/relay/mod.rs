//! The one bidirectional copy used by every tunnel in tunnelkit (CONNECT, SOCKS, WebSocket upgrades,
//! port forwards, tunnel streams).
//!
//! Four properties matter more than in `tokio::io::copy_bidirectional`:
//! - **Idle connections hold no buffer.** A 64 KiB buffer is taken from a per-thread pool only for
//!   the duration of one read that returns data and the writes that follow, and returned when a read
//!   would block. Ten thousand idle tunnels cost sockets and tasks, not 1.3 GB of buffers.
//! - **Plain sockets are spliced.** Given a [`PipePool`] ([`Relay::splice`]), a direction whose two
//!   ends are kernel TCP sockets moves bytes with `splice(2)` through a pipe lent for as long as
//!   bytes flow (`net::splice`); without a free pipe, or with TLS or a tunnel stream on either
//!   end, it copies through the buffer. A direction switches strategy only when it holds no bytes,
//!   so order is kept.
//! - **Half-close is preserved.** EOF on one side shuts down the write half of the other; the
//!   opposite direction keeps flowing until it ends too.
//! - **An idle timeout** covers both directions together: the relay ends when no byte moved either
//!   way for the given time.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use super::splice::{Lease, PipePool, SpliceEnd};

/// Size of one relay buffer: large enough for loopback line rate, small enough to pool.
pub const BUF_SIZE: usize = 64 * 1024;
const POOL_MAX_PER_THREAD: usize = 64;

thread_local! {
    static POOL: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
}

fn take_buf() -> Box<[u8]> {
    POOL.with(|p| p.borrow_mut().pop()).unwrap_or_else(|| vec![0u8; BUF_SIZE].into_boxed_slice())
}

fn give_buf(buf: Box<[u8]>) {
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < POOL_MAX_PER_THREAD {
            p.push(buf);
        }
    });
}

/// Bytes moved by [`relay`], in each direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Bytes read from `a` and written to `b`.
    pub a_to_b: u64,
    /// Bytes read from `b` and written to `a`.
    pub b_to_a: u64,
    /// True if the relay ended because of the idle timeout.
    pub idle_timeout: bool,
}

/// Copies bytes both ways between `a` and `b` until both directions have reached EOF, an error
/// occurs, or nothing moved for `idle` (if given).
///
/// On error the stats so far are lost with the error; callers that log bytes on failure should
/// use [`Relay`] directly.
pub async fn relay<A, B>(a: &mut A, b: &mut B, idle: Option<Duration>) -> io::Result<RelayStats>
where
    A: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    Relay::new(a, b, idle).await
}

/// The relay as a future, exposing progress so far via [`Relay::stats`].
pub struct Relay<'a, A: ?Sized, B: ?Sized> {
    a: &'a mut A,
    b: &'a mut B,
    ab: Half,
    ba: Half,
    idle: Option<Duration>,
    sleep: Option<Pin<Box<Sleep>>>,
    last_activity: Instant,
    end_with_b: bool,
    splice: Option<Splice<A, B>>,
}

/// How a spliced relay finds the sockets behind its ends, and where it borrows pipes.
struct Splice<A: ?Sized, B: ?Sized> {
    pipes: PipePool,
    tcp_a: for<'x> fn(&'x A) -> Option<&'x TcpStream>,
    tcp_b: for<'x> fn(&'x B) -> Option<&'x TcpStream>,
}

impl<'a, A, B> Relay<'a, A, B>
where
    A: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    /// A relay between `a` and `b` with an optional idle timeout.
    pub fn new(a: &'a mut A, b: &'a mut B, idle: Option<Duration>) -> Self {
        let now = Instant::now();
        Relay {
            a,
            b,
            ab: Half::default(),
            ba: Half::default(),
            idle,
            sleep: idle.map(|d| Box::pin(tokio::time::sleep_until(now + d))),
            last_activity: now,
            end_with_b: false,
            splice: None,
        }
    }

    /// Splices each direction whose two ends are plain TCP sockets, with pipes from `pipes`
    /// (`None`: copy only, as with `--no-splice`).
    pub fn splice(mut self, pipes: Option<&PipePool>) -> Self
    where
        A: SpliceEnd,
        B: SpliceEnd,
    {
        self.splice = pipes.filter(|p| p.max() > 0).map(|pipes| Splice {
            pipes: pipes.clone(),
            tcp_a: <A as SpliceEnd>::tcp,
            tcp_b: <B as SpliceEnd>::tcp,
        });
        self
    }

    /// Ends the relay as soon as `b` has closed and everything it sent reached `a` (whose write half
    /// is then shut down), without waiting for `a` to close too: what `nc` does when the remote side
    /// ends, and what ssh needs from a `ProxyCommand`.
    pub fn end_with_b(mut self) -> Self {
        self.end_with_b = true;
        self
    }

    /// Bytes moved so far.
    pub fn stats(&self) -> RelayStats {
        RelayStats { a_to_b: self.ab.total, b_to_a: self.ba.total, idle_timeout: false }
    }
}

impl<A, B> Future for Relay<'_, A, B>
where
    A: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    type Output = io::Result<RelayStats>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let before = this.ab.total + this.ba.total;
        let (ab, ba) = match &this.splice {
            None => (
                this.ab.poll_copy(cx, &mut *this.a, &mut *this.b, None)?,
                this.ba.poll_copy(cx, &mut *this.b, &mut *this.a, None)?,
            ),
            Some(s) => (
                this.ab.poll_copy(cx, &mut *this.a, &mut *this.b, Some((&s.pipes, s.tcp_a, s.tcp_b)))?,
                this.ba.poll_copy(cx, &mut *this.b, &mut *this.a, Some((&s.pipes, s.tcp_b, s.tcp_a)))?,
            ),
        };
        if ba.is_ready() && (ab.is_ready() || this.end_with_b) {
            return Poll::Ready(Ok(this.stats()));
        }
        if let (Some(idle), Some(sleep)) = (this.idle, this.sleep.as_mut()) {
            if this.ab.total + this.ba.total != before {
                this.last_activity = Instant::now();
            }
            // Re-arming the timer on every chunk is costly; re-arm only when it fires early.
            while sleep.as_mut().poll(cx).is_ready() {
                let deadline = this.last_activity + idle;
                if deadline <= Instant::now() {
                    let mut s = this.stats();
                    s.idle_timeout = true;
                    return Poll::Ready(Ok(s));
                }
                sleep.as_mut().reset(deadline);
            }
        }
        Poll::Pending
    }
}

/// Where a spliced direction borrows pipes and finds its reader's and writer's sockets.
type SpliceWith<'p, R, W> =
    (&'p PipePool, for<'x> fn(&'x R) -> Option<&'x TcpStream>, for<'x> fn(&'x W) -> Option<&'x TcpStream>);

/// One direction of the relay. It holds bytes in at most one place at a time: the buffer
/// (`pos..cap`) or the pipe.
#[derive(Default)]
struct Half {
    buf: Option<Box<[u8]>>,
    pos: usize,
    cap: usize,
    pipe: Option<Lease>,
    total: u64,
    read_done: bool,
    need_flush: bool,
    done: bool,
}

impl Half {
    fn poll_copy<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        reader: &mut R,
        writer: &mut W,
        splice: Option<SpliceWith<'_, R, W>>,
    ) -> Poll<io::Result<()>>
    where
        R: AsyncRead + Unpin + ?Sized,
        W: AsyncWrite + Unpin + ?Sized,
    {
        if self.done {
            return Poll::Ready(Ok(()));
        }
        loop {
            // Spliced bytes first: the pipe is non-empty only between a fill and its drain.
            if self.pipe.as_ref().is_some_and(|p| p.len() > 0) {
                let (_, _, tcp_w) = splice.expect("a pipe implies splicing");
                let Some(to) = tcp_w(writer) else {
                    return Poll::Ready(Err(io::Error::other("spliced writer is no longer a socket")));
                };
                ready!(self.drain_pipe(cx, to))?;
                continue;
            }
            // Drain what we hold before reading more.
            while self.pos < self.cap {
                let buf = self.buf.as_ref().expect("data implies a buffer");
                let n = ready!(Pin::new(&mut *writer).poll_write(cx, &buf[self.pos..self.cap]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                self.pos += n;
                self.total += n as u64;
                self.need_flush = true;
            }
            if let Some(buf) = self.buf.take() {
                give_buf(buf);
            }
            self.pos = 0;
            self.cap = 0;

            if self.read_done {
                self.pipe = None;
                if self.need_flush {
                    ready!(Pin::new(&mut *writer).poll_flush(cx))?;
                    self.need_flush = false;
                }
                ready!(Pin::new(&mut *writer).poll_shutdown(cx))?;
                self.done = true;
                return Poll::Ready(Ok(()));
            }

            if let Some((pipes, tcp_r, tcp_w)) = splice {
                if let (Some(from), Some(_)) = (tcp_r(reader), tcp_w(writer)) {
                    match self.fill_pipe(cx, from, pipes) {
                        Poll::Ready(Some(result)) => {
                            result?;
                            continue;
                        }
                        Poll::Pending => {
                            if self.need_flush {
                                ready!(Pin::new(&mut *writer).poll_flush(cx))?;
                                self.need_flush = false;
                            }
                            return Poll::Pending;
                        }
                        // No pipe to be had: this read is a copy.
                        Poll::Ready(None) => {}
                    }
                }
            }

            let mut buf = take_buf();
            let mut rb = ReadBuf::new(&mut buf);
            match Pin::new(&mut *reader).poll_read(cx, &mut rb) {
                Poll::Pending => {
                    give_buf(buf);
                    if self.need_flush {
                        ready!(Pin::new(&mut *writer).poll_flush(cx))?;
                        self.need_flush = false;
                    }
                    return Poll::Pending;
                }
                Poll::Ready(Err(e)) => {
                    give_buf(buf);
                    return Poll::Ready(Err(e));
                }
                Poll::Ready(Ok(())) => {
                    let n = rb.filled().len();
                    if n == 0 {
                        give_buf(buf);
                        self.read_done = true;
                    } else {
                        self.cap = n;
                        self.buf = Some(buf);
                    }
                }
            }
        }
    }
}

impl Half {
    /// Waits until `from` has bytes (giving the pipe back meanwhile: an idle direction holds
    /// none), then splices them into a pipe. `Ready(None)`: no pipe could be lent, copy instead.
    fn fill_pipe(
        &mut self,
        cx: &mut Context<'_>,
        from: &TcpStream,
        pipes: &PipePool,
    ) -> Poll<Option<io::Result<()>>> {
        loop {
            match from.poll_read_ready(cx) {
                Poll::Pending => {
                    self.pipe = None;
                    return Poll::Pending;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Ok(())) => {}
            }
            let lease = match self.pipe.as_mut() {
                Some(lease) => lease,
                None => match pipes.take() {
                    Some(lease) => self.pipe.insert(lease),
                    None => return Poll::Ready(None),
                },
            };
            match lease.fill_from(from) {
                Ok(0) => {
                    self.read_done = true;
                    return Poll::Ready(Some(Ok(())));
                }
                Ok(_) => return Poll::Ready(Some(Ok(()))),
                // Readiness was stale; it is cleared, so the next poll registers for the next bytes.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Some(Err(e))),
            }
        }
    }

    /// Splices the pipe's bytes into `to` until it is empty.
    fn drain_pipe(&mut self, cx: &mut Context<'_>, to: &TcpStream) -> Poll<io::Result<()>> {
        let lease = self.pipe.as_mut().expect("draining needs a pipe");
        while lease.len() > 0 {
            ready!(to.poll_write_ready(cx))?;
            match lease.drain_to(to) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => self.total += n as u64,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The lease still holds bytes: dropping it with the relay closes the pipe.
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests;
