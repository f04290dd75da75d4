//! Networking shared by every capability.
//!
//! - [`Target`] and [`Host`]: where to connect, with numeric host forms normalised once, at parse time.
//! - [`Dialer`]: "give me a stream to host:port". [`DirectDialer`] applies the [`crate::policy::Policy`]
//!   and dials the very address that passed it; the `client` module provides dialers that go through
//!   an upstream proxy, and the `tunnel` module one that goes through a tunnel.
//! - [`redis`]: the one link to Redis (node, Sentinel, Cluster) and its URLs.
//! - [`relay`]: the one bidirectional copy, with pooled buffers, splicing between plain sockets,
//!   half-close and an idle timeout.
//! - [`socks`]: the SOCKS5 server, over any dialer.
//! - [`splice`]: the bounded pipe pool and `splice(2)` steps the relay uses between plain sockets.
//! - [`socket`]: socket options (TCP_NODELAY, keepalive).
//! - [`tls`]: server-side TLS configs from PEM files, client configs with extra roots.
//! - [`tls_pinned`]: a verifier deciding a certificate by our own rule (any, or exactly ours), signatures still checked.
//! - [`tls_words`]: certificate failures in words, with the flag that fixes them.
//! - [`ForwardSpec`]: the `-L/-R [BIND:]PORT:HOST:PORT` syntax.
//! - [`Prefixed`]: a stream with bytes already read from it put back in front.
//! - [`workers`]: single-threaded runtimes that connections are handed to, for core affinity.
//! - [`write_deadline`]: writes that give up when the peer stops reading.

mod dialer;
mod forward_spec;
mod prefixed;
pub mod redis;
pub mod relay;
pub mod socket;
pub mod socks;
pub mod splice;
mod target;
pub mod tls;
pub mod tls_pinned;
pub mod tls_words;
pub mod workers;
pub mod write_deadline;

pub use dialer::{
    check_unresolved, BoxStream, DialError, DialFuture, Dialer, DirectDialer, GatedDialer, Purpose, Stream,
    SwappableDialer,
};
pub use forward_spec::ForwardSpec;
pub use prefixed::Prefixed;
pub use relay::{relay, ChunkEnd, ChunkIo, ChunkStream, RelayEnd, RelayStats};
pub use splice::PipePool;
pub use target::{canonical_ip, Host, HostError, Target};
pub use write_deadline::{write_all_within, WriteDeadline};
