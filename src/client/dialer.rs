//! [`ProxyDialer`]: a [`Dialer`] that reaches targets through an upstream proxy (CONNECT for
//! http:// and https:// proxies, the SOCKS handshake for socks5://, socks5h://, socks4a://).
//! `proxy --upstream`, `tunnelkit connect`, `tunnelkit forward` and `ws-client --proxy` dial
//! through it.

use std::sync::Arc;
use std::time::Duration;

use super::handshake::{self, ConnectError};
use super::proxy_url::{ProxyKind, ProxyUrl};
use crate::net::tls::{server_name, tls_config};
use crate::net::{socket, BoxStream, DialError, DialFuture, Dialer, Host, Purpose, Target};

/// Dials through one upstream proxy given by URL (credentials from the userinfo).
#[derive(Clone)]
pub struct ProxyDialer {
    url: ProxyUrl,
    tls: Option<Arc<rustls::ClientConfig>>,
    connect_timeout: Duration,
    tls_timeout: Duration,
    answer_timeout: Duration,
    preemptive_auth: bool,
    keepalive: Option<Duration>,
}

impl std::fmt::Debug for ProxyDialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyDialer").field("url", &self.url).finish_non_exhaustive()
    }
}

impl ProxyDialer {
    /// Parses a proxy URL: `http://[user:pass@]host:port`, `https://...`, `socks5://`, `socks5h://`,
    /// `socks4a://`.
    pub fn from_url(url: &str) -> anyhow::Result<Self> {
        let url = ProxyUrl::parse(url).map_err(anyhow::Error::msg)?;
        let tls = match url.kind {
            ProxyKind::Https => Some(Arc::new(tls_config(&[])?)),
            _ => None,
        };
        Ok(ProxyDialer {
            url,
            tls,
            connect_timeout: Duration::from_secs(10),
            tls_timeout: Duration::from_secs(10),
            answer_timeout: Duration::from_secs(30),
            preemptive_auth: false,
            keepalive: Some(Duration::from_secs(60)),
        })
    }

    /// Trusts these extra CA certificates (PEM bundles) for an https:// proxy, besides the web PKI roots.
    pub fn with_extra_roots(mut self, pems: &[&[u8]]) -> anyhow::Result<Self> {
        if self.url.kind == ProxyKind::Https {
            self.tls = Some(Arc::new(tls_config(pems)?));
        }
        Ok(self)
    }

    /// Bounds the TCP connect to the proxy.
    pub fn connect_timeout(mut self, t: Duration) -> Self {
        self.connect_timeout = t;
        self
    }

    /// Bounds the TLS handshake with an https:// proxy.
    pub fn tls_timeout(mut self, t: Duration) -> Self {
        self.tls_timeout = t;
        self
    }

    /// Bounds the wait for the CONNECT (or SOCKS) answer.
    pub fn answer_timeout(mut self, t: Duration) -> Self {
        self.answer_timeout = t;
        self
    }

    /// TCP keepalive probes on the connection to the proxy (`None` turns them off).
    pub fn tcp_keepalive(mut self, d: Option<Duration>) -> Self {
        self.keepalive = d;
        self
    }

    /// Sends Basic credentials with the first CONNECT instead of only after a 407.
    pub fn preemptive_auth(mut self, on: bool) -> Self {
        self.preemptive_auth = on;
        self
    }

    /// The proxy this dialer uses.
    pub fn url(&self) -> &ProxyUrl {
        &self.url
    }

    /// For http:// and https:// proxies: a new connection to the proxy itself (TLS already done for
    /// https://), on which absolute-form requests may be sent. `None` for SOCKS proxies.
    pub async fn connect_proxy(&self) -> Result<Option<BoxStream>, DialError> {
        match self.url.kind {
            ProxyKind::Http | ProxyKind::Https => Ok(Some(self.open().await?)),
            _ => Ok(None),
        }
    }

    /// The `Proxy-Authorization` value to add to absolute-form requests sent to an HTTP proxy.
    pub fn proxy_authorization(&self) -> Option<String> {
        match self.url.kind {
            ProxyKind::Http | ProxyKind::Https => self.url.credentials.as_ref().map(|c| c.to_basic_header()),
            _ => None,
        }
    }

    /// TCP (and TLS for https://) to the proxy.
    async fn open(&self) -> Result<BoxStream, DialError> {
        let proxy = self.url.addr.to_string();
        let tcp =
            match tokio::time::timeout(self.connect_timeout, crate::net::socket::connect(&self.url.addr))
                .await
            {
                Err(_) => return Err(DialError::Timeout(format!("proxy {proxy}"))),
                Ok(Err(e)) => return Err(DialError::Connect { target: format!("proxy {proxy}"), source: e }),
                Ok(Ok(s)) => s,
            };
        socket::set_nodelay(&tcp);
        if let Some(ka) = self.keepalive {
            socket::set_keepalive(&tcp, ka);
        }
        match &self.tls {
            None => Ok(Box::new(tcp)),
            Some(cfg) => {
                let name = server_name(&self.url.addr.host)
                    .map_err(|e| DialError::Upstream(format!("proxy {proxy}: {e}")))?;
                let tls = tokio_rustls::TlsConnector::from(cfg.clone());
                match tokio::time::timeout(self.tls_timeout, tls.connect(name, tcp)).await {
                    Err(_) => Err(DialError::Timeout(format!("TLS to proxy {proxy}"))),
                    Ok(Err(e)) => Err(DialError::Upstream(format!("TLS to proxy {proxy}: {e}"))),
                    Ok(Ok(s)) => Ok(Box::new(s)),
                }
            }
        }
    }

    /// Opens a tunnel to `target` through the proxy.
    ///
    /// For HTTP proxies, credentials go with the first CONNECT only if [`ProxyDialer::preemptive_auth`]
    /// is on; otherwise a 407 answer is retried once, on a fresh connection, with Basic credentials.
    pub async fn tunnel(&self, target: &Target) -> Result<BoxStream, DialError> {
        let creds = self.url.credentials.as_ref();
        if matches!(self.url.kind, ProxyKind::Http | ProxyKind::Https) {
            let first = if self.preemptive_auth { creds } else { None };
            return match self.http_connect(target, first).await {
                Err(ConnectError::Status { status: 407, .. }) if first.is_none() && creds.is_some() => {
                    self.http_connect(target, creds).await.map_err(|e| connect_error(e, target))
                }
                r => r.map_err(|e| connect_error(e, target)),
            };
        }
        let stream = self.open().await?;
        let handshake = async {
            match self.url.kind {
                ProxyKind::Socks5 | ProxyKind::Socks5h => {
                    let dest: (String, u16) = match (&target.host, self.url.kind) {
                        (Host::Domain(name), ProxyKind::Socks5) => {
                            // socks5:// resolves locally, like curl's --socks5.
                            let addr = tokio::net::lookup_host((name.as_str(), target.port))
                                .await
                                .ok()
                                .and_then(|mut a| a.next())
                                .ok_or_else(|| DialError::Resolve(format!("cannot resolve {name}")))?;
                            (addr.ip().to_string(), addr.port())
                        }
                        (Host::Domain(name), _) => (name.clone(), target.port),
                        (Host::Ip(ip), _) => (ip.to_string(), target.port),
                    };
                    let r = match creds {
                        Some(c) => {
                            tokio_socks::tcp::Socks5Stream::connect_with_password_and_socket(
                                stream,
                                (dest.0.as_str(), dest.1),
                                &c.user,
                                &c.password,
                            )
                            .await
                        }
                        None => {
                            tokio_socks::tcp::Socks5Stream::connect_with_socket(
                                stream,
                                (dest.0.as_str(), dest.1),
                            )
                            .await
                        }
                    };
                    r.map(|s| Box::new(s) as BoxStream).map_err(|e| socks_error(e, target))
                }
                _ => {
                    let host = match &target.host {
                        Host::Domain(n) => n.clone(),
                        Host::Ip(ip) => ip.to_string(),
                    };
                    let r = match creds {
                        Some(c) => {
                            tokio_socks::tcp::Socks4Stream::connect_with_userid_and_socket(
                                stream,
                                (host.as_str(), target.port),
                                &c.user,
                            )
                            .await
                        }
                        None => {
                            tokio_socks::tcp::Socks4Stream::connect_with_socket(
                                stream,
                                (host.as_str(), target.port),
                            )
                            .await
                        }
                    };
                    r.map(|s| Box::new(s) as BoxStream).map_err(|e| socks_error(e, target))
                }
            }
        };
        match tokio::time::timeout(self.answer_timeout, handshake).await {
            Err(_) => Err(DialError::Timeout(format!("proxy {} answering for {target}", self.url.addr))),
            Ok(r) => r,
        }
    }

    /// One CONNECT attempt on a fresh connection to the proxy.
    async fn http_connect(
        &self,
        target: &Target,
        creds: Option<&crate::policy::Credentials>,
    ) -> Result<BoxStream, ConnectError> {
        let stream = self.open().await.map_err(|e| ConnectError::Io(std::io::Error::other(e.to_string())))?;
        match tokio::time::timeout(self.answer_timeout, handshake::connect(stream, target, creds)).await {
            Err(_) => Err(ConnectError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("proxy {} did not answer CONNECT in time", self.url.addr),
            ))),
            Ok(r) => r.map(|s| Box::new(s) as BoxStream),
        }
    }
}

fn connect_error(e: ConnectError, target: &Target) -> DialError {
    match e {
        ConnectError::Io(e) if e.kind() == std::io::ErrorKind::TimedOut => DialError::Timeout(e.to_string()),
        ConnectError::Io(e) => DialError::Connect { target: target.to_string(), source: e },
        ConnectError::Status { status, reason } => {
            DialError::ParentRefused { status, reason, target: target.to_string() }
        }
        e => DialError::Upstream(e.to_string()),
    }
}

fn socks_error(e: tokio_socks::Error, target: &Target) -> DialError {
    match e {
        tokio_socks::Error::Io(source) => DialError::Connect { target: target.to_string(), source },
        e => DialError::Upstream(format!("SOCKS proxy refused {target}: {e}")),
    }
}

impl Dialer for ProxyDialer {
    fn dial<'a>(&'a self, target: &'a Target, _purpose: Purpose) -> DialFuture<'a> {
        Box::pin(self.tunnel(target))
    }
}
