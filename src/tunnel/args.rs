//! Command-line flags of `tunnelkit ws-server` and `tunnelkit ws-client`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::{count_in, duration_in, size_in};
use crate::net::{ForwardSpec, Target};
use crate::policy::{Cidr, PortSet};

const MS: Duration = Duration::from_millis(1);
const DAY: Duration = Duration::from_secs(86_400);

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
    /// Serve clients without a --token on a non-loopback --listen address, on purpose.
    #[arg(long)]
    pub open: bool,
    /// Heartbeat period; a peer silent for twice this long is declared dead and its tunnel broken.
    #[arg(long, value_name = "DUR", default_value = "10s",
          value_parser = duration_in(100 * MS, Duration::from_secs(600)))]
    pub heartbeat: Duration,
    /// Tunnels alive at once (connected or held broken).
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = count_in(1, 1_000_000))]
    pub max_tunnels: usize,
    /// Tunnels one token may hold at once (default: a quarter of --max-tunnels, at least 1).
    #[arg(long, value_name = "N", value_parser = count_in(1, 1_000_000))]
    pub max_tunnels_per_token: Option<usize>,
    /// Streams open at once in one tunnel.
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub max_streams: u32,
    /// Bytes one tunnel's streams may hold in each direction (received and not yet taken by their
    /// targets; queued for the client), e.g. 4M.
    #[arg(long, value_name = "SIZE", default_value = "4M", value_parser = size_in(1 << 20, 1 << 30))]
    pub max_stream_memory: usize,
    /// Remote listeners (`ws-client -R`) one tunnel may have (0: no remote forwards).
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = count_in(0, 1024))]
    pub max_listeners: usize,
    /// Let clients bind remote listeners (-R) on unspecified addresses (0.0.0.0, ::), reachable from
    /// every network the server is on.
    #[arg(long)]
    pub allow_public_listen: bool,
    /// Longest time a broken tunnel is kept for resumption, whatever the client asks.
    #[arg(long, value_name = "DUR", default_value = "5m", value_parser = duration_in(Duration::ZERO, DAY))]
    pub max_keep_broken: Duration,
    /// Serve Prometheus metrics on this address.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
    /// Threads serving tunnels; each connection and its tunnel's streams stay on one (0 = one per core).
    #[arg(long, value_name = "N", default_value_t = 0, value_parser = count_in(0, 1024))]
    pub workers: usize,
    /// Speak another tunnel protocol instead of ours: `ws-stream-tunnel` (the Node seed, lossy resume).
    #[arg(long, value_name = "PROTOCOL", value_parser = ["ws-stream-tunnel"])]
    pub compat: Option<String>,
    /// With --compat: where each stream opened by a compat client is connected.
    #[arg(long, value_name = "HOST:PORT", requires = "compat")]
    pub compat_target: Option<Target>,
    /// On SIGTERM/SIGINT, stop accepting and let open streams finish for this long (a second signal
    /// stops at once).
    #[arg(long, value_name = "DUR", default_value = "30s", value_parser = duration_in(Duration::ZERO, DAY))]
    pub shutdown_timeout: Duration,
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
    #[arg(long, value_name = "DUR", default_value = "0s", value_parser = idle_timeout)]
    pub idle_timeout: Duration,
    /// How long the server should keep a broken tunnel for us.
    #[arg(long, value_name = "DUR", default_value = "30s", value_parser = duration_in(Duration::ZERO, DAY))]
    pub keep_broken_tunnel: Duration,
    /// Reach the server through this proxy.
    #[arg(long, value_name = "URL")]
    pub proxy: Option<String>,
    /// Extra CA certificate (PEM) to trust for wss://.
    #[arg(long, value_name = "PEM")]
    pub ca: Option<PathBuf>,
    /// On SIGTERM/SIGINT, close the listeners and let open streams finish for this long (a second
    /// signal stops at once).
    #[arg(long, value_name = "DUR", default_value = "30s", value_parser = duration_in(Duration::ZERO, DAY))]
    pub shutdown_timeout: Duration,
}

/// `--idle-timeout`: 0 (never) or 100ms to a day; anything shorter would close a tunnel between two
/// writes of one transfer.
fn idle_timeout(s: &str) -> Result<Duration, String> {
    let d = crate::config::parse_duration(s)?;
    if d.is_zero() {
        return Ok(d);
    }
    duration_in(100 * MS, DAY)(s).map_err(|e| format!("{e} (or 0s for never)"))
}
