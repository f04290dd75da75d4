//! [`TunnelClient`]: how a client reaches its server (URL, TLS roots, `--proxy`, token) and what it
//! asks for (mode, hold time, idle timeout), set with builder methods. Connecting
//! ([`TunnelClient::connect`]) is in `keeper`: creating a tunnel is the start of the life the keeper
//! owns, and `handshake` and `keeper` both read this file, never the other way round.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};

use crate::client::ProxyDialer;
use crate::net::{Host, Target};
use crate::tunnel::params::Mode;

/// What a `wss://` connection verifies: the connector (roots from [`crate::net::tls`]) and the server's
/// name in the certificate.
#[derive(Clone)]
pub(super) struct TlsSetup {
    pub(super) connector: tokio_rustls::TlsConnector,
    pub(super) name: rustls_pki_types::ServerName<'static>,
}

/// How a client reaches its server and what it asks for. Cheap to clone; one client can create many
/// tunnels (single mode uses one per connection).
#[derive(Clone)]
pub struct TunnelClient {
    pub(super) url: http::Uri,
    pub(super) target: Target,
    pub(super) tls: Option<TlsSetup>,
    pub(super) token: Option<String>,
    pub(super) mode: Mode,
    pub(super) keep_broken: Duration,
    pub(super) idle_timeout: Option<Duration>,
    pub(super) proxy: Option<Arc<ProxyDialer>>,
    pub(super) connect_timeout: Duration,
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
}
