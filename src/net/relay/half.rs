//! One direction of the relay, and its three ways of moving bytes:
//! - **splice**: both ends are plain sockets and a pipe is free: the bytes never enter user space;
//! - **chunks**: one end keeps buffers of its own ([`ChunkEnd`]): the reader's chunks are written
//!   as they are (up to four at once, one vectored write), or the socket is read straight into a
//!   buffer the writer keeps;
//! - **copy**: through a pooled 64 KiB buffer, taken only while bytes are in it.
//!
//! A direction holds bytes in at most one place at a time (the pipe, the buffer or chunks), and
//! picks its way again only when it holds none, so order is kept whatever it switches between.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BufMut, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::io::poll_read_buf;

use super::buffer::{give_buf, take_buf, BUF_SIZE};
use super::ends::ChunkEnd;
use super::slab;
use crate::net::splice::{Lease, PipePool};

/// Chunks taken from a reader before they are written, with one vectored write: a tunnel's chunks are
/// its frames' payloads (64 KiB by default), and a socket takes four of them as cheaply as one.
const CHUNKS_PER_WRITE: usize = 4;

/// What a direction may use beyond reading and writing: the pipes to splice with (if any), and how
/// it finds its reader's and writer's sockets and own buffers.
pub(super) struct Via<'p, R: ?Sized, W: ?Sized> {
    pub(super) pipes: Option<&'p PipePool>,
    pub(super) tcp_r: for<'x> fn(&'x R) -> Option<&'x TcpStream>,
    pub(super) tcp_w: for<'x> fn(&'x W) -> Option<&'x TcpStream>,
    pub(super) chunks_r: for<'x> fn(&'x mut R) -> Option<&'x mut dyn ChunkEnd>,
    pub(super) chunks_w: for<'x> fn(&'x mut W) -> Option<&'x mut dyn ChunkEnd>,
}

/// One direction of the relay.
#[derive(Default)]
pub(super) struct Half {
    /// Copied bytes, `pos..cap` still to write.
    buf: Option<Box<[u8]>>,
    pos: usize,
    cap: usize,
    /// Spliced bytes still to write.
    pipe: Option<Lease>,
    /// The reader's own bytes still to write, in order.
    chunks: VecDeque<Bytes>,
    pub(super) total: u64,
    read_done: bool,
    need_flush: bool,
    done: bool,
}

impl Half {
    pub(super) fn poll_copy<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        reader: &mut R,
        writer: &mut W,
        via: Option<&Via<'_, R, W>>,
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
                let Some(to) = via.and_then(|v| (v.tcp_w)(writer)) else {
                    return Poll::Ready(Err(io::Error::other("spliced writer is no longer a socket")));
                };
                ready!(self.drain_pipe(cx, to))?;
                continue;
            }
            ready!(self.drain_held(cx, writer))?;

            if self.read_done {
                self.pipe = None;
                ready!(self.flush_if_written(cx, writer))?;
                ready!(Pin::new(&mut *writer).poll_shutdown(cx))?;
                self.done = true;
                return Poll::Ready(Ok(()));
            }

            if let Some(v) = via {
                if let (Some(pipes), Some(from), Some(_)) = (v.pipes, (v.tcp_r)(reader), (v.tcp_w)(writer)) {
                    match self.fill_pipe(cx, from, pipes) {
                        Poll::Ready(Some(result)) => {
                            result?;
                            continue;
                        }
                        Poll::Pending => return self.flush_then_pend(cx, writer),
                        // No pipe to be had: this read is a copy.
                        Poll::Ready(None) => {}
                    }
                }
                let polled = match (v.chunks_r)(reader) {
                    Some(from) => Some(self.take_chunks(cx, from)),
                    None => (v.chunks_w)(writer).map(|to| self.read_into(cx, reader, to)),
                };
                match polled {
                    Some(Poll::Ready(result)) => {
                        result?;
                        continue;
                    }
                    Some(Poll::Pending) => return self.flush_then_pend(cx, writer),
                    None => {}
                }
            }

            let mut buf = take_buf();
            let mut rb = ReadBuf::new(&mut buf);
            match Pin::new(&mut *reader).poll_read(cx, &mut rb) {
                Poll::Pending => {
                    give_buf(buf);
                    return self.flush_then_pend(cx, writer);
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

    /// Writes what the buffer or the chunks hold, then lets the buffer go.
    fn drain_held<W: AsyncWrite + Unpin + ?Sized>(
        &mut self,
        cx: &mut Context<'_>,
        writer: &mut W,
    ) -> Poll<io::Result<()>> {
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
        while !self.chunks.is_empty() {
            let n = if self.chunks.len() > 1 && writer.is_write_vectored() {
                let mut slices = [IoSlice::new(&[]); CHUNKS_PER_WRITE];
                for (slice, chunk) in slices.iter_mut().zip(&self.chunks) {
                    *slice = IoSlice::new(chunk);
                }
                let k = self.chunks.len().min(CHUNKS_PER_WRITE);
                ready!(Pin::new(&mut *writer).poll_write_vectored(cx, &slices[..k]))?
            } else {
                ready!(Pin::new(&mut *writer).poll_write(cx, &self.chunks[0]))?
            };
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.total += n as u64;
            self.need_flush = true;
            let mut written = n;
            while written > 0 {
                let front = &mut self.chunks[0];
                if front.len() > written {
                    front.advance(written);
                    break;
                }
                written -= front.len();
                self.chunks.pop_front();
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Nothing more can move now: flushes what was written (a buffered writer might hold it until
    /// the next write, which may never come), then waits.
    fn flush_then_pend<W: AsyncWrite + Unpin + ?Sized>(
        &mut self,
        cx: &mut Context<'_>,
        writer: &mut W,
    ) -> Poll<io::Result<()>> {
        ready!(self.flush_if_written(cx, writer))?;
        Poll::Pending
    }

    fn flush_if_written<W: AsyncWrite + Unpin + ?Sized>(
        &mut self,
        cx: &mut Context<'_>,
        writer: &mut W,
    ) -> Poll<io::Result<()>> {
        if self.need_flush {
            ready!(Pin::new(&mut *writer).poll_flush(cx))?;
            self.need_flush = false;
        }
        Poll::Ready(Ok(()))
    }

    /// Takes the reader's chunks, to be written as they are: as many as it has now, up to
    /// [`CHUNKS_PER_WRITE`].
    fn take_chunks(&mut self, cx: &mut Context<'_>, from: &mut dyn ChunkEnd) -> Poll<io::Result<()>> {
        while self.chunks.len() < CHUNKS_PER_WRITE {
            match from.poll_read_chunk(cx, BUF_SIZE) {
                Poll::Ready(Ok(Some(chunk))) => self.chunks.push_back(chunk),
                Poll::Ready(Ok(None)) => {
                    self.read_done = true;
                    break;
                }
                // What was taken goes out first; the end's error stays, and the next read gets it.
                Poll::Ready(Err(e)) if self.chunks.is_empty() => return Poll::Ready(Err(e)),
                Poll::Pending if self.chunks.is_empty() => return Poll::Pending,
                Poll::Ready(Err(_)) | Poll::Pending => break,
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Reads straight into a buffer the writer keeps, once the writer takes bytes: nothing is read
    /// that the writer could not take, so nothing is held here.
    fn read_into<R: AsyncRead + Unpin + ?Sized>(
        &mut self,
        cx: &mut Context<'_>,
        reader: &mut R,
        to: &mut dyn ChunkEnd,
    ) -> Poll<io::Result<()>> {
        let room = ready!(to.poll_write_room(cx))?;
        let head = to.head_room();
        let mut buf = slab::take(head, room);
        let limit = room.min(slab::room(&buf));
        match poll_read_buf(Pin::new(&mut *reader), cx, &mut (&mut buf).limit(limit)) {
            Poll::Pending => {
                slab::give_back(buf);
                Poll::Pending
            }
            Poll::Ready(Err(e)) => {
                slab::give_back(buf);
                Poll::Ready(Err(e))
            }
            Poll::Ready(Ok(0)) => {
                slab::give_back(buf);
                self.read_done = true;
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Ok(n)) => {
                to.write_chunk(slab::split(buf, head))?;
                self.total += n as u64;
                Poll::Ready(Ok(()))
            }
        }
    }

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
