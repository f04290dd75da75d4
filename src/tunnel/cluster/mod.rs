//! The tunnel cluster (`ws-server --cluster-redis URL --advertise ADDR --cluster-secret S`): several
//! ws-servers behind one load balancer, where a client's `RESUME` may land on any of them.
//!
//! New tunnels stay where they land; the server that holds one claims it in the [`registry`] (Redis).
//! A connection whose first frame resumes a tunnel held elsewhere is handed, as raw bytes, to the
//! holder ([`forward`]), with a signed header ([`handoff`]) that makes the holder accept it as a
//! handoff and never pass it on again. If the holder is gone, the connection is answered here, and
//! the resume is refused as on a single server: the client opens a new tunnel and its streams end
//! with an error, never silently short.

mod forward;
pub mod handoff;
mod peer_tls;
mod registry;
pub mod settings;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

pub use forward::ClientUpgrade;
pub use handoff::{ClusterSecret, Handoff, HandoffError};
use registry::{Registry, REFRESH};

use super::first_frame;
use super::frame::Frame;
use super::id::TunnelId;
use super::session::Role;
use super::wire::{Message, MAX_CLIENT_HANDSHAKE};
use super::ws::WsConnection;
use crate::net::redis::RedisConn;

/// What a server needs to join a cluster.
#[derive(Clone)]
pub struct ClusterOptions {
    /// The Redis the registry lives in (`--cluster-redis`: node, `rediss://` or Sentinel URL).
    pub redis: String,
    /// The address other servers reach this one on (`--advertise`).
    pub advertise: String,
    /// The shared secret that signs handoffs (`--cluster-secret`).
    pub secret: Vec<u8>,
    /// This server's certificate chain (`--tls-cert`), when its clients use `wss://`: handoffs then
    /// go over TLS too, to a holder presenting the same certificate.
    pub tls_cert: Option<std::path::PathBuf>,
}

/// This server's part in the cluster. One per server, shared by its connections.
pub struct Cluster {
    registry: Registry,
    secret: ClusterSecret,
    tls: Option<Arc<rustls::ClientConfig>>,
}

/// Longest wait for a client's first frame after the upgrade (the same as without a cluster).
const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(10);

impl Cluster {
    /// Connects to the registry's Redis; fails at start, naming the flag, if it does not answer.
    pub async fn connect(opts: ClusterOptions) -> anyhow::Result<Cluster> {
        let tls = opts.tls_cert.as_deref().map(peer_tls::client_config).transpose()?;
        let conn = RedisConn::open("--cluster-redis", &opts.redis, None).await?;
        let secret = ClusterSecret::new(&opts.secret);
        Ok(Cluster { registry: Registry::new(conn, opts.advertise), secret, tls })
    }

    /// Claims a new tunnel before its client learns its id, so that a resume landing elsewhere a moment
    /// later finds it. A registry that does not answer costs the tunnel only its resumes elsewhere.
    pub async fn claim(&self, id: TunnelId, hold: Duration) {
        if let Err(e) = self.registry.claim(&[(id, hold)]).await {
            metrics::counter!("tunnelkit_tunnel_cluster_errors_total").increment(1);
            tracing::warn!(tunnel = %id, "cluster: cannot claim the tunnel in Redis: {e}");
        }
    }

    /// Drops this server's claim on an ended tunnel.
    pub async fn release(&self, id: TunnelId) {
        if let Err(e) = self.registry.release(&id).await {
            metrics::counter!("tunnelkit_tunnel_cluster_errors_total").increment(1);
            tracing::debug!(tunnel = %id, "cluster: cannot release the claim: {e}");
        }
    }

    /// Renews the claims of every tunnel `held` lists, every [`REFRESH`], until `stop` resolves.
    pub async fn keep_claims<F>(self: Arc<Self>, held: F, stop: impl std::future::Future<Output = ()>)
    where
        F: Fn() -> Vec<(TunnelId, Duration)>,
    {
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(REFRESH) => {}
            }
            let tunnels = held();
            if let Err(e) = self.registry.claim(&tunnels).await {
                metrics::counter!("tunnelkit_tunnel_cluster_errors_total").increment(1);
                tracing::warn!("cluster: cannot renew {} claims in Redis: {e}", tunnels.len());
            }
        }
    }

    /// Reads a `Tunnelkit-Handoff` header another server sent.
    pub fn check_handoff(&self, value: &str) -> Result<Handoff, HandoffError> {
        self.secret.open(value)
    }

    /// Looks at a fresh connection's first frame: a resume of a tunnel another server holds is handed
    /// to that server (`None`: the connection is gone); everything else comes back as a WebSocket
    /// holding the bytes read, for the normal handshake.
    pub async fn route<S, F>(&self, mut raw: S, route: Route<'_, F>) -> Option<WsConnection<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
        F: Fn(&TunnelId) -> bool,
    {
        let first = match tokio::time::timeout(
            FIRST_FRAME_TIMEOUT,
            first_frame::read(&mut raw, MAX_CLIENT_HANDSHAKE),
        )
        .await
        {
            Ok(Ok(first)) => first,
            Ok(Err(e)) => {
                tracing::debug!(peer = %route.peer, "no tunnel handshake: {e}");
                return None;
            }
            Err(_) => {
                tracing::debug!(peer = %route.peer, "no tunnel handshake in time");
                return None;
            }
        };
        if let Some(id) = first.payload.clone().and_then(resumed_id) {
            if !(route.holds)(&id) && self.hand_off(&mut raw, &first.raw, id, &route).await {
                return None;
            }
        }
        Some(WsConnection::new(raw, Role::Server, first.raw, route.max_message))
    }

    /// Hands the connection to the holder of `id`; false when there is none to hand it to, or the
    /// holder would not take it (nothing was sent to the client: it is answered here).
    async fn hand_off<C>(
        &self,
        client: &mut C,
        first: &[u8],
        id: TunnelId,
        route: &Route<'_, impl Fn(&TunnelId) -> bool>,
    ) -> bool
    where
        C: AsyncRead + AsyncWrite + Unpin,
    {
        let result = |r: &'static str| {
            metrics::counter!("tunnelkit_tunnel_handoffs_total", "result" => r).increment(1)
        };
        let holder = match self.registry.holder(&id).await {
            Ok(Some(h)) if h != self.registry.me() => h,
            Ok(_) => {
                result("unclaimed");
                return false;
            }
            Err(e) => {
                result("registry_error");
                tracing::warn!(tunnel = %id, "cluster: cannot look the tunnel up in Redis: {e}");
                return false;
            }
        };
        let header = self.secret.seal(&Handoff { id, peer: route.peer.to_string() });
        match forward::open(&holder, self.tls.as_ref(), route.upgrade, &header).await {
            Ok((up, from_holder)) => {
                result("relayed");
                tracing::info!(tunnel = %id, peer = %route.peer, %holder, "resume handed to the tunnel's holder");
                forward::relay(client, up, &from_holder, first, route.idle).await;
                true
            }
            Err(e) => {
                result(match e {
                    forward::HandOffError::Unreachable(..) => "holder_unreachable",
                    forward::HandOffError::Refused(..) => "holder_refused",
                });
                tracing::warn!(tunnel = %id, peer = %route.peer, "cluster: {e}; the resume is refused here");
                false
            }
        }
    }
}

/// What [`Cluster::route`] needs to know of the connection and of the server.
pub struct Route<'a, F> {
    /// The client's address.
    pub peer: SocketAddr,
    /// What of its upgrade request a holder needs.
    pub upgrade: &'a ClientUpgrade,
    /// Whether this server holds a tunnel.
    pub holds: F,
    /// The longest WebSocket message a connection that stays here may send.
    pub max_message: usize,
    /// A handed-off connection idle this long is dead (both ends heartbeat through it).
    pub idle: Duration,
}

/// The tunnel a first frame resumes, if it is a well-formed `RESUME`.
fn resumed_id(payload: bytes::Bytes) -> Option<TunnelId> {
    let frame = Frame::decode(payload, MAX_CLIENT_HANDSHAKE).ok()?;
    match Message::of(&frame).ok()? {
        Message::Resume { id, .. } => Some(id),
        _ => None,
    }
}
