//! Listeners and the per-connection request loop of `tunnelkit proxy`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::client_stream::ClientStream;
use super::exchange::{ClientConn, Exchange, Next, Shared};
use super::pool::Pool;
use super::settings::Settings;
use super::{connect, forward};
use crate::client::{ProxyDialer, ProxyKind};
use crate::http::body::BufIo;
use crate::http::head::{self, HeadError, RequestHead};
use crate::http::response;
use crate::net::socks::SocksServer;
use crate::net::workers::Workers;
use crate::net::{socket, write_all_within, Dialer, DirectDialer, GatedDialer};
use crate::shutdown::Drain;
use crate::telemetry::access_log::AccessLog;

/// Runs the proxy with resolved settings until `shutdown` resolves, then drains.
///
/// Prints `listening on ADDR` (and `socks5 listening on ADDR`) to stderr once bound, so a caller
/// that asked for port 0 can learn the port.
pub async fn run_with(settings: Settings, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    // Read the certificate before binding, so a bad file is reported before anything listens.
    let tls = match &settings.tls {
        Some(files) => {
            let mut cfg = crate::net::tls::server_config(&files.cert, &files.key)?;
            // The request loop speaks HTTP/1.1 only; offering h2 would make clients pick it.
            cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
            Some(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
        }
        None => None,
    };
    let listener = TcpListener::bind(settings.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {} (--listen): {e}", settings.listen))?;
    let socks_listener = match settings.socks {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {addr} (--socks): {e}"))?,
        ),
        None => None,
    };
    let metrics = match settings.metrics {
        Some(addr) => Some(crate::telemetry::serve_metrics(addr).await?),
        None => None,
    };
    let access_log = match &settings.access_log {
        Some(dest) => {
            AccessLog::open(dest).map_err(|e| anyhow::anyhow!("cannot open access log {dest}: {e}"))?
        }
        None => AccessLog::disabled(),
    };
    let direct = DirectDialer::new(Arc::new(settings.policy.clone()), settings.dial_timeout);
    let (dialer, parent): (Arc<dyn Dialer>, Option<Arc<ProxyDialer>>) = match &settings.upstream {
        Some(url) => {
            let p =
                Arc::new(ProxyDialer::from_url(url).map_err(|e| anyhow::anyhow!("--upstream {url}: {e}"))?);
            // Only an HTTP parent takes absolute-form requests; through SOCKS we reach origins.
            let http_parent = matches!(p.url().kind, ProxyKind::Http | ProxyKind::Https);
            let gated = GatedDialer::new(Arc::new(settings.policy.clone()), p.clone());
            (Arc::new(gated), http_parent.then_some(p))
        }
        None => (Arc::new(direct), None),
    };
    let users = Arc::new(settings.users.clone());
    let drain = Drain::new();
    let shared = Arc::new(Shared {
        pool: Pool::new(settings.upstream_idle_timeout),
        settings,
        dialer: dialer.clone(),
        parent,
        access_log: access_log.clone(),
        drain: drain.clone(),
        tls,
    });

    // One budget for both listeners: SOCKS connections count against --max-connections too.
    let limit = Arc::new(Semaphore::new(shared.settings.max_connections));
    let local = listener.local_addr()?;
    crate::telemetry::announce(&format!("listening on {local}"));
    tracing::info!(%local, tls = shared.tls.is_some(), "proxy listening");
    if let Some(addr) = metrics {
        crate::telemetry::announce(&format!("metrics listening on {addr}"));
    }
    if let Some(l) = socks_listener {
        let addr = l.local_addr()?;
        crate::telemetry::announce(&format!("socks5 listening on {addr}"));
        let socks = SocksServer::new(dialer, users, access_log)
            .handshake_timeout(shared.settings.header_timeout)
            .idle_timeout(Some(shared.settings.tunnel_idle_timeout))
            .connection_limit(limit.clone());
        let d = drain.clone();
        drain.spawn(Arc::new(socks).serve(l, d));
    }

    let sweeper = {
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                shared.pool.sweep();
            }
        })
    };

    let workers = Workers::start(shared.settings.workers)?;
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => break,
            x = socket::accept(&listener) => x,
        };
        let permit = match limit.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                metrics::counter!("tunnelkit_proxy_errors_total", "kind" => "max_connections").increment(1);
                if shared.tls.is_some() {
                    // A plain-text 503 means nothing to a client expecting a TLS handshake, and a
                    // handshake per refused connection is what an overload cannot afford: close.
                    continue;
                }
                drain.spawn(async move {
                    let mut tcp = tcp;
                    let msg =
                        response::error(503, Some("connection_limit_reached"), "too many connections", &[]);
                    let _ = tokio::time::timeout(Duration::from_secs(1), tcp.write_all(&msg)).await;
                });
                continue;
            }
        };
        let shared = shared.clone();
        let drain = drain.clone();
        workers.serve(tcp, peer, move |tcp, peer| {
            drain.track(async move {
                metrics::gauge!("tunnelkit_proxy_connections").increment(1.0);
                serve_connection(&shared, tcp, peer).await;
                metrics::gauge!("tunnelkit_proxy_connections").decrement(1.0);
                drop(permit);
            })
        });
    }
    drop(listener);
    tracing::info!("shutting down: draining for up to {:?}", shared.settings.shutdown_timeout);
    let left = drain.finish(shared.settings.shutdown_timeout).await;
    if left > 0 {
        tracing::warn!("{left} connections still open at the shutdown deadline");
    }
    sweeper.abort();
    shared.pool.clear();
    Ok(())
}

/// Completes the TLS handshake if the port is served over TLS. It runs on the connection's own task
/// (never the accept loop), bounded by the header timeout like the request head it precedes; a
/// failure is the client's problem (wrong CA, plain HTTP sent to a TLS port, a scanner), so it is
/// counted and logged at debug, and the connection is dropped.
async fn client_stream(shared: &Shared, tcp: TcpStream, peer: SocketAddr) -> Option<ClientStream> {
    let Some(acceptor) = &shared.tls else { return Some(ClientStream::Plain(tcp)) };
    let why = match tokio::time::timeout(shared.settings.header_timeout, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => return Some(ClientStream::Tls(Box::new(tls))),
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no handshake within {:?} (--header-timeout)", shared.settings.header_timeout),
    };
    metrics::counter!("tunnelkit_proxy_errors_total", "kind" => "tls_handshake").increment(1);
    tracing::debug!(%peer, "TLS handshake with the client failed: {why}");
    None
}

async fn serve_connection(shared: &Shared, tcp: TcpStream, peer: SocketAddr) {
    let Some(stream) = client_stream(shared, tcp, peer).await else { return };
    let mut client = BufIo::new(stream);
    let mut first = true;
    loop {
        let started = Instant::now();
        let head = match read_head(shared, &mut client, first).await {
            Ok(Some(h)) => h,
            Ok(None) => return,
            Err(status) => {
                let (msg, kind) = match &status {
                    ReadError::Head(e) => (e.to_string(), "http_request_error"),
                    ReadError::Timeout => {
                        ("request head not received in time".to_owned(), "http_request_error")
                    }
                };
                let code = match &status {
                    ReadError::Head(e) => e.status(),
                    ReadError::Timeout => 408,
                };
                metrics::counter!("tunnelkit_proxy_errors_total", "kind" => "bad_request").increment(1);
                let ex = Exchange { shared, peer, method: "-", target: "-", started };
                ex.fail(&mut client, code, Some(kind), &msg).await;
                return;
            }
        };
        first = false;
        let next = handle(shared, &mut client, peer, head).await;
        if matches!(next, Next::Close) || shared.drain.is_triggered() {
            let _ = client.io.shutdown().await;
            return;
        }
    }
}

enum ReadError {
    Head(HeadError),
    Timeout,
}

/// Reads one request head. `Ok(None)`: the client closed (or went idle, or we are shutting down)
/// between requests, which is not an error.
async fn read_head(
    shared: &Shared,
    client: &mut ClientConn,
    first: bool,
) -> Result<Option<RequestHead>, ReadError> {
    let s = &shared.settings;
    let idle_deadline = Instant::now() + if first { s.header_timeout } else { s.idle_timeout };
    let mut head_deadline = None;
    loop {
        if !client.buf.is_empty() {
            match head::parse_request(&client.buf) {
                Ok(Some((head, len))) => {
                    let _ = client.buf.split_to(len);
                    return Ok(Some(head));
                }
                Ok(None) => {}
                Err(e) => return Err(ReadError::Head(e)),
            }
        }
        let deadline = if client.buf.is_empty() {
            idle_deadline
        } else {
            *head_deadline.get_or_insert_with(|| Instant::now() + s.header_timeout)
        };
        let waiting_idle = client.buf.is_empty() && !first;
        let read = tokio::select! {
            r = tokio::time::timeout_at(deadline.into(), client.fill()) => r,
            _ = shared.drain.cancelled(), if waiting_idle => return Ok(None),
        };
        match read {
            Err(_) if waiting_idle => return Ok(None),
            Err(_) => return Err(ReadError::Timeout),
            Ok(Ok(0)) if client.buf.is_empty() => return Ok(None),
            Ok(Ok(0)) => return Err(ReadError::Head(HeadError::Malformed("request head cut short".into()))),
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return Ok(None),
        }
    }
}

async fn handle(shared: &Shared, client: &mut ClientConn, peer: SocketAddr, head: RequestHead) -> Next {
    let ex = Exchange { shared, peer, method: &head.method, target: &head.target, started: Instant::now() };
    let framing = match head::check_request(&head) {
        Ok(f) => f,
        Err(e) => return ex.fail(client, e.status(), Some("http_request_error"), &e.to_string()).await,
    };
    if !shared.settings.users.is_empty()
        && !shared.settings.users.verify_header(head::value(&head.headers, "proxy-authorization"))
    {
        metrics::counter!("tunnelkit_proxy_errors_total", "kind" => "auth").increment(1);
        tracing::debug!(%peer, method = %head.method, target = %head.target, "proxy authentication missing or wrong: 407");
        let msg = response::error(
            407,
            None,
            "proxy authentication required",
            &[("Proxy-Authenticate", "Basic realm=\"tunnelkit\", charset=\"UTF-8\"")],
        );
        let _ = write_all_within(&mut client.io, &msg, shared.settings.idle_timeout).await;
        ex.log(407, 0, 0, Some("auth"));
        return Next::Close;
    }
    if head.method == "CONNECT" {
        return connect::handle(&ex, client, &head).await;
    }
    forward::handle(&ex, client, &head, framing).await
}
