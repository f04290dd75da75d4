//! Command-line flags of `tunnelkit sticky` (option names and defaults follow socket.io-proxy2).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::parse_duration;

/// `tunnelkit sticky`: a sticky-session balancer for Socket.IO backends.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:4000")]
    pub listen: SocketAddr,
    /// A Socket.IO backend HOST:PORT. Repeatable.
    #[arg(long, value_name = "HOST:PORT")]
    pub backend: Vec<String>,
    /// Keep the sid map in Redis (redis:// or rediss://) so several balancers agree.
    #[arg(long, value_name = "URL")]
    pub redis: Option<String>,
    /// Engine.IO path.
    #[arg(long, default_value = "/socket.io/")]
    pub path: String,
    /// Health-check interval.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub check_interval: Duration,
    /// Health-check timeout.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub check_timeout: Duration,
    /// Redis key prefix.
    #[arg(long, default_value = "socket.io#")]
    pub key_prefix: String,
    /// Expiry of a sid binding.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub key_expiry: Duration,
    /// How new sessions pick a backend.
    #[arg(long, default_value = "least-sessions", value_parser = ["least-sessions", "round-robin", "random"])]
    pub balance: String,
    /// TOML configuration file; flags override its values.
    #[arg(long)]
    pub config: Option<PathBuf>,
}
