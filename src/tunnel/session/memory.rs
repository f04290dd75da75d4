//! The counters behind a tunnel's stream memory (`--max-stream-memory`): bytes received and not yet
//! read, and bytes written and not yet taken by the link, across all of the tunnel's streams. The policy
//! (the reader stops while the received side is full, then resets the largest holders) is described
//! and driven in `tunnel::budget`; this type only counts and answers.

/// Stream memory in use, each direction, against one limit.
pub(super) struct StreamMemory {
    limit: usize,
    /// Received bytes the application has not read yet, all streams.
    recv_held: usize,
    /// DATA bytes written and not yet taken by the link, all streams.
    send_queued: usize,
    /// A writer waits for `send_queued` to fall below the limit.
    writers_blocked: bool,
}

impl StreamMemory {
    pub(super) fn new(limit: usize) -> Self {
        StreamMemory { limit, recv_held: 0, send_queued: 0, writers_blocked: false }
    }

    /// `n` bytes arrived for an application.
    pub(super) fn received(&mut self, n: usize) {
        self.recv_held += n;
    }

    /// The application read (or abandoned) `n` received bytes.
    pub(super) fn released(&mut self, n: usize) {
        self.recv_held = self.recv_held.saturating_sub(n);
    }

    /// The received side holds the whole budget: the link's reader should stop reading.
    pub(super) fn receive_full(&self) -> bool {
        self.recv_held >= self.limit
    }

    /// Whether a receive window may grow by `window` more bytes, given the windows of all streams
    /// together (`committed`): only while they stay within half the budget, so one grown window leaves
    /// room for the first windows of the other streams (a stream that fills its grown window must not
    /// get the others reset).
    pub(super) fn may_grow(&self, committed: usize, window: usize) -> bool {
        committed + window <= self.limit / 2
    }

    /// Bytes a writer may queue now (0: wait, after [`StreamMemory::block_writer`]).
    pub(super) fn queue_room(&self) -> usize {
        self.limit.saturating_sub(self.send_queued)
    }

    /// A writer found no room and waits to be woken.
    pub(super) fn block_writer(&mut self) {
        self.writers_blocked = true;
    }

    /// A writer queued `n` bytes.
    pub(super) fn queued(&mut self, n: usize) {
        self.send_queued += n;
    }

    /// The link took a frame carrying `n` queued bytes; true if waiting writers should be woken (there
    /// is room again).
    pub(super) fn taken(&mut self, n: usize) -> bool {
        self.send_queued = self.send_queued.saturating_sub(n);
        self.unblock_if(self.send_queued < self.limit)
    }

    /// A reset dropped `n` queued bytes; true if waiting writers should be woken: the link may have
    /// nothing else to take that would wake them.
    pub(super) fn dropped(&mut self, n: usize) -> bool {
        self.send_queued = self.send_queued.saturating_sub(n);
        self.unblock_if(n > 0)
    }

    fn unblock_if(&mut self, room: bool) -> bool {
        let wake = self.writers_blocked && room;
        if wake {
            self.writers_blocked = false;
        }
        wake
    }

    #[cfg(test)]
    pub(super) fn send_queued(&self) -> usize {
        self.send_queued
    }

    #[cfg(test)]
    pub(super) fn recv_held(&self) -> usize {
        self.recv_held
    }
}
