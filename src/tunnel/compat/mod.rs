//! `ws-server --compat ws-stream-tunnel`: speaks the seed's (ws-stream-tunnel 0.4.12–0.4.29) protocol so
//! its Node clients can use a tunnelkit server. Every stream a client opens is connected to
//! `--compat-target` through the server's dialer and policy. Its resume (`use`) stays as lossy as the
//! original: no sequence numbers, nothing replayed (see docs/ws-server.md, "Compat mode").
//!
//! - [`codec`]: the binary frame and the credit number;
//! - [`control`]: the JSON control messages and the seed's error codes;
//! - [`credit`]: per-stream flow control;
//! - [`registry`]: tunnels by id, and the ids themselves;
//! - [`tunnel`]: one tunnel (stream table, frame queue, broken-tunnel hold);
//! - [`stream`]: one stream's relay to the target;
//! - [`connection`] and [`writer`]: one WebSocket connection.

pub mod codec;
mod connection;
pub mod control;
pub mod credit;
mod registry;
mod stream;
mod tunnel;
mod writer;

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;

use crate::net::{Dialer, Target};
use registry::Registry;

/// What a compat tunnel needs from the server, shared by all its connections.
pub struct CompatContext {
    /// Dials stream targets under the server's policy.
    pub dialer: Arc<dyn Dialer>,
    /// Where every stream opened by a seed client is connected (`--compat-target`).
    pub target: Option<Target>,
    /// Cap on how long a broken tunnel is held for `use` (`--max-keep-broken`), whatever the client's
    /// `keepBrokenTunnel` asks (the seed has no cap).
    pub max_keep_broken: Duration,
    /// Cap on compat tunnels alive at once, connected or held (`--max-tunnels`); a `create` beyond it
    /// is answered with a `close` (the seed has no cap, and no error code for this).
    pub max_tunnels: usize,
    /// With tokens, cap on one token's compat tunnels (`--max-tunnels-per-token`; by default a quarter
    /// of `max_tunnels`, at least 1), so one token cannot lock the others out.
    pub max_tunnels_per_token: usize,
    registry: Arc<Registry>,
}

impl CompatContext {
    /// The context for one server.
    pub fn new(
        dialer: Arc<dyn Dialer>,
        target: Option<Target>,
        max_keep_broken: Duration,
        max_tunnels: usize,
    ) -> CompatContext {
        let max_tunnels_per_token = (max_tunnels / 4).max(1);
        CompatContext {
            dialer,
            target,
            max_keep_broken,
            max_tunnels,
            max_tunnels_per_token,
            registry: Arc::default(),
        }
    }

    /// How many tunnels exist (bound or broken and held).
    pub fn tunnel_count(&self) -> usize {
        self.registry.len()
    }
}

/// Serves one seed-protocol WebSocket until it closes. The tunnel it creates or resumes outlives it
/// if the connection breaks (for the agreed hold time).
pub async fn serve<S>(ws: WebSocketStream<S>, ctx: Arc<CompatContext>, principal: Option<String>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    connection::serve(ws, ctx, principal).await
}
