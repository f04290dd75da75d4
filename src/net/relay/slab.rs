//! What the relay reads into when its writer is a [`ChunkEnd`](super::ChunkEnd): one `BytesMut`
//! per thread, from which each read's bytes are split off, with the writer's head room in front,
//! and handed over as they are. Nothing is held per connection, so an idle relay still holds no
//! buffer.
//!
//! A chunk keeps the whole allocation it was split from alive for as long as the writer keeps it,
//! which for a tunnel stream is until the peer acknowledged it (a disconnected tunnel keeps it for
//! its hold time). So only large reads are split off; a small one is copied into a buffer of its
//! own size, and the slab stays whole for the next read. A kept chunk then pins at most
//! `SLAB_SIZE / SPLIT_FROM` times its own size.

use std::cell::RefCell;

use bytes::{BufMut, BytesMut};

use super::buffer::BUF_SIZE;

/// Payload bytes of one slab: one relay buffer's worth.
const SLAB_SIZE: usize = BUF_SIZE;
/// Reads of fewer payload bytes than this are copied out; the copy costs less than what a
/// long-kept small chunk would pin.
const SPLIT_FROM: usize = 16 * 1024;

thread_local! {
    static SLAB: RefCell<BytesMut> = RefCell::new(BytesMut::new());
}

/// This thread's slab, with `head` zero bytes written and room after them for up to `want` more
/// (less if the slab's rest is smaller but still worth a read).
pub(super) fn take(head: usize, want: usize) -> BytesMut {
    let mut slab = SLAB.with(|s| std::mem::take(&mut *s.borrow_mut()));
    if slab.capacity() < head + want.min(SPLIT_FROM) {
        slab = BytesMut::with_capacity(head + SLAB_SIZE.max(want.min(BUF_SIZE)));
    }
    slab.put_bytes(0, head);
    slab
}

/// Bytes a read may add to a buffer from [`take`].
pub(super) fn room(buf: &BytesMut) -> usize {
    buf.capacity() - buf.len()
}

/// Gives a buffer from [`take`] back unused (the read would block or failed).
pub(super) fn give_back(mut slab: BytesMut) {
    slab.clear();
    SLAB.with(|s| *s.borrow_mut() = slab);
}

/// The filled part of a buffer from [`take`] (`head` bytes, then the payload) as a buffer of its
/// own; the slab's rest stays for the next read.
pub(super) fn split(mut filled: BytesMut, head: usize) -> BytesMut {
    if filled.len() - head < SPLIT_FROM {
        let own = BytesMut::from(&filled[..]);
        give_back(filled);
        return own;
    }
    let rest = filled.split_off(filled.len());
    give_back(rest);
    filled
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_reads_are_split_off_and_the_rest_is_reused() {
        let mut b = take(4, BUF_SIZE);
        assert_eq!(&b[..], &[0, 0, 0, 0]);
        b.put_bytes(7, 40_000);
        let chunk = split(b, 4);
        assert_eq!(chunk.len(), 40_004);
        // The next read continues in the same allocation, after the chunk.
        let next = take(4, BUF_SIZE);
        assert_eq!(next.as_ptr(), end_of(&chunk));
        assert!(room(&next) >= SLAB_SIZE - 40_004);
        give_back(next);
    }

    #[test]
    fn small_reads_are_copied_and_the_slab_stays_whole() {
        let mut b = take(4, BUF_SIZE);
        let start = b.as_ptr();
        b.put_bytes(7, 100);
        let chunk = split(b, 4);
        assert_eq!(chunk.len(), 104);
        assert_ne!(chunk.as_ptr(), start);
        let next = take(4, BUF_SIZE);
        assert_eq!(next.as_ptr(), start);
        give_back(next);
    }

    #[test]
    fn a_slab_too_small_for_a_worthwhile_read_is_replaced() {
        let mut b = take(4, BUF_SIZE);
        b.put_bytes(7, SLAB_SIZE - 1000);
        let _chunk = split(b, 4);
        let next = take(4, BUF_SIZE);
        assert!(room(&next) >= SLAB_SIZE);
        give_back(next);
    }

    /// Where the byte after `chunk` lives: a pointer computed, never read.
    fn end_of(chunk: &BytesMut) -> *const u8 {
        chunk.as_ptr().wrapping_add(chunk.len())
    }
}
