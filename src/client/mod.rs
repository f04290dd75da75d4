//! The proxy client: reach destinations through HTTP, HTTPS and SOCKS proxies
//! (`tunnelkit connect`, `tunnelkit forward`, and the dialer behind `proxy --upstream`).
//!
//! - [`ProxyUrl`]: proxy URLs with credentials.
//! - [`handshake`]: the strict CONNECT client.
//! - [`ProxyDialer`]: a [`crate::net::Dialer`] through one proxy.
//! - [`ProxyConnector`] and [`Client`]: pooled persistent tunnels for hyper (and anything built on it).
//! - [`env`]: `HTTP_PROXY`/`HTTPS_PROXY`/`ALL_PROXY`/`NO_PROXY`, curl-compatible.
//! - `cli`: the `connect` and `forward` subcommands.

mod args;
mod cli;
mod connector;
mod dialer;
pub mod env;
pub mod handshake;
mod pooled;
mod proxy_url;

pub use args::{ConnectArgs, ForwardArgs};
pub use cli::{run_connect, run_forward};
pub use connector::{ProxyConnector, ProxyStream};
pub use dialer::ProxyDialer;
pub use pooled::{Client, ClientBuilder, Error};
pub use proxy_url::{ProxyKind, ProxyUrl};
