//! The tunnel's WebSocket against itself and against tungstenite, both roles, over an in-memory pipe.

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio_tungstenite::tungstenite::protocol::Role as TRole;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::*;
use crate::http::ws_frame::{apply_mask, opcode, FrameHead};

fn pipe() -> (DuplexStream, DuplexStream) {
    tokio::io::duplex(64 * 1024)
}

fn ours(io: DuplexStream, role: Role) -> WsConnection<DuplexStream> {
    WsConnection::new(io, role, BytesMut::new(), 1 << 20)
}

fn frame(fin: bool, op: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = Vec::new();
    FrameHead { fin, rsv: 0, opcode: op, mask, payload_len: payload.len() as u64 }.encode(&mut out);
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(k) = mask {
        apply_mask(&mut out[start..], k, 0);
    }
    out
}

fn payloads() -> Vec<Bytes> {
    [0usize, 1, 125, 126, 65_535, 65_536, 200_000]
        .iter()
        .map(|&n| Bytes::from((0..n).map(|i| (i * 31 + n) as u8).collect::<Vec<u8>>()))
        .collect()
}

#[tokio::test]
async fn client_to_server_and_back_every_length_form() {
    let (a, b) = pipe();
    let (mut client, mut server) = (ours(a, Role::Client), ours(b, Role::Server));
    let sent = payloads();
    let expect = sent.clone();
    let writer = tokio::spawn(async move {
        client.writer.send(&sent).await.unwrap();
        client
    });
    for p in &expect {
        assert_eq!(server.next().await.unwrap(), Some(Incoming::Binary(p.clone())));
    }
    let mut client = writer.await.unwrap();
    let back = expect.clone();
    let echo = tokio::spawn(async move { server.writer.send(&back).await.unwrap() });
    for p in &expect {
        assert_eq!(client.next().await.unwrap(), Some(Incoming::Binary(p.clone())));
    }
    echo.await.unwrap();
}

#[tokio::test]
async fn tungstenite_reads_what_we_write_and_we_read_what_it_writes() {
    for role in [Role::Client, Role::Server] {
        // Room for every payload at once: each side sends all before the other reads.
        let (a, b) = tokio::io::duplex(1 << 20);
        let their_role = if role == Role::Client { TRole::Server } else { TRole::Client };
        let mut theirs = WebSocketStream::from_raw_socket(b, their_role, None).await;
        let mut us = ours(a, role);
        let sent = payloads();
        let to_them = sent.clone();
        let w = tokio::spawn(async move {
            us.writer.send(&to_them).await.unwrap();
            us
        });
        for p in &sent {
            assert_eq!(theirs.next().await.unwrap().unwrap(), Message::Binary(p.clone()), "{role:?}");
        }
        let mut us = w.await.unwrap();
        for p in &sent {
            theirs.send(Message::Binary(p.clone())).await.unwrap();
            assert_eq!(us.next().await.unwrap(), Some(Incoming::Binary(p.clone())), "{role:?}");
        }
        // A ping is answered with a pong carrying its payload.
        theirs.send(Message::Ping(Bytes::from_static(b"are you there"))).await.unwrap();
        theirs.send(Message::Binary(Bytes::from_static(b"after"))).await.unwrap();
        assert_eq!(us.next().await.unwrap(), Some(Incoming::Binary(Bytes::from_static(b"after"))));
        assert_eq!(
            theirs.next().await.unwrap().unwrap(),
            Message::Pong(Bytes::from_static(b"are you there"))
        );
        us.close(CLOSE_PROTOCOL, "bye").await.unwrap();
        match theirs.next().await.unwrap().unwrap() {
            Message::Close(Some(f)) => assert_eq!((u16::from(f.code), f.reason.as_str()), (1002, "bye")),
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn fragments_are_joined_around_control_frames_at_any_read_size() {
    let key = Some([9, 8, 7, 6]);
    let mut wire = frame(false, opcode::BINARY, b"hel", key);
    wire.extend(frame(true, opcode::PONG, b"", key));
    wire.extend(frame(false, opcode::CONTINUATION, b"lo ", key));
    wire.extend(frame(true, opcode::CONTINUATION, b"world", key));
    wire.extend(frame(true, opcode::CLOSE, &[0x03, 0xe8, b'o', b'k'], key));
    for step in [1, 2, 3, 7, wire.len()] {
        let (mut a, b) = pipe();
        let mut server = ours(b, Role::Server);
        let bytes = wire.clone();
        tokio::spawn(async move {
            for c in bytes.chunks(step) {
                a.write_all(c).await.unwrap();
                tokio::task::yield_now().await;
            }
            a
        });
        assert_eq!(server.next().await.unwrap(), Some(Incoming::Binary(Bytes::from_static(b"hello world"))));
        assert_eq!(
            server.next().await.unwrap(),
            Some(Incoming::Close { code: Some(1000), reason: "ok".into() })
        );
    }
}

async fn error_after(wire: Vec<u8>, role: Role, max: usize) -> WsError {
    let (mut a, b) = pipe();
    let mut us = WsConnection::new(b, role, BytesMut::new(), max);
    a.write_all(&wire).await.unwrap();
    drop(a);
    loop {
        match us.next().await {
            Err(e) => return e,
            Ok(None) => panic!("clean end instead of an error"),
            Ok(Some(_)) => {}
        }
    }
}

#[tokio::test]
async fn what_rfc_6455_forbids_is_an_error() {
    let key = Some([1, 2, 3, 4]);
    let cases: Vec<(&str, Vec<u8>, Role)> = vec![
        ("unmasked from a client", frame(true, opcode::BINARY, b"x", None), Role::Server),
        ("masked from a server", frame(true, opcode::BINARY, b"x", key), Role::Client),
        (
            "reserved bits",
            {
                let mut f = frame(true, opcode::BINARY, b"x", key);
                f[0] |= 0x40;
                f
            },
            Role::Server,
        ),
        ("unknown opcode", frame(true, 0x3, b"x", key), Role::Server),
        ("fragmented ping", frame(false, opcode::PING, b"x", key), Role::Server),
        ("long ping", frame(true, opcode::PING, &[0; 126], key), Role::Server),
        ("stray continuation", frame(true, opcode::CONTINUATION, b"x", key), Role::Server),
        (
            "new message inside a fragmented one",
            {
                let mut f = frame(false, opcode::BINARY, b"x", key);
                f.extend(frame(true, opcode::BINARY, b"y", key));
                f
            },
            Role::Server,
        ),
        ("one-byte close", frame(true, opcode::CLOSE, b"x", key), Role::Server),
    ];
    for (name, wire, role) in cases {
        assert!(matches!(error_after(wire, role, 1024).await, WsError::Protocol(_)), "{name}");
    }
    let big = frame(true, opcode::BINARY, &[0; 2000], key);
    assert!(matches!(error_after(big, Role::Server, 1024).await, WsError::TooBig { size: 2000, .. }));
    let mut joined = frame(false, opcode::BINARY, &[0; 600], key);
    joined.extend(frame(true, opcode::CONTINUATION, &[0; 600], key));
    assert!(matches!(error_after(joined, Role::Server, 1024).await, WsError::TooBig { size: 1200, .. }));
    // A head claiming 2^63 bytes is refused by its length, before anything is buffered.
    let mut huge = vec![0x82, 0xff];
    huge.extend((1u64 << 63).to_be_bytes());
    huge.extend([0; 4]);
    assert!(matches!(error_after(huge, Role::Server, 1024).await, WsError::TooBig { .. }));
    let cut = frame(true, opcode::BINARY, b"hello", key);
    assert!(matches!(error_after(cut[..5].to_vec(), Role::Server, 1024).await, WsError::Io(_)));
}

#[tokio::test]
async fn bytes_read_before_are_the_start_of_the_stream_and_eof_between_messages_is_clean() {
    let key = Some([5, 5, 5, 5]);
    let wire =
        [frame(true, opcode::BINARY, b"first", key), frame(true, opcode::BINARY, b"second", key)].concat();
    let (mut a, b) = pipe();
    let mut server = WsConnection::new(b, Role::Server, BytesMut::from(&wire[..4]), 1024);
    a.write_all(&wire[4..]).await.unwrap();
    drop(a);
    assert_eq!(server.next().await.unwrap(), Some(Incoming::Binary(Bytes::from_static(b"first"))));
    assert_eq!(server.next().await.unwrap(), Some(Incoming::Binary(Bytes::from_static(b"second"))));
    assert_eq!(server.next().await.unwrap(), None);
}

#[tokio::test]
async fn a_client_masks_every_frame_with_a_fresh_key_and_leaves_the_payload_alone() {
    let (a, mut b) = pipe();
    let mut client = ours(a, Role::Client);
    let payload = Bytes::from(vec![0u8; 64]);
    client.writer.send(&[payload.clone(), payload.clone()]).await.unwrap();
    assert!(payload.iter().all(|&x| x == 0), "the session's bytes are not masked in place");
    let mut wire = vec![0u8; 2 * (2 + 4 + 64)];
    b.read_exact(&mut wire).await.unwrap();
    let keys: Vec<&[u8]> = vec![&wire[2..6], &wire[72..76]];
    assert_ne!(keys[0], keys[1]);
    assert_eq!(&wire[6..10], keys[0], "zeros masked with the key show the key");
}

#[tokio::test(start_paused = true)]
async fn a_quiet_connection_keeps_a_small_buffer_after_a_burst() {
    let (a, b) = pipe();
    let (mut client, mut server) = (ours(a, Role::Client), ours(b, Role::Server));
    let burst: Vec<Bytes> = (0..8).map(|i| Bytes::from(vec![i as u8; 60_000])).collect();
    let sent = burst.clone();
    let w = tokio::spawn(async move {
        client.writer.send(&sent).await.unwrap();
        client
    });
    for m in &burst {
        assert_eq!(server.next().await.unwrap(), Some(Incoming::Binary(m.clone())));
    }
    let mut client = w.await.unwrap();
    assert!(server.reader.buffer_capacity() >= 16 * 1024, "a burst is read with a large buffer");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    // Heartbeat-sized messages once the burst is over, each read on its own while the reader waits.
    for i in 0..3u8 {
        client.send(Bytes::from(vec![i; 30])).await.unwrap();
        assert_eq!(server.next().await.unwrap(), Some(Incoming::Binary(Bytes::from(vec![i; 30]))));
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(20), server.next()).await;
        assert!(waiting.is_err(), "nothing more was sent");
    }
    assert!(server.reader.buffer_capacity() <= 4 * 1024, "now {}", server.reader.buffer_capacity());
}
