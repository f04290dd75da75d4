//! Acks ride on whatever a side sends; a bare ACK goes only when nothing carries one and enough is owed:
//! [`ACK_EVERY_FRAMES`] frames, [`ACK_EVERY_BYTES`] bytes, or [`ACK_DELAY`] after the oldest.

use std::time::Duration;

use super::super::scheduler::{ACK_DELAY, ACK_EVERY_BYTES, ACK_EVERY_FRAMES};
use super::super::Role;
use super::{decode, params, raw, End, Pair};
use crate::tunnel::frame::FrameType;
use crate::tunnel::wire::Message;

/// The client sends one more one-byte DATA frame on stream `id`.
fn one_frame(p: &Pair, id: u32) {
    p.client.write_all(id, b".");
    let frames = p.client.batch();
    assert_eq!(frames.len(), 1);
    p.server.deliver(frames).unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_receiver_sends_a_bare_ack_after_sixteen_frames_and_not_again() {
    assert_eq!(ACK_EVERY_FRAMES, 16);
    let p = Pair::new();
    let id = p.open("svc:1"); // frame 1: the OPEN
    for _ in 2..ACK_EVERY_FRAMES {
        one_frame(&p, id);
        assert!(p.server.batch().is_empty(), "fewer than 16 frames: the ack waits");
    }
    one_frame(&p, id);
    let frames = p.server.batch();
    assert_eq!(frames.len(), 1);
    let (f, m) = decode(&frames[0]);
    assert!(matches!(m, Message::Ack));
    assert_eq!((f.seq, f.ack), (0, 16), "unsequenced, acking all sixteen");
    assert!(p.server.batch().is_empty(), "an ack once sent is not repeated");
}

#[tokio::test(start_paused = true)]
async fn a_receiver_sends_a_bare_ack_after_64_kib() {
    assert_eq!(ACK_EVERY_BYTES, 64 * 1024);
    let p = Pair::new();
    let id = p.open("svc:1");
    p.client.write_all(id, &vec![0; 64 * 1024]);
    let frames = p.client.batch();
    assert_eq!(frames.len(), 4, "four frames of 16 KiB");
    let (last, first) = frames.split_last().unwrap();
    p.server.deliver(first.iter().cloned()).unwrap();
    assert!(p.server.batch().is_empty(), "48 KiB and 4 frames: the ack waits");
    p.server.deliver([last.clone()]).unwrap();
    let acks = p.server.batch();
    assert_eq!(acks.len(), 1);
    assert_eq!(decode(&acks[0]).0.kind, FrameType::Ack);
}

#[tokio::test(start_paused = true)]
async fn a_lone_frame_is_acked_after_the_ack_delay() {
    let p = Pair::new();
    p.open("svc:1");
    let batch = p.server.s.take_batch(p.server.gen, 64).unwrap();
    assert!(batch.frames.is_empty());
    let due = batch.ack_due_at.expect("the writer is told when to come back");
    assert_eq!(due, tokio::time::Instant::now() + ACK_DELAY);
    tokio::time::advance(ACK_DELAY - Duration::from_millis(1)).await;
    assert!(p.server.batch().is_empty());
    tokio::time::advance(Duration::from_millis(1)).await;
    let frames = p.server.batch();
    assert_eq!(frames.len(), 1);
    assert_eq!(decode(&frames[0]).0.ack, 1);
}

#[tokio::test(start_paused = true)]
async fn no_bare_ack_is_sent_when_data_carries_the_ack() {
    let p = Pair::new();
    let id = p.open("svc:1");
    p.server.write_all(id, b"reply");
    for _ in 2..=ACK_EVERY_FRAMES {
        one_frame(&p, id);
    }
    let frames = p.server.batch();
    let kinds: Vec<FrameType> = frames.iter().map(|f| decode(f).0.kind).collect();
    assert_eq!(kinds, [FrameType::Data], "the reply carries the ack, no ACK beside it");
    assert_eq!(decode(&frames[0]).0.ack, 16);
}

#[tokio::test(start_paused = true)]
async fn pings_are_answered_with_one_pong_however_many_arrive() {
    let server = End::new(Role::Server, params());
    for nonce in 1..=3 {
        server.deliver([raw(Message::Ping { nonce }, 0, false, 0, 0)]).unwrap();
    }
    let frames = server.batch();
    assert_eq!(frames.len(), 1);
    assert!(matches!(decode(&frames[0]).1, Message::Pong { nonce: 3 }));
}
