//! The proxy client: reach destinations through HTTP, HTTPS and SOCKS proxies
//! (`tunnelkit connect`, `tunnelkit forward`, and the dialer behind `proxy --upstream`).
//!
//! - [`ProxyUrl`]: proxy URLs with credentials.
//! - [`handshake`]: the strict CONNECT client.
//! - [`ProxyDialer`]: a [`crate::net::Dialer`] through one proxy.
//! - [`env`]: `HTTP_PROXY`/`HTTPS_PROXY`/`ALL_PROXY`/`NO_PROXY`, curl-compatible.
//! - `cli`: the `connect` and `forward` subcommands.

mod args;
mod cli;
mod dialer;
pub mod env;
pub mod handshake;
mod proxy_url;

pub use args::{ConnectArgs, ForwardArgs};
pub use cli::{run_connect, run_forward};
pub use dialer::{tls_config, ProxyDialer};
pub use proxy_url::{ProxyKind, ProxyUrl};
