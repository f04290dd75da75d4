//! `tunnelkit sticky` under peers that hold resources: slow request heads, too many connections,
//! backends that never answer or never read, clients that never read. Every server runs on a port
//! the kernel picked; every wait is bounded.

mod sticky_peers;
mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sticky_peers::{black_hole, exchange, head_echo, sticky};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[tokio::test]
async fn a_partial_request_head_is_closed_after_the_header_timeout() {
    let backend = head_echo().await;
    let s = sticky(&[backend], &["--header-timeout", "1s"]);
    // A slowloris client: the head never ends.
    let (_, took) = exchange(
        s.addr(),
        b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n",
        Duration::from_secs(8),
    )
    .await;
    assert!(took >= Duration::from_millis(900), "closed before the timeout: {took:?}");
    // An idle keep-alive client is closed the same way.
    let (_, took) = exchange(s.addr(), b"", Duration::from_secs(8)).await;
    assert!(took >= Duration::from_millis(900), "{took:?}");
    // A request whose answer takes longer than the header timeout (a long poll) is not cut.
    let (text, took) = exchange(
        s.addr(),
        b"GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(8),
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 200 ") && took >= Duration::from_secs(2), "{took:?}: {text}");
}

#[tokio::test]
async fn connections_beyond_max_connections_get_a_fast_503() {
    let origin = head_echo().await;
    let s = sticky(&[origin], &["--max-connections", "2", "--header-timeout", "30s"]);
    let first = TcpStream::connect(s.addr()).await.unwrap();
    let _second = TcpStream::connect(s.addr()).await.unwrap();
    let (text, took) =
        exchange(s.addr(), b"GET /head HTTP/1.1\r\nHost: x\r\n\r\n", Duration::from_secs(5)).await;
    assert!(text.starts_with("HTTP/1.1 503 "), "{text}");
    assert!(took < Duration::from_secs(2), "fast: {took:?}");
    // A slot freed is a slot for the next client.
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (text, _) = exchange(
            s.addr(),
            b"GET /head HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            Duration::from_secs(5),
        )
        .await;
        if text.starts_with("HTTP/1.1 200 ") {
            break;
        }
        assert!(text.starts_with("HTTP/1.1 503 ") && Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_backend_that_never_answers_gets_a_504_after_the_backend_timeout() {
    let backend = black_hole().await;
    // Health checks must not mark the backend down first: their timeout outlasts the test.
    let s =
        sticky(&[backend], &["--backend-timeout", "1s", "--check-timeout", "1h", "--check-interval", "1h"]);
    for target in ["/socket.io/?EIO=4&transport=polling", "/page"] {
        let raw = format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let (text, took) = exchange(s.addr(), raw.as_bytes(), Duration::from_secs(10)).await;
        assert!(text.starts_with("HTTP/1.1 504 "), "{target}: {text}");
        assert!(text.contains("--backend-timeout"), "{text}");
        assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(5), "{target}: {took:?}");
    }
}

/// A backend answering any request with an endless body (after a 101 for an upgrade, as a
/// WebSocket server pushing frames) and health checks with Engine.IO's 400. Reports the target
/// of each flood whose write failed, i.e. whose connection the balancer dropped.
async fn endless_backend() -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let Some(head) = crate::support::read_head(&mut s).await else { return };
                let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
                let target = head.split(' ').nth(1).unwrap_or("").to_owned();
                let answer: &[u8] = if target.starts_with("/socket.io/") {
                    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"
                } else if head.contains("\r\nupgrade: websocket") {
                    b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"
                } else {
                    b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000000\r\n\r\n"
                };
                let _ = s.write_all(answer).await;
                if target.starts_with("/socket.io/") {
                    return;
                }
                let chunk = vec![b'x'; 64 * 1024];
                while s.write_all(&chunk).await.is_ok() {}
                let _ = tx.send(target);
            });
        }
    });
    (addr, rx)
}

#[tokio::test]
async fn a_client_that_never_reads_is_dropped_after_the_idle_timeout() {
    let (backend, mut dropped) = endless_backend().await;
    let s = sticky(&[backend], &["--idle-timeout", "1s"]);
    // A response, and a WebSocket tunnel, that the client never reads: once every buffer on the
    // way is full, the balancer's write to the client stalls, and after the idle timeout it gives
    // up the connection and the backend's with it.
    for (target, extra) in
        [("/endless", ""), ("/ws-endless", "Connection: Upgrade\r\nUpgrade: websocket\r\n")]
    {
        let mut client = TcpStream::connect(s.addr()).await.unwrap();
        client
            .write_all(format!("GET {target} HTTP/1.1\r\nHost: x\r\n{extra}\r\n").as_bytes())
            .await
            .unwrap();
        let gone = tokio::time::timeout(Duration::from_secs(20), dropped.recv())
            .await
            .unwrap_or_else(|_| panic!("{target}: the balancer still holds a client that never reads"));
        assert_eq!(gone.as_deref(), Some(target));
        drop(client);
    }
}

#[tokio::test]
async fn a_backend_that_never_reads_an_upload_fails_the_request_after_the_idle_timeout() {
    let backend = black_hole().await;
    let s = sticky(
        &[backend],
        &[
            "--idle-timeout",
            "1s",
            "--backend-timeout",
            "1h",
            "--check-timeout",
            "1h",
            "--check-interval",
            "1h",
        ],
    );
    let client = TcpStream::connect(s.addr()).await.unwrap();
    let (mut rd, mut wr) = client.into_split();
    wr.write_all(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000000\r\n\r\n").await.unwrap();
    let upload = tokio::spawn(async move {
        let chunk = vec![b'u'; 64 * 1024];
        while wr.write_all(&chunk).await.is_ok() {}
    });
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let answered = tokio::time::timeout(Duration::from_secs(20), async {
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    upload.abort();
    assert!(answered.is_ok(), "no answer while the backend never reads the upload");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 504 ") && text.contains("--idle-timeout"), "{text}");
}
