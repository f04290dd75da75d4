//! The link: drives one WebSocket connection of a tunnel. The writer sends what the session has ready
//! (replaying unacked frames first on a new connection), heartbeats when idle and delayed acks; the reader
//! applies incoming frames and declares the peer dead after two silent heartbeat periods. When either
//! side fails, the connection is dropped and the session becomes broken (then resumed or expired). A
//! peer that stops reading is dropped too: a write with no progress for two heartbeat periods fails the
//! connection, and what we owe it is bounded (`backlog`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::backlog::{self, WriterState};
use super::budget;
use super::session::{LinkError, Session};
use super::ws::{Incoming, WsConnection, WsError, WsReader, WsWriter, CLOSE_NORMAL, CLOSE_PROTOCOL};

/// Frames taken from the session per writer turn.
const BATCH: usize = 64;

/// The longest WebSocket message a link takes when its frames are at most `max_frame` bytes: the
/// frame, an OPEN's extra bytes, and slack.
pub fn max_message(max_frame: usize) -> usize {
    max_frame + 64 * 1024 + 64
}

fn lost(e: impl std::fmt::Display) -> LinkError {
    LinkError::Lost(e.to_string())
}

/// A WebSocket ping received, waiting for the writer to answer it. Answers coalesce: a peer that pings
/// without reading is owed one pong, not one per ping.
type PendingPong = Mutex<Option<Bytes>>;

/// Runs connection `gen` until it fails, is superseded (`cancel`), or the tunnel ends. A protocol error
/// is answered with WebSocket close code 1002 (the tunnel is then broken, not closed).
pub async fn run<S>(session: Arc<Session>, ws: WsConnection<S>, gen: u64, cancel: CancellationToken)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut reader, mut writer) = ws.into_split();
    let state = WriterState::default();
    let pong = PendingPong::default();
    let result = tokio::select! {
        r = read_loop(&session, &mut reader, gen, &state, &pong) => r,
        r = write_loop(&session, &mut writer, gen, &state, &pong) => r,
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
        let _ = tokio::time::timeout(Duration::from_secs(2), writer.close(CLOSE_PROTOCOL, &reason)).await;
    }
    session.link_down(gen);
}

async fn read_loop<S>(
    session: &Arc<Session>,
    reader: &mut WsReader<ReadHalf<S>>,
    gen: u64,
    writer: &WriterState,
    pong: &PendingPong,
) -> Result<(), LinkError>
where
    S: AsyncRead,
{
    let dead_after = session.params.heartbeat * 2;
    loop {
        backlog::wait_for_room(session, writer, dead_after).await?;
        budget::wait_for_memory(session).await;
        let msg = match tokio::time::timeout(dead_after, reader.next()).await {
            Err(_) => return Err(LinkError::Silent(dead_after)),
            Ok(Ok(None)) => return Err(LinkError::Lost("connection closed".into())),
            Ok(Err(WsError::Protocol(why))) => return Err(LinkError::Protocol(why.into())),
            Ok(Err(e)) => return Err(lost(e)),
            Ok(Ok(Some(m))) => m,
        };
        match msg {
            Incoming::Binary(b) => session.on_frame(gen, b)?,
            Incoming::Text => return Err(LinkError::Protocol("text message".into())),
            Incoming::Ping(p) => {
                *pong.lock().expect("pong lock") = Some(p);
                session.wake_writer();
            }
            Incoming::Close { .. } => {
                if session.is_closing() {
                    return Ok(());
                }
                return Err(LinkError::Lost("peer closed the WebSocket".into()));
            }
        }
    }
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
    sink: &mut WsWriter<WriteHalf<S>>,
    gen: u64,
    writer: &WriterState,
    pong: &PendingPong,
) -> Result<(), LinkError>
where
    S: AsyncWrite,
{
    // The same bound as the peer's silence: a peer that takes nothing for two heartbeats is as dead as
    // one that sends nothing.
    let limit = session.params.heartbeat * 2;
    for frames in session.replay_frames(gen)?.chunks(BATCH) {
        timed(writer, limit, sink.send(frames)).await?;
    }
    let heartbeat = session.params.heartbeat;
    let mut last_sent = Instant::now();
    loop {
        let notified = session.writer_wakeup();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let owed_pong = pong.lock().expect("pong lock").take();
        if let Some(p) = owed_pong {
            timed(writer, limit, sink.pong(&p)).await?;
        }
        let batch = session.take_batch(gen, BATCH)?;
        if !batch.frames.is_empty() {
            // Written at once: the batch is one vectored write (or one buffer, masked), so there is
            // nothing to gain from holding it back for the next.
            timed(writer, limit, sink.send(&batch.frames)).await?;
            last_sent = Instant::now();
            continue;
        }
        if session.is_ended() {
            // Orderly end: say goodbye so the peer does not take it for a break.
            let _ =
                tokio::time::timeout(Duration::from_secs(2), sink.close(CLOSE_NORMAL, "tunnel closed")).await;
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
                    timed(writer, limit, sink.send(&[session.ping_frame()])).await?;
                    last_sent = Instant::now();
                }
            }
        }
    }
}
