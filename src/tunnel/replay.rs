//! The bounded replay buffer of the resumable link: sequenced frames stay here until the peer acks them, so
//! a resume can re-send exactly what the peer lacks. When full, the sender waits (backpressure) instead of
//! growing memory.

use std::collections::VecDeque;

use bytes::Bytes;

/// Encoded sequenced frames not yet acknowledged by the peer, in sequence order.
#[derive(Debug)]
pub struct ReplayBuffer {
    frames: VecDeque<(u64, Bytes)>,
    bytes: usize,
    limit: usize,
    next_seq: u64,
}

impl ReplayBuffer {
    /// An empty buffer holding at most `limit` bytes; the first frame gets sequence 1.
    pub fn new(limit: usize) -> Self {
        ReplayBuffer { frames: VecDeque::new(), bytes: 0, limit, next_seq: 1 }
    }

    /// The sequence number the next pushed frame will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Bytes currently held.
    pub fn len_bytes(&self) -> usize {
        self.bytes
    }

    /// Whether a frame of `len` bytes fits now. An empty buffer always accepts one frame, so a frame larger
    /// than the limit can never deadlock the link.
    pub fn has_room(&self, len: usize) -> bool {
        self.frames.is_empty() || self.bytes + len <= self.limit
    }

    /// Stores an encoded frame under the next sequence number and returns that number. The caller checks
    /// `has_room` first; pushing past the limit is a bug in the caller.
    pub fn push(&mut self, encoded: Bytes) -> u64 {
        debug_assert!(self.has_room(encoded.len()));
        let seq = self.next_seq;
        self.next_seq += 1;
        self.bytes += encoded.len();
        self.frames.push_back((seq, encoded));
        seq
    }

    /// Drops every frame with sequence ≤ `ack` (cumulative ack from the peer). Returns the bytes freed.
    pub fn ack(&mut self, ack: u64) -> usize {
        let mut freed = 0;
        while let Some((seq, _)) = self.frames.front() {
            if *seq > ack {
                break;
            }
            let (_, f) = self.frames.pop_front().expect("front exists");
            freed += f.len();
        }
        self.bytes -= freed;
        freed
    }

    /// Frames still unacknowledged, in order: after `ack(peer_ack)` from a resume, exactly what the peer lacks.
    pub fn unacked(&self) -> impl Iterator<Item = &(u64, Bytes)> {
        self.frames.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_frees_and_replay_returns_exactly_the_rest() {
        let mut r = ReplayBuffer::new(100);
        for i in 0..5u8 {
            assert!(r.has_room(10));
            assert_eq!(r.push(Bytes::from(vec![i; 10])), u64::from(i) + 1);
        }
        assert_eq!(r.len_bytes(), 50);
        assert_eq!(r.ack(3), 30);
        assert_eq!(r.ack(2), 0, "an old ack frees nothing");
        let rest: Vec<u64> = r.unacked().map(|(s, _)| *s).collect();
        assert_eq!(rest, vec![4, 5]);
        assert_eq!(r.next_seq(), 6);
    }

    #[test]
    fn full_buffer_applies_backpressure_but_never_deadlocks() {
        let mut r = ReplayBuffer::new(20);
        r.push(Bytes::from(vec![0; 15]));
        assert!(!r.has_room(10));
        r.ack(1);
        assert!(r.has_room(1000), "an empty buffer takes one oversized frame");
    }
}
