//! The WebSocket a tunnel runs on, once the HTTP upgrade is done: binary messages each way (one tunnel
//! frame each), pings answered, close frames sent and read. The upgrade itself is tungstenite's
//! (`tokio_tungstenite::accept_hdr_async` / `client_async`); the connection it returns is taken apart
//! (`WebSocketStream::into_inner`) and carried on here, because the tunnel is a bulk data path and
//! tungstenite's general one costs it a copy into a write buffer per message and a zeroed read buffer per
//! read. Neither peer sends a frame before the upgrade's answer (the client waits for the `101`, the
//! server for `HELLO`), so tungstenite holds no bytes of ours when it lets go of the socket.
//!
//! [`WsConnection`] is the whole connection, for the handshake; the link splits it into a
//! [`WsReader`] and a [`WsWriter`] that run side by side. `ws-server --compat` keeps tungstenite: the
//! seed's messages are not tunnel frames.

mod incoming;
mod reader;
#[cfg(test)]
mod tests;
mod writer;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};

pub use self::incoming::{Incoming, WsError, CLOSE_NORMAL, CLOSE_PROTOCOL};
pub use self::reader::WsReader;
pub use self::writer::WsWriter;
use super::session::Role;

/// Both halves of one connection.
pub struct WsConnection<S> {
    reader: WsReader<ReadHalf<S>>,
    writer: WsWriter<WriteHalf<S>>,
}

impl<S: AsyncRead + AsyncWrite> WsConnection<S> {
    /// Carries on `io` after the upgrade, as `role`'s end, with `read_ahead` the bytes already read from
    /// it. Messages longer than `max_message` fail the connection.
    pub fn new(io: S, role: Role, read_ahead: BytesMut, max_message: usize) -> Self {
        let (r, w) = tokio::io::split(io);
        let client = role == Role::Client;
        WsConnection {
            reader: WsReader::new(r, read_ahead, !client, max_message),
            writer: WsWriter::new(w, client),
        }
    }

    /// The next message other than a ping (pings are answered here); `None` when the peer closed the
    /// connection between messages.
    pub async fn next(&mut self) -> Result<Option<Incoming>, WsError> {
        loop {
            match self.reader.next().await? {
                Some(Incoming::Ping(p)) => self.writer.pong(&p).await?,
                other => return Ok(other),
            }
        }
    }

    /// Sends one binary message.
    pub async fn send(&mut self, message: Bytes) -> std::io::Result<()> {
        self.writer.send(&[message]).await
    }

    /// Sends a close frame and ends our direction.
    pub async fn close(&mut self, code: u16, reason: &str) -> std::io::Result<()> {
        self.writer.close(code, reason).await
    }

    /// The two halves, to read and write at the same time.
    pub fn into_split(self) -> (WsReader<ReadHalf<S>>, WsWriter<WriteHalf<S>>) {
        (self.reader, self.writer)
    }
}
