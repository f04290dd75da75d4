//! Listeners and the per-connection request loop of `tunnelkit proxy`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::args::Args;
use super::client_stream::ClientStream;
use super::exchange::{ClientConn, Exchange, InterceptStart, Next, Origin, Shared};
use super::inspect::flows_log::FlowsLog;
use super::inspect::recorder::{Recorder, RecorderConfig};
use super::inspect::settings::Recording;
use super::inspect::{self, har};
use super::intercept::Interceptor;
use super::live::{ConnectionLimit, Live, LiveDialer, Reloader};
use super::pool::{Pool, PoolKey};
use super::settings::Settings;
use super::{connect, forward};
use crate::client::{ProxyDialer, ProxyKind};
use crate::http::body::BufIo;
use crate::http::head::{self, HeadError, RequestHead};
use crate::http::response;
use crate::net::socks::SocksServer;
use crate::net::workers::Workers;
use crate::net::{socket, write_all_within, Dialer, PipePool};
use crate::reload::revoke::Revocations;
use crate::reload::Reloads;
use crate::shutdown::Drain;
use crate::telemetry::access_log::AccessLog;
use crate::upgrade::{ListenerSet, Role};

/// Runs the proxy with resolved settings until `shutdown` resolves, then drains.
///
/// Prints `listening on ADDR` (and `socks5 listening on ADDR`) to stderr once bound, so a caller
/// that asked for port 0 can learn the port.
pub async fn run_with(settings: Settings, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    serve(settings, None, shutdown).await
}

/// As [`run_with`]; with `reload` (the command line the settings came from), SIGHUP reloads the
/// configuration (see `live`), and `--pid-file` is written once listening.
pub(super) async fn serve(
    settings: Settings,
    reload: Option<Args>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
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
    // Bound here, inherited from systemd or taken over from the running process (--upgrade).
    let mut listeners = ListenerSet::open(&settings.upgrade).await?;
    let listener = listeners.take(Role::Listen, settings.listen).await?;
    let socks_listener = match settings.socks {
        Some(addr) => Some(listeners.take(Role::Socks, addr).await?),
        None => None,
    };
    let inspect_listener = match settings.recording.inspect {
        Some(addr) => Some(listeners.take(Role::Inspect, addr).await?),
        None => None,
    };
    let metrics = match settings.metrics {
        Some(addr) => Some(crate::telemetry::serve_metrics_on(listeners.take(Role::Metrics, addr).await?)?),
        None => None,
    };
    let access_log = match &settings.access_log {
        Some(dest) => {
            AccessLog::open(dest).map_err(|e| anyhow::anyhow!("cannot open access log {dest}: {e}"))?
        }
        None => AccessLog::disabled(),
    };
    let interceptor = match &settings.intercept {
        Some(i) => Some(Interceptor::start(i, settings.header_timeout, settings.dial_timeout)?),
        None => None,
    };
    let recorder = match settings.recording.enabled() {
        true => Some(recorder(&settings.recording)?),
        false => None,
    };
    let upstream = match &settings.upstream {
        Some(url) => {
            Some(Arc::new(ProxyDialer::from_url(url).map_err(|e| anyhow::anyhow!("--upstream {url}: {e}"))?))
        }
        None => None,
    };
    // Only an HTTP parent takes absolute-form requests; through SOCKS we reach origins.
    let parent = upstream.clone().filter(|p| matches!(p.url().kind, ProxyKind::Http | ProxyKind::Https));
    let live = Arc::new(ArcSwap::from_pointee(Live::new(&settings, upstream.as_ref())));
    let dialer: Arc<dyn Dialer> = Arc::new(LiveDialer(live.clone()));
    let users = live.load().users.clone();
    let revocations = Revocations::new();
    // One budget for both listeners: SOCKS connections count against --max-connections too.
    let limit = ConnectionLimit::new(settings.max_connections);
    let semaphore = limit.semaphore.clone();
    // Installed before the address is announced: a SIGHUP without a handler ends the process.
    let reloads = match reload {
        Some(args) => {
            let reloads = Reloads::new("proxy", args.config.clone());
            let reloader = Reloader {
                args,
                started: settings.clone(),
                live: live.clone(),
                upstream,
                access_log: access_log.clone(),
                revocations: revocations.clone(),
                limit,
            };
            Some(tokio::spawn(reloads.listen(move |_| reloader.apply())?))
        }
        None => None,
    };
    let pid_file = settings.pid_file.clone();
    let (settings_pipes, pipe_size) = (settings.max_pipes, settings.pipe_size);
    let drain = Drain::new();
    let shared = Arc::new(Shared {
        pool: Pool::new(settings.upstream_idle_timeout),
        settings,
        dialer: dialer.clone(),
        parent,
        access_log: access_log.clone(),
        drain: drain.clone(),
        tls,
        interceptor,
        recorder,
        live,
        revocations,
        pipes: (settings_pipes > 0).then(|| PipePool::new(settings_pipes, Some(pipe_size))),
    });

    let limit = semaphore;
    let local = listener.local_addr()?;
    crate::telemetry::announce(&format!("listening on {local}"));
    tracing::info!(%local, tls = shared.tls.is_some(), "proxy listening");
    if let Some(addr) = metrics {
        crate::telemetry::announce(&format!("metrics listening on {addr}"));
    }
    if let (Some(l), Some(recorder)) = (inspect_listener, &shared.recorder) {
        let addr = l.local_addr()?;
        crate::telemetry::announce(&format!("inspector listening on {addr}"));
        let users = (!users.is_empty()).then(|| users.clone());
        drain.spawn(inspect::server::serve(l, recorder.clone(), users, drain.clone()));
    }
    if let Some(l) = socks_listener {
        let addr = l.local_addr()?;
        crate::telemetry::announce(&format!("socks5 listening on {addr}"));
        let live = shared.live.clone();
        let socks = SocksServer::new(dialer, users.clone(), access_log)
            .users_from(move || live.load().users.clone())
            .closed_when({
                let revocations = shared.revocations.clone();
                move |user| revocations.watch(user)
            })
            .handshake_timeout(shared.settings.header_timeout)
            .idle_timeout(Some(shared.settings.tunnel_idle_timeout))
            .connection_limit(limit.clone())
            .splice(shared.pipes.clone());
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
    // From here we accept: a predecessor stops, and a successor may take over from us in turn.
    let handover = listeners.serve().await?;
    let shutdown = handover.until(shutdown);
    // Written once we accept, so that after an upgrade the file names the successor.
    let pid_file = crate::reload::pid_file::write_if(pid_file.as_deref())?;
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
    if let Some(r) = reloads {
        r.abort();
    }
    tracing::info!("shutting down: draining for up to {:?}", shared.settings.shutdown_timeout);
    let left = drain.finish(shared.settings.shutdown_timeout).await;
    if left > 0 {
        tracing::warn!("{left} connections still open at the shutdown deadline");
    }
    sweeper.abort();
    shared.pool.clear();
    if let Some(recorder) = &shared.recorder {
        recorder.flush_log().await;
        if let Some(path) = &shared.settings.recording.har {
            match har::write_har(path, &recorder.flows(), recorder.body_max()) {
                Ok(()) => tracing::info!(path = %path.display(), "flows written as HAR"),
                Err(e) => tracing::error!("--har {}: {e:#}", path.display()),
            }
        }
    }
    drop(pid_file);
    Ok(())
}

/// The flow recorder, with the flows log opened (so a bad path fails before anything listens).
fn recorder(r: &Recording) -> anyhow::Result<Recorder> {
    let flows_log = match &r.flows_log {
        Some(spec) => Some(FlowsLog::open(spec).map_err(|e| anyhow::anyhow!("{e}"))?),
        None => None,
    };
    Recorder::new(RecorderConfig { flows: r.flows, body_max: r.body_max, flows_log })
        .map_err(|e| anyhow::anyhow!("cannot start the flows log writer: {e}"))
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
    let start = match serve_requests(shared, &mut client, peer, None).await {
        Next::Intercept(start) => start,
        _ => {
            let _ = client.io.shutdown().await;
            return;
        }
    };
    // Boxed for the same reason as forwarding: two TLS handshakes and a second request loop
    // would otherwise size every connection's task.
    Box::pin(intercepted(shared, client, peer, *start)).await;
}

/// An intercepted CONNECT: both TLS handshakes, then the request loop over the decrypted stream.
async fn intercepted(shared: &Shared, client: ClientConn, peer: SocketAddr, start: InterceptStart) {
    let Some(interceptor) = &shared.interceptor else { return };
    let InterceptStart { target, authority, upstream, user } = start;
    // The user of the CONNECT: a reload that removes it closes this connection after the grace.
    let revoked = user.map(|u| shared.revocations.watch(&u));
    let taken = match interceptor.take_over(client, upstream, &target).await {
        Ok(t) => t,
        Err(why) => {
            metrics::counter!("tunnelkit_proxy_errors_total", "kind" => "intercept_client_tls").increment(1);
            tracing::info!(%peer, %target, "interception failed: {why}");
            return;
        }
    };
    let refused = match taken.upstream {
        Ok(tls) => {
            // The first request finds the origin connection where every later one looks for it.
            shared.pool.checkin(PoolKey::Tls(target.clone(), taken.sni.clone()), BufIo::new(tls));
            None
        }
        Err(why) => {
            metrics::counter!("tunnelkit_proxy_errors_total", "kind" => "upstream_tls").increment(1);
            tracing::warn!(%peer, %target, "{why}");
            Some(why)
        }
    };
    let origin = Origin { target, authority, sni: taken.sni, refused };
    let mut client = BufIo::new(taken.client);
    let requests = serve_requests(shared, &mut client, peer, Some(&origin));
    match revoked {
        Some(token) => {
            tokio::select! {
                _ = requests => {}
                () = token.cancelled() => tracing::debug!(%peer, "user removed by reload: intercepted connection closed"),
            }
        }
        None => drop(requests.await),
    }
    let _ = client.io.shutdown().await;
}

/// Serves requests on one client connection until it closes, an exchange ends it, or (outside an
/// intercepted connection) a CONNECT is to be intercepted.
async fn serve_requests(
    shared: &Shared,
    client: &mut ClientConn,
    peer: SocketAddr,
    origin: Option<&Origin>,
) -> Next {
    let mut first = true;
    loop {
        let started = Instant::now();
        let head = match read_head(shared, client, first).await {
            Ok(Some(h)) => h,
            Ok(None) => return Next::Close,
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
                let mut ex = Exchange::new(shared, peer, None, "-", origin);
                ex.started = started;
                return ex.fail(client, code, Some(kind), &msg).await;
            }
        };
        first = false;
        let next = handle(shared, client, peer, head, origin).await;
        if !matches!(next, Next::KeepAlive) || shared.drain.is_triggered() {
            return next;
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
    let t = shared.live.load().timeouts;
    let idle_deadline = Instant::now() + if first { t.header } else { t.idle };
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
            *head_deadline.get_or_insert_with(|| Instant::now() + t.header)
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

async fn handle(
    shared: &Shared,
    client: &mut ClientConn,
    peer: SocketAddr,
    head: RequestHead,
    origin: Option<&Origin>,
) -> Next {
    // Inside an intercepted connection the access log and flows name the whole URL.
    let url = origin.map(|o| format!("https://{}{}", o.authority, head.target));
    let target = url.as_deref().unwrap_or(&head.target);
    let mut ex = Exchange::new(shared, peer, Some(&head), target, origin);
    let framing = match head::check_request(&head) {
        Ok(f) => f,
        Err(e) => return ex.fail(client, e.status(), Some("http_request_error"), &e.to_string()).await,
    };
    // An intercepted connection was authenticated by its CONNECT; its requests are the client's
    // own to the origin and carry no proxy credentials.
    let users = &ex.live.users;
    if origin.is_none() && !users.is_empty() {
        ex.user = users.user_of_header(head::value(&head.headers, "proxy-authorization"));
    }
    if origin.is_none() && !users.is_empty() && ex.user.is_none() {
        metrics::counter!("tunnelkit_proxy_errors_total", "kind" => "auth").increment(1);
        tracing::debug!(%peer, method = %head.method, target = %head.target, "proxy authentication missing or wrong: 407");
        let msg = response::error(
            407,
            None,
            "proxy authentication required",
            &[("Proxy-Authenticate", "Basic realm=\"tunnelkit\", charset=\"UTF-8\"")],
        );
        let _ = write_all_within(&mut client.io, &msg, ex.live.timeouts.idle).await;
        ex.log(407, 0, 0, Some("auth"));
        return Next::Close;
    }
    if head.method == "CONNECT" {
        if origin.is_some() {
            let detail = "CONNECT inside an intercepted connection is not supported";
            return ex.fail(client, 405, Some("http_request_error"), detail).await;
        }
        return connect::handle(&ex, client, &head).await;
    }
    // Boxed: the forwarding future (about 2.7 KB) would otherwise be part of every connection's
    // task for its whole life, idle keep-alive connections and CONNECT tunnels included; one
    // allocation per forwarded request is the cheaper side (issue 12: an idle tunnel <= 4 KiB).
    Box::pin(forward::handle(&ex, client, &head, framing)).await
}
