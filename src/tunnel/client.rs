//! [`Client`]: the `ws-client` side. Connects to a server (`ws://` or `wss://`, directly or through an
//! HTTP/HTTPS/SOCKS proxy with [`crate::client::ProxyDialer`]), creates a tunnel with `HELLO`, and keeps
//! it: when the connection breaks it reconnects with jittered exponential backoff and resumes with the
//! tunnel id and secret, until the hold time the server granted runs out. It also closes an idle tunnel.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::WebSocketStream;

use super::backoff::Backoff;
use super::frame::{stamp, Frame};
use super::handle::Tunnel;
use super::id::ResumeSecret;
use super::link;
use super::session::{EndReason, LinkStatus, Role, Session};
use super::settings::{LinkParams, Mode};
use super::wire::{Message, Welcome, MAX_SERVER_HANDSHAKE};
use crate::client::ProxyDialer;
use crate::net::{socket, BoxStream, Host, Target};

/// Bytes a client's streams may hold in each direction (see `LinkParams::stream_memory`).
const CLIENT_STREAM_MEMORY: usize = 64 << 20;

/// How a client reaches its server and what it asks for. Cheap to clone; one client can create many
/// tunnels (single mode uses one per connection).
#[derive(Clone)]
pub struct Client {
    url: http::Uri,
    target: Target,
    tls: Option<(tokio_rustls::TlsConnector, rustls_pki_types::ServerName<'static>)>,
    token: Option<String>,
    mode: Mode,
    keep_broken: Duration,
    idle_timeout: Option<Duration>,
    proxy: Option<Arc<ProxyDialer>>,
    connect_timeout: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("url", &self.url).field("mode", &self.mode).finish()
    }
}

/// Why a connection attempt failed: refusals are final, the rest are worth retrying.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Final: the server said no (401, unknown tunnel, wrong secret, other principal, limits), or its
    /// certificate is not trusted.
    #[error("refused by the server: {0}")]
    Refused(String),
    /// Network, TLS, proxy or WebSocket failure (the message carries the whole cause chain).
    #[error("{0:#}")]
    Failed(#[from] anyhow::Error),
}

impl Client {
    /// A client for `url` (`ws://host:port/path` or `wss://...`), trusting the web PKI roots.
    pub fn new(url: &str) -> anyhow::Result<Client> {
        let uri: http::Uri = url.parse().with_context(|| format!("`{url}` is not a URL"))?;
        let secure = match uri.scheme_str() {
            Some("ws") => false,
            Some("wss") => true,
            _ => bail!("`{url}`: the server URL must start with ws:// or wss://"),
        };
        let host = uri.host().with_context(|| format!("`{url}` has no host"))?;
        let host = Host::parse(host.trim_start_matches('[').trim_end_matches(']'))
            .with_context(|| format!("`{url}`: bad host"))?;
        let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
        let target = Target::new(host, port);
        let mut c = Client {
            url: uri,
            target,
            tls: None,
            token: None,
            mode: Mode::Multi,
            keep_broken: Duration::from_secs(30),
            idle_timeout: None,
            proxy: None,
            connect_timeout: Duration::from_secs(10),
        };
        if secure {
            c = c.with_roots(&[])?;
        }
        Ok(c)
    }

    /// Trusts these extra CA certificates (PEM) for `wss://`, besides the web PKI roots.
    pub fn with_roots(mut self, pems: &[&[u8]]) -> anyhow::Result<Client> {
        if self.url.scheme_str() != Some("wss") {
            return Ok(self);
        }
        let cfg = crate::net::tls::tls_config(pems)?;
        let name = crate::net::tls::server_name(&self.target.host)?;
        self.tls = Some((tokio_rustls::TlsConnector::from(Arc::new(cfg)), name));
        Ok(self)
    }

    /// Presents `Authorization: Bearer <token>`.
    pub fn token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }

    /// Multi (default) or single.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Hold time to ask for when the connection breaks (the server may grant less).
    pub fn keep_broken_tunnel(mut self, d: Duration) -> Self {
        self.keep_broken = d;
        self
    }

    /// Closes the tunnel after this long with no stream and no traffic.
    pub fn idle_timeout(mut self, d: Option<Duration>) -> Self {
        self.idle_timeout = d.filter(|d| !d.is_zero());
        self
    }

    /// Reaches the server through this proxy.
    pub fn proxy(mut self, proxy: Option<ProxyDialer>) -> Self {
        self.proxy = proxy.map(Arc::new);
        self
    }

    /// Bounds TCP connect + TLS + upgrade + tunnel handshake.
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// Opens the WebSocket (through the proxy and TLS if configured).
    async fn websocket(&self) -> Result<WebSocketStream<BoxStream>, ConnectError> {
        let tcp: BoxStream = match &self.proxy {
            Some(p) => p.tunnel(&self.target).await.map_err(|e| anyhow::anyhow!("via proxy: {e}"))?,
            None => {
                let tcp = crate::net::socket::connect(&self.target)
                    .await
                    .with_context(|| format!("connecting to {}", self.target))?;
                socket::set_nodelay(&tcp);
                Box::new(tcp)
            }
        };
        let stream: BoxStream = match &self.tls {
            Some((connector, name)) => match connector.connect(name.clone(), tcp).await {
                Ok(tls) => Box::new(tls),
                // A certificate we do not trust will not fix itself: say so at once instead of retrying.
                Err(e) if e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>()) => {
                    return Err(ConnectError::Refused(super::tls_words::explain(&e.to_string())));
                }
                Err(e) => return Err(anyhow::anyhow!("TLS handshake with the server: {e}").into()),
            },
            None => tcp,
        };
        let mut req = self.url.clone().into_client_request().context("building the upgrade request")?;
        if let Some(t) = &self.token {
            let v = http::HeaderValue::from_str(&format!("Bearer {t}"))
                .context("the token is not a header value")?;
            req.headers_mut().insert(http::header::AUTHORIZATION, v);
        }
        // The server's frame limit is not known before WELCOME: accept up to 1 MiB messages.
        let cfg = link::websocket_config(1 << 20);
        match tokio_tungstenite::client_async_with_config(req, stream, Some(cfg)).await {
            Ok((ws, _)) => Ok(ws),
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                Err(upgrade_refused(resp.status(), self.url.path(), self.token.is_some()))
            }
            Err(e) => Err(ConnectError::Failed(anyhow::anyhow!("WebSocket upgrade: {e}"))),
        }
    }

    /// Creates a new tunnel and keeps it alive (resuming after breaks) until it ends.
    pub async fn connect(&self) -> Result<Tunnel, ConnectError> {
        tokio::time::timeout(self.connect_timeout, self.connect_inner())
            .await
            .map_err(|_| ConnectError::Failed(anyhow::anyhow!("connecting to {} timed out", self.url)))?
    }

    async fn connect_inner(&self) -> Result<Tunnel, ConnectError> {
        let mut ws = self.websocket().await?;
        let hello = Message::Hello { mode: self.mode, keep_broken: self.keep_broken }.encode(0);
        ws.send(WsMessage::Binary(hello.freeze())).await.context("sending HELLO")?;
        let Welcome { id, secret, keep_broken, max_frame, max_streams, replay_bytes, heartbeat } =
            match first_message(&mut ws).await? {
                Message::Welcome(w) => w,
                other => {
                    let got = other.kind();
                    return Err(ConnectError::Failed(anyhow::anyhow!("expected WELCOME, got {got:?}")));
                }
            };
        let params = LinkParams {
            mode: self.mode,
            keep_broken,
            max_frame: max_frame as usize,
            max_streams,
            replay_bytes: replay_bytes as usize,
            // A zero heartbeat would spin the link: 100 ms is the floor, whatever the server says.
            heartbeat: heartbeat.max(Duration::from_millis(100)),
            // The client serves its own user, not strangers: a generous bound, so that many slow local
            // readers are not reset; the server bounds what it holds with its own budget.
            stream_memory: CLIENT_STREAM_MEMORY,
        };
        tracing::info!(tunnel = %id, keep_broken = ?params.keep_broken, "tunnel open");
        let session = Session::new(id, Role::Client, params, None);
        let (gen, cancel, _) = session.attach(0).expect("a new session has not ended");
        tokio::spawn(link::run(session.clone(), ws, gen, cancel));
        tokio::spawn(keep(self.clone(), session.clone(), secret));
        Ok(Tunnel::new(session))
    }

    /// One resume attempt: new connection, `RESUME`, wait for `RESUMED`, hand over to the link.
    async fn resume(&self, session: &Arc<Session>, secret: &ResumeSecret) -> Result<(), ConnectError> {
        let mut ws = self.websocket().await?;
        let our_ack = session.our_ack();
        let mut f = Message::Resume { id: session.id, secret: *secret }.encode(0);
        stamp(&mut f, 0, our_ack);
        ws.send(WsMessage::Binary(f.freeze())).await.context("sending RESUME")?;
        let answer = first_frame(&mut ws).await?;
        if !matches!(Message::of(&answer), Ok(Message::Resumed)) {
            return Err(ConnectError::Failed(anyhow::anyhow!("expected RESUMED, got {:?}", answer.kind)));
        }
        let (gen, cancel, _) =
            session.attach(answer.ack).map_err(|r| ConnectError::Refused(r.to_string()))?;
        tracing::info!(tunnel = %session.id, gen, "tunnel resumed");
        tokio::spawn(link::run(session.clone(), ws, gen, cancel));
        Ok(())
    }
}

/// What a non-101 answer to the upgrade means. Only a gateway's 502/503/504 may pass by itself and is
/// retried; anything else (no endpoint at that path, token refused, not a tunnel server) is final, so the
/// client fails at once instead of retrying for seconds.
fn upgrade_refused(status: http::StatusCode, path: &str, has_token: bool) -> ConnectError {
    match status.as_u16() {
        404 => ConnectError::Refused(format!(
            "404: no tunnel endpoint at {path} (the server's path is its --path, default /tunnel)"
        )),
        401 if has_token => ConnectError::Refused("401: the server refused the token (check --token)".into()),
        401 => ConnectError::Refused("401: the server wants a token: give it with --token".into()),
        502..=504 => ConnectError::Failed(anyhow::anyhow!("the upgrade was answered {status} (a gateway)")),
        _ => ConnectError::Refused(format!(
            "the server answered the WebSocket upgrade with {status}: is this the URL of a tunnelkit ws-server?"
        )),
    }
}

/// Reads the server's first frame; a REFUSED becomes [`ConnectError::Refused`].
async fn first_frame(ws: &mut WebSocketStream<BoxStream>) -> Result<Frame, ConnectError> {
    let msg = match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
        Ok(Some(Ok(WsMessage::Binary(b)))) => b,
        Ok(Some(Ok(other))) => return Err(anyhow::anyhow!("unexpected {other:?} in the handshake").into()),
        Ok(Some(Err(e))) => return Err(anyhow::anyhow!("reading the handshake: {e}").into()),
        Ok(None) => return Err(anyhow::anyhow!("the server closed during the handshake").into()),
        Err(_) => return Err(anyhow::anyhow!("no handshake answer within 10 s").into()),
    };
    let frame = Frame::decode(msg, MAX_SERVER_HANDSHAKE).map_err(|e| anyhow::anyhow!("handshake: {e}"))?;
    if let Ok(Message::Refused { code, reason }) = Message::of(&frame) {
        return Err(ConnectError::Refused(format!("{reason} (code {code})")));
    }
    Ok(frame)
}

/// Reads the server's first frame as a typed message (see [`first_frame`]).
async fn first_message(ws: &mut WebSocketStream<BoxStream>) -> Result<Message, ConnectError> {
    let frame = first_frame(ws).await?;
    Message::of(&frame).map_err(|e| anyhow::anyhow!("handshake: {e}").into())
}

/// Keeps a client tunnel: resumes after breaks within the hold time, ends it when that runs out, and
/// closes it when idle.
async fn keep(client: Client, session: Arc<Session>, secret: ResumeSecret) {
    let mut status = session.status();
    let tunnel = Tunnel::new(session.clone());
    let idle_tick =
        client.idle_timeout.map(|d| (d / 4).clamp(Duration::from_millis(50), Duration::from_secs(1)));
    loop {
        let now = *status.borrow_and_update();
        match now {
            LinkStatus::Ended => {
                if session.params.mode == Mode::Single && session.end_reason() == Some(EndReason::Closed) {
                    tracing::info!(tunnel = %session.id, "single-mode stream ended: tunnel closed");
                }
                return;
            }
            LinkStatus::Up(_) => {
                let idle = async {
                    match idle_tick {
                        Some(t) => tokio::time::sleep(t).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    r = status.changed() => if r.is_err() { return },
                    _ = idle => {
                        let limit = client.idle_timeout.expect("idle tick implies timeout");
                        if session.is_idle_for(limit) {
                            tracing::info!(tunnel = %session.id, "idle for {limit:?}: closing");
                            tunnel.close().await;
                        }
                    }
                }
            }
            LinkStatus::Down(_) => {
                if session.close_sent() {
                    session.end(EndReason::Closed);
                    if session.params.mode == Mode::Single {
                        tracing::info!(tunnel = %session.id, "single-mode stream ended: tunnel closed");
                    } else {
                        tracing::info!(tunnel = %session.id, "tunnel closed");
                    }
                    return;
                }
                let deadline = Instant::now() + session.params.keep_broken;
                let mut backoff = Backoff::new();
                loop {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        tracing::warn!(tunnel = %session.id, "could not resume within the hold time");
                        session.end(EndReason::Expired);
                        return;
                    }
                    match tokio::time::timeout(
                        left.min(client.connect_timeout),
                        client.resume(&session, &secret),
                    )
                    .await
                    {
                        Ok(Ok(())) => break,
                        Ok(Err(ConnectError::Refused(why))) => {
                            tracing::warn!(tunnel = %session.id, "resume refused: {why}");
                            session.end(EndReason::Refused(why));
                            return;
                        }
                        Ok(Err(e)) => tracing::debug!(tunnel = %session.id, "resume attempt failed: {e}"),
                        Err(_) => tracing::debug!(tunnel = %session.id, "resume attempt timed out"),
                    }
                    if session.is_ended() {
                        return;
                    }
                    let wait = backoff.next_wait().min(deadline.saturating_duration_since(Instant::now()));
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
}
