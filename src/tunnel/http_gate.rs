//! The HTTP request in front of the WebSocket upgrade, read before tungstenite sees it so that a request
//! that is not an upgrade (a browser, `curl http://server:8080/`, a health check) gets a short answer
//! with a body saying what this port is, instead of a connection closed without a word. Upgrades go on
//! to tungstenite with the bytes already read replayed in front of the stream.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::net::BoxStream;

/// Longest request head accepted (tungstenite's own limit is of the same order).
const MAX_HEAD: usize = 16 * 1024;

/// A stream with bytes already read from it put back in front.
pub struct Replayed {
    head: Bytes,
    inner: BoxStream,
}

impl AsyncRead for Replayed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.head.is_empty() {
            let n = self.head.len().min(buf.remaining());
            buf.put_slice(&self.head[..n]);
            self.head.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Replayed {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// What the request head says.
#[derive(Debug, PartialEq, Eq)]
enum Head {
    /// A WebSocket upgrade (tungstenite checks the rest and our callback the path and token).
    Upgrade,
    /// A plain HTTP request for this path.
    Plain(String),
    /// Not HTTP, or a head over [`MAX_HEAD`].
    Bad,
}

fn classify(head: &[u8]) -> Head {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Head::Bad,
    }
    let upgrade = req.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("upgrade")
            && String::from_utf8_lossy(h.value).to_ascii_lowercase().contains("websocket")
    });
    if upgrade {
        Head::Upgrade
    } else {
        let path = req.path.unwrap_or("/").split('?').next().unwrap_or("/");
        Head::Plain(path.chars().take(200).collect())
    }
}

/// Reads the request head; answers a plain request itself (`None`), or gives back the stream for the
/// upgrade with the head replayed.
pub async fn gate(mut stream: BoxStream, endpoint: &str) -> Option<Replayed> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    let head = loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.windows(4).any(|w| w == b"\r\n\r\n") {
            break classify(&buf);
        }
        if buf.len() > MAX_HEAD {
            break Head::Bad;
        }
    };
    let (status, body, upgrade) = match head {
        Head::Upgrade => return Some(Replayed { head: Bytes::from(buf), inner: stream }),
        Head::Plain(path) if path != endpoint => (
            "404 Not Found",
            format!("no tunnel endpoint at {path}; this ws-server's path is {endpoint}\n"),
            "",
        ),
        Head::Plain(_) => (
            "426 Upgrade Required",
            "this is a tunnelkit ws-server tunnel endpoint: connect with `tunnelkit ws-client` \
             (a WebSocket upgrade)\n"
                .to_owned(),
            "Upgrade: websocket\r\n",
        ),
        Head::Bad => ("400 Bad Request", "not an HTTP request\n".to_owned(), ""),
    };
    let answer = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\
         {upgrade}Connection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(answer.as_bytes()).await;
    let _ = stream.shutdown().await;
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_are_told_apart() {
        let up = b"GET /tunnel HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: WebSocket\r\n\r\n";
        assert_eq!(classify(up), Head::Upgrade);
        assert_eq!(classify(b"GET /x?y=1 HTTP/1.1\r\nHost: x\r\n\r\n"), Head::Plain("/x".into()));
        assert_eq!(classify(b"\x16\x03\x01garbage\r\n\r\n"), Head::Bad);
    }
}
