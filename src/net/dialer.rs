//! The `Dialer` abstraction: "give me a stream to host:port".
//!
//! Servers never open upstream sockets themselves; they ask a [`Dialer`]. [`DirectDialer`] applies the
//! policy and connects; the `client` module supplies dialers that chain through an upstream proxy,
//! and the `tunnel` module one that opens a tunnel stream. Errors carry enough to choose the right
//! HTTP status (403, 502, 504) or SOCKS reply.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::socket;
use super::target::Target;
use crate::policy::{Denied, Policy, ResolveError};

/// Any byte stream a dialer can return.
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {
    /// The concrete stream, so the relay can see a plain TCP socket behind a [`BoxStream`] and
    /// splice it (`net::RelayEnd`).
    fn as_any(&self) -> &dyn std::any::Any;

    /// The concrete stream, so the relay can take the buffers of a [`super::ChunkStream`] behind
    /// a [`BoxStream`] (`net::RelayEnd`).
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any;
}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

/// An owned, type-erased stream.
pub type BoxStream = Box<dyn Stream>;

/// What the connection will be used for; selects the port allowlist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Purpose {
    /// Opaque bytes: CONNECT, SOCKS, tunnel streams (`connect_ports`).
    Tunnel,
    /// Absolute-form HTTP forwarding (`http_ports`).
    Http,
}

impl fmt::Display for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Purpose::Tunnel => "tunnels",
            Purpose::Http => "HTTP forwarding",
        })
    }
}

/// Why a dial failed.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    /// The policy refused the destination (HTTP 403, SOCKS reply 2).
    #[error(transparent)]
    Denied(#[from] Denied),
    /// DNS failed (HTTP 502 with `Proxy-Status: ...; error=dns_error`, SOCKS reply 4).
    #[error("{0}")]
    Resolve(String),
    /// Connecting took longer than the dial timeout (HTTP 504, SOCKS reply 4).
    #[error("connecting to {0} timed out")]
    Timeout(String),
    /// The destination refused or reset the connection (HTTP 502, SOCKS reply 5).
    #[error("connecting to {target} failed: {source}")]
    Connect {
        /// The destination.
        target: String,
        /// The socket error.
        source: std::io::Error,
    },
    /// An upstream proxy or tunnel answered with an error (HTTP 502).
    #[error("upstream: {0}")]
    Upstream(String),
    /// A parent proxy refused a request with this status (HTTP 502 naming it: relaying a parent's
    /// 407 would ask our client for credentials that are ours to give).
    #[error("{}", parent_refusal(*status, reason, target))]
    ParentRefused {
        /// The parent's status, e.g. 407.
        status: u16,
        /// Its reason phrase.
        reason: String,
        /// What we asked it for.
        target: String,
    },
}

fn parent_refusal(status: u16, reason: &str, target: &str) -> String {
    let what = format!("parent proxy answered {status} {reason} for {target}");
    match status {
        407 => format!("{what}: it needs credentials; put them in the parent's URL (--upstream http://USER:PASS@HOST:PORT)"),
        _ => what,
    }
}

impl DialError {
    /// The HTTP status a proxy should answer with.
    pub fn http_status(&self) -> u16 {
        match self {
            DialError::Denied(_) => 403,
            DialError::Timeout(_) => 504,
            DialError::Resolve(_)
            | DialError::Connect { .. }
            | DialError::Upstream(_)
            | DialError::ParentRefused { .. } => 502,
        }
    }

    /// The RFC 9209 `Proxy-Status` error type for this failure.
    pub fn proxy_status_error(&self) -> &'static str {
        match self {
            DialError::Denied(_) => "destination_ip_prohibited",
            DialError::Timeout(_) => "connection_timeout",
            DialError::Resolve(_) => "dns_error",
            DialError::Connect { source, .. } if source.kind() == std::io::ErrorKind::ConnectionRefused => {
                "connection_refused"
            }
            DialError::Connect { .. } => "connection_terminated",
            DialError::Upstream(_) => "proxy_internal_error",
            // Our configuration lacks what the parent wants: RFC 9209's closest type.
            DialError::ParentRefused { status: 407, .. } => "proxy_configuration_error",
            DialError::ParentRefused { status: 403, .. } => "http_request_denied",
            DialError::ParentRefused { .. } => "destination_unavailable",
        }
    }
}

impl From<ResolveError> for DialError {
    fn from(e: ResolveError) -> Self {
        match e {
            ResolveError::Denied(d) => DialError::Denied(d),
            ResolveError::Timeout(name) => DialError::Timeout(name),
            e @ ResolveError::Lookup(..) => DialError::Resolve(e.to_string()),
        }
    }
}

/// A boxed future returned by [`Dialer::dial`].
pub type DialFuture<'a> = Pin<Box<dyn Future<Output = Result<BoxStream, DialError>> + Send + 'a>>;

/// Something that can open a stream to a target.
pub trait Dialer: Send + Sync + 'static {
    /// Opens a stream to `target` for `purpose`, enforcing whatever policy the dialer carries.
    fn dial<'a>(&'a self, target: &'a Target, purpose: Purpose) -> DialFuture<'a>;
}

impl<D: Dialer + ?Sized> Dialer for Arc<D> {
    fn dial<'a>(&'a self, target: &'a Target, purpose: Purpose) -> DialFuture<'a> {
        (**self).dial(target, purpose)
    }
}

/// Dials directly over TCP, after the policy has vetted the port and every address.
#[derive(Debug, Clone)]
pub struct DirectDialer {
    policy: Arc<Policy>,
    timeout: Duration,
    keepalive: Option<Duration>,
}

impl DirectDialer {
    /// A dialer enforcing `policy`; `timeout` bounds DNS plus connect.
    pub fn new(policy: Arc<Policy>, timeout: Duration) -> Self {
        DirectDialer { policy, timeout, keepalive: Some(Duration::from_secs(60)) }
    }

    /// Sets (or disables) TCP keepalive on dialled sockets.
    pub fn keepalive(mut self, keepalive: Option<Duration>) -> Self {
        self.keepalive = keepalive;
        self
    }

    /// Like [`Dialer::dial`] but returns the concrete TCP stream and the address connected to.
    pub async fn dial_tcp(
        &self,
        target: &Target,
        purpose: Purpose,
    ) -> Result<(TcpStream, SocketAddr), DialError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let addrs = self.policy.resolve(target, purpose, self.timeout).await?;
        let mut last_err = None;
        for addr in addrs {
            match tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await {
                Err(_) => return Err(DialError::Timeout(target.to_string())),
                Ok(Ok(stream)) => {
                    socket::set_nodelay(&stream);
                    if let Some(ka) = self.keepalive {
                        socket::set_keepalive(&stream, ka);
                    }
                    return Ok((stream, addr));
                }
                Ok(Err(e)) => last_err = Some(e),
            }
        }
        Err(DialError::Connect {
            target: target.to_string(),
            source: last_err.unwrap_or_else(|| std::io::Error::other("no address")),
        })
    }
}

impl Dialer for DirectDialer {
    fn dial<'a>(&'a self, target: &'a Target, purpose: Purpose) -> DialFuture<'a> {
        Box::pin(async move {
            let (s, _) = self.dial_tcp(target, purpose).await?;
            Ok(Box::new(s) as BoxStream)
        })
    }
}

/// A dialer that applies the local policy before handing the target to another dialer (one that
/// goes through an upstream proxy, where names are resolved remotely): the port allowlist always,
/// and the address ranges whenever the target is a literal address.
pub struct GatedDialer<D> {
    policy: Arc<Policy>,
    inner: D,
}

impl<D> GatedDialer<D> {
    /// Wraps `inner` with `policy`.
    pub fn new(policy: Arc<Policy>, inner: D) -> Self {
        GatedDialer { policy, inner }
    }
}

/// A dialer that a configuration reload can replace while it is in use: each dial goes through the
/// dialer in place when it starts (`ws-server` swaps in one with the reloaded policy).
pub struct SwappableDialer {
    current: ArcSwap<Arc<dyn Dialer>>,
}

impl SwappableDialer {
    /// Dials through `dialer` until [`SwappableDialer::replace`].
    pub fn new(dialer: Arc<dyn Dialer>) -> Self {
        SwappableDialer { current: ArcSwap::from_pointee(dialer) }
    }

    /// Dials started from now on go through `dialer`; dials under way finish with the old one.
    pub fn replace(&self, dialer: Arc<dyn Dialer>) {
        self.current.store(Arc::new(dialer));
    }
}

impl Dialer for SwappableDialer {
    fn dial<'a>(&'a self, target: &'a Target, purpose: Purpose) -> DialFuture<'a> {
        let dialer = Arc::clone(&self.current.load());
        Box::pin(async move { dialer.dial(target, purpose).await })
    }
}

/// Checks what `policy` can check of `target` without resolving its name: the port always, the
/// address when the target is a literal. Used where names are resolved by someone else (a parent
/// proxy), so the local rules still hold for everything we can see.
pub fn check_unresolved(policy: &Policy, target: &Target, purpose: Purpose) -> Result<(), DialError> {
    policy.check_port(target.port, purpose)?;
    if let Some(ip) = target.host.ip() {
        policy.check_ip(ip)?;
    }
    Ok(())
}

impl<D: Dialer> Dialer for GatedDialer<D> {
    fn dial<'a>(&'a self, target: &'a Target, purpose: Purpose) -> DialFuture<'a> {
        Box::pin(async move {
            check_unresolved(&self.policy, target, purpose)?;
            self.inner.dial(target, purpose).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::PortSet;

    #[tokio::test]
    async fn denied_before_connect_and_statuses() {
        let d = DirectDialer::new(Arc::new(Policy::new()), Duration::from_secs(1));
        let err = d.dial(&"127.0.0.1:443".parse().unwrap(), Purpose::Tunnel).await.err().unwrap();
        assert_eq!(err.http_status(), 403);
        let err = d.dial(&"127.0.0.1:25".parse().unwrap(), Purpose::Tunnel).await.err().unwrap();
        assert!(matches!(err, DialError::Denied(Denied::Port { .. })));
    }

    #[tokio::test]
    async fn connects_when_allowed_and_reports_refused() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let policy = Policy::new()
            .allow(["127.0.0.0/8".parse().unwrap()])
            .connect_ports(PortSet::parse("1-65535").unwrap());
        let d = DirectDialer::new(Arc::new(policy), Duration::from_secs(2));
        let target: Target = format!("127.0.0.1:{port}").parse().unwrap();
        assert!(d.dial(&target, Purpose::Tunnel).await.is_ok());
        drop(listener);
        let err = d.dial(&target, Purpose::Tunnel).await.err().unwrap();
        assert_eq!(err.http_status(), 502);
        assert_eq!(err.proxy_status_error(), "connection_refused");
    }
}
