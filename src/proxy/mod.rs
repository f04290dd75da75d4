//! The forward proxy (`tunnelkit proxy`): absolute-form HTTP forwarding, CONNECT tunnels, WebSocket
//! upgrades, proxy authentication, the SSRF-safe policy, strict framing, and a SOCKS5 listener.

mod args;
pub mod socks;

pub use args::Args;

/// Runs `tunnelkit proxy` until SIGTERM/SIGINT.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let _ = args;
    anyhow::bail!("tunnelkit proxy is not implemented yet")
}
