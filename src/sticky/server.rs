//! The balancer's HTTP side: classify each request, route it, learn sids from handshakes, and relay
//! WebSocket upgrades. Client connections are accepted in [`super::listener`], backends are
//! checked in [`super::health`].

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::args::Args;
use super::backend::{BackendId, Backends};
use super::backend_pool::{BackendPool, BackendPools, PooledBody};
use super::backend_request::{send, BackendFailure};
use super::bodies::{empty, full, full_body, read_small, session_unknown, Body, Small};
use super::config_reload;
use super::connector::Connector;
use super::engine::{self, EngineQuery};
use super::headers;
use super::settings::{RouteBy, Settings};
use super::sid_route;
use super::sid_tag::SidTagger;
use super::state::{live_sessions, Checks, State};
use super::store::SidStore;
use super::upgrade_watch::UpgradeWatch;
use crate::http::is_upgrade_request;
use crate::net::workers::Workers;
use crate::reload::Reloads;
use crate::upgrade::{ListenerSet, Role};

/// Handshake bodies are buffered to read the sid; larger ones are not handshakes.
const MAX_HANDSHAKE: usize = 64 * 1024;

/// Polling POSTs up to this size are read to spot a close packet; larger ones stream unread (a
/// client closing sends a few bytes).
const MAX_INSPECTED_POST: usize = 64 * 1024;

/// Engine.IO's JSON error answers are tiny; larger 400 bodies are relayed unread.
const MAX_ERROR_BODY: usize = 4 * 1024;

/// How long an ended session's binding still routes: a client closing while a poll is in flight
/// sends both at once, and the poll must reach the backend (which answers it) rather than find
/// the binding gone and get the balancer's own 400.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Time to connect to a backend.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs the balancer with resolved settings until `shutdown` resolves.
pub async fn run_with(settings: Settings, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    serve(settings, None, shutdown).await
}

/// As [`run_with`]; with `reload` (the command line the settings came from), SIGHUP reloads the
/// backends and health checks (`config_reload`), and `--pid-file` is written once listening.
pub(super) async fn serve(
    settings: Settings,
    reload: Option<Args>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    // Redis first: a wrong --redis is reported as such even when the listener could not bind.
    let ca = match &settings.redis_ca {
        Some(path) => {
            Some(std::fs::read(path).map_err(|e| anyhow::anyhow!("--redis-ca {}: {e}", path.display()))?)
        }
        None => None,
    };
    let (expiry, prefix, backends) = (settings.key_expiry, &settings.key_prefix, settings.backends.clone());
    let store = match &settings.redis {
        Some(url) => SidStore::with_redis(expiry, url, ca, prefix, backends).await?,
        None if !settings.redis_cluster.is_empty() => {
            SidStore::with_redis_cluster(expiry, &settings.redis_cluster, ca, prefix, backends).await?
        }
        None => SidStore::new(expiry),
    };
    let tags = match &settings.route_by {
        RouteBy::Tag(key) => {
            let tagger =
                SidTagger::new(key, &settings.backends).map_err(|e| anyhow::anyhow!("--backend: {e}"))?;
            Some(ArcSwap::from_pointee(tagger))
        }
        RouteBy::Store => None,
    };
    // Bound here, inherited from systemd or taken over from the running process (--upgrade).
    let mut listeners = ListenerSet::open(&settings.upgrade).await?;
    let listener = listeners.take(Role::Listen, settings.listen).await?;
    let metrics = match settings.metrics {
        Some(addr) => Some(crate::telemetry::serve_metrics_on(listeners.take(Role::Metrics, addr).await?)?),
        None => None,
    };
    let workers = Workers::start(settings.workers)?;
    let connector = Connector::new(CONNECT_TIMEOUT, settings.idle_timeout);
    let probe = Client::builder(TokioExecutor::new()).pool_max_idle_per_host(0).build(connector.plain());
    let pools = BackendPools::new(&connector, workers.count());
    let state = Arc::new(State {
        backends: Backends::new(settings.backends.clone(), settings.balance),
        store,
        tags,
        checks: ArcSwap::from_pointee(Checks {
            interval: settings.check_interval,
            timeout: settings.check_timeout,
        }),
        settings,
        pools,
        probe,
    });
    // Installed before the address is announced: a SIGHUP without a handler ends the process.
    let reloads = match reload {
        Some(args) => {
            let reloads = Reloads::new("sticky", args.config.clone());
            let state = state.clone();
            Some(tokio::spawn(reloads.listen(move |_| config_reload::apply(&args, &state))?))
        }
        None => None,
    };
    let local = listener.local_addr()?;
    eprintln!("listening on {local}");
    if let Some(addr) = metrics {
        eprintln!("metrics listening on {addr}");
    }
    let checker = tokio::spawn(super::health::health_loop(state.clone()));
    let handler = {
        let state = state.clone();
        move |req: Request<Incoming>, peer: SocketAddr, worker: usize| {
            let state = state.clone();
            async move { route(&state, state.pools.of(worker), req, peer).await }
        }
    };
    // From here we accept: a predecessor stops, and a successor may take over from us in turn.
    let handover = listeners.serve().await?;
    // Written once we accept, so that after an upgrade the file names the successor.
    let pid_file = crate::reload::pid_file::write_if(state.settings.pid_file.as_deref())?;
    super::listener::serve(listener, &state.settings, &workers, handover.until(shutdown), handler).await;
    checker.abort();
    if let Some(r) = reloads {
        r.abort();
    }
    drop(pid_file);
    Ok(())
}

async fn route(
    state: &Arc<State>,
    pool: &Arc<BackendPool>,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Body> {
    if !engine::under_path(req.uri().path(), &state.settings.path) {
        return match state.backends.any() {
            Some(b) => forward(state, pool, b, req.map(BodyExt::boxed), SessionTunnel::Plain).await,
            None => full(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "no healthy backend\n"),
        };
    }
    let q = engine::parse_query(req.uri().query().unwrap_or(""));
    if let Some(sid) = q.sid.clone() {
        return by_sid(state, pool, req, sid, &q, peer).await;
    }
    if req.method() != Method::GET {
        // Engine.IO answers a sid-less POST with its own 400; any backend will do.
        return match state.backends.any() {
            Some(b) => forward(state, pool, b, req.map(BodyExt::boxed), SessionTunnel::Plain).await,
            None => full(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "no healthy backend\n"),
        };
    }
    handshake(state, pool, req, &q, peer).await
}

/// A request of a known session (poll, POST, upgrade): to its backend. Watches for the session's
/// end: a close packet in a POST, the backend no longer knowing the sid, or (in the tunnel) the
/// end of the WebSocket the session moved onto.
async fn by_sid(
    state: &Arc<State>,
    pool: &Arc<BackendPool>,
    mut req: Request<Incoming>,
    sid: String,
    q: &EngineQuery,
    peer: SocketAddr,
) -> Response<Body> {
    let Some((b, sid)) = sid_route::backend_of(state, &mut req, sid, peer).await else {
        return session_unknown();
    };
    tracing::debug!(%peer, %sid, backend = %state.backends.get(b).addr, "route by sid");
    let (req, closing) = if req.method() == Method::POST {
        match read_post(req, q.eio3).await {
            Ok(x) => x,
            Err(resp) => return resp,
        }
    } else {
        (req.map(BodyExt::boxed), false)
    };
    let resp = forward(state, pool, b, req, SessionTunnel::Session(sid.clone())).await;
    match resp.status() {
        StatusCode::OK if closing => {
            end_session(state, &sid, "client_close").await;
            resp
        }
        StatusCode::BAD_REQUEST => {
            let (resp, gone) = backend_forgot_session(resp).await;
            if gone {
                end_session(state, &sid, "session_unknown").await;
            }
            resp
        }
        _ => resp,
    }
}

/// The session is over: stop counting it at once, and drop its binding (here and in Redis) after
/// [`CLOSE_GRACE`], so requests sent with the close (the poll in flight) still reach the backend.
async fn end_session(state: &State, sid: &str, reason: &'static str) {
    if state.store.end(sid, CLOSE_GRACE).await {
        metrics::counter!("tunnelkit_sticky_sessions_ended_total", "reason" => reason).increment(1);
        tracing::debug!(%sid, reason, "session ended");
    }
}

/// Reads a small polling POST (declared length within [`MAX_INSPECTED_POST`]) to see whether it
/// closes the session; anything larger, or of unknown length past the cap, streams on unread.
async fn read_post(req: Request<Incoming>, eio3: bool) -> Result<(Request<Body>, bool), Response<Body>> {
    let declared =
        req.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_INSPECTED_POST as u64) {
        return Ok((req.map(BodyExt::boxed), false));
    }
    let (parts, body) = req.into_parts();
    match read_small(body, MAX_INSPECTED_POST).await {
        Ok(Small::Whole(bytes)) => {
            let ct = parts.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
            let closing = engine::has_close_packet(ct, eio3, &bytes);
            Ok((Request::from_parts(parts, full_body(bytes)), closing))
        }
        Ok(Small::Larger(body)) => Ok((Request::from_parts(parts, body), false)),
        Err(_) => Err(full(StatusCode::BAD_REQUEST, "text/plain", "request body unreadable\n")),
    }
}

/// A 400 from the session's backend: true if it is Engine.IO's "Session ID unknown" (code 1), i.e.
/// the backend forgot the session (ping timeout, restart). The answer is relayed unchanged.
async fn backend_forgot_session(resp: Response<Body>) -> (Response<Body>, bool) {
    let json =
        resp.headers().get(CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !json {
        return (resp, false);
    }
    let (parts, body) = resp.into_parts();
    match read_small(body, MAX_ERROR_BODY).await {
        Ok(Small::Whole(bytes)) => {
            let gone = engine::is_session_unknown(&bytes);
            (Response::from_parts(parts, full_body(bytes)), gone)
        }
        Ok(Small::Larger(body)) => (Response::from_parts(parts, body), false),
        Err(_) => (full(StatusCode::BAD_GATEWAY, "text/plain", "backend failed\n"), false),
    }
}

/// A new session: pick a backend, forward, learn the sid, bind it, and only then answer. A backend
/// that cannot be reached is marked down and the next one is tried.
async fn handshake(
    state: &Arc<State>,
    pool: &Arc<BackendPool>,
    req: Request<Incoming>,
    q: &EngineQuery,
    peer: SocketAddr,
) -> Response<Body> {
    let polling = !q.websocket;
    // A handshake is a GET without a body, so it can be re-sent to another backend.
    let (parts, _) = req.into_parts();
    // Filled only when a backend cannot be reached: a handshake that goes through allocates none.
    let mut tried = Vec::new();
    loop {
        let sessions = live_sessions(state);
        let Some(b) = state.backends.pick(&sessions, &tried) else {
            metrics::counter!("tunnelkit_sticky_routing_errors_total", "kind" => "no_backend").increment(1);
            return full(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "no healthy backend\n");
        };
        tracing::debug!(%peer, backend = %state.backends.get(b).addr, polling, "new session");
        if !polling {
            let req = Request::from_parts(parts, empty());
            return forward(state, pool, b, req, SessionTunnel::WebSocketOnly).await;
        }
        let req = Request::from_parts(parts.clone(), empty());
        match send(state, pool, b, req, true, false).await {
            Err(BackendFailure::Connect) => tried.push(b),
            Err(BackendFailure::Other(resp)) => return resp,
            Ok(resp) => return learn(state, b, resp).await,
        }
    }
}

/// Reads a handshake answer, binds its sid, then releases it to the client.
async fn learn(state: &State, b: BackendId, resp: Response<PooledBody>) -> Response<Body> {
    let (mut parts, body) = resp.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers, false);
    if parts.status != StatusCode::OK {
        return Response::from_parts(parts, body.boxed());
    }
    let bytes = match Limited::new(body, MAX_HANDSHAKE).collect().await {
        Ok(c) => c.to_bytes(),
        Err(_) => {
            return full(StatusCode::BAD_GATEWAY, "text/plain", "handshake answer unreadable or too large\n")
        }
    };
    let ct = parts.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let backend = &state.backends.get(b);
    let bytes = match engine::learn_sid(ct, &bytes) {
        Some(open) => {
            let Some(bytes) = sid_route::hand_out(state, b, &open.sid, ct, bytes) else {
                metrics::counter!("tunnelkit_sticky_routing_errors_total", "kind" => "sid_not_tagged")
                    .increment(1);
                tracing::warn!(backend = %backend.addr, "could not put the sid tag into a handshake answer");
                return full(StatusCode::BAD_GATEWAY, "text/plain", "handshake answer could not be tagged\n");
            };
            // Bind before the client sees the sid: its very next request must find the binding.
            state.store.put(&open.sid, b).await;
            backend.sessions_total.increment(1);
            tracing::debug!(sid = %open.sid, backend = %backend.addr, "bound");
            bytes
        }
        None => {
            metrics::counter!("tunnelkit_sticky_routing_errors_total", "kind" => "sid_not_learned")
                .increment(1);
            tracing::warn!(backend = %backend.addr, "could not read a sid from a handshake answer");
            if state.tags.is_some() {
                // A client given an untagged sid could not route any request of the session.
                return full(
                    StatusCode::BAD_GATEWAY,
                    "text/plain",
                    "handshake answer without a readable sid\n",
                );
            }
            bytes
        }
    };
    parts.headers.remove(CONTENT_LENGTH);
    Response::from_parts(parts, full_body(bytes))
}

/// What a WebSocket upgrade relayed by [`forward`] is to the session accounting.
enum SessionTunnel {
    /// Not an Engine.IO session (other paths, sid-less non-GETs).
    Plain,
    /// The upgrade of polling session `sid`: once the client completes it, the tunnel's end is the
    /// session's end.
    Session(String),
    /// A WebSocket-only session: it counts as live while the tunnel is open.
    WebSocketOnly,
}

/// Forwards a request to backend `b`, relaying a WebSocket upgrade byte for byte after the 101.
async fn forward(
    state: &Arc<State>,
    pool: &Arc<BackendPool>,
    b: BackendId,
    mut req: Request<Body>,
    tunnel: SessionTunnel,
) -> Response<Body> {
    let upgrade = is_upgrade_request(req.method().as_str(), req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let mut resp = match send(state, pool, b, req, false, upgrade).await {
        Ok(r) => r,
        // The session's backend just became unreachable: answer as Engine.IO does for a lost session.
        Err(BackendFailure::Connect) => return session_unknown(),
        Err(BackendFailure::Other(r)) => return r,
    };
    if let (Some(client_upgrade), StatusCode::SWITCHING_PROTOCOLS) = (client_upgrade, resp.status()) {
        let backend_upgrade = hyper::upgrade::on(&mut resp);
        let stop = state.backends.get(b).tunnel_token();
        let websocket_only =
            matches!(tunnel, SessionTunnel::WebSocketOnly).then(|| state.backends.get(b).websocket_session());
        let state = state.clone();
        tokio::spawn(async move {
            let _live = websocket_only;
            let (Ok(c), Ok(u)) = (client_upgrade.await, backend_upgrade.await) else { return };
            let sid = match tunnel {
                SessionTunnel::Session(sid) => Some(sid),
                _ => None,
            };
            let pin = {
                let (state, sid) = (state.clone(), sid.clone());
                move || {
                    if let Some(sid) = sid {
                        // The session now lives on this WebSocket: no poll will refresh its binding.
                        state.store.pin(&sid);
                    }
                }
            };
            let (mut c, mut u) = (UpgradeWatch::new(TokioIo::new(c), pin), TokioIo::new(u));
            // No idle timeout: Socket.IO's own pings keep the session alive, and cutting them is the
            // classic balancer misconfiguration.
            tokio::select! {
                _ = crate::net::relay(&mut c, &mut u, None) => {}
                _ = stop.cancelled() => {}
            }
            // After a completed upgrade the polling transport is gone: the WebSocket was the
            // session. A failed probe leaves the session on polling.
            if let (Some(sid), true) = (sid, c.upgraded()) {
                end_session(&state, &sid, "websocket_closed").await;
            }
        });
        let (mut parts, _) = resp.into_parts();
        headers::strip_hop_by_hop(&mut parts.headers, true);
        return Response::from_parts(parts, empty());
    }
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        // Only an upgrade request may switch protocols; this one was relayed as an ordinary request.
        return full(StatusCode::BAD_GATEWAY, "text/plain", "backend switched protocols unasked\n");
    }
    let (mut parts, body) = resp.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers, false);
    Response::from_parts(parts, body.boxed())
}
