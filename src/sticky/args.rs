//! Command-line flags of `tunnelkit sticky` (option names and defaults follow socket.io-proxy2).
//! Every flag except `--config` has a TOML key of the same name in snake_case (`backend` is
//! `backends = [...]`); flags win over the file.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::parse_duration;

/// `tunnelkit sticky`: a sticky-session balancer for Socket.IO backends.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Args {
    /// Address to listen on [default: 127.0.0.1:4000].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// A Socket.IO backend HOST:PORT. Repeatable.
    #[arg(long, value_name = "HOST:PORT")]
    pub backend: Vec<String>,
    /// Keep the sid map in Redis so several balancers agree: one node (redis:// or rediss://), or
    /// the master a set of sentinels names (redis+sentinel://[user:pw@]host:port[,host:port…]/MASTERNAME).
    #[arg(long, value_name = "URL")]
    pub redis: Option<String>,
    /// Keep the sid map in a Redis Cluster instead: a few of its nodes, comma-separated
    /// (redis://host:port,redis://host:port; rediss:// for TLS).
    #[arg(long, value_name = "URL[,URL…]", value_delimiter = ',')]
    pub redis_cluster: Vec<String>,
    /// PEM file of the CA that signed the Redis servers' certificates (for rediss:// URLs).
    #[arg(long, value_name = "PEM")]
    pub redis_ca: Option<PathBuf>,
    /// How a session's requests find its backend: `store` (the sid map, in memory or in Redis)
    /// or `tag` (the sid handed to the client carries a signed backend tag: no store, any number of
    /// balancers; needs --route-key) [default: store].
    #[arg(long, value_name = "MODE", value_parser = ["store", "tag"])]
    pub route_by: Option<String>,
    /// File holding the key that signs sid tags (--route-by tag): at least 16 bytes, the same file
    /// on every balancer. Make one with `head -c 32 /dev/urandom > FILE`.
    #[arg(long, value_name = "FILE")]
    pub route_key: Option<PathBuf>,
    /// Engine.IO path [default: /socket.io/].
    #[arg(long, value_name = "PATH")]
    pub path: Option<String>,
    /// Health-check interval [default: 2s].
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub check_interval: Option<Duration>,
    /// Health-check timeout [default: 1s].
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub check_timeout: Option<Duration>,
    /// Redis key prefix [default: socket.io#].
    #[arg(long, value_name = "PREFIX")]
    pub key_prefix: Option<String>,
    /// Expiry of a sid binding, refreshed while the session is active [default: 60s].
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub key_expiry: Option<Duration>,
    /// How new sessions pick a backend [default: least-sessions].
    #[arg(long, value_name = "MODE", value_parser = ["least-sessions", "round-robin", "random"])]
    pub balance: Option<String>,
    /// Time allowed to receive a complete request head; idle keep-alive connections are closed
    /// after it too [default: 10s].
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub header_timeout: Option<Duration>,
    /// Most client connections at once (WebSocket tunnels included); more are answered 503 and
    /// closed [default: 10000].
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// Threads serving client connections; each connection stays on one (0 = one per core) [default: 0].
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Time a backend has to answer a request (the response head); then 504. Must exceed the
    /// backends' pingInterval, which bounds a long poll [default: 30s].
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub backend_timeout: Option<Duration>,
    /// A write to a client or backend that makes no progress for this long (the peer does not
    /// read) ends its connection [default: 60s].
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub idle_timeout: Option<Duration>,
    /// On SIGTERM/SIGINT, let running requests and WebSocket tunnels finish for this long (a second
    /// signal stops at once) [default: 30s].
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub shutdown_timeout: Option<Duration>,
    /// Serve Prometheus metrics on this address.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
    /// TOML configuration file; flags override its values. Read again on SIGHUP.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Zero-downtime upgrade: `--upgrade-socket PATH`, `--upgrade` (no key in the file).
    #[command(flatten)]
    pub upgrade: crate::upgrade::UpgradeArgs,
    /// Write the process id here once listening (removed on exit), for `tunnelkit reload --pid-file`.
    #[arg(long, value_name = "FILE")]
    pub pid_file: Option<PathBuf>,
}
