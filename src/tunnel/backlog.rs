//! Bounds what a peer can make us queue by sending without reading. Every frame it sends may oblige us
//! to answer (an RST for a refused OPEN, a WINDOW, a BOUND, a PONG); if it never reads, those answers
//! pile up behind a blocked writer. PONGs coalesce in the session (one owed at most). Other control
//! frames are bounded here, by backpressure: while more than [`SOFT_LIMIT`] wait and the writer is
//! blocked on the socket, the reader stops reading, so the peer's own socket fills and it has to wait.
//!
//! The writer can also be stuck for the other reason, a full replay buffer waiting for the peer's acks.
//! Then the reader must go on reading (the acks are in what it reads, and pausing would deadlock), so
//! the backlog is capped instead: past [`HARD_LIMIT`] frames the connection is dropped as a peer that
//! does not acknowledge (an honest peer acks within 100 ms, long before that many answers are owed).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::session::{LinkError, Session};

/// Control frames owed to the peer above which the reader pauses while the writer is blocked.
pub const SOFT_LIMIT: usize = 1024;
/// Control frames owed to the peer at which the connection is dropped (each is at most ~540 bytes, so
/// about 2 MiB).
pub const HARD_LIMIT: usize = 4 * SOFT_LIMIT;

/// How often a paused reader looks again (only a peer that reads nothing ever makes it pause).
const RECHECK: Duration = Duration::from_millis(20);

/// Set by the link's writer while it waits on the socket: then the peer is not reading.
#[derive(Default)]
pub struct WriterState {
    blocked: AtomicBool,
}

impl WriterState {
    /// Runs a socket write, marked as blocked for the reader while it waits.
    pub async fn on_socket<T>(&self, write: impl std::future::Future<Output = T>) -> T {
        self.blocked.store(true, Ordering::Relaxed);
        let out = write.await;
        self.blocked.store(false, Ordering::Relaxed);
        out
    }

    fn is_blocked(&self) -> bool {
        self.blocked.load(Ordering::Relaxed)
    }
}

/// Called by the reader before it reads the next message: returns once there is room for more answers,
/// or fails the connection when the peer has taken nothing for `stall` or owes [`HARD_LIMIT`] acks.
pub async fn wait_for_room(
    session: &Session,
    writer: &WriterState,
    stall: Duration,
) -> Result<(), LinkError> {
    let started = Instant::now();
    loop {
        let owed = session.control_backlog();
        if owed < SOFT_LIMIT {
            return Ok(());
        }
        if owed >= HARD_LIMIT {
            return Err(LinkError::Stalled(format!("{owed} control frames owed and not acknowledged")));
        }
        if !writer.is_blocked() {
            return Ok(());
        }
        if started.elapsed() >= stall {
            return Err(LinkError::Stalled(format!("{owed} control frames owed for {stall:?}")));
        }
        tokio::time::sleep(RECHECK).await;
    }
}
