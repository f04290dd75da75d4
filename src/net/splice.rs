//! Zero-copy relaying between two kernel TCP sockets: `splice(2)` through a pipe, with pipes lent
//! from a bounded [`PipePool`] only while bytes flow.
//!
//! A user-space copy moves every byte across the kernel boundary twice (`read` into our buffer,
//! `write` out of it). `splice` moves page references from one socket's receive queue into a pipe
//! and from the pipe into the other socket's send queue: no copy through user memory. On loopback
//! others measured 2× to 5× the copy's throughput (see `docs/architecture.md` for ours).
//!
//! The cost is two file descriptors per pipe. HAProxy's answer, which we follow:
//! - a pipe is taken only when a direction has bytes to move, and given back as soon as its read
//!   would block with the pipe empty, so an idle tunnel holds no pipe;
//! - the pool is bounded (`--max-pipes`, by default a quarter of `--max-connections`, as HAProxy's
//!   `maxpipes`); past the bound a direction simply uses the buffered copy;
//! - a pipe that still holds bytes when its direction fails is closed, never lent again (its bytes
//!   belong to a dead connection).
//!
//! The pool is one mutex-guarded list shared by the process' threads, not a per-thread cache: a
//! take or a give is one uncontended lock per burst of bytes (tens of nanoseconds), against two
//! `splice` calls of a microsecond or more each, and a shared list lets any thread reuse a pipe
//! that another freed. The kernel's per-user pipe budget (`/proc/sys/fs/pipe-user-pages-soft`)
//! only shrinks new pipes to one page, which stays correct (each call moves what fits); a pipe
//! that cannot be created at all (`EMFILE`) is a fallback to the copy, like an exhausted pool.

use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::Interest;
use tokio::net::TcpStream;

/// The pipe size asked for by default (`--pipe-size`). Measured on 2 cores, CONNECT bulk through
/// the proxy, medians of 3 alternated rounds: 64 KiB pipes (the kernel's default) 9.6 Gbit/s, no
/// better than the buffered copy's 10.2; 256 KiB 12.2; 1 MiB 13.4. Fewer, larger `splice` calls per
/// byte are what splicing buys. 1 MiB is the kernel's default `pipe-max-size`, so an unprivileged
/// user may ask for it.
pub const DEFAULT_PIPE_SIZE: usize = 1 << 20;

/// A pipe smaller than this (the kernel shrinks new pipes past a user's pipe budget) moves fewer
/// bytes per call than the buffered copy does, so it is closed and the direction copies instead.
const MIN_USEFUL_PIPE: usize = 64 * 1024;

/// Pipes lent to relays, at most `max` in existence (lent and idle together).
#[derive(Clone, Debug)]
pub struct PipePool {
    inner: Arc<PoolInner>,
}

#[derive(Debug)]
struct PoolInner {
    max: usize,
    /// Requested pipe size (`F_SETPIPE_SZ`), if any.
    size: Option<usize>,
    /// Pipes in existence: lent plus idle.
    live: AtomicUsize,
    idle: Mutex<Vec<Pipe>>,
    /// Times a direction wanted a pipe and had to copy instead.
    fallbacks: AtomicU64,
}

impl PipePool {
    /// A pool of at most `max` pipes (0 turns splicing off), each of `size` bytes when the kernel
    /// allows it, else of its default size (64 KiB).
    pub fn new(max: usize, size: Option<usize>) -> Self {
        PipePool {
            inner: Arc::new(PoolInner {
                max,
                size,
                live: AtomicUsize::new(0),
                idle: Mutex::new(Vec::new()),
                fallbacks: AtomicU64::new(0),
            }),
        }
    }

    /// The bound the pool was made with.
    pub fn max(&self) -> usize {
        self.inner.max
    }

    /// Pipes in existence (lent and idle): each holds two file descriptors.
    pub fn live(&self) -> usize {
        self.inner.live.load(Ordering::Relaxed)
    }

    /// Pipes waiting in the pool.
    pub fn idle(&self) -> usize {
        self.inner.idle.lock().expect("pipe pool lock").len()
    }

    /// How often a direction found no pipe and used the buffered copy.
    pub fn fallbacks(&self) -> u64 {
        self.inner.fallbacks.load(Ordering::Relaxed)
    }

    /// Lends a pipe, or `None` when the pool is exhausted or the kernel refuses a new one.
    pub(crate) fn take(&self) -> Option<Lease> {
        let inner = &self.inner;
        if let Some(pipe) = inner.idle.lock().expect("pipe pool lock").pop() {
            return Some(Lease { pipe: Some(pipe), pool: inner.clone() });
        }
        let reserved = inner
            .live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < inner.max).then_some(n + 1))
            .is_ok();
        if !reserved {
            inner.fallbacks.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("tunnelkit_relay_pipe_fallbacks_total", "reason" => "pool_exhausted")
                .increment(1);
            return None;
        }
        match Pipe::new(inner.size) {
            Ok(pipe) if pipe.cap < MIN_USEFUL_PIPE => {
                drop(pipe);
                inner.live.fetch_sub(1, Ordering::AcqRel);
                inner.fallbacks.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("tunnelkit_relay_pipe_fallbacks_total", "reason" => "pipe_budget")
                    .increment(1);
                tracing::debug!(
                    "the kernel shrank a new pipe (pipe-user-pages-soft reached); copying instead"
                );
                None
            }
            Ok(pipe) => {
                metrics::gauge!("tunnelkit_relay_pipes").set(inner.live.load(Ordering::Relaxed) as f64);
                Some(Lease { pipe: Some(pipe), pool: inner.clone() })
            }
            Err(e) => {
                inner.live.fetch_sub(1, Ordering::AcqRel);
                inner.fallbacks.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("tunnelkit_relay_pipe_fallbacks_total", "reason" => "pipe_error")
                    .increment(1);
                tracing::debug!(error = %e, "no pipe for splice; copying instead");
                None
            }
        }
    }
}

/// A pipe lent to one direction of a relay. Dropping it gives the pipe back when it is empty and
/// closes it when it still holds bytes.
#[derive(Debug)]
pub(crate) struct Lease {
    pipe: Option<Pipe>,
    pool: Arc<PoolInner>,
}

impl Lease {
    fn pipe(&mut self) -> &mut Pipe {
        self.pipe.as_mut().expect("a lease holds its pipe until dropped")
    }

    /// Bytes in the pipe, read from one socket and not yet written to the other.
    pub(crate) fn len(&self) -> usize {
        self.pipe.as_ref().map_or(0, |p| p.len)
    }

    /// Moves what `from` has received (up to the pipe's size) into the pipe; `Ok(0)` is EOF.
    /// `WouldBlock` clears `from`'s read readiness, so the caller's next `poll_read_ready` waits.
    pub(crate) fn fill_from(&mut self, from: &TcpStream) -> io::Result<usize> {
        let pipe = self.pipe();
        debug_assert_eq!(pipe.len, 0, "a pipe is filled only when empty");
        let n = from.try_io(Interest::READABLE, || sys::splice(sock_fd(from), pipe.w, pipe.cap))?;
        pipe.len = n;
        Ok(n)
    }

    /// Moves bytes from the pipe into `to`'s send queue; returns how many.
    pub(crate) fn drain_to(&mut self, to: &TcpStream) -> io::Result<usize> {
        let pipe = self.pipe();
        let n = to.try_io(Interest::WRITABLE, || sys::splice(pipe.r, sock_fd(to), pipe.len))?;
        pipe.len -= n;
        Ok(n)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(pipe) = self.pipe.take() else { return };
        if pipe.len == 0 {
            self.pool.idle.lock().expect("pipe pool lock").push(pipe);
        } else {
            // Bytes of a failed connection: close the pipe rather than lend them to the next one.
            drop(pipe);
            let live = self.pool.live.fetch_sub(1, Ordering::AcqRel) - 1;
            metrics::gauge!("tunnelkit_relay_pipes").set(live as f64);
        }
    }
}

fn sock_fd(s: &TcpStream) -> std::os::fd::RawFd {
    use std::os::fd::AsRawFd;
    s.as_raw_fd()
}

/// A kernel pipe: its two ends and how many bytes it holds.
#[derive(Debug)]
struct Pipe {
    r: sys::Fd,
    w: sys::Fd,
    /// Bytes in the pipe.
    len: usize,
    /// The pipe's size: the most one fill moves.
    cap: usize,
}

impl Pipe {
    fn new(size: Option<usize>) -> io::Result<Pipe> {
        let (r, w, cap) = sys::pipe(size)?;
        Ok(Pipe { r, w, len: 0, cap })
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        sys::close(self.r);
        sys::close(self.w);
    }
}

#[cfg(target_os = "linux")]
mod sys {
    //! The three system calls, on Linux.
    use std::io;

    pub type Fd = std::os::fd::RawFd;

    /// A non-blocking pipe, resized to `size` when asked; returns its ends and actual size.
    pub fn pipe(size: Option<usize>) -> io::Result<(Fd, Fd, usize)> {
        let mut fds = [0; 2];
        // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } < 0 {
            return Err(io::Error::last_os_error());
        }
        if let Some(size) = size {
            // A refused size (over pipe-max-size, or the user's budget) keeps the default: still correct.
            // SAFETY: fcntl on a pipe we own.
            unsafe { libc::fcntl(fds[1], libc::F_SETPIPE_SZ, size as libc::c_int) };
        }
        // SAFETY: fcntl on a pipe we own.
        let cap = unsafe { libc::fcntl(fds[1], libc::F_GETPIPE_SZ) };
        Ok((fds[0], fds[1], if cap > 0 { cap as usize } else { 4096 }))
    }

    /// One `splice` of at most `len` bytes, never blocking.
    pub fn splice(from: Fd, to: Fd, len: usize) -> io::Result<usize> {
        let flags = libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK;
        // SAFETY: both descriptors are open for the duration of the call; null offsets mean "the
        // current position", which is what sockets and pipes require.
        let n = unsafe { libc::splice(from, std::ptr::null_mut(), to, std::ptr::null_mut(), len, flags) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    pub fn close(fd: Fd) {
        // SAFETY: each pipe end is closed exactly once, by the Pipe that owns it.
        unsafe { libc::close(fd) };
    }
}

#[cfg(not(target_os = "linux"))]
mod sys {
    //! No splice outside Linux: every pipe request fails, so relays copy.
    use std::io;

    pub type Fd = i32;

    pub fn pipe(_size: Option<usize>) -> io::Result<(Fd, Fd, usize)> {
        Err(io::Error::new(io::ErrorKind::Unsupported, "splice(2) is Linux-only"))
    }

    pub fn splice(_from: Fd, _to: Fd, _len: usize) -> io::Result<usize> {
        Err(io::Error::new(io::ErrorKind::Unsupported, "splice(2) is Linux-only"))
    }

    pub fn close(_fd: Fd) {}
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn the_pool_lends_at_most_max_pipes_and_reuses_empty_ones() {
        let pool = PipePool::new(2, None);
        let a = pool.take().expect("first pipe");
        let b = pool.take().expect("second pipe");
        assert!(pool.take().is_none(), "a third pipe is over the bound");
        assert_eq!(pool.fallbacks(), 1);
        assert_eq!(pool.live(), 2);
        drop(a);
        assert_eq!((pool.live(), pool.idle()), (2, 1), "an empty pipe goes back to the pool");
        let c = pool.take().expect("the returned pipe is lent again");
        assert_eq!(pool.idle(), 0);
        drop((b, c));
        assert_eq!((pool.live(), pool.idle()), (2, 2));
    }

    #[test]
    fn a_pipe_that_still_holds_bytes_is_closed_not_reused() {
        let pool = PipePool::new(1, None);
        let mut lease = pool.take().unwrap();
        lease.pipe().len = 10; // as if a fill succeeded and the drain then failed
        drop(lease);
        assert_eq!((pool.live(), pool.idle()), (0, 0));
        assert!(pool.take().is_some(), "the slot is free for a new pipe");
    }

    #[test]
    fn a_pool_of_zero_never_lends() {
        let pool = PipePool::new(0, None);
        assert!(pool.take().is_none());
    }

    #[test]
    fn a_requested_size_is_applied_when_the_kernel_allows_it() {
        let pool = PipePool::new(1, Some(256 * 1024));
        let mut lease = pool.take().unwrap();
        // Root may raise up to pipe-max-size (1 MiB by default); others may get less. Never below a page.
        assert!(lease.pipe().cap >= 4096);
    }
}
