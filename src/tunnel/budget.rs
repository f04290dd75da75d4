//! The stream memory of one tunnel end (`--max-stream-memory`, [`LinkParams::stream_memory`]): what its
//! streams hold, counted in each direction, so that the number of streams times their windows cannot
//! make one tunnel hold more than that, whatever the peer does.
//!
//! - Received: bytes that arrived and the application has not read (a slow or stalled target). The
//!   protocol's fixed first window (256 KiB) is granted to every stream at OPEN, so a bound on streams ×
//!   windows cannot refuse credit in advance; it is enforced on use instead. While the budget is full
//!   the link stops reading (backpressure: a burst passes once the targets take it); if it stays full
//!   for [`GRACE`], the streams holding the most are reset (RST code 4) until the rest fit. Windows
//!   only grow while all windows together fit in half the budget.
//! - Queued: bytes written to streams and not yet taken by the link. Writers wait while the budget is
//!   full and are woken as the link drains the queues; the peer's credit cannot raise it.
//!
//! [`LinkParams::stream_memory`]: super::settings::LinkParams::stream_memory

use std::collections::VecDeque;
use std::task::Waker;
use std::time::Duration;

use bytes::BytesMut;
use tokio::time::Instant;

use super::session::{rst, Session, State};
use super::wire::data_len;

/// How long a full receive budget may stop the reader before the largest holders are reset: long
/// enough for a burst to drain into targets that read, short enough not to stall the tunnel's other
/// streams for a target that never reads.
pub const GRACE: Duration = Duration::from_secs(1);

/// How often a reader stopped by a full budget looks again.
const RECHECK: Duration = Duration::from_millis(10);

/// Called by the reader before it reads the next message: returns at once unless the received budget
/// is full; then waits for the applications to read, and after [`GRACE`] resets the largest holders.
pub async fn wait_for_memory(session: &Session) {
    let started = Instant::now();
    while session.lock().recv_held >= session.params.stream_memory {
        if started.elapsed() >= GRACE {
            session.evict();
            return;
        }
        tokio::time::sleep(RECHECK).await;
    }
}

impl Session {
    /// Resets the streams holding the most unread bytes until what the others hold fits the budget;
    /// their unread bytes are dropped at once (a reset stream's reader gets an error, never those bytes).
    fn evict(&self) {
        let budget = self.params.stream_memory;
        let victims: Vec<u32> = {
            let mut st = self.lock();
            let mut holders: Vec<(usize, u32)> = st
                .streams
                .iter()
                .filter(|(_, s)| s.reset.is_none() && !s.recv_fin)
                .map(|(id, s)| (s.recv.iter().map(|b| b.len()).sum(), *id))
                .collect();
            holders.sort_unstable_by(|a, b| b.cmp(a));
            let mut victims = Vec::new();
            for (bytes, id) in holders {
                if st.recv_held < budget || bytes == 0 {
                    break;
                }
                if let Some(slot) = st.streams.get_mut(&id) {
                    slot.recv.clear();
                }
                st.release_received(bytes);
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

/// The DATA payload bytes among queued frames (OPEN, FIN and RST frames carry none that count).
pub(crate) fn queued_data(pending: &VecDeque<BytesMut>) -> usize {
    pending.iter().map(|f| data_len(f)).sum()
}

impl State {
    /// Drops every queued frame of stream `id` and releases their bytes from the budget. Writers waiting
    /// for room are woken: the link may have nothing else to take that would wake them. (Waking only
    /// schedules their tasks, which take the lock when they run, so doing it under the lock is safe.)
    pub(crate) fn clear_pending(&mut self, id: u32) {
        let Some(slot) = self.streams.get_mut(&id) else { return };
        let freed = queued_data(&slot.pending);
        slot.pending.clear();
        self.send_queued = self.send_queued.saturating_sub(freed);
        if self.memory_blocked && freed > 0 {
            self.memory_blocked = false;
            for w in self.streams.values_mut().filter_map(|s| s.write_waker.take()) {
                w.wake();
            }
        }
    }

    /// The application read (or abandoned) `n` received bytes.
    pub(crate) fn release_received(&mut self, n: usize) {
        self.recv_held = self.recv_held.saturating_sub(n);
    }

    /// Whether a receive window may grow by `window` more bytes: only while the windows of all streams
    /// together stay within half the budget, so one grown window leaves room for the first windows of
    /// the other streams (a stream that fills its grown window must not get the others reset).
    pub(crate) fn may_grow(&self, window: usize, budget: usize) -> bool {
        let committed: usize = self.streams.values().map(|s| s.window).sum();
        committed + window <= budget / 2
    }

    /// Bytes a writer may queue now (0: wait; the caller stores its waker and sets `memory_blocked`).
    pub(crate) fn queue_room(&self, budget: usize) -> usize {
        budget.saturating_sub(self.send_queued)
    }

    /// The link took a queued frame: release its bytes, and when writers wait for room and there is
    /// some again, collect their wakers (woken once the lock is released).
    pub(crate) fn took_queued(&mut self, frame: &BytesMut, budget: usize, wakers: &mut Vec<Waker>) {
        self.send_queued = self.send_queued.saturating_sub(data_len(frame));
        if self.memory_blocked && self.send_queued < budget {
            self.memory_blocked = false;
            wakers.extend(self.streams.values_mut().filter_map(|s| s.write_waker.take()));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::AsyncWriteExt;

    use super::super::id::TunnelId;
    use super::super::session::{Role, Session};
    use super::super::settings::{LinkParams, Mode};

    #[tokio::test]
    async fn writers_wait_while_the_queues_hold_the_budget_and_resume_as_the_link_drains() {
        let params = LinkParams {
            mode: Mode::Multi,
            keep_broken: Duration::from_secs(1),
            max_frame: 16 * 1024,
            max_streams: 8,
            replay_bytes: 1 << 20,
            heartbeat: Duration::from_secs(10),
            stream_memory: 64 * 1024,
        };
        let session = Session::new(TunnelId::random(), Role::Server, params, None);
        let (gen, _cancel, _) = session.attach(0).expect("new session");
        let mut a = session.open("a:1").unwrap();
        let mut b = session.open("b:1").unwrap();
        // The peer granted each stream 256 KiB, but the tunnel may queue only 64 KiB in all.
        a.write_all(&[0u8; 64 * 1024]).await.unwrap();
        assert_eq!(session.lock().send_queued, 64 * 1024);
        let blocked = tokio::spawn(async move {
            b.write_all(&[1u8; 1000]).await.unwrap();
            b
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!blocked.is_finished(), "a second writer waits while the budget is full");
        let batch = session.take_batch(gen, 64).unwrap();
        assert!(batch.frames.len() >= 4, "the link takes the queued frames");
        let b = tokio::time::timeout(Duration::from_secs(5), blocked).await.expect("woken").unwrap();
        assert_eq!(session.lock().send_queued, 1000);
        drop((a, b));
    }
}
