//! The sticky-session Socket.IO balancer (`tunnelkit sticky`): every Engine.IO request and upgrade of
//! one session reaches the backend that created it.
//!
//! - [`engine`]: what the balancer parses of Engine.IO (paths, query, the sid in a handshake).
//! - [`store`]: the sid -> backend map with lazily refreshed expiry, shared through Redis (one node,
//!   Sentinel or Cluster) when asked.
//! - [`sid_tag`]: stateless routing (`--route-by tag`): `SID.TAG`, the TAG naming the backend, signed.
//! - `sid_rewrite`: the tag put into handshake bodies and cut from request queries.
//! - `sid_route`: how a known session's request finds its backend, by the store or by the tag.
//! - [`backend`]: backends, health, and balancing of new sessions.
//! - [`upgrade_watch`]: spotting, in a relayed WebSocket, the moment a polling session moves onto it.
//! - `listener`: client connections (`--max-connections`, `--header-timeout`), each served on one
//!   `net::workers` thread (`--workers`).
//! - `backend_request`: a request turned into the backend's and sent through the worker's pool.
//! - `backend_pool`: the keep-alive connections to the backends, one pool per worker thread.
//! - `connector`: backend sockets whose stalled writes fail after `--idle-timeout` (`net::WriteDeadline`).
//! - `headers`: which header fields go to the backend (exactly one `Host`, hop-by-hop removed).
//! - `bodies`: the body type, the balancer's own short answers, reading small bodies.
//! - `server`: routing, handshake learning, session ends, WebSocket relaying.
//! - `health`: health checks.
//! - `state`: what the request handlers and the health loop share.
//! - `config_reload`: SIGHUP: backends added or retired, health-check settings.

mod args;
pub mod backend;
mod backend_pool;
mod backend_request;
mod bodies;
mod config_reload;
mod connector;
pub mod engine;
mod headers;
mod health;
mod listener;
mod server;
pub mod settings;
mod sid_rewrite;
mod sid_route;
pub mod sid_tag;
mod state;
pub mod store;
pub mod upgrade_watch;

pub use args::Args;
pub use server::run_with;
pub use settings::Settings;

/// Runs `tunnelkit sticky` until SIGTERM/SIGINT, reloading backends and health checks on SIGHUP.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let settings = Settings::load(args.clone())?;
    crate::telemetry::apply_config_log_level(settings.log_level.as_deref());
    server::serve(settings, Some(args), crate::shutdown::signal()).await
}
