//! The forward proxy (`tunnelkit proxy`): absolute-form HTTP forwarding, CONNECT tunnels, WebSocket
//! upgrades, proxy authentication, the SSRF-safe policy, strict framing, and a SOCKS5 listener.
//!
//! - [`settings`]: defaults, TOML file and flags resolved into one [`Settings`].
//! - `server`: listeners, the per-connection request loop, limits, graceful shutdown.
//! - `forward`: absolute-form requests and WebSocket upgrades: the request re-written for the next
//!   hop, `upstream` to send it over the [`pool`] (with one retry), `response` to relay the answer.
//! - `connect`: CONNECT tunnels.
//! - `live`: what a reload (SIGHUP) changes while traffic flows: users, policy, access log.
//! - `client_stream`: the client's bytes, over plain TCP or TLS (`--tls-cert`/`--tls-key`).
//! - SOCKS5 (`--socks`): [`crate::net::socks`], on the same dialer and policy.

mod args;
mod client_stream;
mod connect;
mod exchange;
mod forward;
pub mod inspect;
pub mod intercept;
mod live;
pub mod pool;
mod response;
mod server;
pub mod settings;
mod upstream;

pub use args::Args;
pub use server::run_with;
pub use settings::Settings;

/// Runs `tunnelkit proxy` until SIGTERM/SIGINT, reloading its configuration on SIGHUP.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let settings = Settings::load(args.clone())?;
    crate::telemetry::apply_config_log_level(settings.log_level.as_deref());
    server::serve(settings, Some(args), crate::shutdown::signal()).await
}
