//! Command-line flags of `tunnelkit connect` and `tunnelkit forward`.

use std::time::Duration;

use crate::config::{count_in, duration_in, size_in};
use crate::net::{ForwardSpec, Target};

/// `tunnelkit connect`: stdin/stdout to HOST:PORT through a proxy (usable as ssh ProxyCommand).
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectArgs {
    /// Proxy URL (http://, https://, socks5://, socks5h://, socks4a://); default from the env vars.
    #[arg(long, value_name = "URL")]
    pub proxy: Option<String>,
    /// Destination.
    #[arg(value_name = "HOST:PORT")]
    pub target: Target,
}

/// `tunnelkit forward`: local port forwards through a proxy.
#[derive(Debug, Clone, clap::Args)]
pub struct ForwardArgs {
    /// Proxy URL.
    #[arg(long, value_name = "URL")]
    pub proxy: Option<String>,
    /// `[BIND:]PORT:HOST:PORT`. Repeatable.
    #[arg(short = 'L', value_name = "[BIND:]PORT:HOST:PORT", required = true)]
    pub local: Vec<ForwardSpec>,
    /// Connect straight to the destinations when no proxy is configured (no --proxy, no env var);
    /// without it `forward` refuses to start rather than bypass the proxy silently.
    #[arg(long)]
    pub direct: bool,
    /// Keep this many tunnels per forward open ahead of time.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub prewarm: usize,
    /// Pipes for splicing forwarded connections (2 file descriptors each); connections beyond them
    /// copy.
    #[arg(long, value_name = "N", default_value_t = 256,
          value_parser = count_in(0, 1_000_000))]
    pub max_pipes: usize,
    /// Size asked of the kernel for each splice pipe.
    #[arg(long, value_name = "SIZE", default_value = "1M", value_parser = size_in(4096, 1 << 30))]
    pub pipe_size: usize,
    /// Copy forwarded bytes through user space instead of splicing them (`splice(2)`).
    #[arg(long, env = "TUNNELKIT_NO_SPLICE", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_splice: bool,
    /// On SIGTERM/SIGINT, stop accepting and let open connections finish for this long; a second
    /// signal ends at once.
    #[arg(long, value_name = "DUR", default_value = "30s",
          value_parser = duration_in(Duration::ZERO, Duration::from_secs(86_400)))]
    pub shutdown_timeout: Duration,
}
