//! [`TunnelClient`]: the `ws-client` side. Connects to a server (`ws://` or `wss://`, directly or through an
//! HTTP/HTTPS/SOCKS proxy with [`crate::client::ProxyDialer`]), creates a tunnel with `HELLO`, and keeps
//! it until it ends.
//!
//! - `handshake`: the WebSocket (TCP or proxy, TLS, upgrade) and `HELLO`/`WELCOME`, `RESUME`/`RESUMED`;
//! - `keeper`: the one place a tunnel's life is decided: resume with backoff within the hold time, idle
//!   close, and, for `ws-client`, the shared tunnel re-created after an expiry or an idle close;
//! - `dialer`: the `--socks` entry's [`crate::net::Dialer`], opening streams;
//! - `forwards`: the `-L`, `-R` and `--socks` entries of `ws-client`, each honouring a
//!   [`crate::shutdown::Drain`];
//! - `error`: [`ConnectError`].

mod dialer;
mod error;
mod forwards;
mod handshake;
mod keeper;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};

use super::handle::Tunnel;
use super::params::Mode;
use crate::client::ProxyDialer;
use crate::net::{Host, Target};

pub(crate) use dialer::TunnelDialer;
pub use error::ConnectError;
pub(crate) use forwards::{serve_local, serve_socks, RemoteForwards};
pub(crate) use keeper::{Closing, Keeper};

/// What a `wss://` connection verifies: the connector (roots from [`crate::net::tls`]) and the server's
/// name in the certificate.
#[derive(Clone)]
struct TlsSetup {
    connector: tokio_rustls::TlsConnector,
    name: rustls_pki_types::ServerName<'static>,
}

/// How a client reaches its server and what it asks for. Cheap to clone; one client can create many
/// tunnels (single mode uses one per connection).
#[derive(Clone)]
pub struct TunnelClient {
    url: http::Uri,
    target: Target,
    tls: Option<TlsSetup>,
    token: Option<String>,
    mode: Mode,
    keep_broken: Duration,
    idle_timeout: Option<Duration>,
    proxy: Option<Arc<ProxyDialer>>,
    connect_timeout: Duration,
}

impl std::fmt::Debug for TunnelClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunnelClient").field("url", &self.url).field("mode", &self.mode).finish()
    }
}

impl TunnelClient {
    /// A client for `url` (`ws://host:port/path` or `wss://...`), trusting the web PKI roots.
    pub fn new(url: &str) -> anyhow::Result<TunnelClient> {
        let uri: http::Uri = url.parse().with_context(|| format!("`{url}` is not a URL"))?;
        let secure = match uri.scheme_str() {
            Some("ws") => false,
            Some("wss") => true,
            _ => bail!("`{url}`: the server URL must start with ws:// or wss://"),
        };
        let host = uri.host().with_context(|| format!("`{url}` has no host"))?;
        let host = Host::parse(host.trim_start_matches('[').trim_end_matches(']'))
            .with_context(|| format!("`{url}`: bad host"))?;
        let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
        let target = Target::new(host, port);
        let mut c = TunnelClient {
            url: uri,
            target,
            tls: None,
            token: None,
            mode: Mode::Multi,
            keep_broken: Duration::from_secs(30),
            idle_timeout: None,
            proxy: None,
            connect_timeout: Duration::from_secs(10),
        };
        if secure {
            c = c.with_roots(&[])?;
        }
        Ok(c)
    }

    /// Trusts these extra CA certificates (PEM) for `wss://`, besides the web PKI roots.
    pub fn with_roots(mut self, pems: &[&[u8]]) -> anyhow::Result<TunnelClient> {
        if self.url.scheme_str() != Some("wss") {
            return Ok(self);
        }
        let cfg = crate::net::tls::tls_config(pems)?;
        let name = crate::net::tls::server_name(&self.target.host)?;
        self.tls = Some(TlsSetup { connector: tokio_rustls::TlsConnector::from(Arc::new(cfg)), name });
        Ok(self)
    }

    /// Presents `Authorization: Bearer <token>`.
    pub fn token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }

    /// Multi (default) or single.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Hold time to ask for when the connection breaks (the server may grant less).
    pub fn keep_broken_tunnel(mut self, d: Duration) -> Self {
        self.keep_broken = d;
        self
    }

    /// Closes the tunnel after this long with no stream and no traffic.
    pub fn idle_timeout(mut self, d: Option<Duration>) -> Self {
        self.idle_timeout = d.filter(|d| !d.is_zero());
        self
    }

    /// Reaches the server through this proxy.
    pub fn proxy(mut self, proxy: Option<ProxyDialer>) -> Self {
        self.proxy = proxy.map(Arc::new);
        self
    }

    /// Bounds TCP connect + TLS + upgrade + tunnel handshake.
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// Creates a new tunnel, once (no retry), and keeps it alive (resuming after breaks) until it ends.
    pub async fn connect(&self) -> Result<Tunnel, ConnectError> {
        tokio::time::timeout(self.connect_timeout, handshake::create(self))
            .await
            .map_err(|_| ConnectError::TimedOut { url: self.url.to_string(), after: self.connect_timeout })?
    }
}
