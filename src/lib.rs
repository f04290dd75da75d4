//! tunnelkit: proxies and tunnels in one library.
//!
//! The binary (`src/main.rs`) only parses the command line; everything it runs lives here.
//!
//! Shared pieces, which every capability may use:
//! - [`config`]: the one configuration loader (TOML file, then CLI flags and env on top).
//! - [`telemetry`]: tracing, Prometheus metrics, access logs.
//! - [`shutdown`]: graceful shutdown on SIGTERM/SIGINT with a drain deadline.
//! - [`upgrade`]: zero-downtime binary upgrade (listeners handed to a successor) and systemd socket activation.
//! - [`reload`]: configuration reload on SIGHUP (generation, metrics, pid file, revoked tunnels).
//! - [`net`]: targets, the [`net::Dialer`] abstraction, the one bidirectional relay, socket options.
//! - [`policy`]: which destinations may be dialled (SSRF-safe defaults), port allowlists, proxy auth.
//! - [`http`]: HTTP/1 parsing limits, hop-by-hop stripping, error responses.
//!
//! Capabilities, which depend on the shared pieces and never on each other (except that any of them
//! may dial out through [`client`]):
//! - [`proxy`]: the forward proxy (`tunnelkit proxy`), with its SOCKS5 listener.
//! - [`client`]: connecting through HTTP/HTTPS/SOCKS proxies with pooled persistent tunnels.
//! - [`tunnel`]: the resumable multiplexed WebSocket stream tunnel.
//! - [`sticky`]: the sticky-session Socket.IO balancer.
//! - [`ca`]: tunnelkit's root certificate authority (`tunnelkit ca`) and the leaves it signs.

pub mod allocator;
pub mod config;
pub mod http;
pub mod net;
pub mod policy;
pub mod reload;
pub mod shutdown;
pub mod telemetry;
pub mod upgrade;

pub mod ca;
pub mod client;
pub mod proxy;
pub mod sticky;
pub mod tunnel;
