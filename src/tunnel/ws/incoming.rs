//! What a tunnel's WebSocket hands up: one message from the peer ([`Incoming`]) or why the connection
//! cannot go on ([`WsError`]), and the close codes the tunnel sends.

use bytes::Bytes;

/// Close code 1000, an orderly end.
pub const CLOSE_NORMAL: u16 = 1000;
/// Close code 1002, the peer broke the protocol.
pub const CLOSE_PROTOCOL: u16 = 1002;

/// One message from the peer.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    Binary(Bytes),
    /// A text message: the tunnel protocol has none (its content is not kept).
    Text,
    Ping(Bytes),
    Close {
        code: Option<u16>,
        reason: String,
    },
}

/// Why a connection cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum WsError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("WebSocket protocol error: {0}")]
    Protocol(&'static str),
    #[error("WebSocket message of {size} bytes, more than the {max} allowed")]
    TooBig { size: u64, max: usize },
}
