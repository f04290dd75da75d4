//! Destinations: a host (IP address or DNS name) and a port.
//!
//! Parsing normalises every numeric host form a C resolver would accept (`2130706433`, `0x7f.1`,
//! `127.1`, `0177.0.0.1`) to the address it means, so that policy checks see the real address and
//! cannot be bypassed by spelling it differently.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The host part of a destination.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A literal address (after normalisation of numeric forms and IPv4-mapped IPv6).
    Ip(IpAddr),
    /// A DNS name, lower-cased, without a trailing dot.
    Domain(String),
}

/// Why a host string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// Empty host.
    #[error("empty host")]
    Empty,
    /// Characters that can never appear in a DNS name or address.
    #[error("invalid host `{0}`")]
    Invalid(String),
    /// A host:port string without a usable port.
    #[error("missing or invalid port in `{0}`")]
    Port(String),
}

impl Host {
    /// Parses a host as found in a URL authority or a CONNECT target (IPv6 in brackets or bare).
    pub fn parse(s: &str) -> Result<Host, HostError> {
        if s.is_empty() {
            return Err(HostError::Empty);
        }
        let inner = s.strip_prefix('[').and_then(|r| r.strip_suffix(']'));
        if let Some(v6) = inner {
            return v6
                .parse::<Ipv6Addr>()
                .map(|ip| Host::Ip(canonical_ip(IpAddr::V6(ip))))
                .map_err(|_| HostError::Invalid(s.to_owned()));
        }
        if let Ok(ip) = s.parse::<Ipv6Addr>() {
            return Ok(Host::Ip(canonical_ip(IpAddr::V6(ip))));
        }
        let name = s.strip_suffix('.').unwrap_or(s);
        if name.is_empty() {
            return Err(HostError::Invalid(s.to_owned()));
        }
        if let Some(v4) = parse_inet_aton(name) {
            return Ok(Host::Ip(IpAddr::V4(v4)));
        }
        let valid = name.len() <= 253
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        // A name whose last label is all digits would be read as an address by some resolvers
        // and as a name by others; refuse it rather than guess.
        let last_numeric = name.rsplit('.').next().is_some_and(|l| {
            l.bytes().all(|b| b.is_ascii_digit()) || l.starts_with("0x") || l.starts_with("0X")
        });
        if !valid || last_numeric {
            return Err(HostError::Invalid(s.to_owned()));
        }
        Ok(Host::Domain(name.to_ascii_lowercase()))
    }

    /// The literal address, if the host is one.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Host::Ip(ip) => Some(*ip),
            Host::Domain(_) => None,
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            Host::Ip(IpAddr::V4(ip)) => write!(f, "{ip}"),
            Host::Domain(d) => f.write_str(d),
        }
    }
}

/// Maps IPv4-mapped IPv6 (`::ffff:a.b.c.d`) to plain IPv4 so it is checked and dialled as such.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// Parses the IPv4 forms of `inet_aton(3)`: one to four parts, each decimal, octal (leading `0`) or
/// hexadecimal (`0x`), the last part filling the remaining bytes.
fn parse_inet_aton(s: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = s.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let mut nums = Vec::with_capacity(parts.len());
    for p in &parts {
        nums.push(parse_aton_part(p)?);
    }
    let (last, init) = nums.split_last()?;
    let mut value: u64 = 0;
    for n in init {
        if *n > 255 {
            return None;
        }
        value = (value << 8) | n;
    }
    let rest_bits = 8 * (4 - init.len() as u32);
    if rest_bits < 64 && *last >= (1u64 << rest_bits) {
        return None;
    }
    value = (value << rest_bits) | last;
    u32::try_from(value).ok().map(Ipv4Addr::from)
}

fn parse_aton_part(p: &str) -> Option<u64> {
    if p.is_empty() {
        return None;
    }
    let (digits, radix) = if let Some(h) = p.strip_prefix("0x").or_else(|| p.strip_prefix("0X")) {
        (h, 16)
    } else if p.len() > 1 && p.starts_with('0') {
        (&p[1..], 8)
    } else {
        (p, 10)
    };
    if digits.is_empty() {
        // "0x" alone is 0 for inet_aton.
        return if radix == 16 { Some(0) } else { None };
    }
    if digits.len() > 12 {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

/// A destination: host and port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// Where.
    pub host: Host,
    /// Which port.
    pub port: u16,
}

impl Target {
    /// A target from parts.
    pub fn new(host: Host, port: u16) -> Self {
        Target { host, port }
    }

    /// Parses `host:port`, `[v6]:port` (the CONNECT request-target form, RFC 9112 §3.2.3).
    pub fn parse(s: &str) -> Result<Target, HostError> {
        let (host, port) = split_host_port(s).ok_or_else(|| HostError::Port(s.to_owned()))?;
        let port: u16 = parse_port(port).ok_or_else(|| HostError::Port(s.to_owned()))?;
        Ok(Target { host: Host::parse(host)?, port })
    }

    /// Parses `host[:port]`, using `default_port` when the port is absent.
    pub fn parse_with_default_port(s: &str, default_port: u16) -> Result<Target, HostError> {
        let has_port = if s.starts_with('[') { s.contains("]:") } else { s.matches(':').count() == 1 };
        if has_port {
            Target::parse(s)
        } else {
            Ok(Target { host: Host::parse(s)?, port: default_port })
        }
    }

    /// The socket address, if the host is a literal address.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        self.host.ip().map(|ip| SocketAddr::new(ip, self.port))
    }
}

impl From<SocketAddr> for Target {
    fn from(a: SocketAddr) -> Self {
        Target { host: Host::Ip(canonical_ip(a.ip())), port: a.port() }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

impl std::str::FromStr for Target {
    type Err = HostError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Target::parse(s)
    }
}

fn split_host_port(s: &str) -> Option<(&str, &str)> {
    if s.starts_with('[') {
        let end = s.find(']')?;
        let rest = s[end + 1..].strip_prefix(':')?;
        Some((&s[..=end], rest))
    } else {
        let (h, p) = s.rsplit_once(':')?;
        if h.contains(':') {
            return None;
        }
        Some((h, p))
    }
}

fn parse_port(p: &str) -> Option<u16> {
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    p.parse().ok().filter(|&n| n != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Host {
        Host::Ip(s.parse().unwrap())
    }

    #[test]
    fn numeric_forms_normalise() {
        assert_eq!(Host::parse("2130706433").unwrap(), ip("127.0.0.1"));
        assert_eq!(Host::parse("0x7f.1").unwrap(), ip("127.0.0.1"));
        assert_eq!(Host::parse("127.1").unwrap(), ip("127.0.0.1"));
        assert_eq!(Host::parse("0177.0.0.1").unwrap(), ip("127.0.0.1"));
        assert_eq!(Host::parse("0x7f000001").unwrap(), ip("127.0.0.1"));
        assert_eq!(Host::parse("127.0.0.1.").unwrap(), ip("127.0.0.1"));
        assert_eq!(Host::parse("169.254.43518").unwrap(), ip("169.254.169.254"));
        assert_eq!(Host::parse("[::ffff:127.0.0.1]").unwrap(), ip("127.0.0.1"));
        assert_eq!(Host::parse("[::1]").unwrap(), ip("::1"));
        assert_eq!(Host::parse("0").unwrap(), ip("0.0.0.0"));
    }

    #[test]
    fn names_and_garbage() {
        assert_eq!(Host::parse("Example.COM.").unwrap(), Host::Domain("example.com".into()));
        assert!(Host::parse("1.2.3.256").is_err());
        assert!(Host::parse("a b").is_err());
        assert!(Host::parse("foo.123").is_err());
        assert!(Host::parse("").is_err());
        assert!(Host::parse("[::1").is_err());
        assert!(Host::parse("ex%61mple.com").is_err());
    }

    #[test]
    fn targets() {
        let t = Target::parse("[::1]:443").unwrap();
        assert_eq!(t.to_string(), "[::1]:443");
        assert_eq!(Target::parse("example.com:80").unwrap().port, 80);
        assert!(Target::parse("example.com").is_err());
        assert!(Target::parse("example.com:0").is_err());
        assert!(Target::parse("example.com:65536").is_err());
        assert!(Target::parse("example.com:+80").is_err());
        assert_eq!(Target::parse_with_default_port("example.com", 80).unwrap().port, 80);
        assert_eq!(Target::parse_with_default_port("[::1]", 80).unwrap().port, 80);
    }
}
