//! Command-line flags of `tunnelkit ws-server` and `tunnelkit ws-client`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::parse_duration;
use crate::net::{ForwardSpec, Target};
use crate::policy::{Cidr, PortSet};

/// `tunnelkit ws-server`: accepts tunnels over WebSocket and dials their streams' targets.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// URL path of the WebSocket endpoint.
    #[arg(long, default_value = "/tunnel")]
    pub path: String,
    /// Accept clients presenting this token. Repeatable.
    #[arg(long, value_name = "T")]
    pub token: Vec<String>,
    /// Allow a special-purpose range as stream target. Repeatable.
    #[arg(long, value_name = "CIDR")]
    pub allow: Vec<Cidr>,
    /// Ports streams may reach.
    #[arg(long, value_name = "LIST")]
    pub connect_ports: Option<PortSet>,
    /// TLS certificate chain (PEM) for wss://.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Heartbeat period; a peer silent for twice this long is declared dead and its tunnel broken.
    #[arg(long, value_name = "DUR", default_value = "10s", value_parser = parse_duration)]
    pub heartbeat: Duration,
    /// Tunnels alive at once (connected or held broken).
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub max_tunnels: usize,
    /// Streams open at once in one tunnel.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub max_streams: u32,
    /// Longest time a broken tunnel is kept for resumption, whatever the client asks.
    #[arg(long, value_name = "DUR", default_value = "5m", value_parser = parse_duration)]
    pub max_keep_broken: Duration,
    /// Serve Prometheus metrics on this address.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
    /// Threads serving tunnels; each connection and its tunnel's streams stay on one (0 = one per core).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub workers: usize,
    /// Speak another tunnel protocol instead of ours: `ws-stream-tunnel` (the Node seed, lossy resume).
    #[arg(long, value_name = "PROTOCOL", value_parser = ["ws-stream-tunnel"])]
    pub compat: Option<String>,
    /// With --compat: where each stream opened by a compat client is connected.
    #[arg(long, value_name = "HOST:PORT", requires = "compat")]
    pub compat_target: Option<Target>,
}

/// `tunnelkit ws-client`: opens a tunnel to a ws-server and forwards ports through it.
#[derive(Debug, Clone, clap::Args)]
pub struct ClientArgs {
    /// Server URL, ws:// or wss://.
    #[arg(value_name = "URL")]
    pub url: String,
    /// Token presented to the server.
    #[arg(long, value_name = "T")]
    pub token: Option<String>,
    /// Local forward `[BIND:]PORT:HOST:PORT`. Repeatable.
    #[arg(short = 'L', value_name = "[BIND:]PORT:HOST:PORT")]
    pub local: Vec<ForwardSpec>,
    /// Remote forward: the server listens and streams come back to HOST:PORT here. Repeatable.
    #[arg(short = 'R', value_name = "[BIND:]PORT:HOST:PORT")]
    pub remote: Vec<ForwardSpec>,
    /// SOCKS5 entry whose CONNECTs become streams.
    #[arg(long, value_name = "ADDR")]
    pub socks: Option<SocketAddr>,
    /// Tunnel mode.
    #[arg(long, default_value = "multi", value_parser = ["multi", "single"])]
    pub mode: String,
    /// Close the tunnel after this long without streams or traffic (0 = never).
    #[arg(long, value_name = "DUR", default_value = "0s", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// How long the server should keep a broken tunnel for us.
    #[arg(long, value_name = "DUR", default_value = "30s", value_parser = parse_duration)]
    pub keep_broken_tunnel: Duration,
    /// Reach the server through this proxy.
    #[arg(long, value_name = "URL")]
    pub proxy: Option<String>,
    /// Extra CA certificate (PEM) to trust for wss://.
    #[arg(long, value_name = "PEM")]
    pub ca: Option<PathBuf>,
}
