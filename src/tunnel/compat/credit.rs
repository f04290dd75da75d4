//! Per-stream flow control of the seed protocol: `read` frames grant the peer a number of bytes it may
//! send. [`Window`] is the credit we grant the client (client → target), [`Credit`] the credit the client
//! granted us (target → client).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use tokio::sync::Notify;

/// One grant, as the seed's own receiver grants it (its stream's highWaterMark, 5 MiB).
pub const GRANT: u64 = 5 << 20;

/// The credit we have granted the client on one stream.
///
/// We grant [`GRANT`] when the stream starts and again whenever what is granted but not yet written to
/// the target falls to 0.4 × GRANT, so granted − consumed never exceeds 1.4 × GRANT (the seed's own
/// bound). Counting against what was *written to the target*, not what arrived, bounds memory: bytes
/// queued for a slow target plus bytes in flight ≤ 1.4 × GRANT, plus one overshooting frame.
#[derive(Debug, Default)]
pub struct Window {
    granted: AtomicU64,
    received: AtomicU64,
}

/// The client sent data while it had no credit left.
#[derive(Debug, PartialEq, Eq)]
pub struct Violation;

impl Window {
    /// Records the first grant; returns the amount to announce.
    pub fn open(&self) -> u64 {
        self.granted.store(GRANT, Ordering::Release);
        GRANT
    }

    /// Records `len` bytes received from the client. The seed sends a whole chunk whenever its credit
    /// is above zero (it may overshoot by that chunk), so a frame is legal iff the bytes received
    /// *before* it are below what we granted.
    pub fn receive(&self, len: u64) -> Result<(), Violation> {
        let before = self.received.fetch_add(len, Ordering::AcqRel);
        if before < self.granted.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(Violation)
        }
    }

    /// Called after `consumed` bytes in total were written to the target: the next grant to send, if
    /// one is due.
    pub fn after_consume(&self, consumed: u64) -> Option<u64> {
        let granted = self.granted.load(Ordering::Acquire);
        if granted.saturating_sub(consumed) * 5 <= GRANT * 2 {
            self.granted.store(granted + GRANT, Ordering::Release);
            Some(GRANT)
        } else {
            None
        }
    }
}

/// The credit the client granted us on one stream.
#[derive(Debug, Default)]
pub struct Credit {
    available: Mutex<u64>,
    changed: Notify,
}

impl Credit {
    /// Adds a grant from a `read` frame.
    pub fn add(&self, n: u64) {
        if n == 0 {
            return;
        }
        let mut a = self.available.lock().unwrap_or_else(|e| e.into_inner());
        *a = a.saturating_add(n);
        drop(a);
        self.changed.notify_one();
    }

    /// Waits until some credit is available and takes up to `max` of it.
    pub async fn take(&self, max: u64) -> u64 {
        loop {
            let notified = self.changed.notified();
            {
                let mut a = self.available.lock().unwrap_or_else(|e| e.into_inner());
                if *a > 0 {
                    let n = (*a).min(max);
                    *a -= n;
                    return n;
                }
            }
            notified.await;
        }
    }

    /// Returns credit taken but not used.
    pub fn give_back(&self, n: u64) {
        if n > 0 {
            let mut a = self.available.lock().unwrap_or_else(|e| e.into_inner());
            *a = a.saturating_add(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_grants_as_consumed_and_stays_bounded() {
        let w = Window::default();
        assert_eq!(w.open(), GRANT);
        assert_eq!(w.after_consume(GRANT / 2), None);
        assert_eq!(w.after_consume(GRANT * 3 / 5), Some(GRANT)); // 0.4 × GRANT left → grant
        assert_eq!(w.after_consume(GRANT * 3 / 5), None); // granted − consumed = 1.4 × GRANT
    }

    #[test]
    fn window_allows_one_overshooting_chunk_only() {
        let w = Window::default();
        assert_eq!(w.receive(1), Err(Violation)); // before any grant
        let w = Window::default();
        w.open();
        assert_eq!(w.receive(GRANT - 1), Ok(()));
        assert_eq!(w.receive(1 << 20), Ok(())); // credit was 1 byte: a whole chunk may follow
        assert_eq!(w.receive(1), Err(Violation));
    }

    #[tokio::test]
    async fn credit_waits_for_a_grant() {
        let c = std::sync::Arc::new(Credit::default());
        let c2 = c.clone();
        let t = tokio::spawn(async move { c2.take(10).await });
        tokio::task::yield_now().await;
        c.add(25);
        assert_eq!(t.await.unwrap(), 10);
        assert_eq!(c.take(100).await, 15);
        c.give_back(3);
        assert_eq!(c.take(100).await, 3);
    }
}
