//! Proxy URLs: `http://`, `https://`, `socks5://`, `socks5h://`, `socks4a://`, with optional
//! percent-encoded `user:password@` credentials.

use std::fmt;

use crate::http::percent;
use crate::net::Target;
use crate::policy::Credentials;

/// The kind of proxy a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProxyKind {
    /// HTTP proxy over plain TCP (CONNECT, or absolute-form for http:// origins).
    Http,
    /// HTTP proxy reached over TLS.
    Https,
    /// SOCKS5, names resolved locally.
    Socks5,
    /// SOCKS5, names resolved by the proxy.
    Socks5h,
    /// SOCKS4a (names resolved by the proxy).
    Socks4a,
}

/// A parsed proxy URL.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ProxyUrl {
    /// Which protocol to speak to the proxy.
    pub kind: ProxyKind,
    /// Where the proxy listens.
    pub addr: Target,
    /// Credentials from the URL's userinfo.
    pub credentials: Option<Credentials>,
}

impl fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for ProxyUrl {
    /// Without the password, so it can be logged.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.kind {
            ProxyKind::Http => "http",
            ProxyKind::Https => "https",
            ProxyKind::Socks5 => "socks5",
            ProxyKind::Socks5h => "socks5h",
            ProxyKind::Socks4a => "socks4a",
        };
        match &self.credentials {
            Some(c) => write!(f, "{scheme}://{}:***@{}", c.user, self.addr),
            None => write!(f, "{scheme}://{}", self.addr),
        }
    }
}

impl std::hash::Hash for Credentials {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.user.hash(state);
        self.password.hash(state);
    }
}

impl ProxyUrl {
    /// Parses a proxy URL. A URL without a scheme is taken as `http://` (like curl); default ports
    /// are 80 (http), 443 (https) and 1080 (socks).
    pub fn parse(url: &str) -> Result<ProxyUrl, String> {
        let url = url.trim();
        let (scheme, rest) = match url.split_once("://") {
            Some((s, r)) => (s.to_ascii_lowercase(), r),
            None => ("http".to_owned(), url),
        };
        let (kind, port) = match scheme.as_str() {
            "http" => (ProxyKind::Http, 80),
            "https" => (ProxyKind::Https, 443),
            "socks5" | "socks" => (ProxyKind::Socks5, 1080),
            "socks5h" => (ProxyKind::Socks5h, 1080),
            "socks4a" => (ProxyKind::Socks4a, 1080),
            other => {
                return Err(format!(
                    "unsupported proxy scheme `{other}://`; use http://, https://, socks5://, socks5h:// or socks4a://"
                ))
            }
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let credentials = match userinfo {
            None => None,
            Some(u) => {
                let (user, pass) = u.split_once(':').unwrap_or((u, ""));
                Some(Credentials { user: decode_userinfo(user)?, password: decode_userinfo(pass)? })
            }
        };
        let addr = Target::parse_with_default_port(hostport, port).map_err(|e| {
            format!("invalid proxy address in `{}`: {e}", crate::config::redact_password(url))
        })?;
        Ok(ProxyUrl { kind, addr, credentials })
    }
}

/// Decodes one half of `user:password`.
fn decode_userinfo(s: &str) -> Result<String, String> {
    percent::decode(s, percent::Rules::Userinfo).map_err(|e| format!("proxy credentials: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        let u = ProxyUrl::parse("http://al%40ice:p%3Ass@proxy.example:3128/").unwrap();
        assert_eq!(u.kind, ProxyKind::Http);
        assert_eq!(u.addr.to_string(), "proxy.example:3128");
        let c = u.credentials.clone().unwrap();
        assert_eq!((c.user.as_str(), c.password.as_str()), ("al@ice", "p:ss"));
        assert_eq!(u.to_string(), "http://al@ice:***@proxy.example:3128");
        assert_eq!(ProxyUrl::parse("proxy:8080").unwrap().kind, ProxyKind::Http);
        assert_eq!(ProxyUrl::parse("https://p").unwrap().addr.port, 443);
        assert_eq!(ProxyUrl::parse("socks5h://[::1]").unwrap().addr.to_string(), "[::1]:1080");
        assert!(ProxyUrl::parse("ftp://p").unwrap_err().contains("socks5://"));
        assert!(!ProxyUrl::parse("http://u:secret@ho st").unwrap_err().contains("secret"));
    }
}
