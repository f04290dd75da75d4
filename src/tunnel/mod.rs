//! The WebSocket stream tunnel (`tunnelkit ws-server`, `tunnelkit ws-client`): many streams over one
//! WebSocket, resumable without losing or duplicating a byte. The wire format is in `docs/protocol.md`.
//!
//! - [`frame`]: the frame header; [`wire`]: the typed payloads (one [`wire::Message`] per frame type);
//!   [`replay`]: the bounded replay buffer; [`id`]: tunnel ids and resume secrets.
//! - `session`: one tunnel's state (streams, credits, sequence numbers), shared by its connection's `link`
//!   tasks and its [`TunnelStream`] handles; `ws`: the WebSocket under the link once the upgrade is done
//!   (binary messages without a copy each way; `link`: the reader and writer of one connection).
//! - [`Server`] / [`TunnelClient`]: the two ends, creating and resuming tunnels; [`Tunnel`]: the handle.
//!   `client/` also holds the client's keeper (the one place a client tunnel's life is decided) and the
//!   `ws-client` entries (`-L`, `-R`, `--socks`); `token`: the server's bearer-token checks.
//! - `service`: what `ws-server` does with streams (dial under policy, `-R` listeners, closing tunnels
//!   on shutdown); `server_settings`: `ws-server`'s defaults, `--config` file and flags resolved;
//!   `cli`: flags → library, and the signal handling of both commands.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//! let tunnel = tunnelkit::tunnel::TunnelClient::new("ws://127.0.0.1:8080/tunnel")?
//!     .token(Some("secret".into()))
//!     .connect()
//!     .await?;
//! let mut stream = tunnel.open("example.com:80")?;
//! stream.write_all(b"GET / HTTP/1.0\r\nHost: example.com\r\n\r\n").await?;
//! stream.shutdown().await?;
//! let mut page = Vec::new();
//! stream.read_to_end(&mut page).await?;
//! # Ok(()) }
//! ```

mod args;
mod backlog;
mod backoff;
mod budget;
mod cli;
mod client;
mod cluster;
pub mod compat;
mod exposure;
mod first_frame;
pub mod frame;
mod handle;
mod http_gate;
pub mod id;
mod link;
mod listen_limits;
pub mod params;
mod refusal;
mod replay;
mod server;
mod server_options;
mod server_settings;
mod service;
mod session;
mod stream;
mod token;
pub mod wire;
mod ws;

pub use args::{ClientArgs, ServerArgs};
pub use client::{ConnectError, TunnelClient};
pub use handle::Tunnel;
pub use id::{ResumeSecret, TunnelId};
pub use params::{Limits, LinkParams, Mode};
pub use server::{Server, ServerOptions};
pub use session::{rst, EndReason, TunnelEvent};
pub use stream::TunnelStream;

/// Runs `tunnelkit ws-server`.
pub async fn run_server(args: ServerArgs) -> anyhow::Result<()> {
    cli::run_server(args).await
}

/// Runs `tunnelkit ws-client`.
pub async fn run_client(args: ClientArgs) -> anyhow::Result<()> {
    cli::run_client(args).await
}
