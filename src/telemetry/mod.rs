//! Observability: tracing to stderr (filtered by `RUST_LOG`, e.g. `RUST_LOG=tunnelkit::proxy=debug`)
//! a Prometheus `/metrics` endpoint (`--metrics ADDR`), and access logs ([`access_log`]).

pub mod access_log;

use std::net::SocketAddr;

use tracing_subscriber::EnvFilter;

/// Installs the global tracing subscriber. `RUST_LOG` scopes it; the default is `info`.
pub fn init_tracing() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// Serves Prometheus metrics on `addr` (any path answers). Call once, inside the runtime.
pub fn serve_metrics(addr: SocketAddr) -> anyhow::Result<()> {
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(addr)
        .install()
        .map_err(|e| anyhow::anyhow!("cannot serve metrics on {addr}: {e}"))
}
