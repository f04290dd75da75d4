//! The access policy: which destinations a server of ours may dial on someone else's behalf.
//!
//! Safe by default: every special-purpose address range (loopback, RFC 1918, link-local including
//! the cloud metadata address, CGNAT, multicast, documentation, IPv6 ULA and link-local, and the
//! IPv4-mapped, NAT64 and 6to4 forms of those) is refused unless an `--allow` range covers it;
//! `--deny` ranges are refused always and win over `--allow`. Tunnel-style use (CONNECT, SOCKS,
//! tunnel streams) is limited to the `connect_ports` list, port 443 by default.
//!
//! The port is checked before any DNS lookup, and [`Policy::resolve`] returns only the addresses
//! that passed, which are the ones the [`crate::net::DirectDialer`] dials: there is no gap between
//! check and use for DNS rebinding to slip through.

pub mod auth;
mod cidr;
mod ports;
mod special;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

pub use auth::{constant_time_eq, Credentials, Users};
pub use cidr::Cidr;
pub use ports::PortSet;
pub use special::special_purpose;

use crate::net::{Host, Purpose, Target};

/// Why a destination was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// The port is not in the allowlist for this kind of use.
    #[error("port {port} is not allowed for {purpose} (allowed: {allowed})")]
    Port {
        /// The refused port.
        port: u16,
        /// Tunnel or HTTP forwarding.
        purpose: Purpose,
        /// The allowlist, for the message.
        allowed: String,
    },
    /// The address is in a special-purpose range or a `--deny` range.
    #[error("destination {ip} is not allowed ({reason})")]
    Address {
        /// The refused address.
        ip: IpAddr,
        /// Which range it fell in.
        reason: String,
    },
    /// The name resolved to nothing.
    #[error("{0} has no address")]
    NoAddress(String),
}

/// A compiled access policy. Cheap to share behind an `Arc`.
#[derive(Debug, Clone)]
pub struct Policy {
    allow: Vec<Cidr>,
    deny: Vec<Cidr>,
    connect_ports: PortSet,
    http_ports: PortSet,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            allow: Vec::new(),
            deny: Vec::new(),
            connect_ports: PortSet::parse("443").expect("static"),
            http_ports: PortSet::parse("80,443,1024-65535").expect("static"),
        }
    }
}

impl Policy {
    /// The safe default: public addresses only, tunnels to 443 only.
    pub fn new() -> Self {
        Self::default()
    }

    /// Lets every address and port through: for destinations the local user chose themselves (a
    /// `ws-client -R` target), never for ones a remote peer names.
    pub fn allow_all() -> Self {
        Policy {
            allow: vec!["0.0.0.0/0".parse().expect("static"), "::/0".parse().expect("static")],
            deny: Vec::new(),
            connect_ports: PortSet::parse("1-65535").expect("static"),
            http_ports: PortSet::parse("1-65535").expect("static"),
        }
    }

    /// Adds ranges that are allowed even though they are special-purpose.
    pub fn allow(mut self, ranges: impl IntoIterator<Item = Cidr>) -> Self {
        self.allow.extend(ranges);
        self
    }

    /// Adds ranges that are always refused (they win over `allow`).
    pub fn deny(mut self, ranges: impl IntoIterator<Item = Cidr>) -> Self {
        self.deny.extend(ranges);
        self
    }

    /// Sets the ports that CONNECT, SOCKS and tunnel streams may reach.
    pub fn connect_ports(mut self, ports: PortSet) -> Self {
        self.connect_ports = ports;
        self
    }

    /// Sets the ports that absolute-form HTTP forwarding may reach.
    pub fn http_ports(mut self, ports: PortSet) -> Self {
        self.http_ports = ports;
        self
    }

    /// Checks the port alone; call before resolving.
    pub fn check_port(&self, port: u16, purpose: Purpose) -> Result<(), Denied> {
        let set = match purpose {
            Purpose::Tunnel => &self.connect_ports,
            Purpose::Http => &self.http_ports,
        };
        if set.contains(port) {
            Ok(())
        } else {
            Err(Denied::Port { port, purpose, allowed: set.to_string() })
        }
    }

    /// Checks one address.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Denied> {
        let ip = crate::net::canonical_ip(ip);
        if let Some(range) = self.deny.iter().find(|c| c.contains(ip)) {
            return Err(Denied::Address { ip, reason: format!("denied by {range}") });
        }
        if self.allow.iter().any(|c| c.contains(ip)) {
            return Ok(());
        }
        match special_purpose(ip) {
            Some(reason) => Err(Denied::Address { ip, reason: format!("{reason}; allow it with --allow") }),
            None => Ok(()),
        }
    }

    /// Checks the port, resolves the host (bounded by `timeout`) and returns only permitted addresses.
    ///
    /// Fails when the port is refused (before any lookup), when resolution fails, or when no
    /// resolved address is permitted (the first refusal is reported).
    pub async fn resolve(
        &self,
        target: &Target,
        purpose: Purpose,
        timeout: Duration,
    ) -> Result<Vec<SocketAddr>, ResolveError> {
        self.check_port(target.port, purpose)?;
        let candidates: Vec<SocketAddr> = match &target.host {
            Host::Ip(ip) => vec![SocketAddr::new(*ip, target.port)],
            Host::Domain(name) => {
                let lookup = tokio::net::lookup_host((name.as_str(), target.port));
                match tokio::time::timeout(timeout, lookup).await {
                    Err(_) => return Err(ResolveError::Timeout(name.clone())),
                    Ok(Err(e)) => return Err(ResolveError::Lookup(name.clone(), e.to_string())),
                    Ok(Ok(addrs)) => addrs.collect(),
                }
            }
        };
        let mut first_denial = None;
        let mut permitted = Vec::with_capacity(candidates.len());
        for addr in candidates {
            let ip = crate::net::canonical_ip(addr.ip());
            match self.check_ip(ip) {
                Ok(()) => {
                    let a = SocketAddr::new(ip, addr.port());
                    if !permitted.contains(&a) {
                        permitted.push(a);
                    }
                }
                Err(d) => {
                    first_denial.get_or_insert(d);
                }
            }
        }
        if permitted.is_empty() {
            return Err(first_denial.unwrap_or_else(|| Denied::NoAddress(target.host.to_string())).into());
        }
        Ok(permitted)
    }
}

/// Why [`Policy::resolve`] produced no address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The policy refused the port or every address.
    #[error(transparent)]
    Denied(#[from] Denied),
    /// DNS failed.
    #[error("cannot resolve {0}: {1}")]
    Lookup(String, String),
    /// DNS took longer than the dial timeout.
    #[error("resolving {0} timed out")]
    Timeout(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Target {
        Target::parse(s).unwrap()
    }

    #[tokio::test]
    async fn default_denies_private_and_metadata() {
        let p = Policy::new();
        let to = Duration::from_secs(1);
        for target in [
            "127.0.0.1:443",
            "2130706433:443",
            "0x7f.1:443",
            "127.1:443",
            "10.1.2.3:443",
            "169.254.169.254:443",
            "[::1]:443",
            "[::ffff:127.0.0.1]:443",
            "[64:ff9b::7f00:1]:443",
            "[fd00::1]:443",
            "[fe80::1]:443",
            "100.64.0.1:443",
            "0.0.0.0:443",
            "224.0.0.1:443",
            "192.0.2.1:443",
        ] {
            let r = p.resolve(&t(target), Purpose::Tunnel, to).await;
            assert!(matches!(r, Err(ResolveError::Denied(Denied::Address { .. }))), "{target}: {r:?}");
        }
        assert!(p.resolve(&t("93.184.216.34:443"), Purpose::Tunnel, to).await.is_ok());
    }

    #[tokio::test]
    async fn port_checked_before_dns() {
        let p = Policy::new();
        // A name that cannot resolve: the port refusal must come first.
        let r = p.resolve(&t("does-not-exist.invalid:25"), Purpose::Tunnel, Duration::from_secs(1)).await;
        assert!(matches!(r, Err(ResolveError::Denied(Denied::Port { port: 25, .. }))), "{r:?}");
    }

    #[tokio::test]
    async fn allow_and_deny() {
        let p = Policy::new()
            .allow(["127.0.0.0/8".parse().unwrap()])
            .deny(["127.0.0.2/32".parse().unwrap()])
            .connect_ports(PortSet::parse("1-65535").unwrap());
        let to = Duration::from_secs(1);
        assert!(p.resolve(&t("127.0.0.1:22"), Purpose::Tunnel, to).await.is_ok());
        assert!(p.resolve(&t("[::ffff:127.0.0.1]:22"), Purpose::Tunnel, to).await.is_ok());
        assert!(p.resolve(&t("127.0.0.2:22"), Purpose::Tunnel, to).await.is_err());
        assert!(p.resolve(&t("10.0.0.1:22"), Purpose::Tunnel, to).await.is_err());
        assert!(p.resolve(&t("localhost:22"), Purpose::Tunnel, to).await.is_ok());
        assert!(Policy::new().resolve(&t("localhost:443"), Purpose::Tunnel, to).await.is_err());
    }
}
