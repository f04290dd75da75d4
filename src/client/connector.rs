//! [`ProxyConnector`]: a `tower::Service<Uri>` that hyper-util's pooled `Client` (and anything built on
//! it) can use to reach origins through a proxy: CONNECT (then TLS for https:// origins, TLS-in-TLS
//! with an https:// proxy), SOCKS, or, for http:// origins behind an HTTP proxy, a connection to the
//! proxy itself marked so that hyper sends requests in absolute form.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::rt::{Read, ReadBufCursor, Write};
use hyper::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;

use super::dialer::ProxyDialer;
use super::proxy_url::ProxyKind;
use crate::net::{socket, BoxStream, DialError, Host, Target};

/// A connection made by [`ProxyConnector`].
pub struct ProxyStream {
    io: TokioIo<Inner>,
    via_proxy_absolute_form: bool,
}

enum Inner {
    Plain(BoxStream),
    Tls(Box<tokio_rustls::client::TlsStream<BoxStream>>),
}

impl tokio::io::AsyncRead for Inner {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Inner::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Inner::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for Inner {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Inner::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Inner::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Inner::Plain(s) => Pin::new(s).poll_flush(cx),
            Inner::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Inner::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Inner::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

impl Read for ProxyStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: ReadBufCursor<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl Write for ProxyStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

impl Connection for ProxyStream {
    fn connected(&self) -> Connected {
        Connected::new().proxy(self.via_proxy_absolute_form)
    }
}

/// Reaches origins through an optional proxy. Cheap to clone.
#[derive(Clone)]
pub struct ProxyConnector {
    proxy: Option<Arc<ProxyDialer>>,
    tls: Arc<rustls::ClientConfig>,
    tcp_keepalive: Option<Duration>,
    connect_timeout: Duration,
}

impl ProxyConnector {
    /// A connector through `proxy` (or direct), verifying origins with `tls`.
    pub fn new(proxy: Option<ProxyDialer>, tls: rustls::ClientConfig) -> Self {
        ProxyConnector {
            proxy: proxy.map(Arc::new),
            tls: Arc::new(tls),
            tcp_keepalive: Some(Duration::from_secs(30)),
            connect_timeout: Duration::from_secs(10),
        }
    }

    /// TCP keepalive probes on direct connections (the proxy dialer sets its own).
    pub fn tcp_keepalive(mut self, d: Option<Duration>) -> Self {
        self.tcp_keepalive = d;
        self
    }

    /// Bounds direct TCP connects.
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    async fn connect(self, uri: Uri) -> Result<ProxyStream, DialError> {
        let https = uri.scheme_str() == Some("https");
        let host = uri.host().ok_or_else(|| DialError::Upstream(format!("no host in {uri}")))?;
        let host = Host::parse(host).map_err(|e| DialError::Upstream(e.to_string()))?;
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let target = Target::new(host, port);
        let http_proxy =
            self.proxy.as_ref().filter(|p| matches!(p.url().kind, ProxyKind::Http | ProxyKind::Https));
        if let (false, Some(p)) = (https, http_proxy) {
            // Plain http:// through an HTTP proxy: absolute-form requests on a connection to the
            // proxy, which the pool may share across origins.
            let s = p.connect_proxy().await?.expect("HTTP proxy");
            return Ok(ProxyStream { io: TokioIo::new(Inner::Plain(s)), via_proxy_absolute_form: true });
        }
        let stream: BoxStream = match &self.proxy {
            Some(p) => p.tunnel(&target).await?,
            None => {
                let tcp = tokio::time::timeout(self.connect_timeout, socket::connect(&target))
                    .await
                    .map_err(|_| DialError::Timeout(target.to_string()))?
                    .map_err(|source| DialError::Connect { target: target.to_string(), source })?;
                socket::set_nodelay(&tcp);
                if let Some(ka) = self.tcp_keepalive {
                    socket::set_keepalive(&tcp, ka);
                }
                Box::new(tcp)
            }
        };
        if !https {
            return Ok(ProxyStream {
                io: TokioIo::new(Inner::Plain(stream)),
                via_proxy_absolute_form: false,
            });
        }
        let name = crate::net::tls::server_name(&target.host)
            .map_err(|e| DialError::Upstream(format!("{}: {e}", target.host)))?;
        let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(name, stream)
            .await
            .map_err(|e| DialError::Upstream(format!("TLS to {target}: {e}")))?;
        Ok(ProxyStream { io: TokioIo::new(Inner::Tls(Box::new(tls))), via_proxy_absolute_form: false })
    }
}

impl tower_service::Service<Uri> for ProxyConnector {
    type Response = ProxyStream;
    type Error = DialError;
    type Future = Pin<Box<dyn Future<Output = Result<ProxyStream, DialError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        Box::pin(self.clone().connect(uri))
    }
}
