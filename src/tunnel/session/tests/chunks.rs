//! A stream as `net::relay` drives it (`ChunkEnd`): frames the relay read a socket straight into, and
//! received bytes taken as the slices they arrived in. Same credit, order and ends as reads and writes.

use std::io::ErrorKind;
use std::task::{Poll, Waker};

use bytes::{BufMut, Bytes, BytesMut};

use super::{decode, pattern, Pair, Probe, Tail};
use crate::tunnel::frame::HEADER_LEN;
use crate::tunnel::params::INITIAL_WINDOW;
use crate::tunnel::wire::Message;

/// A frame as the relay builds it: head room, then `payload`.
fn framed(payload: &[u8]) -> BytesMut {
    let mut f = BytesMut::with_capacity(HEADER_LEN + payload.len());
    f.put_bytes(0xEE, HEADER_LEN);
    f.put_slice(payload);
    f
}

fn room(end: &super::End, id: u32, waker: &Waker) -> Poll<std::io::Result<usize>> {
    end.s.write_room(id, waker)
}

/// Takes every chunk available on `id`.
fn take_all(end: &super::End, id: u32, max: usize) -> (Vec<Bytes>, Tail) {
    let mut chunks = Vec::new();
    loop {
        match end.s.read_chunk(id, max, Waker::noop()) {
            Poll::Ready(Ok(Some(c))) => chunks.push(c),
            Poll::Ready(Ok(None)) => return (chunks, Tail::Eof),
            Poll::Ready(Err(e)) => return (chunks, Tail::Error(e.kind())),
            Poll::Pending => return (chunks, Tail::Pending),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn frames_filled_in_place_arrive_in_order_with_written_bytes_and_spend_credit() {
    let p = Pair::new();
    let id = p.open("svc:1");
    let max_frame = super::params().max_frame;
    let Poll::Ready(Ok(n)) = room(&p.client, id, Waker::noop()) else { panic!("a new stream has room") };
    assert_eq!(n, max_frame, "one frame at most");
    let data = pattern(5, 3 * max_frame);
    p.client.s.queue_frame(id, framed(&data[..max_frame])).unwrap();
    p.client.write_all(id, &data[max_frame..2 * max_frame]);
    p.client.s.queue_frame(id, framed(&data[2 * max_frame..])).unwrap();
    let frames = p.client.batch();
    let datas: Vec<Bytes> = frames
        .iter()
        .filter_map(|f| match decode(f) {
            (h, Message::Data(b)) => {
                assert_eq!(h.stream, id, "the head was written over the head room");
                Some(b)
            }
            _ => None,
        })
        .collect();
    assert_eq!(datas.len(), 3);
    p.server.deliver(frames).unwrap();
    assert_eq!(p.server.read(id), (data, Tail::Pending));
    let left = INITIAL_WINDOW - 3 * max_frame;
    assert!(matches!(room(&p.client, id, Waker::noop()), Poll::Ready(Ok(n)) if n == left.min(max_frame)));
}

#[tokio::test(start_paused = true)]
async fn room_waits_for_credit_and_the_window_wakes_it() {
    let p = Pair::new();
    let id = p.open("svc:1");
    p.client.write_all(id, &vec![1; INITIAL_WINDOW]);
    let writer = Probe::new();
    assert!(room(&p.client, id, &writer.waker).is_pending());
    p.pump();
    p.server.read(id);
    p.pump();
    assert!(writer.woken() > 0);
    assert!(matches!(room(&p.client, id, Waker::noop()), Poll::Ready(Ok(n)) if n > 0));
}

#[tokio::test(start_paused = true)]
async fn chunks_are_the_arrived_bytes_split_at_max_and_return_credit() {
    let p = Pair::new();
    let id = p.open("svc:1");
    let data = pattern(9, INITIAL_WINDOW);
    p.client.write_all(id, &data);
    p.pump();
    let (chunks, tail) = take_all(&p.server, id, 10_000);
    assert_eq!(tail, Tail::Pending);
    assert!(chunks.iter().all(|c| !c.is_empty() && c.len() <= 10_000));
    assert_eq!(chunks.concat(), data);
    p.pump();
    // Taking is reading: the client got its credit back and may send a whole window again.
    p.client.write_all(id, &vec![2; INITIAL_WINDOW]);
}

#[tokio::test(start_paused = true)]
async fn after_the_fin_chunks_end_cleanly_and_after_a_reset_with_an_error() {
    let p = Pair::new();
    let id = p.open("svc:1");
    p.client.write_all(id, b"last words");
    p.client.s.shutdown_stream(id);
    p.pump();
    let (chunks, tail) = take_all(&p.server, id, 64 * 1024);
    assert_eq!((chunks.concat(), tail), (b"last words".to_vec(), Tail::Eof));

    let other = p.open("svc:2");
    p.client.s.reset_stream(other, crate::tunnel::wire::rst::CANCEL, "gone");
    p.pump();
    assert_eq!(take_all(&p.server, other, 64 * 1024).1, Tail::Error(ErrorKind::ConnectionReset));
    let Poll::Ready(Err(_)) = room(&p.client, other, Waker::noop()) else {
        panic!("a reset stream takes no bytes")
    };
    assert!(p.client.s.queue_frame(other, framed(b"x")).is_err());
}
