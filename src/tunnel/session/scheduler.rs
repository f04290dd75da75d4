//! What the link's writer sends next, and the numbering that makes a resume lossless.
//!
//! Ordering rules: a stream's OPEN, DATA and FIN leave in the order they were queued (one queue per
//! stream); streams with data are served round-robin, one frame per turn; small control frames (WINDOW,
//! RST, LISTEN, BOUND, CONNECTED) go ahead of data; CLOSE goes last, after every queue is empty. A PONG
//! goes first and unsequenced: a heartbeat answer must not wait behind a full replay buffer.
//!
//! Every other frame gets the next link sequence number and our cumulative ack, and stays in the
//! replay buffer until the peer acks it; when the buffer is full, sending stops (backpressure) rather
//! than memory growing. Acks ride on whatever we send; a bare ACK goes only when nothing carries one
//! and enough is unacknowledged: [`ACK_EVERY_FRAMES`] frames, [`ACK_EVERY_BYTES`] bytes, or
//! [`ACK_DELAY`] after the oldest.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::time::Instant;

use super::{wake_all, LinkError, Session, State};
use crate::tunnel::frame::{payload_len, stamp, HEADER_LEN};
use crate::tunnel::wire::{data_len, Message};

/// Sequenced frames received after which our ack is sent at once, bare if nothing carries it.
pub(crate) const ACK_EVERY_FRAMES: u32 = 16;
/// Bytes of sequenced frames received after which our ack is sent at once: with the peer's replay
/// buffer of a few MiB, acking every 64 KiB keeps it far from full on a fast link.
pub(crate) const ACK_EVERY_BYTES: usize = 64 * 1024;
/// How long a receiver may sit on an ack when no traffic carries it.
pub const ACK_DELAY: Duration = Duration::from_millis(100);

/// What the writer should put on the wire next.
pub(crate) struct Batch {
    /// Encoded messages, in order.
    pub frames: Vec<Bytes>,
    /// When a delayed ack becomes due, if one is pending.
    pub ack_due_at: Option<Instant>,
}

impl State {
    /// Counts a sequenced frame of `len` bytes received in order; true when our ack is due at once.
    pub(super) fn count_received(&mut self, len: usize) -> bool {
        self.ack_frames += 1;
        self.ack_bytes += len;
        if self.ack_since.is_none() {
            self.ack_since = Some(Instant::now());
        }
        self.ack_due()
    }

    /// Makes our ack due at once (the peer's CLOSE: the closer waits for it).
    pub(super) fn ack_now(&mut self) {
        self.ack_frames = self.ack_frames.max(ACK_EVERY_FRAMES);
    }

    fn ack_due(&self) -> bool {
        self.ack_frames >= ACK_EVERY_FRAMES || self.ack_bytes >= ACK_EVERY_BYTES
    }

    /// Our ack just left.
    fn acked(&mut self) {
        self.ack_frames = 0;
        self.ack_bytes = 0;
        self.ack_since = None;
    }

    /// Stamps the next sequence number and our ack, keeps the frame for replay.
    fn sequence(&mut self, mut f: BytesMut) -> Bytes {
        let seq = self.replay.next_seq();
        stamp(&mut f, seq, self.recv_seq);
        self.acked();
        let b = f.freeze();
        self.replay.push(b.clone());
        b
    }

    /// An unsequenced frame (PING, PONG, bare ACK) carrying our ack.
    fn unsequenced(&self, m: Message) -> Bytes {
        let mut f = m.encode(0);
        stamp(&mut f, 0, self.recv_seq);
        f.freeze()
    }

    /// The next frame of the round-robin queue that fits the replay buffer, with its stream id.
    /// `Err(())` when the buffer has no room (the stream keeps its turn); `Ok(None)` when no stream
    /// has anything queued.
    fn next_stream_frame(&mut self) -> Result<Option<(u32, BytesMut)>, ()> {
        while let Some(id) = self.ready.pop_front() {
            let Some(slot) = self.streams.get_mut(&id) else { continue };
            let Some(len) = slot.next_len() else { continue };
            if !self.replay.has_room(len) {
                self.ready.push_front(id);
                return Err(());
            }
            let Some((f, more)) = slot.take_frame() else { continue };
            if more {
                self.ready.push_back(id);
            }
            return Ok(Some((id, f)));
        }
        Ok(None)
    }
}

impl Session {
    /// Collects what the writer of connection `gen` should send now: pongs, control, one frame per ready
    /// stream in turn, CLOSE when all is sent, and a bare ACK if one is due and nothing else carries it.
    pub(crate) fn take_batch(&self, gen: u64, max: usize) -> Result<Batch, LinkError> {
        let mut guard = self.lock();
        let st = &mut *guard;
        if st.gen != gen || !st.link_up {
            return Err(LinkError::Stale);
        }
        let mut out = Vec::new();
        let mut wakers = Vec::new();
        if let Some(nonce) = st.pong.take() {
            out.push(st.unsequenced(Message::Pong { nonce }));
        }
        let mut sequenced = false;
        if st.ended.is_none() {
            while out.len() < max {
                if let Some(f) = st.control.pop_front() {
                    if !st.replay.has_room(f.len()) {
                        st.control.push_front(f);
                        break;
                    }
                    out.push(st.sequence(f));
                    sequenced = true;
                    continue;
                }
                let Ok(Some((id, f))) = st.next_stream_frame() else { break };
                if st.memory.taken(data_len(&f)) {
                    wakers.extend(st.streams.values_mut().filter_map(|s| s.take_write_waker()));
                }
                if payload_len(&f) > 0 {
                    st.last_activity = Instant::now();
                }
                out.push(st.sequence(f));
                sequenced = true;
                self.maybe_remove(st, id);
            }
            if st.close_queued
                && !st.close_sent
                && st.control.is_empty()
                && st.ready.is_empty()
                && st.replay.has_room(HEADER_LEN)
            {
                st.close_sent = true;
                let f = Message::Close.encode(0);
                out.push(st.sequence(f));
                sequenced = true;
            }
        }
        if !sequenced
            && st.recv_seq > 0
            && (st.ack_due() || st.ack_since.is_some_and(|t| t.elapsed() >= ACK_DELAY))
        {
            out.push(st.unsequenced(Message::Ack));
            st.acked();
        }
        let ack_due_at = st.ack_since.map(|t| t + ACK_DELAY);
        drop(guard);
        wake_all(wakers);
        Ok(Batch { frames: out, ack_due_at })
    }

    /// Every frame not yet acked by the peer, for a new connection to send first.
    pub(crate) fn replay_frames(&self, gen: u64) -> Result<Vec<Bytes>, LinkError> {
        let st = self.lock();
        if st.gen != gen {
            return Err(LinkError::Stale);
        }
        let frames: Vec<Bytes> = st.replay.unacked().map(|(_, b)| b.clone()).collect();
        if !frames.is_empty() {
            metrics::counter!("tunnelkit_tunnel_replayed_frames_total").increment(frames.len() as u64);
        }
        Ok(frames)
    }

    /// A heartbeat ping carrying our ack.
    pub(crate) fn ping_frame(&self) -> Bytes {
        let st = self.lock();
        // The nonce only has to differ between pings; the next sequence number does, for free.
        st.unsequenced(Message::Ping { nonce: st.replay.next_seq() })
    }
}
