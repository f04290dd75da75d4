//! The one bidirectional copy used by every tunnel in tunnelkit (CONNECT, SOCKS, WebSocket upgrades,
//! port forwards, tunnel streams).
//!
//! Four properties matter more than in `tokio::io::copy_bidirectional`:
//! - **Idle connections hold no buffer.** A 64 KiB buffer is taken from a per-thread pool only for
//!   the duration of one read that returns data and the writes that follow, and returned when a read
//!   would block. Ten thousand idle tunnels cost sockets and tasks, not 1.3 GB of buffers.
//! - **Plain sockets are spliced.** Given a [`PipePool`] ([`Relay::splice`]), a direction whose two
//!   ends are kernel TCP sockets moves bytes with `splice(2)` through a pipe lent for as long as
//!   bytes flow (`net::splice`); without a free pipe, or with TLS on either end, it copies through
//!   the buffer.
//! - **An end's own buffers are moved, not copied.** A tunnel stream ([`ChunkEnd`], through
//!   [`Relay::lending`] or [`Relay::splice`]) hands over what arrived as it holds it, and takes
//!   DATA frames the socket was read straight into.
//! - A direction switches strategy only when it holds no bytes, so order is kept (`half`).
//! - **Half-close is preserved.** EOF on one side shuts down the write half of the other; the
//!   opposite direction keeps flowing until it ends too.
//! - **An idle timeout** covers both directions together: the relay ends when no byte moved either
//!   way for the given time.

mod buffer;
mod ends;
mod half;
mod slab;

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

pub use buffer::BUF_SIZE;
pub use ends::{ChunkEnd, ChunkIo, ChunkStream, RelayEnd};
use half::{Half, Via};

use super::splice::PipePool;

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
    ends: Option<Ends<A, B>>,
    pipes: Option<PipePool>,
}

/// How the relay finds the sockets and own buffers behind its ends ([`RelayEnd`]).
struct Ends<A: ?Sized, B: ?Sized> {
    tcp_a: for<'x> fn(&'x A) -> Option<&'x TcpStream>,
    tcp_b: for<'x> fn(&'x B) -> Option<&'x TcpStream>,
    chunks_a: for<'x> fn(&'x mut A) -> Option<&'x mut dyn ChunkEnd>,
    chunks_b: for<'x> fn(&'x mut B) -> Option<&'x mut dyn ChunkEnd>,
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
            ends: None,
            pipes: None,
        }
    }

    /// Splices each direction whose two ends are plain TCP sockets, with pipes from `pipes`
    /// (`None`: no splicing, as with `--no-splice`), and moves the ends' own buffers as
    /// [`lending`](Self::lending) does.
    pub fn splice(mut self, pipes: Option<&PipePool>) -> Self
    where
        A: RelayEnd,
        B: RelayEnd,
    {
        self.pipes = pipes.filter(|p| p.max() > 0).cloned();
        self.lending()
    }

    /// Moves the bytes of an end that keeps its own buffers ([`ChunkEnd`]: a tunnel stream) as
    /// they are, instead of copying them through the relay's buffer.
    pub fn lending(mut self) -> Self
    where
        A: RelayEnd,
        B: RelayEnd,
    {
        self.ends = Some(Ends {
            tcp_a: <A as RelayEnd>::tcp,
            tcp_b: <B as RelayEnd>::tcp,
            chunks_a: <A as RelayEnd>::chunks,
            chunks_b: <B as RelayEnd>::chunks,
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
        let (ab, ba) = match &this.ends {
            None => (
                this.ab.poll_copy(cx, &mut *this.a, &mut *this.b, None)?,
                this.ba.poll_copy(cx, &mut *this.b, &mut *this.a, None)?,
            ),
            Some(e) => {
                let pipes = this.pipes.as_ref();
                let ab =
                    Via { pipes, tcp_r: e.tcp_a, tcp_w: e.tcp_b, chunks_r: e.chunks_a, chunks_w: e.chunks_b };
                let ba =
                    Via { pipes, tcp_r: e.tcp_b, tcp_w: e.tcp_a, chunks_r: e.chunks_b, chunks_w: e.chunks_a };
                (
                    this.ab.poll_copy(cx, &mut *this.a, &mut *this.b, Some(&ab))?,
                    this.ba.poll_copy(cx, &mut *this.b, &mut *this.a, Some(&ba))?,
                )
            }
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

#[cfg(test)]
mod tests;
