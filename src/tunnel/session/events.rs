//! What a session tells the world around it: why a tunnel ended ([`EndReason`]), what happened to it
//! ([`TunnelEvent`], broadcast), the state of its connection ([`LinkStatus`], watched by whoever keeps
//! the tunnel alive), the client's requests to listen on the server ([`ListenRequest`]), and why a
//! connection must be dropped ([`LinkError`]).
//!
//! Plain data only: these types know nothing of the session's state, so every other part of the tunnel
//! can name them without depending on how the session works.

use std::time::Duration;

use crate::tunnel::frame::FrameError;
use crate::tunnel::wire::WireError;

/// Why a tunnel ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndReason {
    /// Closed in order (CLOSE frame, idle timeout, single-mode stream end).
    Closed,
    /// Broken for longer than the granted hold time.
    Expired,
    /// The server refused to resume it.
    Refused(String),
    /// A local decision (shutdown, unrecoverable error).
    Aborted(String),
}

impl std::fmt::Display for EndReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EndReason::Closed => f.write_str("closed"),
            EndReason::Expired => f.write_str("hold time expired while broken"),
            EndReason::Refused(why) => write!(f, "resume refused: {why}"),
            EndReason::Aborted(why) => write!(f, "aborted: {why}"),
        }
    }
}

/// What happens to a tunnel, mirroring the seed's events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TunnelEvent {
    /// The connection broke; the tunnel is held for resumption.
    Broken,
    /// A new connection took over; nothing was lost.
    Resumed,
    /// The tunnel ended; every open stream ended with an error.
    Closed(EndReason),
    /// A stream opened (by either side).
    StreamOpen {
        /// Stream id.
        id: u32,
        /// Its target as named in OPEN.
        target: String,
    },
    /// A stream ended and was forgotten.
    StreamClose {
        /// Stream id.
        id: u32,
    },
}

/// The state of the tunnel's connection, watched by whoever keeps the tunnel alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkStatus {
    /// Connection number `gen` is carrying the tunnel.
    Up(u64),
    /// Connection number `gen` broke; nothing carries the tunnel.
    Down(u64),
    /// The tunnel ended.
    Ended,
}

/// A request from the client to listen on the server (`-R`), delivered to the server's tunnel service.
#[derive(Debug)]
pub struct ListenRequest {
    /// The client's request id (echoed in BOUND and used as OPEN target `listen:<id>`).
    pub id: u32,
    /// Address to bind, as the client wrote it.
    pub bind: String,
}

/// Why the link must drop its connection.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// A newer connection took over, or the tunnel ended.
    #[error("connection superseded")]
    Stale,
    /// The peer broke the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// Nothing arrived for two heartbeat periods: a half-dead connection or a blackhole.
    #[error("peer silent for {0:?}")]
    Silent(Duration),
    /// The WebSocket failed or closed.
    #[error("connection lost: {0}")]
    Lost(String),
    /// The peer takes nothing from us (a write made no progress, or what we owe it piled up) for too long.
    #[error("peer does not read: {0}")]
    Stalled(String),
}

impl From<FrameError> for LinkError {
    fn from(e: FrameError) -> Self {
        LinkError::Protocol(e.to_string())
    }
}

impl From<WireError> for LinkError {
    fn from(e: WireError) -> Self {
        LinkError::Protocol(e.to_string())
    }
}
