//! Observability: tracing to stderr (filtered by `RUST_LOG`, e.g. `RUST_LOG=tunnelkit::proxy=debug`,
//! else `--log-level` or a server's `log_level` key, which a reload changes: see [`log_level`]),
//! a Prometheus `/metrics` endpoint (`--metrics ADDR`, see [`serve_metrics`]), and access logs
//! ([`access_log`]).

pub mod access_log;
pub mod log_level;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

pub use log_level::{apply_config_log_level, check_log_level, set_log_filter};

/// How log lines are written to stderr (`--log-format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Installs the global tracing subscriber. `RUST_LOG` scopes it, else `log_level` (`--log-level`);
/// the default is `info`. Its filter can be replaced later ([`set_log_filter`]).
///
/// A closed or broken stderr (`tunnelkit proxy 2>&1 | head -1`) must not bring the server down:
/// lines that cannot be written are dropped, never reported by a panicking `eprintln!`.
pub fn init_tracing(format: LogFormat, log_level: Option<&str>) {
    use std::io::IsTerminal;
    let (filter, source) = log_level::initial(log_level);
    // Applied to the registry itself, so its handle's type does not depend on the format.
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    let lines = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).log_internal_errors(false);
    let installed = match format {
        LogFormat::Text => registry.with(lines.with_ansi(std::io::stderr().is_terminal())).try_init(),
        LogFormat::Json => registry.with(lines.json().with_current_span(false)).try_init(),
    };
    if installed.is_ok() {
        log_level::keep(handle, source);
    }
}

/// Prints a line for the user on stderr (`listening on ADDR`, which tests and scripts read), ignoring
/// a closed stderr instead of panicking as `eprintln!` does.
pub fn announce(line: &str) {
    use std::io::Write;
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
}

/// The process-wide Prometheus recorder. `metrics` allows one global recorder, and a library user
/// may start several servers in one process, so every endpoint renders the same one.
fn recorder() -> anyhow::Result<&'static PrometheusHandle> {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    // Two servers starting at once must not both try to install the global recorder.
    let _installing = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(h) = HANDLE.get() {
        return Ok(h);
    }
    let handle = PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| anyhow::anyhow!("cannot install the metrics recorder: {e}"))?;
    let handle = HANDLE.get_or_init(|| handle);
    // Histograms and summaries age out only when upkeep runs; the built-in listener did it for us.
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            handle.run_upkeep();
        }
    });
    Ok(handle)
}

/// Serves Prometheus metrics on `addr` (any path answers) and returns the bound address, so
/// `--metrics 127.0.0.1:0` works: callers print it as `metrics listening on ADDR`. Call inside the
/// runtime; the endpoint lives as long as the runtime.
pub async fn serve_metrics(addr: SocketAddr) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot serve metrics on {addr} (--metrics): {e}"))?;
    serve_metrics_on(listener)
}

/// Serves `/metrics` on a listener already bound (or handed over by [`crate::upgrade`]); returns
/// its address. It keeps serving as long as the process lives: a scrape is answered by whichever
/// process accepts it during an upgrade.
pub fn serve_metrics_on(listener: TcpListener) -> anyhow::Result<SocketAddr> {
    let local = listener.local_addr()?;
    let handle = recorder()?;
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                // Out of descriptors or similar: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let svc = hyper::service::service_fn(move |_req: Request<hyper::body::Incoming>| async move {
                let text = handle.render();
                let resp = Response::builder()
                    .header("content-type", "text/plain; version=0.0.4")
                    .body(Full::new(Bytes::from(text)))
                    .expect("static response parts are valid");
                Ok::<_, Infallible>(resp)
            });
            tokio::spawn(async move {
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10))
                    .serve_connection(TokioIo::new(tcp), svc);
                let _ = conn.await;
            });
        }
    });
    Ok(local)
}
