//! A stream's life: opened with bytes already on their way, half-closed in either order, reset from
//! either side (also while the other side's frames are in flight), and failed by the tunnel's end.

use std::io::ErrorKind;
use std::task::{Poll, Waker};

use super::super::streams::Lifecycle;
use super::super::{rst, EndReason};
use super::{decode, raw, Pair, Probe, Tail};
use crate::tunnel::frame::FrameType;
use crate::tunnel::wire::Message;

#[tokio::test(start_paused = true)]
async fn bytes_written_right_after_open_arrive_and_the_client_half_closes_first() {
    let p = Pair::new();
    let id = p.client.s.open("svc:1").unwrap();
    // 0-RTT: nothing came back yet, and the bytes are already queued behind the OPEN.
    p.client.write_all(id, b"hello");
    p.client.s.shutdown_stream(id);
    p.pump();
    assert_eq!(p.server.accept(), Some((id, "svc:1".to_owned())));
    assert_eq!(p.server.read(id), (b"hello".to_vec(), Tail::Eof));
    p.server.write_all(id, b"world");
    p.server.s.shutdown_stream(id);
    p.pump();
    assert_eq!(p.client.read(id), (b"world".to_vec(), Tail::Eof));
    p.client.s.detach(id);
    p.server.s.detach(id);
    p.pump();
    assert_eq!((p.client.s.stream_count(), p.server.s.stream_count()), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn the_server_may_half_close_first_and_the_client_still_writes_after_its_eof() {
    let p = Pair::new();
    let id = p.open("svc:1");
    p.client.write_all(id, b"ping");
    p.pump();
    assert_eq!(p.server.read(id), (b"ping".to_vec(), Tail::Pending));
    p.server.write_all(id, b"pong");
    p.server.s.shutdown_stream(id);
    p.pump();
    assert_eq!(p.client.read(id), (b"pong".to_vec(), Tail::Eof));
    p.client.write_all(id, b"more");
    p.client.s.shutdown_stream(id);
    p.pump();
    assert_eq!(p.server.read(id), (b"more".to_vec(), Tail::Eof));
    p.client.s.detach(id);
    p.server.s.detach(id);
    p.pump();
    assert_eq!((p.client.s.stream_count(), p.server.s.stream_count()), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn an_open_may_carry_zero_rtt_data_and_its_fin_in_the_same_frame() {
    let p = Pair::new();
    let open = Message::Open { target: "svc:1".into(), data: "abc".into() };
    p.server.deliver([raw(open, 1, true, 1, 0)]).unwrap();
    assert_eq!(p.server.accept(), Some((1, "svc:1".to_owned())));
    assert_eq!(p.server.read(1), (b"abc".to_vec(), Tail::Eof));
}

#[tokio::test(start_paused = true)]
async fn a_write_after_shutdown_is_a_broken_pipe_and_a_second_shutdown_sends_nothing() {
    let p = Pair::new();
    let id = p.open("svc:1");
    p.client.s.shutdown_stream(id);
    assert_eq!(p.pump(), 1, "one FIN");
    p.client.s.shutdown_stream(id);
    assert_eq!(p.pump(), 0);
    let Poll::Ready(Err(e)) = p.client.write(id, b"x", Waker::noop()) else { panic!("write went through") };
    assert_eq!(e.kind(), ErrorKind::BrokenPipe);
}

#[tokio::test(start_paused = true)]
async fn dropping_a_handle_the_peer_still_writes_to_sends_fin_then_rst_cancel() {
    let p = Pair::new();
    let id = p.open("svc:1");
    p.client.write_all(id, b"request");
    p.client.s.detach(id);
    let frames = p.client.batch();
    let kinds: Vec<FrameType> = frames.iter().map(|f| decode(f).0.kind).collect();
    assert_eq!(kinds, [FrameType::Data, FrameType::Data, FrameType::Rst], "data, FIN, then RST");
    assert!(matches!(decode(&frames[2]).1, Message::Rst { code: rst::CANCEL, .. }));
    p.server.deliver(frames).unwrap();
    // The client's FIN came before its RST: what it sent is whole, and reads to a clean EOF.
    assert_eq!(p.server.read(id), (b"request".to_vec(), Tail::Eof));
    let Poll::Ready(Err(e)) = p.server.write(id, b"late", Waker::noop()) else {
        panic!("write went through")
    };
    assert_eq!(e.kind(), ErrorKind::ConnectionReset);
    assert_eq!(p.client.s.stream_count(), 0, "the dropped stream is forgotten once its frames left");
}

#[tokio::test(start_paused = true)]
async fn a_reset_crossing_the_peers_fin_leaves_no_stream_behind_on_either_side() {
    let p = Pair::new();
    let id = p.open("svc:1");
    p.client.s.shutdown_stream(id);
    p.server.s.reset_stream(id, rst::POLICY, "not allowed");
    let (fin, reset) = (p.client.batch(), p.server.batch());
    p.server.deliver(fin).unwrap();
    p.client.deliver(reset).unwrap();
    let (_, tail) = p.client.read(id);
    assert_eq!(tail, Tail::Error(ErrorKind::PermissionDenied), "the server's reason, not an EOF");
    p.client.s.detach(id);
    p.server.s.detach(id);
    p.pump();
    assert_eq!((p.client.s.stream_count(), p.server.s.stream_count()), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn data_in_flight_to_a_stream_just_reset_is_dropped_without_a_protocol_error() {
    let p = Pair::new();
    let id = p.open("svc:1");
    p.client.write_all(id, &[7; 1000]);
    let in_flight = p.client.batch();
    p.server.s.reset_stream(id, rst::DIAL_FAILED, "no route");
    p.server.deliver(in_flight).unwrap();
    assert_eq!(p.server.s.buffered(id), 0, "late bytes are not kept");
    p.pump();
    let Poll::Ready(Err(e)) = p.client.write(id, b"x", Waker::noop()) else { panic!("write went through") };
    assert_eq!(e.kind(), ErrorKind::ConnectionRefused);
}

#[tokio::test(start_paused = true)]
async fn both_sides_resetting_at_once_is_not_an_error_and_the_first_reason_stays() {
    let p = Pair::new();
    let id = p.open("svc:1");
    p.client.s.reset_stream(id, rst::CANCEL, "client gave up");
    p.server.s.reset_stream(id, rst::TIMEOUT, "server gave up");
    let (up, down) = (p.client.batch(), p.server.batch());
    p.server.deliver(up).unwrap();
    p.client.deliver(down).unwrap();
    assert_eq!(p.client.read(id).1, Tail::Error(ErrorKind::ConnectionReset), "its own CANCEL");
    assert_eq!(p.server.read(id).1, Tail::Error(ErrorKind::TimedOut), "its own TIMEOUT");
}

#[tokio::test(start_paused = true)]
async fn a_writer_waiting_for_credit_is_woken_by_the_peers_reset_and_fails() {
    let p = Pair::new();
    let id = p.open("svc:1");
    p.client.write_all(id, &vec![1; crate::tunnel::params::INITIAL_WINDOW]);
    let writer = Probe::new();
    assert!(p.client.write(id, b"x", &writer.waker).is_pending(), "no credit left");
    p.server.s.reset_stream(id, rst::CANCEL, "stop");
    p.pump();
    assert!(writer.woken() > 0);
    let Poll::Ready(Err(e)) = p.client.write(id, b"x", Waker::noop()) else { panic!("write went through") };
    assert_eq!(e.kind(), ErrorKind::ConnectionReset);
}

#[tokio::test(start_paused = true)]
async fn confirm_tells_the_opener_that_the_target_was_reached() {
    let p = Pair::new();
    let id = p.open("svc:1");
    let opener = Probe::new();
    assert!(p.client.s.poll_connected(id, &opener.waker).is_pending());
    p.server.s.confirm(id);
    p.pump();
    assert!(opener.woken() > 0);
    assert!(matches!(p.client.s.poll_connected(id, Waker::noop()), Poll::Ready(Ok(()))));
}

#[tokio::test(start_paused = true)]
async fn ending_the_tunnel_fails_open_streams_with_connection_aborted_never_a_clean_eof() {
    let p = Pair::new();
    let open = p.open("svc:1");
    let finished = p.open("svc:2");
    p.server.write_all(open, b"partial");
    p.server.write_all(finished, b"whole");
    p.server.s.shutdown_stream(finished);
    p.pump();
    let (reader, connect) = (Probe::new(), Probe::new());
    assert_eq!(p.client.s.buffered(open), 7);
    p.client.s.end(EndReason::Aborted("shutdown".into()));
    // Bytes that arrived do not hide the end: a reader must not take a cut stream for a whole one.
    assert_eq!(p.client.read_with(open, &reader.waker), (vec![], Tail::Error(ErrorKind::ConnectionAborted)));
    let Poll::Ready(Err(e)) = p.client.write(open, b"x", Waker::noop()) else { panic!("write went through") };
    assert_eq!(e.kind(), ErrorKind::ConnectionAborted);
    assert!(
        matches!(p.client.s.poll_connected(open, &connect.waker), Poll::Ready(Err(e)) if e.kind() == ErrorKind::ConnectionAborted)
    );
    // A stream whose peer had finished is complete: it reads to its end.
    assert_eq!(p.client.read(finished), (b"whole".to_vec(), Tail::Eof));
    assert_eq!(p.client.s.open("svc:3").unwrap_err().kind(), ErrorKind::NotConnected);
}

#[tokio::test(start_paused = true)]
async fn waiting_readers_and_writers_are_woken_when_the_tunnel_ends() {
    let p = Pair::new();
    let id = p.open("svc:1");
    let reader = Probe::new();
    assert_eq!(p.client.read_with(id, &reader.waker).1, Tail::Pending);
    p.client.s.end(EndReason::Expired);
    assert_eq!(reader.woken(), 1);
    assert_eq!(p.client.read(id).1, Tail::Error(ErrorKind::ConnectionAborted));
}

#[tokio::test(start_paused = true)]
async fn close_goes_after_queued_data_and_ends_both_sides() {
    let p = Pair::new();
    let id = p.open("svc:1");
    p.client.write_all(id, b"last words");
    p.client.s.queue_close();
    let frames = p.client.batch();
    let kinds: Vec<FrameType> = frames.iter().map(|f| decode(f).0.kind).collect();
    assert_eq!(kinds, [FrameType::Data, FrameType::Close]);
    p.server.deliver(frames).unwrap();
    assert_eq!(p.server.s.end_reason(), Some(EndReason::Closed));
    assert!(!p.client.s.close_acked(), "not until the server acks the CLOSE");
    let ack = p.server.batch();
    assert_eq!(decode(&ack[0]).0.kind, FrameType::Ack, "the CLOSE is acked at once");
    p.client.deliver(ack).unwrap();
    assert!(p.client.s.close_acked());
    p.client.s.end(EndReason::Closed);
    assert_eq!(p.client.s.end_reason(), Some(EndReason::Closed));
}

#[tokio::test(start_paused = true)]
async fn the_lifecycle_moves_one_direction_at_a_time_and_a_reset_keeps_what_it_knew() {
    let p = Pair::new();
    let id = p.open("svc:1");
    let state = |end: &super::End| end.s.lock().streams.get(&id).map(|s| s.lifecycle().clone());
    assert_eq!(state(&p.client), Some(Lifecycle::Open));
    p.client.s.shutdown_stream(id);
    assert_eq!(state(&p.client), Some(Lifecycle::HalfClosedLocal));
    p.pump();
    assert_eq!(state(&p.server), Some(Lifecycle::HalfClosedRemote));
    p.server.s.shutdown_stream(id);
    p.pump();
    assert_eq!(state(&p.client), Some(Lifecycle::Closed));
    assert_eq!(state(&p.server), Some(Lifecycle::Closed));
    p.client.s.end(EndReason::Closed);
    assert_eq!(state(&p.client), Some(Lifecycle::Closed), "a stream finished both ways is not failed");
}
