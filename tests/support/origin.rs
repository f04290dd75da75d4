//! A small HTTP/1.1 origin for tests, with one behaviour per path.
//!
//! - `/1k`: 1024 bytes with Content-Length; `/big`: 4 MiB.
//! - `/chunked`: a chunked body; `/close`: a body delimited by closing the connection.
//! - `/head`: the request head as received, as the body (to check what the proxy forwarded).
//! - `/echo`: the request body back.
//! - `/slow`: answers after 1 s.
//! - `/ws`: WebSocket-style upgrade (101, then echo); `/ws-refuse`: 502 with a body.
//! - `/reset`: closes without answering; `/bad-framing`: both Content-Length and Transfer-Encoding.
//! - `/204`, `/304`: bodiless statuses. Anything else: 404.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tunnelkit::http::body::{copy_body, BufIo, Encode};
use tunnelkit::http::head;

/// A running origin.
pub struct Origin {
    pub addr: SocketAddr,
    /// Connections accepted so far.
    pub connections: Arc<AtomicUsize>,
}

impl Origin {
    /// Starts the origin on an ephemeral loopback port.
    pub async fn start() -> Origin {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let c = connections.clone();
        tokio::spawn(async move {
            loop {
                let Ok((s, _)) = l.accept().await else { return };
                c.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(s));
            }
        });
        Origin { addr, connections }
    }

    /// `http://ADDR/path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Connections accepted so far.
    pub fn connection_count(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

async fn serve(s: TcpStream) {
    let mut c = BufIo::new(s);
    loop {
        let (req, raw_head) = loop {
            if let Ok(Some((h, len))) = head::parse_request(&c.buf) {
                let raw = c.buf.split_to(len);
                break (h, raw);
            }
            match c.fill().await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        };
        let framing = match head::request_framing(&req) {
            Ok(f) => f,
            Err(_) => return,
        };
        let mut body = Vec::new();
        if head::has_token(&req.headers, "expect", "100-continue") {
            let _ = c.io.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await;
        }
        if copy_body(&mut c, framing, &mut body, Encode::Identity, Vec::new(), Duration::from_secs(10))
            .await
            .is_err()
        {
            return;
        }
        let path = req.target.as_str();
        let ok = |body: &[u8]| {
            let mut r = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
            r.extend_from_slice(body);
            r
        };
        let resp: Vec<u8> = match path {
            "/1k" => ok(&[b'x'; 1024]),
            "/big" => ok(&vec![b'y'; 4 << 20]),
            "/head" => ok(&raw_head),
            "/echo" => ok(&body),
            "/slow" => {
                tokio::time::sleep(Duration::from_secs(1)).await;
                ok(b"slow")
            }
            "/chunked" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n".to_vec(),
            "/close" => {
                let _ = c.io.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end").await;
                let _ = c.io.shutdown().await;
                return;
            }
            "/204" => b"HTTP/1.1 204 No Content\r\n\r\n".to_vec(),
            "/304" => b"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n".to_vec(),
            "/reset" => return,
            "/bad-framing" => {
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".to_vec()
            }
            "/ws-refuse" => b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 4\r\n\r\nnope".to_vec(),
            "/ws" => {
                let _ = c
                    .io
                    .write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nhi")
                    .await;
                let mut rest = c.buf.split().to_vec();
                let mut buf = [0u8; 4096];
                loop {
                    if !rest.is_empty() {
                        if c.io.write_all(&rest).await.is_err() {
                            return;
                        }
                        rest.clear();
                    }
                    match c.io.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => rest.extend_from_slice(&buf[..n]),
                    }
                }
            }
            _ if req.method == "HEAD" => b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n".to_vec(),
            _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(),
        };
        if c.io.write_all(&resp).await.is_err() {
            return;
        }
    }
}

/// Accepts connections on an ephemeral loopback port and serves each with `serve`, in a task of its
/// own.
async fn serve_each<F, Fut>(serve: F) -> SocketAddr
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(serve(s));
        }
    });
    addr
}

/// A TCP server that echoes everything back (for CONNECT/SOCKS tests).
pub async fn echo_server() -> SocketAddr {
    serve_each(|mut s| async move {
        let (mut r, mut w) = s.split();
        let _ = tokio::io::copy(&mut r, &mut w).await;
        let _ = w.shutdown().await;
    })
    .await
}

/// A source that sends forever to whoever connects (for peers that stop reading).
pub async fn firehose() -> SocketAddr {
    serve_each(|mut s| async move {
        let buf = vec![7u8; 64 * 1024];
        while s.write_all(&buf).await.is_ok() {}
    })
    .await
}
