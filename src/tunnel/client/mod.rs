//! [`TunnelClient`]: the `ws-client` side. Connects to a server (`ws://` or `wss://`, directly or through an
//! HTTP/HTTPS/SOCKS proxy with [`crate::client::ProxyDialer`]), creates a tunnel with `HELLO`, and keeps
//! it until it ends.
//!
//! Dependencies run one way, from the entries down to the settings:
//! `forwards` → `dialer` → `keeper` → `remote_forwards`, `handshake` → `builder`, `error`.
//!
//! - `builder`: [`TunnelClient`], what the client asks for and how it reaches the server;
//! - `handshake`: the WebSocket (TCP or proxy, TLS, upgrade) and `HELLO`/`WELCOME`, `RESUME`/`RESUMED`;
//! - `keeper`: the one place a tunnel's life is decided: [`TunnelClient::connect`], resume with backoff
//!   within the hold time, idle close, and, for `ws-client`, the shared tunnel re-created after an expiry
//!   or an idle close;
//! - `dialer`: the `--socks` entry's [`crate::net::Dialer`], opening streams;
//! - `forwards`: the `-L` and `--socks` entries of `ws-client`; `remote_forwards`: its `-R` forwards;
//!   each honouring a [`crate::shutdown::Drain`];
//! - `error`: [`ConnectError`].

mod builder;
mod dialer;
mod error;
mod forwards;
mod handshake;
mod keeper;
mod remote_forwards;

pub use builder::TunnelClient;
pub use error::ConnectError;
pub(crate) use forwards::{serve_local, serve_socks};
pub(crate) use keeper::{Closing, Keeper};
pub(crate) use remote_forwards::RemoteForwards;
