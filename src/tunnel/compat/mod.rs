//! `ws-server --compat ws-stream-tunnel`: speaks the seed's (ws-stream-tunnel 0.4.12–0.4.29) protocol so
//! its Node clients can use a tunnelkit server. Every stream a client opens is connected to
//! `--compat-target` through the server's dialer and policy. Its resume (`use`) stays as lossy as the
//! original: no sequence numbers, nothing replayed (see docs/ws-server.md, "Compat mode").
//!
//! - [`codec`]: the binary frame and the credit number;
//! - [`control`]: the JSON control messages and the seed's error codes;
//! - [`credit`]: per-stream flow control;
//! - `context`: [`CompatContext`], what the server gives every compat connection;
//! - `registry`: tunnels by id, and the ids themselves;
//! - `tunnel`: one tunnel (stream table, broken-tunnel hold); `outbox`: its frame queue;
//! - `stream`: one stream's relay to the target;
//! - `connection` and `writer`: one WebSocket connection.
//!
//! Dependencies run one way: `connection` → `context` → `tunnel` → `stream`, `registry`, `outbox`,
//! `writer`. The relay (`stream`) and the registry reach a tunnel through small traits the tunnel
//! implements, and the writer drains the tunnel's `Outbox`, so none of them depends on `tunnel`.

pub mod codec;
mod connection;
mod context;
pub mod control;
pub mod credit;
mod outbox;
mod registry;
mod stream;
mod tunnel;
mod writer;

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::WebSocketStream;

pub use context::CompatContext;

/// The settings of a seed-protocol WebSocket, the one kind tungstenite carries past the upgrade: the
/// seed sends one application write as one message (its limit is 100 MiB), so messages may be 64 MiB
/// (and an OPEN's worth more); writes are batched.
pub fn websocket_config() -> WebSocketConfig {
    let max_msg = (64 << 20) + 64 * 1024 + 64;
    WebSocketConfig::default()
        .write_buffer_size(256 * 1024)
        .max_write_buffer_size(16 << 20)
        .max_message_size(Some(max_msg))
        .max_frame_size(Some(max_msg))
}

/// Serves one seed-protocol WebSocket until it closes. The tunnel it creates or resumes outlives it
/// if the connection breaks (for the agreed hold time).
pub async fn serve<S>(ws: WebSocketStream<S>, ctx: Arc<CompatContext>, principal: Option<String>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    connection::serve(ws, ctx, principal).await
}
