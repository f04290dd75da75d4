//! How the ws-server says no during the handshake: an HTTP answer before the upgrade (404, 401 with
//! `WWW-Authenticate: Bearer`, 403 for a bad handoff), a `REFUSED` frame after it, or WebSocket close
//! code 1002 for a peer that broke the protocol (docs/protocol.md).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::handshake::server::ErrorResponse;

use super::wire::Message;
use super::ws::{WsConnection, CLOSE_PROTOCOL};

/// An HTTP refusal of the upgrade, with a plain-text body saying why.
pub fn refuse_http(status: u16, challenge: bool, body: String) -> ErrorResponse {
    let mut r = http::Response::builder().status(status).header(http::header::CONTENT_TYPE, "text/plain");
    if challenge {
        r = r.header(http::header::WWW_AUTHENTICATE, "Bearer");
    }
    r.body(Some(body)).unwrap_or_else(|_| http::Response::new(None))
}

/// Ends a connection whose peer broke the protocol with WebSocket close code 1002, as docs/protocol.md says.
pub async fn protocol_error<S>(mut ws: WsConnection<S>, peer: SocketAddr, why: &str)
where
    S: AsyncRead + AsyncWrite,
{
    tracing::debug!(%peer, "protocol error in the handshake: {why}");
    let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(CLOSE_PROTOCOL, why)).await;
}

/// A `REFUSED` frame with `code` and `reason`.
pub fn refused_frame(code: u16, reason: &str) -> Bytes {
    Message::Refused { code, reason: reason.to_owned() }.encode(0).freeze()
}
