//! One seed-protocol WebSocket connection: reads control messages and frames, answers them, binds a
//! tunnel (`create`, `use`), and reports to the tunnel how the connection ended (clean close, broken,
//! taken over). Never panics on input: bad JSON, unknown messages and binary without a tunnel get the
//! seed's error codes; malformed frames are dropped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

use super::codec;
use super::context::CompatContext;
use super::control::{self, Control, CreateRequest, ErrorCode};
use super::tunnel::Tunnel;
use super::writer::{self, ConnHandle, WriterCmd};

/// A connection with no inbound message (pings included) for this long is dropped, as the seed's
/// server does (its client pings after 15 s of silence).
pub const IDLE_LIMIT: Duration = Duration::from_secs(30);

static NEXT_CONN_ID: AtomicU64 = AtomicU64::new(1);

/// How the connection ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// Close frame with code 1000.
    Clean,
    /// Any other close code, none, a socket error, or the idle limit: the tunnel is broken.
    Lost,
    /// Another connection took the tunnel over with `use`.
    TakenOver,
}

/// Serves one WebSocket until it ends.
pub async fn serve<S>(ws: WebSocketStream<S>, ctx: Arc<CompatContext>, principal: Option<String>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sink, mut incoming) = ws.split();
    let (cmds, cmd_rx) = mpsc::channel(64);
    let stop = CancellationToken::new();
    let kick = CancellationToken::new();
    let me = ConnHandle { id: NEXT_CONN_ID.fetch_add(1, Ordering::Relaxed), cmds, kick: kick.clone() };
    let mut writer = tokio::spawn(writer::run(sink, cmd_rx, stop.clone()));
    let mut conn = Connection { ctx, me, tunnel: None, principal };
    let mut writer_done = false;
    let end = tokio::select! {
        end = conn.read_loop(&mut incoming) => end,
        _ = kick.cancelled() => End::TakenOver,
        _ = &mut writer => {
            writer_done = true;
            End::Lost
        }
    };
    tracing::debug!(conn = conn.me.id, ?end, "compat connection ended");
    if let Some(tunnel) = conn.tunnel.take() {
        tunnel.connection_lost(conn.me.id, end == End::Clean);
    }
    stop.cancel();
    if !writer_done && tokio::time::timeout(Duration::from_secs(3), &mut writer).await.is_err() {
        writer.abort();
    }
}

struct Connection {
    ctx: Arc<CompatContext>,
    me: ConnHandle,
    /// The tunnel last bound here; only used while it is still bound to this connection.
    tunnel: Option<Arc<Tunnel>>,
    /// The token this connection presented; tunnels are bound to the token that created them.
    principal: Option<String>,
}

impl Connection {
    async fn read_loop<St>(&mut self, incoming: &mut St) -> End
    where
        St: Stream<Item = Result<Message, WsError>> + Unpin,
    {
        loop {
            let msg = match tokio::time::timeout(IDLE_LIMIT, incoming.next()).await {
                Err(_) => {
                    tracing::debug!(conn = self.me.id, "compat connection idle for {IDLE_LIMIT:?}: dropped");
                    return End::Lost;
                }
                Ok(None) | Ok(Some(Err(_))) => return End::Lost,
                Ok(Some(Ok(msg))) => msg,
            };
            match msg {
                Message::Text(text) if text.len() > control::MAX_TEXT => {
                    // The seed's control messages are tiny: a large one is abuse, not a message.
                    tracing::debug!(conn = self.me.id, len = text.len(), "compat: text message too large");
                    let bye =
                        CloseFrame { code: CloseCode::Size, reason: "control message over 64 KiB".into() };
                    let _ = self.me.cmds.send(WriterCmd::Close(bye)).await;
                    return End::Lost;
                }
                Message::Text(text) => self.on_text(text.as_str()).await,
                Message::Binary(data) => self.on_binary(data).await,
                Message::Close(frame) => {
                    return match frame {
                        Some(f) if f.code == CloseCode::Normal => End::Clean,
                        _ => End::Lost,
                    }
                }
                // Pings are answered by tungstenite; any inbound message counts as liveness.
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            }
        }
    }

    /// The tunnel bound to this connection, if it still is.
    fn tunnel(&mut self) -> Option<Arc<Tunnel>> {
        if !self.tunnel.as_ref().is_some_and(|t| t.is_bound_to(self.me.id)) {
            self.tunnel = None;
        }
        self.tunnel.clone()
    }

    async fn send_text(&self, text: String) {
        let _ = self.me.cmds.send(WriterCmd::Send(Message::text(text))).await;
    }

    async fn on_text(&mut self, text: &str) {
        match control::parse(text) {
            Err(code) => self.send_text(code.to_json()).await,
            Ok(Control::Create(obj)) => self.create(obj).await,
            Ok(Control::Use { tunnel_id }) => self.resume(tunnel_id).await,
            Ok(Control::Close { msg }) => {
                if let Some(t) = self.tunnel() {
                    t.close(Some(msg.as_deref().unwrap_or("closed by another side")));
                }
            }
            Ok(Control::Error { code, msg }) => {
                // Like the seed: codes 4000–4007 from the peer close the tunnel; others are ignored.
                if matches!(code, Some(4000..=4007)) {
                    if let Some(t) = self.tunnel() {
                        t.close(msg.as_deref());
                    }
                }
            }
            Ok(Control::Other) => self.send_text(ErrorCode::WrongMessage.to_json()).await,
        }
    }

    async fn create(&mut self, request: CreateRequest) {
        if self.tunnel().is_some() {
            return self.send_text(ErrorCode::AlreadyCreated.to_json()).await;
        }
        let Some(mode) = control::mode_of(&request) else {
            return self.send_text(ErrorCode::ModeNotAllowed.to_json()).await;
        };
        if self.ctx.registry.len() >= self.ctx.max_tunnels {
            tracing::warn!(
                conn = self.me.id,
                limit = self.ctx.max_tunnels,
                "compat: tunnel refused, at --max-tunnels"
            );
            // The seed's client takes `close` as the end of its tunnel and reports the message.
            self.send_text(control::close(Some("server tunnel limit reached"))).await;
            return;
        }
        if let Some(p) = &self.principal {
            if self.ctx.registry.count_of(p) >= self.ctx.max_tunnels_per_token {
                tracing::warn!(conn = self.me.id, "compat: tunnel refused, at --max-tunnels-per-token");
                self.send_text(control::close(Some("tunnel limit of this token reached"))).await;
                return;
            }
        }
        let cap = u64::try_from(self.ctx.max_keep_broken.as_millis()).unwrap_or(u64::MAX);
        let held = control::keep_broken_ms(&request).min(cap);
        let tunnel = Tunnel::open(
            &self.ctx.registry,
            self.ctx.destination(),
            mode,
            Duration::from_millis(held),
            self.me.clone(),
            self.principal.clone(),
        );
        self.send_text(control::created(&request, &tunnel.id, held)).await;
        let _ = self.me.cmds.send(WriterCmd::Bind(tunnel.outbox())).await;
        self.tunnel = Some(tunnel);
    }

    /// `use`: rebinds an existing tunnel to this connection. Lossy exactly like the seed: frames that
    /// were on the broken connection are gone, nothing is replayed.
    async fn resume(&mut self, tunnel_id: Option<String>) {
        // A tunnel created under another token answers like an unknown one: no takeover across tokens.
        let found = tunnel_id.and_then(|id| self.ctx.registry.get(&id)).filter(|t| {
            crate::tunnel::token::may_take_over(t.principal.as_deref(), self.principal.as_deref())
        });
        let Some(tunnel) = found else {
            return self.send_text(ErrorCode::NoSuchTunnel.to_json()).await;
        };
        if let Some(current) = self.tunnel() {
            if !Arc::ptr_eq(&current, &tunnel) {
                current.close(Some("broken tunnel"));
            }
        }
        if !tunnel.bind(self.me.clone()) {
            return self.send_text(ErrorCode::NoSuchTunnel.to_json()).await;
        }
        tracing::debug!(conn = self.me.id, tunnel = %tunnel.id, "compat tunnel resumed");
        self.send_text(control::resumed(&tunnel.id)).await;
        let _ = self.me.cmds.send(WriterCmd::Bind(tunnel.outbox())).await;
        self.tunnel = Some(tunnel);
    }

    async fn on_binary(&mut self, data: Bytes) {
        let Some(tunnel) = self.tunnel() else {
            return self.send_text(ErrorCode::BinaryWithoutTunnel.to_json()).await;
        };
        match codec::decode(data) {
            Ok(frame) => tunnel.receive(frame).await,
            Err(e) => tracing::debug!(conn = self.me.id, "compat: dropped a malformed frame: {e}"),
        }
    }
}
