//! Command-line flags of `tunnelkit proxy`.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::policy::{Cidr, Credentials, PortSet};

/// `tunnelkit proxy`: an HTTP forward proxy with CONNECT, and optionally SOCKS5.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Address to listen on for HTTP proxy clients.
    #[arg(long, default_value = "127.0.0.1:3128", env = "TUNNELKIT_LISTEN")]
    pub listen: SocketAddr,
    /// TOML configuration file; flags override its values.
    #[arg(long, env = "TUNNELKIT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Allow a special-purpose range (loopback, private...) that is denied by default. Repeatable.
    #[arg(long, value_name = "CIDR")]
    pub allow: Vec<Cidr>,
    /// Always deny a range (wins over --allow). Repeatable.
    #[arg(long, value_name = "CIDR")]
    pub deny: Vec<Cidr>,
    /// Ports CONNECT and SOCKS may reach, e.g. `443,8443` or `1-65535`.
    #[arg(long, value_name = "LIST")]
    pub connect_ports: Option<PortSet>,
    /// Require this user (Basic auth). Repeatable.
    #[arg(long, value_name = "USER:PASS", value_parser = Credentials::parse_pair)]
    pub auth: Vec<Credentials>,
    /// File of `user:password` lines.
    #[arg(long, value_name = "FILE")]
    pub users: Option<PathBuf>,
    /// Also listen for SOCKS5 on this address.
    #[arg(long, value_name = "ADDR")]
    pub socks: Option<SocketAddr>,
    /// Serve Prometheus metrics on this address.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
    /// Write one access-log line per request or tunnel to this file (`-` for stdout).
    #[arg(long, value_name = "PATH|-")]
    pub access_log: Option<String>,
    /// Allow listening on a non-loopback address without authentication.
    #[arg(long)]
    pub open: bool,
    /// Dial everything through this parent proxy (http://, https://, socks5://).
    #[arg(long, value_name = "URL")]
    pub upstream: Option<String>,
}
