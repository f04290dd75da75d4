//! The relay's copy buffers: 64 KiB each, lent per thread for as long as a direction holds copied
//! bytes, so ten thousand idle tunnels cost sockets and tasks, not 1.3 GB of buffers.

use std::cell::RefCell;

/// Size of one relay buffer: large enough for loopback line rate, small enough to pool.
pub const BUF_SIZE: usize = 64 * 1024;
const POOL_MAX_PER_THREAD: usize = 64;

thread_local! {
    static POOL: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
}

/// A buffer from this thread's pool, or a new one.
pub(super) fn take_buf() -> Box<[u8]> {
    POOL.with(|p| p.borrow_mut().pop()).unwrap_or_else(|| vec![0u8; BUF_SIZE].into_boxed_slice())
}

/// Back to this thread's pool, which keeps at most 64.
pub(super) fn give_buf(buf: Box<[u8]>) {
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < POOL_MAX_PER_THREAD {
            p.push(buf);
        }
    });
}
