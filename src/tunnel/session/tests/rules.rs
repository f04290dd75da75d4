//! The rules a tunnel enforces: its stream limit, single mode's one stream, remote listening only where
//! a service takes requests, and the frames a peer may never send (its own stream ids out of order, DATA
//! after FIN, a handshake inside an established tunnel).

use std::io::ErrorKind;
use std::task::{Poll, Waker};

use tokio::sync::mpsc;

use super::super::{rst, EndReason, LinkError, Role, Session};
use super::{decode, params, raw, End, Pair, Tail};
use crate::tunnel::id::TunnelId;
use crate::tunnel::params::{LinkParams, Mode};
use crate::tunnel::wire::Message;

fn open(id: u32, seq: u64, fin: bool) -> bytes::Bytes {
    raw(Message::Open { target: "svc:1".into(), data: Default::default() }, id, fin, seq, 0)
}

fn rst_codes(frames: &[bytes::Bytes]) -> Vec<(u32, u16)> {
    frames
        .iter()
        .filter_map(|f| match decode(f) {
            (f, Message::Rst { code, .. }) => Some((f.stream, code)),
            _ => None,
        })
        .collect()
}

fn protocol_error(r: Result<(), LinkError>) -> String {
    match r {
        Err(LinkError::Protocol(why)) => why,
        other => panic!("expected a protocol error, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn the_server_refuses_an_open_past_its_stream_limit_with_rst_limit() {
    let p = Pair::with(params(), LinkParams { max_streams: 2, ..params() });
    let ids: Vec<u32> = (0..3).map(|_| p.client.s.open("svc:1").unwrap()).collect();
    p.pump();
    assert!(p.server.accept().is_some() && p.server.accept().is_some());
    assert_eq!(p.server.accept(), None, "the third never reaches the service");
    assert_eq!(p.client.read(ids[2]).1, Tail::Error(ErrorKind::ConnectionReset));
    assert!(matches!(p.client.s.poll_connected(ids[2], Waker::noop()), Poll::Ready(Err(_))));
    assert_eq!(p.client.read(ids[0]).1, Tail::Pending, "the others are untouched");
}

#[tokio::test(start_paused = true)]
async fn a_side_cannot_open_more_streams_than_the_limit() {
    let p = Pair::with(LinkParams { max_streams: 2, ..params() }, params());
    p.client.s.open("a:1").unwrap();
    p.client.s.open("b:1").unwrap();
    assert!(p.client.s.open("c:1").is_err());
}

#[tokio::test(start_paused = true)]
async fn single_mode_carries_one_stream_opened_by_the_client_and_closes_with_it() {
    let single = LinkParams { mode: Mode::Single, ..params() };
    let p = Pair::with(single, single);
    assert!(p.server.s.open("svc:1").is_err(), "the server never opens");
    let id = p.open("svc:1");
    assert!(p.client.s.open("svc:2").is_err(), "one stream per tunnel");
    p.client.write_all(id, b"q");
    p.client.s.shutdown_stream(id);
    p.pump();
    assert_eq!(p.server.read(id), (b"q".to_vec(), Tail::Eof));
    p.server.write_all(id, b"a");
    p.server.s.shutdown_stream(id);
    p.pump();
    assert_eq!(p.client.read(id), (b"a".to_vec(), Tail::Eof));
    p.server.s.detach(id);
    p.client.s.detach(id);
    p.pump();
    assert_eq!(p.server.s.end_reason(), Some(EndReason::Closed), "the stream's end closes the tunnel");
    assert!(p.client.s.close_acked());
}

#[tokio::test(start_paused = true)]
async fn a_single_mode_server_refuses_a_second_open_with_rst_limit() {
    let server = End::new(Role::Server, LinkParams { mode: Mode::Single, ..params() });
    server.deliver([open(1, 1, false), open(3, 2, false)]).unwrap();
    assert_eq!(rst_codes(&server.batch()), [(3, rst::LIMIT)]);
}

#[tokio::test(start_paused = true)]
async fn an_open_with_the_wrong_parity_or_an_old_id_is_a_protocol_error() {
    let server = End::new(Role::Server, params());
    assert!(protocol_error(server.deliver([open(2, 1, false)])).contains("wrong side"));
    let server = End::new(Role::Server, params());
    server.deliver([open(3, 1, false)]).unwrap();
    assert!(protocol_error(server.deliver([open(1, 2, false)])).contains("out of order"));
}

#[tokio::test(start_paused = true)]
async fn data_after_the_peers_fin_is_a_protocol_error() {
    let server = End::new(Role::Server, params());
    server.deliver([open(1, 1, true)]).unwrap();
    let late = raw(Message::Data("late".into()), 1, false, 2, 0);
    assert!(protocol_error(server.deliver([late])).contains("after FIN"));
}

#[tokio::test(start_paused = true)]
async fn a_handshake_inside_an_established_tunnel_is_a_protocol_error() {
    let server = End::new(Role::Server, params());
    let hello = raw(Message::Hello { mode: Mode::Multi, keep_broken: Default::default() }, 0, false, 0, 0);
    assert!(protocol_error(server.deliver([hello])).contains("inside an established tunnel"));
}

#[tokio::test(start_paused = true)]
async fn a_listen_where_no_service_takes_it_is_refused() {
    let p = Pair::new();
    let client = p.client.s.clone();
    let listen = tokio::spawn(async move { client.listen("127.0.0.1:0").await });
    tokio::task::yield_now().await;
    p.pump();
    let err = listen.await.unwrap().unwrap_err();
    assert!(err.to_string().contains("not offered"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_listen_reaches_the_service_and_its_answer_reaches_the_client() {
    let (tx, mut requests) = mpsc::unbounded_channel();
    let server = Session::new(TunnelId::random(), Role::Server, params(), Some(tx));
    let gen = server.attach(0).unwrap().gen;
    let p = Pair { server: End { s: server, gen }, client: End::new(Role::Client, params()) };
    let client = p.client.s.clone();
    let listen = tokio::spawn(async move { client.listen("127.0.0.1:0").await });
    tokio::task::yield_now().await;
    p.pump();
    let req = requests.try_recv().expect("the service got the request");
    assert_eq!(req.bind, "127.0.0.1:0");
    p.server.s.answer_listen(req.id, Ok("127.0.0.1:4000".parse().unwrap()));
    p.pump();
    assert_eq!(listen.await.unwrap().unwrap(), (req.id, "127.0.0.1:4000".parse().unwrap()));
}
