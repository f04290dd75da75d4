//! Command-line flags of `tunnelkit ws-server` and `tunnelkit ws-client`. Every `ws-server` flag except
//! `--config` has a key of the same name (snake_case) in its TOML file (`--token` is `tokens = [...]`);
//! a flag given on the command line wins over the file (`server_settings`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::{count_in, duration_in, size_in};
use crate::net::{ForwardSpec, Target};
use crate::policy::{Cidr, PortSet};

const MS: Duration = Duration::from_millis(1);
const DAY: Duration = Duration::from_secs(86_400);

/// Accepted range of `--heartbeat` (a zero period would spin the link).
pub(super) const HEARTBEAT: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(600));
/// Accepted range of `--max-tunnels` and `--max-tunnels-per-token`.
pub(super) const TUNNELS: (usize, usize) = (1, 1_000_000);
/// Accepted range of `--max-streams` (stream ids are 32 bits, but a tunnel holding more than this is
/// abuse).
pub(super) const STREAMS: (u32, u32) = (1, 65_536);
/// Accepted range of `--max-stream-memory`, in bytes.
pub(super) const STREAM_MEMORY: (usize, usize) = (1 << 20, 1 << 30);
/// Accepted range of `--max-listeners`.
pub(super) const LISTENERS: (usize, usize) = (0, 1024);
/// Accepted range of `--max-keep-broken` and `--shutdown-timeout` (zero: no hold, no wait).
pub(super) const HOLD: (Duration, Duration) = (Duration::ZERO, DAY);
/// Accepted range of `--workers` (0 = one per core).
pub(super) const WORKERS: (usize, usize) = (0, 1024);
/// The one protocol `--compat` speaks.
pub(super) const COMPAT_PROTOCOLS: [&str; 1] = ["ws-stream-tunnel"];

/// `tunnelkit ws-server`: accepts tunnels over WebSocket and dials their streams' targets.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServerArgs {
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// TOML configuration file; flags override its values.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// URL path of the WebSocket endpoint [default: /tunnel].
    #[arg(long)]
    pub path: Option<String>,
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
    /// Heartbeat period; a peer silent for twice this long is declared dead and its tunnel broken
    /// [default: 10s].
    #[arg(long, value_name = "DUR", value_parser = duration_in(HEARTBEAT.0, HEARTBEAT.1))]
    pub heartbeat: Option<Duration>,
    /// Tunnels alive at once (connected or held broken) [default: 1024].
    #[arg(long, value_name = "N", value_parser = count_in(TUNNELS.0, TUNNELS.1))]
    pub max_tunnels: Option<usize>,
    /// Tunnels one token may hold at once (default: a quarter of --max-tunnels, at least 1).
    #[arg(long, value_name = "N", value_parser = count_in(TUNNELS.0, TUNNELS.1))]
    pub max_tunnels_per_token: Option<usize>,
    /// Streams open at once in one tunnel [default: 1024].
    #[arg(long, value_name = "N",
          value_parser = clap::value_parser!(u32).range(STREAMS.0 as i64..=STREAMS.1 as i64))]
    pub max_streams: Option<u32>,
    /// Bytes one tunnel's streams may hold in each direction (received and not yet taken by their
    /// targets; queued for the client), e.g. 4M [default: 4M].
    #[arg(long, value_name = "SIZE", value_parser = size_in(STREAM_MEMORY.0, STREAM_MEMORY.1))]
    pub max_stream_memory: Option<usize>,
    /// Remote listeners (`ws-client -R`) one tunnel may have (0: no remote forwards) [default: 16].
    #[arg(long, value_name = "N", value_parser = count_in(LISTENERS.0, LISTENERS.1))]
    pub max_listeners: Option<usize>,
    /// Let clients bind remote listeners (-R) on unspecified addresses (0.0.0.0, ::), reachable from
    /// every network the server is on.
    #[arg(long)]
    pub allow_public_listen: bool,
    /// Longest time a broken tunnel is kept for resumption, whatever the client asks [default: 5m].
    #[arg(long, value_name = "DUR", value_parser = duration_in(HOLD.0, HOLD.1))]
    pub max_keep_broken: Option<Duration>,
    /// Serve Prometheus metrics on this address.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
    /// Threads serving tunnels; each connection and its tunnel's streams stay on one (0 = one per core)
    /// [default: 0].
    #[arg(long, value_name = "N", value_parser = count_in(WORKERS.0, WORKERS.1))]
    pub workers: Option<usize>,
    /// Speak another tunnel protocol instead of ours: `ws-stream-tunnel` (the Node seed, lossy resume).
    #[arg(long, value_name = "PROTOCOL", value_parser = COMPAT_PROTOCOLS)]
    pub compat: Option<String>,
    /// With --compat: where each stream opened by a compat client is connected.
    #[arg(long, value_name = "HOST:PORT", requires = "compat")]
    pub compat_target: Option<Target>,
    /// On SIGTERM/SIGINT, stop accepting and let open streams finish for this long (a second signal
    /// stops at once) [default: 30s].
    #[arg(long, value_name = "DUR", value_parser = duration_in(HOLD.0, HOLD.1))]
    pub shutdown_timeout: Option<Duration>,
    /// Join a cluster of ws-servers sharing this Redis (redis://, rediss:// or redis+sentinel://): a
    /// resume landing on a server that does not hold the tunnel is handed to the one that does.
    #[arg(long, value_name = "URL")]
    pub cluster_redis: Option<String>,
    /// With --cluster-redis: the HOST:PORT other servers reach this one on [default: the --listen
    /// address, when it is not 0.0.0.0 or ::].
    #[arg(long, value_name = "HOST:PORT")]
    pub advertise: Option<String>,
    /// With --cluster-redis: the secret every server of the cluster shares (16 random bytes or more), signing
    /// the connections they hand each other.
    #[arg(long, value_name = "SECRET", env = "TUNNELKIT_CLUSTER_SECRET", hide_env_values = true)]
    pub cluster_secret: Option<String>,
    /// Like --cluster-secret, read from FILE (kept out of the process list).
    #[arg(long, value_name = "FILE", conflicts_with = "cluster_secret")]
    pub cluster_secret_file: Option<PathBuf>,
    /// Zero-downtime upgrade: `--upgrade-socket PATH`, `--upgrade` (no key in the file).
    #[command(flatten)]
    pub upgrade: crate::upgrade::UpgradeArgs,
    /// Write the process id here once listening (removed on exit), for `tunnelkit reload --pid-file`.
    #[arg(long, value_name = "FILE")]
    pub pid_file: Option<PathBuf>,
    /// After a reload (SIGHUP) revokes a token, close that token's open tunnels this much later
    /// [default: 10s].
    #[arg(long, value_name = "DUR", value_parser = duration_in(HOLD.0, HOLD.1))]
    pub reload_grace: Option<Duration>,
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
