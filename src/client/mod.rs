//! The proxy client: reach origins through HTTP, HTTPS and SOCKS proxies with a pool of persistent
//! CONNECT tunnels (`tunnelkit::client`, `tunnelkit connect`, `tunnelkit forward`).

mod args;
mod dialer;

pub use args::{ConnectArgs, ForwardArgs};
pub use dialer::ProxyDialer;

/// Runs `tunnelkit connect`: stdin/stdout through the proxy.
pub async fn run_connect(args: ConnectArgs) -> anyhow::Result<()> {
    let _ = args;
    anyhow::bail!("tunnelkit connect is not implemented yet")
}

/// Runs `tunnelkit forward`: local port forwards through the proxy.
pub async fn run_forward(args: ForwardArgs) -> anyhow::Result<()> {
    let _ = args;
    anyhow::bail!("tunnelkit forward is not implemented yet")
}
