//! The link: drives one WebSocket connection of a tunnel. The writer sends what the session has ready
//! (replaying unacked frames first on a new connection), heartbeats when idle and delayed acks; the reader
//! applies incoming frames and declares the peer dead after two silent heartbeat periods. When either
//! side fails, the connection is dropped and the session becomes broken (then resumed or expired).

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

use super::session::{LinkError, Session};

/// Frames taken from the session per writer turn.
const BATCH: usize = 64;

/// The WebSocket settings both ends use: messages fit the largest frame, writes are batched.
pub fn websocket_config(max_frame: usize) -> WebSocketConfig {
    let max_msg = max_frame + 64 * 1024 + 64;
    WebSocketConfig::default()
        .write_buffer_size(256 * 1024)
        .max_write_buffer_size(16 << 20)
        .max_message_size(Some(max_msg))
        .max_frame_size(Some(max_msg))
}

fn lost(e: impl std::fmt::Display) -> LinkError {
    LinkError::Lost(e.to_string())
}

/// Runs connection `gen` until it fails, is superseded (`cancel`), or the tunnel ends.
pub async fn run<S>(session: Arc<Session>, ws: WebSocketStream<S>, gen: u64, cancel: CancellationToken)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sink, stream) = ws.split();
    let result = tokio::select! {
        r = read_loop(&session, stream, gen) => r,
        r = write_loop(&session, sink, gen) => r,
        _ = cancel.cancelled() => Err(LinkError::Stale),
    };
    match &result {
        Ok(()) => tracing::debug!(tunnel = %session.id, gen, "connection closed"),
        Err(LinkError::Stale) => tracing::debug!(tunnel = %session.id, gen, "connection superseded"),
        Err(e) => tracing::info!(tunnel = %session.id, gen, "connection dropped: {e}"),
    }
    session.link_down(gen);
}

async fn read_loop<S>(
    session: &Arc<Session>,
    mut stream: futures_util::stream::SplitStream<WebSocketStream<S>>,
    gen: u64,
) -> Result<(), LinkError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let dead_after = session.params.heartbeat * 2;
    loop {
        let msg = match tokio::time::timeout(dead_after, stream.next()).await {
            Err(_) => return Err(LinkError::Silent(dead_after)),
            Ok(None) => return Err(LinkError::Lost("connection closed".into())),
            Ok(Some(Err(e))) => return Err(lost(e)),
            Ok(Some(Ok(m))) => m,
        };
        match msg {
            Message::Binary(b) => session.on_frame(gen, b)?,
            Message::Text(_) => return Err(LinkError::Protocol("text message".into())),
            Message::Close(_) => {
                if session.is_ended() {
                    return Ok(());
                }
                return Err(LinkError::Lost("peer closed the WebSocket".into()));
            }
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
        }
    }
}

async fn write_loop<S>(
    session: &Arc<Session>,
    mut sink: futures_util::stream::SplitSink<WebSocketStream<S>, Message>,
    gen: u64,
) -> Result<(), LinkError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    for frame in session.replay_frames(gen)? {
        sink.feed(Message::Binary(frame)).await.map_err(lost)?;
    }
    sink.flush().await.map_err(lost)?;
    let heartbeat = session.params.heartbeat;
    let mut last_sent = Instant::now();
    let mut dirty = false;
    loop {
        let notified = session.writer.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let batch = session.take_batch(gen, BATCH)?;
        if !batch.frames.is_empty() {
            for frame in batch.frames {
                sink.feed(Message::Binary(frame)).await.map_err(lost)?;
            }
            dirty = true;
            last_sent = Instant::now();
            continue;
        }
        if dirty {
            sink.flush().await.map_err(lost)?;
            dirty = false;
        }
        if session.is_ended() {
            // Orderly end: say goodbye so the peer does not take it for a break.
            let bye = CloseFrame { code: CloseCode::Normal, reason: "tunnel closed".into() };
            let _ = tokio::time::timeout(Duration::from_secs(2), sink.send(Message::Close(Some(bye)))).await;
            return Ok(());
        }
        let ping_at = last_sent + heartbeat;
        let wake_at = match batch.ack_due_at {
            Some(t) => Instant::from_std(t).min(ping_at),
            None => ping_at,
        };
        tokio::select! {
            _ = &mut notified => {}
            _ = tokio::time::sleep_until(wake_at) => {
                if Instant::now() >= ping_at {
                    sink.send(Message::Binary(session.ping_frame())).await.map_err(lost)?;
                    last_sent = Instant::now();
                }
            }
        }
    }
}
