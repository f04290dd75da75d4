//! Command-line flags of `tunnelkit proxy`. Every flag except `--config` has a key of the same name
//! (snake_case) in the TOML file; a flag given on the command line wins over the file.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::intercept::HostGlob;
use crate::config::{parse_duration, parse_listen, size_in};
use crate::policy::{Cidr, Credentials, PortSet};

/// `tunnelkit proxy`: an HTTP forward proxy with CONNECT, and optionally SOCKS5.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Args {
    /// Address to listen on for HTTP proxy clients [default: 127.0.0.1:3128].
    #[arg(long, value_name = "ADDR", env = "TUNNELKIT_LISTEN", value_parser = parse_listen)]
    pub listen: Option<SocketAddr>,
    /// TOML configuration file; flags override its values.
    #[arg(long, value_name = "FILE", env = "TUNNELKIT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Allow a special-purpose range (loopback, private...) that is denied by default. Repeatable.
    #[arg(long, value_name = "CIDR")]
    pub allow: Vec<Cidr>,
    /// Always deny a range (wins over --allow). Repeatable.
    #[arg(long, value_name = "CIDR")]
    pub deny: Vec<Cidr>,
    /// Ports CONNECT and SOCKS may reach, e.g. `443,8443` or `1-65535` [default: 443].
    #[arg(long, value_name = "LIST")]
    pub connect_ports: Option<PortSet>,
    /// Ports absolute-form HTTP requests may reach [default: 80,443,1024-65535].
    #[arg(long, value_name = "LIST")]
    pub http_ports: Option<PortSet>,
    /// Require this user (Basic auth). Repeatable.
    #[arg(long, value_name = "USER:PASS", value_parser = Credentials::parse_pair)]
    pub auth: Vec<Credentials>,
    /// File of `user:password` lines.
    #[arg(long, value_name = "FILE")]
    pub users: Option<PathBuf>,
    /// Also listen for SOCKS5 on this address.
    #[arg(long, value_name = "ADDR", value_parser = parse_listen)]
    pub socks: Option<SocketAddr>,
    /// Serve Prometheus metrics on this address.
    #[arg(long, value_name = "ADDR", value_parser = parse_listen)]
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
    /// Serve the proxy port over TLS with this PEM certificate chain (needs --tls-key); clients
    /// then use an `https://` proxy URL. The SOCKS listener stays plain.
    #[arg(long, value_name = "PEM")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "PEM")]
    pub tls_key: Option<PathBuf>,
    /// Intercept HTTPS (a man in the middle that shows the content) for CONNECTs to hosts matching
    /// these globs (`*.example.com`); with no glob, every host. Needs clients to trust the CA.
    #[arg(long, value_name = "HOSTGLOB", num_args = 0.., value_parser = HostGlob::parse)]
    pub intercept: Option<Vec<HostGlob>>,
    /// Never intercept hosts matching this glob (apps that pin certificates). Repeatable.
    #[arg(long, value_name = "HOSTGLOB", value_parser = HostGlob::parse)]
    pub no_intercept: Vec<HostGlob>,
    /// The CA that signs intercepted hosts' certificates; made there if missing
    /// [default: ~/.local/share/tunnelkit/ca].
    #[arg(long, value_name = "DIR")]
    pub ca_dir: Option<PathBuf>,
    /// Also trust this PEM bundle for origins' certificates when intercepting.
    #[arg(long, value_name = "PEM")]
    pub upstream_ca: Option<PathBuf>,
    /// Do not verify origins' certificates when intercepting (testing only).
    #[arg(long)]
    pub insecure_upstream: bool,
    /// Intercepted hosts whose certificate is kept in memory [default: 10000].
    #[arg(long, value_name = "N")]
    pub cert_cache: Option<usize>,
    /// Serve the flow inspector (a live web page and a JSON API) on this address.
    #[arg(long, value_name = "ADDR", value_parser = parse_listen)]
    pub inspect: Option<SocketAddr>,
    /// Flows the inspector keeps (the most recent) [default: 1000].
    #[arg(long, value_name = "N")]
    pub inspect_flows: Option<usize>,
    /// Body bytes recorded per request or response [default: 1M].
    #[arg(long, value_name = "SIZE", value_parser = size_in(0, 64 << 20))]
    pub inspect_body_max: Option<usize>,
    /// Write one JSON line per finished flow to this file (`-` for stdout).
    #[arg(long, value_name = "PATH|-")]
    pub flows_log: Option<String>,
    /// On shutdown, write the recorded flows to this file as HAR 1.2.
    #[arg(long, value_name = "FILE")]
    pub har: Option<PathBuf>,
    /// Time allowed to receive a complete request head [default: 10s].
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub header_timeout: Option<Duration>,
    /// Time allowed to resolve and connect to a destination [default: 10s].
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub dial_timeout: Option<Duration>,
    /// Close idle client keep-alive connections after this long [default: 60s].
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub idle_timeout: Option<Duration>,
    /// Close pooled upstream connections idle this long [default: 30s].
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub upstream_idle_timeout: Option<Duration>,
    /// Give up on an upstream that sends nothing for this long while a response is due [default: 120s].
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub upstream_timeout: Option<Duration>,
    /// End CONNECT, SOCKS and WebSocket tunnels with no traffic for this long [default: 10m].
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub tunnel_idle_timeout: Option<Duration>,
    /// Most client connections at once; more are answered 503 [default: 10000].
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// Threads serving client connections; each connection stays on one (0 = one per core) [default: 0].
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Pipes for splicing tunnels between plain sockets, 2 file descriptors each; tunnels beyond
    /// them copy [default: max-connections / 4].
    #[arg(long, value_name = "N")]
    pub max_pipes: Option<usize>,
    /// Size asked of the kernel for each splice pipe (at most /proc/sys/fs/pipe-max-size) [default: 1M].
    #[arg(long, value_name = "SIZE", value_parser = size_in(4096, 1 << 30))]
    pub pipe_size: Option<usize>,
    /// Copy tunnel bytes through user space instead of splicing them (`splice(2)`).
    #[arg(long, env = "TUNNELKIT_NO_SPLICE", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_splice: bool,
    /// Write the process id here once listening (removed on exit), for `tunnelkit reload --pid-file`.
    #[arg(long, value_name = "FILE")]
    pub pid_file: Option<PathBuf>,
    /// After a reload (SIGHUP) removes a user, close that user's open tunnels this much later
    /// [default: 10s].
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub reload_grace: Option<Duration>,
    /// On SIGTERM/SIGINT, let running requests and tunnels finish for this long [default: 30s].
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub shutdown_timeout: Option<Duration>,
    /// Zero-downtime upgrade: `--upgrade-socket PATH`, `--upgrade` (no key in the file).
    #[command(flatten)]
    pub upgrade: crate::upgrade::UpgradeArgs,
}
