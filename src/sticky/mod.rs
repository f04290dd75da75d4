//! The sticky-session Socket.IO balancer (`tunnelkit sticky`): every Engine.IO request and upgrade of
//! one session reaches the backend that created it.

mod args;

pub use args::Args;

/// Runs `tunnelkit sticky`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let _ = args;
    anyhow::bail!("tunnelkit sticky is not implemented yet")
}
