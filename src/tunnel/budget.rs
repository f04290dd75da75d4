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
//! The counting is the session's (`session/memory.rs`: every change happens under its lock, with the
//! frame or read that causes it); this file is the reader's side of the policy.
//!
//! [`LinkParams::stream_memory`]: super::params::LinkParams::stream_memory

use std::time::Duration;

use tokio::time::Instant;

use super::session::Session;

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
    while session.receive_memory_full() {
        if started.elapsed() >= GRACE {
            session.evict();
            return;
        }
        tokio::time::sleep(RECHECK).await;
    }
}
