//! The port-forward syntax shared by `tunnelkit forward -L` and `tunnelkit ws-client -L/-R`:
//! `[BIND:]PORT:HOST:PORT`, where BIND defaults to 127.0.0.1 and may be a bracketed IPv6 address.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;

use super::target::Target;

/// One forward: listen on `bind`, connect each accepted connection to `target`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardSpec {
    /// Local (for `-L`) or remote (for `-R`) listening address.
    pub bind: SocketAddr,
    /// Where accepted connections go.
    pub target: Target,
}

impl FromStr for ForwardSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| format!("`{s}` is not [BIND:]PORT:HOST:PORT ({why}), e.g. 8080:example.com:80");
        // Split off the trailing HOST:PORT (HOST may be [v6]).
        let (front, target) = if let Some(stripped) = s.strip_suffix(']') {
            let _ = stripped;
            return Err(bad("missing target port"));
        } else {
            let (rest, tport) = s.rsplit_once(':').ok_or_else(|| bad("missing target port"))?;
            let (front, thost) = if rest.ends_with(']') {
                let open = rest.rfind('[').ok_or_else(|| bad("unbalanced brackets"))?;
                let front = rest[..open].strip_suffix(':').unwrap_or(&rest[..open]);
                (front, &rest[open..])
            } else {
                rest.rsplit_once(':').ok_or_else(|| bad("missing target host"))?
            };
            let target = Target::parse(&format!("{thost}:{tport}")).map_err(|e| bad(&e.to_string()))?;
            (front, target)
        };
        let (bind_ip, port) = match front.rsplit_once(':') {
            Some((ip, port)) if ip.starts_with('[') || !ip.contains(':') => {
                let ip = ip.trim_start_matches('[').trim_end_matches(']');
                let ip: IpAddr = if ip == "*" || ip.is_empty() {
                    IpAddr::V4(Ipv4Addr::UNSPECIFIED)
                } else if ip == "localhost" {
                    IpAddr::V4(Ipv4Addr::LOCALHOST)
                } else {
                    ip.parse().map_err(|_| bad("bind address"))?
                };
                (ip, port)
            }
            Some(_) => return Err(bad("bind address")),
            None => (IpAddr::V4(Ipv4Addr::LOCALHOST), front),
        };
        let port: u16 = port.parse().map_err(|_| bad("listen port"))?;
        Ok(ForwardSpec { bind: SocketAddr::new(bind_ip, port), target })
    }
}

impl fmt::Display for ForwardSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.bind, self.target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        let f: ForwardSpec = "8080:example.com:80".parse().unwrap();
        assert_eq!(f.bind, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(f.target.to_string(), "example.com:80");
        let f: ForwardSpec = "0.0.0.0:2222:10.0.0.5:22".parse().unwrap();
        assert_eq!(f.bind, "0.0.0.0:2222".parse().unwrap());
        let f: ForwardSpec = "[::1]:0:[2001:db8::1]:443".parse().unwrap();
        assert_eq!(f.bind, "[::1]:0".parse().unwrap());
        assert_eq!(f.target.to_string(), "[2001:db8::1]:443");
        for bad in ["8080", "8080:host", "x:host:80", "1.2.3.4:8080:host:port"] {
            assert!(bad.parse::<ForwardSpec>().is_err(), "{bad}");
        }
    }
}
