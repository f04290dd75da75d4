//! [`Server`]: the `ws-server` side. Accepts TCP (optionally TLS), performs the WebSocket upgrade on the
//! configured path, checks the bearer token (wrong or missing → HTTP 401, no tunnel, nothing dialled),
//! then runs the tunnel handshake: `HELLO` creates a tunnel (id + separate resume secret), `RESUME`
//! reattaches one after checking its secret in constant time and that the same token presents it. On
//! shutdown its [`Drain`] tracks every connection and closes each tunnel once its last stream has ended.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

use super::cluster::{self, ClientUpgrade, Handoff};
use super::compat;
use super::frame::{stamp, Frame, FrameType};
use super::handle::Tunnel;
use super::http_gate;
use super::id::{ResumeSecret, TunnelId};
use super::link;
use super::listen_limits::ListenLimits;
use super::params::{Limits, LinkParams, Mode};
use super::refusal::{protocol_error, refuse_http, refused_frame};
pub use super::server_options::ServerOptions;
use super::service::{self, ServiceContext};
use super::session::{Attached, Role, Session};
use super::token;
use super::wire::{refused, Message, Welcome, WireError, MAX_CLIENT_HANDSHAKE};
use super::ws::{Incoming, WsConnection, WsError};
use crate::net::{socket, BoxStream};
use crate::shutdown::Drain;

/// A tunnel the server knows, connected or held broken.
struct Entry {
    session: Arc<Session>,
    secret: ResumeSecret,
    /// The token that created it; a resume must present the same one.
    principal: Option<String>,
    /// How long it is kept once broken (what a cluster claim must outlive).
    hold: Duration,
}

/// A WebSocket tunnel server. Cheap to clone.
///
/// ```no_run
/// # async fn demo() -> anyhow::Result<()> {
/// use std::sync::Arc;
/// use tunnelkit::net::DirectDialer;
/// use tunnelkit::policy::Policy;
/// use tunnelkit::shutdown::Drain;
/// use tunnelkit::tunnel::{Server, ServerOptions};
///
/// let policy = Arc::new(Policy::new());
/// let dialer = Arc::new(DirectDialer::new(policy.clone(), std::time::Duration::from_secs(10)));
/// let mut opts = ServerOptions::new(dialer, policy);
/// opts.tokens = vec!["s3cret".into()];
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
/// Server::new(opts).serve(listener, Drain::new()).await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Server {
    inner: Arc<Inner>,
}

struct Inner {
    opts: ServerOptions,
    /// The accepted tokens: `opts.tokens` at start, replaced by [`Server::set_tokens`] on a reload.
    tokens: ArcSwap<Vec<String>>,
    /// What a new tunnel gets: `opts.limits` at start, replaced by [`Server::set_limits`] on a reload.
    limits: ArcSwap<Limits>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    tunnels: Mutex<HashMap<TunnelId, Entry>>,
    listen: Arc<ListenLimits>,
}

/// What the registry says to a `RESUME`.
enum ResumeCheck {
    /// Right secret, and presented by the token that created the tunnel (or it was created without one).
    Granted(Arc<Session>),
    /// Right secret, but from another token: refused, no takeover across tokens.
    OtherPrincipal,
    /// No such tunnel, or the wrong secret; answered alike so that ids cannot be probed.
    UnknownOrWrongSecret,
}

impl Server {
    /// A server with these options.
    pub fn new(opts: ServerOptions) -> Self {
        let tls = opts.tls.clone().map(tokio_rustls::TlsAcceptor::from);
        let listen = Arc::new(ListenLimits::new(opts.limits.max_listeners, opts.limits.allow_public_listen));
        let tokens = ArcSwap::from_pointee(opts.tokens.clone());
        let limits = ArcSwap::from_pointee(opts.limits.clone());
        let tunnels = Mutex::new(HashMap::new());
        Server { inner: Arc::new(Inner { opts, tokens, limits, tls, tunnels, listen }) }
    }

    /// Tunnels alive (connected or held broken).
    pub fn tunnel_count(&self) -> usize {
        self.inner.tunnels.lock().expect("registry lock").len()
    }

    /// Accepts connections until `drain` is triggered (the listener is then closed). Each connection is
    /// tracked by `drain`, and once it is triggered every tunnel is closed in order as soon as it has no
    /// stream open, and refuses new ones: [`Drain::finish`] then returns when the last stream ends.
    pub async fn serve(self, listener: TcpListener, drain: Drain) {
        if let Some(cluster) = self.inner.opts.cluster.clone() {
            let me = Arc::downgrade(&self.inner);
            let held = move || {
                let Some(inner) = me.upgrade() else { return Vec::new() };
                let tunnels = inner.tunnels.lock().expect("registry lock");
                tunnels.iter().map(|(id, e)| (*id, e.hold)).collect()
            };
            let d = drain.clone();
            tokio::spawn(async move { cluster.keep_claims(held, d.cancelled()).await });
        }
        loop {
            let (tcp, peer) = tokio::select! {
                _ = drain.cancelled() => return,
                x = socket::accept(&listener) => x,
            };
            let me = self.clone();
            let d = drain.clone();
            match &self.inner.opts.workers {
                Some(workers) => workers.serve(tcp, peer, move |tcp, peer| {
                    let tracked = me.serve_connection(tcp, peer, d.clone());
                    d.track(tracked)
                }),
                None => drop(drain.spawn(me.serve_connection(tcp, peer, d))),
            }
        }
    }

    // The upgrade callback's error type (`ErrorResponse`) is fixed by tungstenite's `Callback` trait.
    #[allow(clippy::result_large_err)]
    async fn serve_connection(self, tcp: TcpStream, peer: SocketAddr, drain: Drain) {
        let stream: BoxStream = match &self.inner.tls {
            Some(acceptor) => {
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => Box::new(tls),
                    Ok(Err(e)) => return tracing::debug!(%peer, "TLS handshake failed: {e}"),
                    Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
                }
            }
            None => Box::new(tcp),
        };
        let opts = &self.inner.opts;
        let limits = self.inner.limits.load_full();
        // A request that is not an upgrade is answered here, with a body saying what this port is.
        let stream =
            match tokio::time::timeout(Duration::from_secs(10), http_gate::gate(stream, &opts.path)).await {
                Ok(Some(s)) => s,
                Ok(None) => return tracing::debug!(%peer, "plain HTTP request answered"),
                Err(_) => return tracing::debug!(%peer, "no request head in time"),
            };
        let mut principal = None;
        let mut client_upgrade = ClientUpgrade::default();
        let mut handoff = None;
        let tokens = self.inner.tokens.load_full();
        let check = |req: &Request, resp: Response| {
            if req.uri().path() != opts.path {
                let body = format!(
                    "no tunnel endpoint at {}; this ws-server's path is {}\n",
                    req.uri().path(),
                    opts.path
                );
                return Err(refuse_http(404, false, body));
            }
            match token::presented(req, &tokens) {
                Ok(p) => principal = p,
                Err(token::NoValidToken) => {
                    return Err(refuse_http(401, true, "missing or wrong bearer token\n".into()))
                }
            }
            if let Some(cluster) = &opts.cluster {
                client_upgrade = ClientUpgrade::of(req);
                if let Some(v) = req.headers().get(cluster::handoff::HEADER) {
                    match cluster.check_handoff(v.to_str().unwrap_or_default()) {
                        Ok(h) => handoff = Some(h),
                        Err(e) => return Err(refuse_http(403, false, format!("{e}\n"))),
                    }
                }
            }
            Ok(resp)
        };
        // Only compat connections go on with tungstenite after the upgrade (ours go to `tunnel::ws`),
        // so only they need its message settings.
        let cfg = opts.compat.as_ref().map(|_| compat::websocket_config());
        let upgrade = tokio_tungstenite::accept_hdr_async_with_config(stream, check, cfg);
        let ws = match tokio::time::timeout(Duration::from_secs(10), upgrade).await {
            Ok(Ok(ws)) => ws,
            Ok(Err(e)) => return tracing::debug!(%peer, "upgrade refused: {e}"),
            Err(_) => return tracing::debug!(%peer, "upgrade timed out"),
        };
        if let Some(ctx) = &opts.compat {
            return compat::serve(ws, ctx.clone(), principal).await;
        }
        let max_message = link::max_message(limits.max_frame);
        // A conforming client sends nothing before the upgrade's answer: tungstenite holds no bytes.
        let raw = ws.into_inner();
        let ws = match (&opts.cluster, &handoff) {
            // A handoff is never handed on: the holder answers it, whatever its registry says.
            (Some(cluster), None) => {
                let route = cluster::Route {
                    peer,
                    upgrade: &client_upgrade,
                    holds: |id: &TunnelId| self.inner.tunnels.lock().expect("registry lock").contains_key(id),
                    max_message,
                    idle: limits.heartbeat * 4,
                };
                match cluster.route(raw, route).await {
                    Some(ws) => ws,
                    None => return,
                }
            }
            _ => WsConnection::new(raw, Role::Server, BytesMut::new(), max_message),
        };
        self.handshake(ws, principal, peer, handoff, drain).await;
    }

    /// Runs the tunnel handshake on an upgraded WebSocket and hands it to the link.
    async fn handshake<S>(
        &self,
        mut ws: WsConnection<S>,
        principal: Option<String>,
        peer: SocketAddr,
        handoff: Option<Handoff>,
        drain: Drain,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let first = match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Ok(Some(Incoming::Binary(b)))) => b,
            Ok(Ok(Some(Incoming::Text))) => return protocol_error(ws, peer, "text message").await,
            Ok(Err(WsError::Protocol(why))) => return protocol_error(ws, peer, why).await,
            _ => return tracing::debug!(%peer, "no tunnel handshake"),
        };
        let Ok(frame) = Frame::decode(first, MAX_CLIENT_HANDSHAKE) else {
            return protocol_error(ws, peer, "bad tunnel handshake frame").await;
        };
        if !matches!(frame.kind, FrameType::Hello | FrameType::Resume) {
            return protocol_error(ws, peer, &format!("handshake began with {:?}", frame.kind)).await;
        }
        // A HELLO or RESUME we cannot read is answered in words (REFUSED code 5): the peer speaks the
        // protocol, perhaps another version of it, and deserves to learn why.
        let why = match (Message::of(&frame), handoff) {
            // Another server hands over only resumes, of the tunnel its signed header names.
            (Ok(Message::Resume { id, .. }), Some(h)) if id != h.id => {
                return protocol_error(ws, peer, "handoff of another tunnel than its header names").await;
            }
            (Ok(Message::Hello { .. }), Some(_)) => {
                return protocol_error(ws, peer, "a handoff carries a RESUME, not a HELLO").await;
            }
            (Ok(Message::Resume { id, secret }), Some(h)) => {
                metrics::counter!("tunnelkit_tunnel_handoffs_received_total").increment(1);
                tracing::debug!(tunnel = %id, %peer, client = %h.peer, "resume handed over by another server");
                return self.resume(ws, id, secret, frame.ack, principal, peer).await;
            }
            (Ok(Message::Hello { mode, keep_broken }), None) => {
                return self.hello(ws, mode, keep_broken, principal, peer, drain).await;
            }
            (Ok(Message::Resume { id, secret }), None) => {
                return self.resume(ws, id, secret, frame.ack, principal, peer).await;
            }
            (Ok(_), _) => return, // the kind was checked above
            (Err(e @ (WireError::Version(_) | WireError::Mode(_))), _) => e.to_string(),
            (Err(e), _) => format!("malformed handshake: {e}"),
        };
        let _ = ws.send(refused_frame(refused::VERSION, &why)).await;
    }

    async fn hello<S>(
        &self,
        mut ws: WsConnection<S>,
        mode: Mode,
        asked: Duration,
        principal: Option<String>,
        peer: SocketAddr,
        drain: Drain,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        // One snapshot: a reload changes the limits of the tunnels created after it, never this one's.
        let limits = self.inner.limits.load_full();
        let params = LinkParams {
            mode,
            keep_broken: asked.min(limits.max_keep_broken),
            max_frame: limits.max_frame,
            max_streams: if mode == Mode::Single { 1 } else { limits.max_streams },
            replay_bytes: limits.replay_bytes,
            heartbeat: limits.heartbeat,
            stream_memory: limits.max_stream_memory,
        };
        let id = TunnelId::random();
        let secret = ResumeSecret::random();
        let (listen_tx, listen_rx) = mpsc::unbounded_channel();
        let session = Session::new(id, Role::Server, params, Some(listen_tx));
        let refusal = {
            let mut tunnels = self.inner.tunnels.lock().expect("registry lock");
            let of_token = |p: &Option<String>| p.is_some() && *p == principal;
            if tunnels.len() >= limits.max_tunnels {
                Some("the server has too many tunnels".to_owned())
            } else if principal.is_some()
                && tunnels.values().filter(|e| of_token(&e.principal)).count() >= limits.max_tunnels_per_token
            {
                Some(format!(
                    "this token has {} tunnels, the most one token may hold (--max-tunnels-per-token)",
                    limits.max_tunnels_per_token
                ))
            } else {
                tunnels.insert(
                    id,
                    Entry { session: session.clone(), secret, principal, hold: params.keep_broken },
                );
                None
            }
        };
        if let Some(why) = refusal {
            tracing::warn!(%peer, "tunnel refused: {why}");
            let _ = ws.send(refused_frame(refused::LIMIT, &why)).await;
            return;
        }
        metrics::gauge!("tunnelkit_tunnel_tunnels").increment(1.0);
        if let Some(cluster) = &self.inner.opts.cluster {
            cluster.claim(id, params.keep_broken).await;
        }
        let welcome = Message::Welcome(Welcome {
            id,
            secret,
            keep_broken: params.keep_broken,
            max_frame: params.max_frame as u32,
            max_streams: params.max_streams,
            replay_bytes: params.replay_bytes as u64,
            heartbeat: params.heartbeat,
        });
        tracing::info!(tunnel = %id, %peer, ?mode, keep_broken = ?params.keep_broken, "tunnel open");
        if ws.send(welcome.encode(0).freeze()).await.is_err() {
            // The client never learned the id: nobody can resume it, so do not hold it.
            self.forget(id);
            return;
        }
        let Attached { gen, cancel, .. } = session.attach(0).expect("a new session has not ended");
        let tunnel = Tunnel::new(session.clone());
        let me = self.clone();
        tokio::spawn(async move {
            service::hold(session).await;
            me.forget(id);
        });
        tokio::spawn(service::close_on_drain(tunnel.clone(), drain.clone()));
        match &self.inner.opts.on_tunnel {
            Some(tx) => {
                let _ = tx.send(tunnel.clone());
            }
            None => {
                let ctx = ServiceContext {
                    dialer: self.inner.opts.dialer.clone(),
                    policy: self.inner.opts.policy.clone(),
                    listen: self.inner.listen.clone(),
                    drain,
                };
                tokio::spawn(service::serve_streams(tunnel.clone(), ctx, listen_rx));
            }
        }
        link::run(tunnel.session().clone(), ws, gen, cancel).await;
    }

    async fn resume<S>(
        &self,
        mut ws: WsConnection<S>,
        id: TunnelId,
        presented: ResumeSecret,
        peer_ack: u64,
        principal: Option<String>,
        peer: SocketAddr,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let check = {
            let tunnels = self.inner.tunnels.lock().expect("registry lock");
            match tunnels.get(&id) {
                Some(e) if e.secret.matches(&presented.0) => {
                    if token::may_take_over(e.principal.as_deref(), principal.as_deref()) {
                        ResumeCheck::Granted(e.session.clone())
                    } else {
                        ResumeCheck::OtherPrincipal
                    }
                }
                _ => ResumeCheck::UnknownOrWrongSecret,
            }
        };
        let session = match check {
            ResumeCheck::Granted(s) => s,
            ResumeCheck::OtherPrincipal => {
                tracing::warn!(tunnel = %id, %peer, "resume refused: presented by another token");
                let _ =
                    ws.send(refused_frame(refused::PRINCIPAL, "tunnel belongs to another principal")).await;
                return;
            }
            ResumeCheck::UnknownOrWrongSecret => {
                // Unknown id and wrong secret look the same, so ids cannot be probed.
                tracing::warn!(tunnel = %id, %peer, "resume refused: unknown tunnel or wrong secret");
                let _ = ws.send(refused_frame(refused::UNKNOWN, "unknown tunnel or wrong secret")).await;
                return;
            }
        };
        let Attached { gen, cancel, our_ack } = match session.attach(peer_ack) {
            Ok(x) => x,
            Err(reason) => {
                let _ = ws.send(refused_frame(refused::UNKNOWN, &format!("tunnel {reason}"))).await;
                return;
            }
        };
        let mut r = Message::Resumed.encode(0);
        stamp(&mut r, 0, our_ack);
        if ws.send(r.freeze()).await.is_err() {
            session.link_down(gen);
            return;
        }
        tracing::info!(tunnel = %id, %peer, gen, "tunnel resumed");
        link::run(session, ws, gen, cancel).await;
    }

    /// Replaces the accepted tokens (a configuration reload): from now on an upgrade, so a new
    /// tunnel or a resume, must present one of `tokens`. After `grace` the tunnels created with a
    /// token that is then no longer accepted are closed; the others are not touched.
    pub fn set_tokens(&self, tokens: Vec<String>, grace: Duration) {
        self.inner.tokens.store(Arc::new(tokens));
        let me = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            let tokens = me.inner.tokens.load();
            let revoked: Vec<(TunnelId, Arc<Session>)> = {
                let tunnels = me.inner.tunnels.lock().expect("registry lock");
                let gone = |p: &Option<String>| p.as_ref().is_some_and(|p| !tokens.contains(p));
                tunnels
                    .iter()
                    .filter(|(_, e)| gone(&e.principal))
                    .map(|(id, e)| (*id, e.session.clone()))
                    .collect()
            };
            for (id, session) in revoked {
                tracing::info!(tunnel = %id, "token revoked by a reload: closing the tunnel");
                // Each close waits at most 5 s for the peer's acknowledgement.
                tokio::spawn(async move { Tunnel::new(session).close().await });
            }
        });
    }

    /// Replaces the limits of new tunnels (a configuration reload): `max_tunnels` and
    /// `max_tunnels_per_token` are checked against the new values from now on (tunnels over a lowered
    /// limit are not closed), and a tunnel created after this call gets its streams, memory, heartbeat
    /// and hold from them; open tunnels keep the ones they were created with. `max_listeners` and
    /// `allow_public_listen` keep their values from start: one budget made then enforces them.
    pub fn set_limits(&self, mut limits: Limits) {
        let started = &self.inner.opts.limits;
        (limits.max_listeners, limits.allow_public_listen) =
            (started.max_listeners, started.allow_public_listen);
        self.inner.limits.store(Arc::new(limits));
    }

    fn forget(&self, id: TunnelId) {
        if self.inner.tunnels.lock().expect("registry lock").remove(&id).is_some() {
            metrics::gauge!("tunnelkit_tunnel_tunnels").decrement(1.0);
            tracing::info!(tunnel = %id, "tunnel gone");
            if let Some(cluster) = self.inner.opts.cluster.clone() {
                tokio::spawn(async move { cluster.release(id).await });
            }
        }
    }
}
