//! [`ProxyDialer`]: a [`Dialer`] that reaches targets through an upstream proxy (CONNECT for
//! http:// and https:// proxies, the SOCKS handshake for socks5://, socks5h://, socks4a://).
//! `proxy --upstream` and `ws-client --proxy` dial through it.

use crate::net::{BoxStream, DialError, Dialer, Purpose, Target};

/// Dials through one upstream proxy given by URL (credentials from the userinfo).
#[derive(Debug, Clone)]
pub struct ProxyDialer {
    url: String,
}

impl ProxyDialer {
    /// Parses a proxy URL: `http://[user:pass@]host:port`, `https://...`, `socks5://`, `socks5h://`,
    /// `socks4a://`.
    pub fn from_url(url: &str) -> anyhow::Result<Self> {
        Ok(ProxyDialer { url: url.to_owned() })
    }

    /// For http:// and https:// proxies: a new connection to the proxy itself (TLS already done for
    /// https://), on which absolute-form requests may be sent. `None` for SOCKS proxies.
    pub async fn connect_proxy(&self) -> Result<Option<BoxStream>, DialError> {
        Err(DialError::Upstream(format!("{}: proxy dialer not implemented yet", self.url)))
    }

    /// The `Proxy-Authorization` value to add to absolute-form requests sent to an HTTP proxy.
    pub fn proxy_authorization(&self) -> Option<String> {
        None
    }
}

impl Dialer for ProxyDialer {
    fn dial<'a>(&'a self, target: &'a Target, _purpose: Purpose) -> crate::net::DialFuture<'a> {
        Box::pin(async move {
            Err(DialError::Upstream(format!("{}: cannot reach {target}: not implemented yet", self.url)))
        })
    }
}
