//! The HTTP request in front of the WebSocket upgrade, read before tungstenite sees it so that a request
//! that is not an upgrade (a browser, `curl http://server:8080/`, a health check) gets a short answer
//! with a body saying what this port is, instead of a connection closed without a word. Upgrades go on
//! to tungstenite with the bytes already read replayed in front of the stream.

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::http::head;
use crate::net::{write_all_within, BoxStream, Prefixed};

/// Longest request head accepted (tungstenite's own limit is of the same order).
const MAX_HEAD: usize = 16 * 1024;

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

/// Classifies a buffer holding a complete head (`None`: not complete yet).
fn classify(buf: &[u8]) -> Option<Head> {
    match head::parse_request(buf) {
        Ok(None) => None,
        Err(_) => Some(Head::Bad),
        Ok(Some((req, _))) if crate::http::is_upgrade_request(&req.method, req.headers.as_slice()) => {
            Some(Head::Upgrade)
        }
        Ok(Some((req, _))) => {
            let path = req.target.split('?').next().unwrap_or("/");
            Some(Head::Plain(path.chars().take(200).collect()))
        }
    }
}

/// Reads the request head; answers a plain request itself (`None`), or gives back the stream for the
/// upgrade with the head replayed.
pub async fn gate(mut stream: BoxStream, endpoint: &str) -> Option<Prefixed<BoxStream>> {
    let mut buf = BytesMut::with_capacity(1024);
    let head = loop {
        if stream.read_buf(&mut buf).await.ok()? == 0 {
            return None;
        }
        if let Some(head) = classify(&buf) {
            break head;
        }
        if buf.len() > MAX_HEAD {
            break Head::Bad;
        }
    };
    let (status, body, upgrade) = match head {
        Head::Upgrade => return Some(Prefixed::new(stream, buf)),
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
    let _ = write_all_within(&mut stream, answer.as_bytes(), Duration::from_secs(10)).await;
    let _ = stream.shutdown().await;
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_are_told_apart() {
        let up = b"GET /tunnel HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: WebSocket\r\n\r\n";
        assert_eq!(classify(up), Some(Head::Upgrade));
        assert_eq!(classify(b"GET /x?y=1 HTTP/1.1\r\nHost: x\r\n\r\n"), Some(Head::Plain("/x".into())));
        assert_eq!(classify(b"\x16\x03\x01garbage\r\n\r\n"), Some(Head::Bad));
        assert_eq!(classify(b"GET /tunnel HTTP/1.1\r\nHo"), None);
    }
}
