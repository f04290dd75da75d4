//! The WebSocket stream tunnel (`tunnelkit ws-server`, `tunnelkit ws-client`): many streams over one
//! WebSocket, resumable without losing or duplicating a byte. The wire format is in `docs/protocol.md`.

mod args;
pub mod compat;
pub mod frame;
pub mod replay;
mod server;

pub use args::{ClientArgs, ServerArgs};

/// Runs `tunnelkit ws-server`.
pub async fn run_server(args: ServerArgs) -> anyhow::Result<()> {
    server::run(args).await
}

/// Runs `tunnelkit ws-client`.
pub async fn run_client(args: ClientArgs) -> anyhow::Result<()> {
    let _ = args;
    anyhow::bail!("tunnelkit ws-client is not implemented yet")
}
