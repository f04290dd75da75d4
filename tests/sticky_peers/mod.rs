//! Peers for the sticky tests that misbehave on purpose, and raw HTTP through the balancer:
//! every server on a port the kernel picked, every wait bounded.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::Proc;

/// `tunnelkit sticky --listen 127.0.0.1:0 --backend B... EXTRA...`, started.
pub fn sticky(backends: &[SocketAddr], extra: &[&str]) -> Proc {
    let mut args = vec!["sticky".to_owned(), "--listen".into(), "127.0.0.1:0".into()];
    for b in backends {
        args.extend(["--backend".to_owned(), b.to_string()]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Proc::start(&args, 1 + usize::from(extra.contains(&"--metrics")))
}

/// Sends `raw` and reads until the balancer closes, at most `limit`: (text read, time taken).
pub async fn exchange(addr: SocketAddr, raw: &[u8], limit: Duration) -> (String, Duration) {
    let started = Instant::now();
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(raw).await.unwrap();
    let text = read_to_close(&mut s, limit).await;
    (text, started.elapsed())
}

/// Everything the peer sends until it closes (a reset counts as a close); panics after `limit`.
pub async fn read_to_close(s: &mut TcpStream, limit: Duration) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return String::from_utf8_lossy(&out).into_owned(),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => panic!("still open after {limit:?}; read so far: {}", String::from_utf8_lossy(&out)),
        }
    }
}

/// A backend answering one request per connection: its health-check path with Engine.IO's 400,
/// `/ws` with a 101, anything else with 200 and the request head it received as the body (`/slow`
/// after 2 s).
pub async fn head_echo() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let Some(head) = crate::support::read_head(&mut s).await else { return };
                let head = String::from_utf8_lossy(&head).into_owned();
                let target = head.split(' ').nth(1).unwrap_or("");
                if target == "/slow" {
                    // Longer than the header timeouts of the tests: a request being served is not
                    // cut (a long poll is held up to pingInterval).
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
                let answer = if target.starts_with("/socket.io/") {
                    "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned()
                } else if target == "/ws" {
                    "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"
                        .to_owned()
                } else {
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{head}",
                        head.len()
                    )
                };
                let _ = s.write_all(answer.as_bytes()).await;
                // Holds a switched connection open; closes the others.
                let _ = s.read(&mut [0u8; 512]).await;
            });
        }
    });
    addr
}

/// A backend that accepts connections and never reads or answers anything.
pub async fn black_hole() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    addr
}
