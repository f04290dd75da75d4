//! The numbers a tunnel runs by. The server owns them ([`Limits`]) and tells the client in `WELCOME`
//! ([`LinkParams`]), so both sides of one tunnel always agree.

use std::time::Duration;

use super::frame::DEFAULT_MAX_FRAME;

/// Credit each direction of a stream starts with (bytes); also what a reader that never reads may hold.
pub const INITIAL_WINDOW: usize = 256 * 1024;
/// Largest window auto-tuning grows to: a reader that keeps up earns a window this large, so one bulk
/// stream is not limited by round trips through the tunnel.
pub const MAX_WINDOW: usize = 4 << 20;

/// Whether a tunnel carries many streams or exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Any number of streams (the seed's `subStream`).
    Multi,
    /// One stream opened by the client; the tunnel ends with it (the seed's `stream`).
    Single,
}

impl Mode {
    /// The wire value.
    pub fn to_u8(self) -> u8 {
        match self {
            Mode::Multi => 0,
            Mode::Single => 1,
        }
    }

    /// Decodes the wire value.
    pub fn from_u8(b: u8) -> Option<Mode> {
        match b {
            0 => Some(Mode::Multi),
            1 => Some(Mode::Single),
            _ => None,
        }
    }
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "multi" => Ok(Mode::Multi),
            "single" => Ok(Mode::Single),
            _ => Err(format!("unknown mode `{s}`: use multi or single")),
        }
    }
}

/// Limits a server enforces on every tunnel.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Tunnels alive at once (connected or held broken).
    pub max_tunnels: usize,
    /// Streams open at once in one tunnel.
    pub max_streams: u32,
    /// Bytes of unacknowledged frames each side may hold for replay.
    pub replay_bytes: usize,
    /// Largest frame payload.
    pub max_frame: usize,
    /// Heartbeat period; a peer silent for twice this long is declared dead.
    pub heartbeat: Duration,
    /// Longest hold time granted to a broken tunnel, whatever the client asks.
    pub max_keep_broken: Duration,
    /// Tunnels one token may hold at once, so one token cannot take every slot (with tokens configured).
    pub max_tunnels_per_token: usize,
    /// Remote listeners (`-R`) one tunnel may have.
    pub max_listeners: usize,
    /// Whether `-R` may bind unspecified addresses (`0.0.0.0`, `::`), reachable from every network.
    pub allow_public_listen: bool,
    /// Bytes one tunnel's streams may hold in each direction (see [`LinkParams::stream_memory`]).
    pub max_stream_memory: usize,
}

/// Default of [`Limits::max_stream_memory`] (each direction): with the 4 MiB replay buffer and at most
/// ~2 MiB of control frames owed, a tunnel holds at most about 14 MiB, so the default 1024 tunnels stay
/// near 14 GiB even when every peer misbehaves at once (docs/ws-server.md, "Memory").
pub const DEFAULT_STREAM_MEMORY: usize = 4 << 20;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_tunnels: 1024,
            max_streams: 1024,
            replay_bytes: 4 << 20,
            max_frame: DEFAULT_MAX_FRAME,
            heartbeat: Duration::from_secs(10),
            max_keep_broken: Duration::from_secs(300),
            max_tunnels_per_token: 256,
            max_listeners: 16,
            allow_public_listen: false,
            max_stream_memory: DEFAULT_STREAM_MEMORY,
        }
    }
}

/// What both sides of one tunnel agreed on (sent by the server in `WELCOME`).
#[derive(Debug, Clone, Copy)]
pub struct LinkParams {
    /// Single or multi.
    pub mode: Mode,
    /// Granted hold time of a broken tunnel.
    pub keep_broken: Duration,
    /// Largest frame payload.
    pub max_frame: usize,
    /// Streams open at once.
    pub max_streams: u32,
    /// Replay buffer bound, each side.
    pub replay_bytes: usize,
    /// Heartbeat period.
    pub heartbeat: Duration,
    /// Local, not sent: bytes this end's streams may hold in each direction, together: received and not
    /// yet read by the application, and written and not yet sent. A stream whose peer sends beyond it
    /// is reset (code 4), writers wait, and receive windows grow only within it.
    pub stream_memory: usize,
}
