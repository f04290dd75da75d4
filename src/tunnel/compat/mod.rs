//! `ws-server --compat ws-stream-tunnel`: speaks the seed's (ws-stream-tunnel 0.4.x) protocol so its
//! Node clients can use a tunnelkit server. Its resume stays as lossy as the original.

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;

use crate::net::{Dialer, Target};

/// What a compat tunnel needs from the server.
pub struct CompatContext {
    /// Dials stream targets under the server's policy.
    pub dialer: Arc<dyn Dialer>,
    /// Where every stream opened by a seed client is connected (`--compat-target`).
    pub target: Option<Target>,
}

/// Serves one seed-protocol WebSocket until it closes.
pub async fn serve<S>(ws: WebSocketStream<S>, ctx: Arc<CompatContext>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let _ = (ws, ctx);
    tracing::error!("--compat ws-stream-tunnel not implemented yet");
}
