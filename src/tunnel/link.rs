//! The link: drives one WebSocket connection of a tunnel. The writer sends what the session has ready
//! (replaying unacked frames first on a new connection), heartbeats when idle and delayed acks; the reader
//! applies incoming frames and declares the peer dead after two silent heartbeat periods. When either
//! side fails, the connection is dropped and the session becomes broken (then resumed or expired). A
//! peer that stops reading is dropped too: a write with no progress for two heartbeat periods fails the
//! connection, and what we owe it is bounded (`backlog`).

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

use super::backlog::{self, WriterState};
use super::budget;
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

/// Runs connection `gen` until it fails, is superseded (`cancel`), or the tunnel ends. A protocol error
/// is answered with WebSocket close code 1002 (the tunnel is then broken, not closed).
pub async fn run<S>(session: Arc<Session>, ws: WebSocketStream<S>, gen: u64, cancel: CancellationToken)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, stream) = ws.split();
    let writer = WriterState::default();
    let result = tokio::select! {
        r = read_loop(&session, stream, gen, &writer) => r,
        r = write_loop(&session, &mut sink, gen, &writer) => r,
        _ = cancel.cancelled() => Err(LinkError::Stale),
    };
    match &result {
        Ok(()) => tracing::debug!(tunnel = %session.id, gen, "connection closed"),
        Err(LinkError::Stale) => tracing::debug!(tunnel = %session.id, gen, "connection superseded"),
        Err(e) => tracing::info!(tunnel = %session.id, gen, "connection dropped: {e}"),
    }
    if let Err(LinkError::Protocol(why)) = &result {
        // Say why, as docs/protocol.md promises; a peer that does not read does not delay us long.
        let reason: String = why.chars().take(100).collect();
        let bye = CloseFrame { code: CloseCode::Protocol, reason: reason.into() };
        let _ = tokio::time::timeout(Duration::from_secs(2), sink.send(Message::Close(Some(bye)))).await;
    }
    session.link_down(gen);
}

async fn read_loop<S>(
    session: &Arc<Session>,
    mut stream: futures_util::stream::SplitStream<WebSocketStream<S>>,
    gen: u64,
    writer: &WriterState,
) -> Result<(), LinkError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let dead_after = session.params.heartbeat * 2;
    loop {
        backlog::wait_for_room(session, writer, dead_after).await?;
        budget::wait_for_memory(session).await;
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
                if is_closing(session) {
                    return Ok(());
                }
                return Err(LinkError::Lost("peer closed the WebSocket".into()));
            }
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
        }
    }
}

/// Whether the tunnel is ending in order: ended, or our CLOSE is sent. Then the peer closing the
/// WebSocket is the expected end (a signal, an idle timeout, a single-mode stream's end), not a lost
/// connection, and is not logged as one.
fn is_closing(session: &Session) -> bool {
    session.is_closing()
}

/// One write to the socket, failed when it makes no progress for `limit` (the peer does not read: it
/// must not hold the connection, its buffers and its tunnel's streams forever).
async fn timed<T, E: std::fmt::Display>(
    writer: &WriterState,
    limit: Duration,
    write: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, LinkError> {
    match tokio::time::timeout(limit, writer.on_socket(write)).await {
        Ok(r) => r.map_err(lost),
        Err(_) => Err(LinkError::Stalled(format!("a write made no progress for {limit:?}"))),
    }
}

async fn write_loop<S>(
    session: &Arc<Session>,
    sink: &mut futures_util::stream::SplitSink<WebSocketStream<S>, Message>,
    gen: u64,
    writer: &WriterState,
) -> Result<(), LinkError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // The same bound as the peer's silence: a peer that takes nothing for two heartbeats is as dead as
    // one that sends nothing.
    let limit = session.params.heartbeat * 2;
    for frame in session.replay_frames(gen)? {
        timed(writer, limit, sink.feed(Message::Binary(frame))).await?;
    }
    timed(writer, limit, sink.flush()).await?;
    let heartbeat = session.params.heartbeat;
    let mut last_sent = Instant::now();
    let mut dirty = false;
    loop {
        let notified = session.writer_wakeup();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let batch = session.take_batch(gen, BATCH)?;
        if !batch.frames.is_empty() {
            for frame in batch.frames {
                timed(writer, limit, sink.feed(Message::Binary(frame))).await?;
            }
            dirty = true;
            last_sent = Instant::now();
            continue;
        }
        if dirty {
            timed(writer, limit, sink.flush()).await?;
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
            Some(t) => t.min(ping_at),
            None => ping_at,
        };
        tokio::select! {
            _ = &mut notified => {}
            _ = tokio::time::sleep_until(wake_at) => {
                if Instant::now() >= ping_at {
                    timed(writer, limit, sink.send(Message::Binary(session.ping_frame()))).await?;
                    last_sent = Instant::now();
                }
            }
        }
    }
}
