//! One stream's slot in the session: where the stream is in its life ([`Lifecycle`]), the flow control
//! of both directions, the frames it has queued for the link and the bytes that arrived for the
//! application.
//!
//! Flow control, per direction: we may send `send_credit` more bytes (what the peer granted); the peer
//! may send `recv_allowance` more (what we granted). Both start at [`INITIAL_WINDOW`], the one number
//! the protocol fixes. Credit goes back to the peer as the application reads, in batches of half a
//! window, so a stream costs one WINDOW frame per half window rather than one per read.
//!
//! This is plain data under the session lock: nothing here locks, and nothing wakes a task. Wakers are
//! handed to the caller, who wakes them once the lock is released.

use std::collections::VecDeque;
use std::io;
use std::task::Waker;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::ReadBuf;

use crate::tunnel::frame::HEADER_LEN;
use crate::tunnel::params::{INITIAL_WINDOW, MAX_WINDOW};
use crate::tunnel::wire::{self, rst, Message};

/// Where a stream is in its life. FINs move it down from `Open` one direction at a time; a reset ends it
/// from any state, and only the first reset counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Lifecycle {
    /// Both directions carry bytes.
    Open,
    /// Our FIN is queued: no more writes; the peer may still send.
    HalfClosedLocal,
    /// The peer's FIN arrived (after everything in `recv`); we may still write.
    HalfClosedRemote,
    /// Both FINs: the stream ends cleanly once the reader has drained what arrived.
    Closed,
    /// Ended with an error: the peer's RST, ours, or the tunnel's end.
    Reset(Reset),
}

/// How a stream was reset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Reset {
    /// The RST code ([`rst`]).
    code: u16,
    /// Why, in words.
    reason: String,
    /// The peer's FIN had arrived: what it sent is whole, so the reader still gets it and a clean EOF.
    /// Without it the reader gets the error at once: an EOF would pass a truncated stream as complete.
    peer_fin: bool,
}

impl Reset {
    /// The error the application sees.
    fn to_io_error(&self) -> io::Error {
        let kind = match self.code {
            rst::TUNNEL_ENDED => io::ErrorKind::ConnectionAborted,
            rst::POLICY => io::ErrorKind::PermissionDenied,
            rst::DIAL_FAILED => io::ErrorKind::ConnectionRefused,
            rst::TIMEOUT => io::ErrorKind::TimedOut,
            _ => io::ErrorKind::ConnectionReset,
        };
        io::Error::new(kind, format!("stream reset: {}", self.reason))
    }
}

/// The per-stream part of the session state.
pub(super) struct StreamSlot {
    lifecycle: Lifecycle,
    /// The accepting side reached the target (CONNECTED). Orthogonal to the lifecycle: a stream may
    /// half-close before it is confirmed (0-RTT), and a confirmed one may still be refused later.
    connected: bool,
    /// The application's handle is gone. Orthogonal too: the slot stays until its queued frames have
    /// left and its lifecycle has ended, so a dropped handle still finishes its direction.
    detached: bool,
    /// Bytes we may still send before the peer grants more.
    send_credit: usize,
    /// Encoded frames of this stream waiting for the link, in the order they must leave.
    pending: VecDeque<BytesMut>,
    /// The stream is in the session's round-robin queue (at most once).
    in_ready: bool,
    /// Received bytes not yet read by the application.
    recv: VecDeque<Bytes>,
    /// Bytes the peer may still send before exceeding the credit we granted.
    recv_allowance: usize,
    /// Bytes read by the application since we last returned credit.
    consumed: usize,
    /// Current receive window (auto-tuned between INITIAL_WINDOW and MAX_WINDOW, within the budget).
    window: usize,
    read_waker: Option<Waker>,
    write_waker: Option<Waker>,
}

impl StreamSlot {
    /// A stream we open: its OPEN frame is the first to leave.
    pub(super) fn opening(open: BytesMut) -> Self {
        let mut slot = StreamSlot::new();
        slot.pending.push_back(open);
        slot
    }

    /// A stream the peer opened with `data` sent ahead of any answer (0-RTT) and maybe its FIN; `None`
    /// if the data exceeds the initial window (a protocol error).
    pub(super) fn accepted(data: Bytes, fin: bool) -> Option<Self> {
        let mut slot = StreamSlot::new();
        if !data.is_empty() {
            if !slot.take_allowance(data.len()) {
                return None;
            }
            slot.recv.push_back(data);
        }
        if fin {
            slot.lifecycle = Lifecycle::HalfClosedRemote;
        }
        Some(slot)
    }

    fn new() -> Self {
        StreamSlot {
            lifecycle: Lifecycle::Open,
            connected: false,
            detached: false,
            send_credit: INITIAL_WINDOW,
            pending: VecDeque::new(),
            in_ready: false,
            recv: VecDeque::new(),
            recv_allowance: INITIAL_WINDOW,
            consumed: 0,
            window: INITIAL_WINDOW,
            read_waker: None,
            write_waker: None,
        }
    }

    // ---- lifecycle ----

    #[cfg(test)]
    pub(super) fn lifecycle(&self) -> &Lifecycle {
        &self.lifecycle
    }

    pub(super) fn is_reset(&self) -> bool {
        matches!(self.lifecycle, Lifecycle::Reset(_))
    }

    /// The peer's FIN has arrived: it sends nothing more.
    pub(super) fn peer_fin(&self) -> bool {
        match &self.lifecycle {
            Lifecycle::HalfClosedRemote | Lifecycle::Closed => true,
            Lifecycle::Reset(r) => r.peer_fin,
            Lifecycle::Open | Lifecycle::HalfClosedLocal => false,
        }
    }

    /// The peer may still send: neither its FIN nor a reset ended its direction.
    pub(super) fn peer_may_send(&self) -> bool {
        matches!(self.lifecycle, Lifecycle::Open | Lifecycle::HalfClosedLocal)
    }

    /// Resets the stream unless it already is; true if this call did it.
    pub(super) fn reset(&mut self, code: u16, reason: String) -> bool {
        if self.is_reset() {
            return false;
        }
        let peer_fin = self.peer_fin();
        self.lifecycle = Lifecycle::Reset(Reset { code, reason, peer_fin });
        true
    }

    /// The tunnel ended: every stream not already finished both ways is reset, so its application sees
    /// an error, never a clean end.
    pub(super) fn end(&mut self, reason: impl FnOnce() -> String) {
        if !matches!(self.lifecycle, Lifecycle::Closed | Lifecycle::Reset(_)) {
            self.reset(rst::TUNNEL_ENDED, reason());
        }
    }

    /// The peer's FIN arrived.
    pub(super) fn fin_received(&mut self) {
        self.lifecycle = match std::mem::replace(&mut self.lifecycle, Lifecycle::Open) {
            Lifecycle::Open => Lifecycle::HalfClosedRemote,
            Lifecycle::HalfClosedLocal => Lifecycle::Closed,
            // A FIN after a reset changes nothing: bytes that came after the reset were dropped, so
            // the reader must see the reset, never a clean EOF (silent truncation). Only a FIN that
            // arrived before the reset, with every byte in, lets the reader finish cleanly.
            reset @ Lifecycle::Reset(_) => reset,
            done @ (Lifecycle::HalfClosedRemote | Lifecycle::Closed) => done,
        };
    }

    /// Queues our FIN behind the stream's data; false if our direction already ended (FIN or reset).
    pub(super) fn queue_fin(&mut self, id: u32) -> bool {
        self.lifecycle = match &self.lifecycle {
            Lifecycle::Open => Lifecycle::HalfClosedLocal,
            Lifecycle::HalfClosedRemote => Lifecycle::Closed,
            Lifecycle::HalfClosedLocal | Lifecycle::Closed | Lifecycle::Reset(_) => return false,
        };
        self.pending.push_back(wire::fin(id));
        true
    }

    /// The application's handle is gone: finish our direction, and reset the stream if the peer may
    /// still be sending (like TCP closing with unread data). The RST goes on the stream's own queue,
    /// behind its data and FIN. True if frames were queued.
    pub(super) fn detach(&mut self, id: u32, tunnel_ended: bool) -> bool {
        self.detached = true;
        self.read_waker = None;
        self.write_waker = None;
        if tunnel_ended || self.is_reset() {
            return false;
        }
        let mut queued = self.queue_fin(id);
        if !self.peer_fin() {
            self.reset(rst::CANCEL, "stream dropped".into());
            self.pending
                .push_back(Message::Rst { code: rst::CANCEL, reason: "stream dropped".into() }.encode(id));
            queued = true;
        }
        queued
    }

    /// Nothing is left to do for this stream: the handle is gone, everything queued has left, and both
    /// directions have ended.
    pub(super) fn finished(&self) -> bool {
        self.detached
            && self.pending.is_empty()
            && matches!(self.lifecycle, Lifecycle::Closed | Lifecycle::Reset(_))
    }

    /// The accepting side reached the target.
    pub(super) fn set_connected(&mut self) {
        self.connected = true;
    }

    /// Opening side, waiting for CONNECTED: `Some` once it is known whether the target was reached.
    pub(super) fn connect_outcome(&self) -> Option<io::Result<()>> {
        if self.connected {
            return Some(Ok(()));
        }
        match &self.lifecycle {
            Lifecycle::Reset(r) => Some(Err(r.to_io_error())),
            _ => None,
        }
    }

    // ---- wakers ----

    pub(super) fn wake(&mut self, wakers: &mut Vec<Waker>) {
        wakers.extend(self.read_waker.take());
        wakers.extend(self.write_waker.take());
    }

    pub(super) fn wait_read(&mut self, waker: &Waker) {
        self.read_waker = Some(waker.clone());
    }

    pub(super) fn wait_write(&mut self, waker: &Waker) {
        self.write_waker = Some(waker.clone());
    }

    pub(super) fn take_write_waker(&mut self) -> Option<Waker> {
        self.write_waker.take()
    }

    // ---- receiving ----

    /// Takes `n` bytes from what the peer may send; false if it sent more than we granted.
    pub(super) fn take_allowance(&mut self, n: usize) -> bool {
        if n > self.recv_allowance {
            return false;
        }
        self.recv_allowance -= n;
        true
    }

    /// Whether arriving bytes are kept for the application: a reset or abandoned stream's late bytes
    /// are dropped (our RST stops the sender).
    pub(super) fn keeps_arrivals(&self) -> bool {
        !self.is_reset() && !self.detached
    }

    pub(super) fn push_received(&mut self, bytes: Bytes) {
        self.recv.push_back(bytes);
    }

    /// Received bytes the application has not read.
    pub(super) fn unread(&self) -> usize {
        self.recv.iter().map(|b| b.len()).sum()
    }

    /// Drops what arrived and was not read (the stream is being reset); returns how many bytes.
    pub(super) fn drop_unread(&mut self) -> usize {
        let n = self.unread();
        self.recv.clear();
        n
    }

    /// The error a read gets now: a reset before the peer's FIN. After its FIN, what it sent is whole
    /// and is read to a clean EOF.
    pub(super) fn read_error(&self) -> Option<io::Error> {
        match &self.lifecycle {
            Lifecycle::Reset(r) if !r.peer_fin => Some(r.to_io_error()),
            _ => None,
        }
    }

    /// Moves received bytes into `buf`; returns how many.
    pub(super) fn copy_out(&mut self, buf: &mut ReadBuf<'_>) -> usize {
        let mut n = 0;
        while buf.remaining() > 0 {
            let Some(chunk) = self.recv.front_mut() else { break };
            let take = chunk.len().min(buf.remaining());
            buf.put_slice(&chunk[..take]);
            chunk.advance(take);
            if chunk.is_empty() {
                self.recv.pop_front();
            }
            n += take;
        }
        n
    }

    /// Takes up to `max` received bytes as the first chunk holds them (no copy).
    pub(super) fn take_chunk(&mut self, max: usize) -> Option<Bytes> {
        while self.recv.front().is_some_and(|c| c.is_empty()) {
            self.recv.pop_front();
        }
        let front = self.recv.front_mut()?;
        if front.len() > max {
            return Some(front.split_to(max));
        }
        self.recv.pop_front()
    }

    /// Counts `n` bytes read by the application; true when credit is due back to the peer (half a
    /// window read, and the peer may still send).
    pub(super) fn consume(&mut self, n: usize) -> bool {
        self.consumed += n;
        self.consumed >= self.window / 2 && !self.peer_fin()
    }

    /// The window this stream would grow by if it may: a reader that has drained everything when credit
    /// is due is keeping up, so its window doubles (up to [`MAX_WINDOW`]): a fast stream gets a window as
    /// large as the pipe, a stalled one stays at its first window.
    pub(super) fn growth(&self) -> Option<usize> {
        (self.recv.is_empty() && self.window < MAX_WINDOW).then_some(self.window)
    }

    pub(super) fn window(&self) -> usize {
        self.window
    }

    /// Returns the credit read since the last grant, plus the growth if `grow`; the peer may send that
    /// much more.
    pub(super) fn grant(&mut self, grow: bool) -> u32 {
        let mut credit = std::mem::take(&mut self.consumed);
        if grow {
            credit += self.window;
            self.window *= 2;
        }
        self.recv_allowance += credit;
        credit as u32
    }

    // ---- sending ----

    /// What a write may send now: the credit the peer granted (0: wait for WINDOW), or the error it
    /// gets because our direction has ended.
    pub(super) fn send_credit(&self) -> io::Result<usize> {
        match &self.lifecycle {
            Lifecycle::Reset(r) => Err(r.to_io_error()),
            Lifecycle::HalfClosedLocal | Lifecycle::Closed => {
                Err(io::Error::new(io::ErrorKind::BrokenPipe, "write after shutdown"))
            }
            Lifecycle::Open | Lifecycle::HalfClosedRemote => Ok(self.send_credit),
        }
    }

    /// The peer granted `credit` more bytes; a writer waiting for it is handed back to be woken.
    pub(super) fn add_credit(&mut self, credit: usize, wakers: &mut Vec<Waker>) {
        self.send_credit += credit;
        wakers.extend(self.write_waker.take());
    }

    /// Queues `bytes` (within the credit) as DATA. Small writes join the last queued DATA frame instead
    /// of costing a frame each; either way the bytes are copied once, into the frame that goes out.
    pub(super) fn queue_data(&mut self, id: u32, bytes: &[u8], max_frame: usize) {
        self.send_credit -= bytes.len();
        let joined = self.pending.back_mut().is_some_and(|last| wire::append_data(last, bytes, max_frame));
        if !joined {
            self.pending.push_back(wire::data(id, bytes));
        }
    }

    /// Queues `frame` (within the credit) as DATA: [`HEADER_LEN`] bytes for the header, written here,
    /// then the payload the caller read straight into it.
    pub(super) fn queue_frame(&mut self, id: u32, mut frame: BytesMut) {
        self.send_credit -= frame.len() - HEADER_LEN;
        wire::write_data_head(&mut frame, id);
        self.pending.push_back(frame);
    }

    /// Drops every queued frame; returns the DATA bytes they carried (for the stream memory budget).
    pub(super) fn clear_pending(&mut self) -> usize {
        let freed = self.pending.iter().map(|f| wire::data_len(f)).sum();
        self.pending.clear();
        freed
    }

    // ---- the round-robin queue ----

    /// Marks the stream as queued for the link; false if it already was.
    pub(super) fn mark_ready(&mut self) -> bool {
        !std::mem::replace(&mut self.in_ready, true)
    }

    /// The size of the next frame to leave, if any; with none, the stream leaves the round-robin queue.
    pub(super) fn next_len(&mut self) -> Option<usize> {
        let len = self.pending.front().map(|f| f.len());
        if len.is_none() {
            self.in_ready = false;
        }
        len
    }

    /// Takes the next frame; the flag says whether more wait (the stream goes back in the queue).
    pub(super) fn take_frame(&mut self) -> Option<(BytesMut, bool)> {
        let f = self.pending.pop_front()?;
        let more = !self.pending.is_empty();
        self.in_ready = more;
        Some((f, more))
    }
}
