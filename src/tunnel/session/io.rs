//! What a stream handle (`TunnelStream`) asks of the session: read, write, shut down, wait for the
//! target, reset, and let go. Each call takes the lock once and does its whole step under it; the
//! handle only maps the answer onto tokio's `AsyncRead`/`AsyncWrite`.
//!
//! Also here, the receiving side's part of the stream memory budget (`tunnel::budget`): returning
//! credit as the application reads, and resetting the largest holders when the budget stays full.

use std::io;
use std::sync::MutexGuard;
use std::task::{Poll, Waker};

use bytes::{Bytes, BytesMut};
use tokio::io::ReadBuf;

use super::streams::StreamSlot;
use super::{rst, wake_all, Session, State};
use crate::tunnel::frame::HEADER_LEN;
use crate::tunnel::wire::Message;

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "stream is gone")
}

impl Session {
    /// Reads what arrived on stream `id` into `buf`. `Ready(Ok(()))` with nothing added is the clean EOF
    /// after the peer's FIN; a reset before that FIN is an error.
    pub(crate) fn read_into(&self, id: u32, buf: &mut ReadBuf<'_>, waker: &Waker) -> Poll<io::Result<()>> {
        self.read_step(id, waker, |slot| {
            let n = slot.copy_out(buf);
            // A read with no room is answered at once, as an empty one.
            (n > 0 || buf.remaining() == 0).then_some(((), n))
        })
        .map(|r| r.map(|_| ()))
    }

    /// Takes the next bytes that arrived on stream `id` (at most `max`), as they arrived: no copy.
    /// `Ready(Ok(None))` is the clean EOF after the peer's FIN; a reset before that FIN is an error.
    pub(crate) fn read_chunk(&self, id: u32, max: usize, waker: &Waker) -> Poll<io::Result<Option<Bytes>>> {
        self.read_step(id, waker, |slot| {
            slot.take_chunk(max).map(|c| {
                let n = c.len();
                (c, n)
            })
        })
    }

    /// One read of stream `id`, however the bytes leave the slot: `take` moves what arrived out (what
    /// the reader gets, and how many bytes that was), `None` if nothing did. `Ready(Ok(None))` is the
    /// clean EOF; the reader waits otherwise. What is taken counts as read for the peer's credit.
    fn read_step<T>(
        &self,
        id: u32,
        waker: &Waker,
        take: impl FnOnce(&mut StreamSlot) -> Option<(T, usize)>,
    ) -> Poll<io::Result<Option<T>>> {
        let mut guard = self.lock();
        let st = &mut *guard;
        let Some(slot) = st.streams.get_mut(&id) else { return Poll::Ready(Err(gone())) };
        if let Some(e) = slot.read_error() {
            return Poll::Ready(Err(e));
        }
        if let Some((got, n)) = take(slot) {
            if n > 0 && self.consumed(st, id, n) {
                drop(guard);
                self.writer.notify_one();
            }
            return Poll::Ready(Ok(Some(got)));
        }
        if slot.peer_fin() {
            return Poll::Ready(Ok(None));
        }
        slot.wait_read(waker);
        Poll::Pending
    }

    /// Queues as much of `buf` on stream `id` as its credit and the tunnel's stream memory allow (at
    /// most one frame), copied once into the frame that goes on the wire.
    pub(crate) fn write_from(&self, id: u32, buf: &[u8], waker: &Waker) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let max_frame = self.params.max_frame;
        let mut guard = self.lock();
        let st = &mut *guard;
        let room = match Self::write_room_locked(st, id, max_frame, waker) {
            Poll::Ready(Ok(room)) => room,
            other => return other,
        };
        let Some(slot) = st.streams.get_mut(&id) else { return Poll::Ready(Err(gone())) };
        let n = buf.len().min(room);
        slot.queue_data(id, &buf[..n], max_frame);
        self.queued(guard, id, n);
        Poll::Ready(Ok(n))
    }

    /// How many bytes stream `id` may queue now (at most one frame); waits for the peer's credit or
    /// for the link to drain the tunnel's queues.
    pub(crate) fn write_room(&self, id: u32, waker: &Waker) -> Poll<io::Result<usize>> {
        Self::write_room_locked(&mut self.lock(), id, self.params.max_frame, waker)
    }

    fn write_room_locked(
        st: &mut State,
        id: u32,
        max_frame: usize,
        waker: &Waker,
    ) -> Poll<io::Result<usize>> {
        let room = st.memory.queue_room();
        let Some(slot) = st.streams.get_mut(&id) else { return Poll::Ready(Err(gone())) };
        let credit = match slot.send_credit() {
            Ok(c) => c,
            Err(e) => return Poll::Ready(Err(e)),
        };
        if credit == 0 {
            slot.wait_write(waker);
            return Poll::Pending;
        }
        if room == 0 {
            // The tunnel's queues hold its whole stream memory: wait for the link to drain them.
            slot.wait_write(waker);
            st.memory.block_writer();
            return Poll::Pending;
        }
        Poll::Ready(Ok(credit.min(max_frame).min(room)))
    }

    /// Queues `frame` on stream `id` as DATA: its first [`HEADER_LEN`] bytes are written here, the
    /// rest is the payload, within what [`Session::write_room`] allowed. The frame goes out and into
    /// the replay buffer as it is: the bytes were read straight into it.
    pub(crate) fn queue_frame(&self, id: u32, frame: BytesMut) -> io::Result<()> {
        let Some(n) = frame.len().checked_sub(HEADER_LEN) else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "a frame shorter than its head room"));
        };
        if n == 0 {
            return Ok(());
        }
        let mut guard = self.lock();
        let st = &mut *guard;
        let Some(slot) = st.streams.get_mut(&id) else { return Err(gone()) };
        // Only this stream's one writer spends its credit, so the room it was given still holds; a
        // reset in between is the error its next write would get.
        if slot.send_credit()? < n {
            return Err(io::Error::other("a frame larger than the stream's credit"));
        }
        slot.queue_frame(id, frame);
        // Another stream may have taken the room since: the queues then hold at most one frame per
        // stream beyond the budget, the bytes a copying relay would have held in its own buffer.
        self.queued(guard, id, n);
        Ok(())
    }

    /// Stream `id` queued `n` bytes of DATA: counts them against the stream memory, and has the link
    /// send them.
    fn queued(&self, mut guard: MutexGuard<'_, State>, id: u32, n: usize) {
        guard.memory.queued(n);
        let notify = guard.enqueue_ready(id);
        drop(guard);
        if notify {
            self.writer.notify_one();
        }
    }

    /// Half-closes stream `id`: FIN after what is queued. Nothing to do once our direction has ended.
    pub(crate) fn shutdown_stream(&self, id: u32) {
        let mut guard = self.lock();
        let st = &mut *guard;
        let Some(slot) = st.streams.get_mut(&id) else { return };
        if !slot.queue_fin(id) {
            return;
        }
        st.enqueue_ready(id);
        drop(guard);
        self.writer.notify_one();
    }

    /// Opening side: ready once the accepting side reached the target (CONNECTED), or with the reason it
    /// could not (a reset), or when the tunnel ended.
    pub(crate) fn poll_connected(&self, id: u32, waker: &Waker) -> Poll<io::Result<()>> {
        let mut guard = self.lock();
        let st = &mut *guard;
        let Some(slot) = st.streams.get_mut(&id) else { return Poll::Ready(Err(gone())) };
        if let Some(outcome) = slot.connect_outcome() {
            return Poll::Ready(outcome);
        }
        if let Some(r) = &st.ended {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::ConnectionAborted, format!("tunnel {r}"))));
        }
        slot.wait_read(waker);
        Poll::Pending
    }

    /// Received bytes of stream `id` waiting to be read.
    pub(crate) fn buffered(&self, id: u32) -> usize {
        self.lock().streams.get(&id).map_or(0, |s| s.unread())
    }

    /// Accepting side: tells the opener that the target was reached.
    pub(crate) fn confirm(&self, id: u32) {
        self.queue_control(Message::Connected.encode(id));
    }

    /// Resets stream `id` with `code` and tells the peer.
    pub(crate) fn reset_stream(&self, id: u32, code: u16, reason: &str) {
        let mut wakers = Vec::new();
        let mut guard = self.lock();
        if !self.reset_locked(&mut guard, id, code, reason, &mut wakers) {
            return;
        }
        drop(guard);
        wake_all(wakers);
        self.writer.notify_one();
    }

    /// [`Session::reset_stream`] under the lock; false if the stream is unknown or already reset.
    pub(super) fn reset_locked(
        &self,
        st: &mut State,
        id: u32,
        code: u16,
        reason: &str,
        wakers: &mut Vec<Waker>,
    ) -> bool {
        let Some(slot) = st.streams.get_mut(&id) else { return false };
        if !slot.reset(code, reason.to_owned()) {
            return false;
        }
        slot.wake(wakers);
        st.clear_pending(id);
        if st.ended.is_none() {
            st.control.push_back(Message::Rst { code, reason: reason.to_owned() }.encode(id));
        }
        self.maybe_remove(st, id);
        true
    }

    /// The application's handle of stream `id` is gone: finish our direction, and reset the stream if the
    /// peer may still be sending (like TCP closing with unread data).
    pub(crate) fn detach(&self, id: u32) {
        let mut guard = self.lock();
        let st = &mut *guard;
        let Some(slot) = st.streams.get_mut(&id) else { return };
        let notify = slot.detach(id, st.ended.is_some());
        if notify {
            st.enqueue_ready(id);
        }
        self.maybe_remove(st, id);
        drop(guard);
        if notify {
            self.writer.notify_one();
        }
    }

    /// The application read `n` bytes of stream `id`: releases them from the budget and, every half
    /// window, queues the credit back to the peer (true: the writer has a WINDOW to send). The window
    /// grows only while all windows together fit in half the stream memory.
    fn consumed(&self, st: &mut State, id: u32, n: usize) -> bool {
        st.memory.released(n);
        let Some(slot) = st.streams.get_mut(&id) else { return false };
        if !slot.consume(n) || st.ended.is_some() {
            return false;
        }
        let grow = slot.growth().is_some_and(|window| {
            let committed: usize = st.streams.values().map(|s| s.window()).sum();
            st.memory.may_grow(committed, window)
        });
        let Some(slot) = st.streams.get_mut(&id) else { return false };
        let credit = slot.grant(grow);
        st.control.push_back(Message::Window { credit }.encode(id));
        true
    }

    /// Whether the received side of the stream memory is full (the link's reader then waits).
    pub(crate) fn receive_memory_full(&self) -> bool {
        self.lock().memory.receive_full()
    }

    /// Resets the streams holding the most unread bytes until what the others hold fits the budget;
    /// their unread bytes are dropped at once (a reset stream's reader gets an error, never those bytes).
    pub(crate) fn evict(&self) {
        let victims: Vec<u32> = {
            let mut guard = self.lock();
            let st = &mut *guard;
            let mut holders: Vec<(usize, u32)> = st
                .streams
                .iter()
                .filter(|(_, s)| s.peer_may_send())
                .map(|(id, s)| (s.unread(), *id))
                .collect();
            holders.sort_unstable_by(|a, b| b.cmp(a));
            let mut victims = Vec::new();
            for (bytes, id) in holders {
                if !st.memory.receive_full() || bytes == 0 {
                    break;
                }
                if let Some(slot) = st.streams.get_mut(&id) {
                    slot.drop_unread();
                }
                st.memory.released(bytes);
                victims.push(id);
            }
            victims
        };
        for id in victims {
            tracing::info!(tunnel = %self.id, stream = id, "stream reset: the tunnel's stream memory is full");
            self.reset_stream(id, rst::LIMIT, "stream memory of the tunnel is full (--max-stream-memory)");
        }
    }
}
