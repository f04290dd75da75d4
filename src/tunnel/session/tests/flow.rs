//! Flow control and stream memory: a writer sends at most what the reader granted and waits for more;
//! a peer that sends beyond its credit loses the stream; a tunnel's streams together hold at most its
//! stream memory, in each direction.

use std::io::ErrorKind;
use std::task::{Poll, Waker};

use super::super::{rst, Role};
use super::{decode, params, raw, End, Pair, Probe, Tail};
use crate::tunnel::params::{LinkParams, INITIAL_WINDOW};
use crate::tunnel::wire::Message;

#[tokio::test(start_paused = true)]
async fn a_writer_blocks_at_its_credit_and_resumes_once_the_reader_reads() {
    let p = Pair::new();
    let id = p.open("svc:1");
    p.client.write_all(id, &vec![3; INITIAL_WINDOW]);
    let writer = Probe::new();
    assert!(p.client.write(id, b"x", &writer.waker).is_pending(), "the first window is spent");
    p.pump();
    assert!(p.client.write(id, b"x", &writer.waker).is_pending(), "arriving is not reading");
    assert_eq!(writer.woken(), 0);
    let (got, _) = p.server.read(id);
    assert_eq!(got.len(), INITIAL_WINDOW);
    p.pump();
    assert!(writer.woken() > 0, "the WINDOW wakes the writer");
    assert!(matches!(p.client.write(id, b"x", Waker::noop()), Poll::Ready(Ok(1))));
}

#[tokio::test(start_paused = true)]
async fn credit_returns_in_batches_of_half_a_window_not_per_read() {
    let p = Pair::new();
    let id = p.open("svc:1");
    p.client.write_all(id, &vec![3; INITIAL_WINDOW / 2 - 1]);
    p.pump();
    p.server.read(id);
    assert!(p.server.batch().iter().all(|f| !matches!(decode(f).1, Message::Window { .. })));
    p.client.write_all(id, b"x");
    p.pump();
    p.server.read(id);
    let windows: Vec<u32> = p
        .server
        .batch()
        .iter()
        .filter_map(|f| match decode(f).1 {
            Message::Window { credit } => Some(credit),
            _ => None,
        })
        .collect();
    // The reader had drained everything: it keeps up, so its window doubles with this grant.
    assert_eq!(windows, [(INITIAL_WINDOW / 2 + INITIAL_WINDOW) as u32]);
}

#[tokio::test(start_paused = true)]
async fn a_peer_sending_beyond_its_credit_gets_the_stream_reset_with_flow_control() {
    let server = End::new(Role::Server, params());
    let open = Message::Open { target: "svc:1".into(), data: Default::default() };
    server.deliver([raw(open, 1, false, 1, 0)]).unwrap();
    let chunk = vec![0u8; params().max_frame];
    let mut seq = 1;
    for _ in 0..INITIAL_WINDOW / chunk.len() {
        seq += 1;
        server.deliver([raw(Message::Data(chunk.clone().into()), 1, false, seq, 0)]).unwrap();
    }
    assert!(server.batch().iter().all(|f| !matches!(decode(f).1, Message::Rst { .. })), "within credit");
    server.deliver([raw(Message::Data("!".into()), 1, false, seq + 1, 0)]).expect("not a link error");
    let resets: Vec<u16> = server
        .batch()
        .iter()
        .filter_map(|f| match decode(f).1 {
            Message::Rst { code, .. } => Some(code),
            _ => None,
        })
        .collect();
    assert_eq!(resets, [rst::FLOW_CONTROL]);
    assert_eq!(server.read(1).1, Tail::Error(ErrorKind::ConnectionReset));
    // The peer's FIN, sent before it saw our RST, does not turn the dropped tail into a clean EOF.
    server.deliver([raw(Message::Data("tail".into()), 1, true, seq + 2, 0)]).expect("not a link error");
    assert_eq!(server.read(1).1, Tail::Error(ErrorKind::ConnectionReset));
}

#[tokio::test(start_paused = true)]
async fn writers_wait_while_the_queues_hold_the_budget_and_resume_as_the_link_drains() {
    let p = super::Pair::with(LinkParams { stream_memory: 64 * 1024, ..params() }, params());
    let a = p.client.s.open("a:1").unwrap();
    let b = p.client.s.open("b:1").unwrap();
    // The peer granted each stream 256 KiB, but the tunnel may queue only 64 KiB in all.
    p.client.write_all(a, &[0u8; 64 * 1024]);
    assert_eq!(p.client.s.lock().memory.send_queued(), 64 * 1024);
    let blocked = Probe::new();
    assert!(p.client.write(b, &[1u8; 1000], &blocked.waker).is_pending(), "the budget is full");
    let frames = p.client.batch();
    assert!(frames.len() >= 4, "the link takes the queued frames");
    assert_eq!(blocked.woken(), 1, "and wakes the writer as it does");
    assert!(matches!(p.client.write(b, &[1u8; 1000], Waker::noop()), Poll::Ready(Ok(1000))));
    assert_eq!(p.client.s.lock().memory.send_queued(), 1000);
}

#[tokio::test(start_paused = true)]
async fn a_full_receive_budget_resets_the_largest_holder_and_spares_the_rest() {
    let p = Pair::with(params(), LinkParams { stream_memory: 64 * 1024, ..params() });
    let big = p.open("big:1");
    let small = p.open("small:1");
    p.client.write_all(big, &vec![1; 60 * 1024]);
    p.client.write_all(small, &vec![2; 8 * 1024]);
    p.pump();
    assert!(p.server.s.receive_memory_full(), "nobody reads on the server");
    p.server.s.evict();
    assert!(!p.server.s.receive_memory_full());
    assert_eq!(p.server.s.lock().memory.recv_held(), 8 * 1024);
    assert_eq!(p.server.read(big), (vec![], Tail::Error(ErrorKind::ConnectionReset)));
    assert_eq!(p.server.read(small), (vec![2; 8 * 1024], Tail::Pending));
    p.pump();
    let Poll::Ready(Err(e)) = p.client.write(big, b"x", Waker::noop()) else { panic!("write went through") };
    assert_eq!(e.kind(), ErrorKind::ConnectionReset, "the client learns of it through RST code 4");
}
