//! Client connections: accepting them within `--max-connections` (beyond it, a fast 503 and
//! close), serving each with hyper under `--header-timeout`, and bounding every write to the
//! client by `--idle-timeout`.
//!
//! The header timeout runs from the moment hyper starts waiting for a request head, so it also
//! closes keep-alive connections that stay idle between requests: a slowloris client sending a
//! head a byte at a time, or never finishing it, is closed when it runs out. A connection's slot
//! lives with its socket ([`WriteDeadline::holding`]), so a WebSocket tunnel keeps counting until it
//! closes.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::bodies::Body;
use super::settings::Settings;
use crate::net::workers::Workers;
use crate::net::WriteDeadline;
use crate::shutdown::Drain;

/// How long a connection refused for `--max-connections` gets to take its 503.
const REFUSAL_TIME: Duration = Duration::from_secs(1);

/// Accepts clients until `shutdown` resolves, serving each connection on one of `workers` and
/// answering its requests with `handle(request, peer, worker number)`, then gives running
/// connections up to `--shutdown-timeout` to finish.
pub async fn serve<H, F>(
    listener: TcpListener,
    settings: &Settings,
    workers: &Workers,
    shutdown: impl Future<Output = ()>,
    handle: H,
) where
    H: Fn(Request<Incoming>, SocketAddr, usize) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let drain = Drain::new();
    let slots = Arc::new(Semaphore::new(settings.max_connections));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(settings.header_timeout);
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => break,
            x = crate::net::socket::accept(&listener) => x,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics::counter!("tunnelkit_sticky_connections_refused_total").increment(1);
            tracing::debug!(%peer, "--max-connections reached: 503");
            drain.spawn(refuse(tcp));
            continue;
        };
        let (http, handle, drain, idle) =
            (http.clone(), handle.clone(), drain.clone(), settings.idle_timeout);
        workers.serve_numbered(tcp, peer, move |tcp, peer, worker| {
            drain.track(async move {
                let io = WriteDeadline::new(tcp, idle).holding(slot);
                let svc = hyper::service::service_fn(move |req| {
                    let answer = handle(req, peer, worker);
                    async move { Ok::<_, Infallible>(answer.await) }
                });
                // Errors here are the client's (a timeout, a reset, a malformed head): nothing to add.
                let _ = http.serve_connection(TokioIo::new(io), svc).with_upgrades().await;
            })
        });
    }
    let left = drain.finish(settings.shutdown_timeout).await;
    if left > 0 {
        tracing::warn!("{left} connections still open at the shutdown deadline");
    }
}

/// Answers a connection over the limit with 503 and closes it. The request is read (briefly)
/// after the answer so the close does not reset the connection before the client sees the 503.
async fn refuse(mut tcp: TcpStream) {
    let msg =
        crate::http::response::error(503, Some("connection_limit_reached"), "too many connections", &[]);
    let _ = tokio::time::timeout(REFUSAL_TIME, async {
        tcp.write_all(&msg).await?;
        tcp.shutdown().await?;
        let mut sink = [0u8; 4096];
        while tcp.read(&mut sink).await? > 0 {}
        Ok::<_, std::io::Error>(())
    })
    .await;
}
