//! The client side of HTTP CONNECT, stricter and kinder than hyper-util's `Tunnel`: any 2xx opens
//! the tunnel; the answer is parsed with a size bound and correctly across split reads; bytes the
//! proxy sent after its header block are kept and handed to the caller first; a non-2xx answer
//! becomes an error carrying the status and reason.

use std::io;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::http::head::{self, HeadError};
use crate::net::{Prefixed, Target};
use crate::policy::Credentials;

/// Why a CONNECT did not give a tunnel.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The proxy answered with a non-2xx status.
    #[error("proxy answered {status} {reason}")]
    Status {
        /// Status code, e.g. 407.
        status: u16,
        /// Reason phrase as sent.
        reason: String,
    },
    /// The proxy's answer was not HTTP or was too large.
    #[error("proxy sent an invalid answer to CONNECT: {0}")]
    Invalid(String),
    /// The connection failed or closed before the answer was complete.
    #[error("proxy connection failed during CONNECT: {0}")]
    Io(#[from] io::Error),
}

/// Sends `CONNECT target` on `stream` and waits for a 2xx.
///
/// Returns the stream wrapped so that bytes received after the header block are read first.
pub async fn connect<S>(
    mut stream: S,
    target: &Target,
    credentials: Option<&Credentials>,
) -> Result<Prefixed<S>, ConnectError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(c) = credentials {
        req.push_str(&format!("Proxy-Authorization: {}\r\n", c.to_basic_header()));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await?;
    let mut buf = BytesMut::with_capacity(1024);
    loop {
        match head::parse_response(&buf) {
            Ok(Some((resp, len))) => {
                if (200..300).contains(&resp.status) {
                    buf.advance(len);
                    return Ok(Prefixed::new(stream, buf));
                }
                if (100..200).contains(&resp.status) {
                    buf.advance(len);
                    continue;
                }
                return Err(ConnectError::Status { status: resp.status, reason: resp.reason });
            }
            Ok(None) => {}
            Err(HeadError::TooLarge) => return Err(ConnectError::Invalid("answer header too large".into())),
            Err(e) => return Err(ConnectError::Invalid(e.to_string())),
        }
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(ConnectError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "proxy closed the connection before answering",
            )));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn split_201_and_trailing_bytes() {
        let (mut proxy, client) = tokio::io::duplex(4096);
        let task =
            tokio::spawn(async move { connect(client, &"example.com:443".parse().unwrap(), None).await });
        let mut req = vec![0u8; 1024];
        let n = proxy.read(&mut req).await.unwrap();
        assert!(req[..n].starts_with(b"CONNECT example.com:443 HTTP/1.1\r\n"));
        proxy.write_all(b"HTTP/1.1 20").await.unwrap();
        tokio::task::yield_now().await;
        proxy.write_all(b"1 Created\r\nX: y\r\n\r\nhello").await.unwrap();
        let mut s = task.await.unwrap().unwrap();
        let mut got = [0u8; 5];
        s.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello");
    }

    #[tokio::test]
    async fn status_errors_name_the_status() {
        let (mut proxy, client) = tokio::io::duplex(4096);
        let task = tokio::spawn(async move { connect(client, &"a:443".parse().unwrap(), None).await });
        let mut req = vec![0u8; 1024];
        let _ = proxy.read(&mut req).await.unwrap();
        proxy.write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n").await.unwrap();
        let err = task.await.unwrap().unwrap_err();
        assert_eq!(err.to_string(), "proxy answered 407 Proxy Authentication Required");
    }
}
