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
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_tunnels: 1024,
            max_streams: 1024,
            replay_bytes: 4 << 20,
            max_frame: DEFAULT_MAX_FRAME,
            heartbeat: Duration::from_secs(10),
            max_keep_broken: Duration::from_secs(300),
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
}
