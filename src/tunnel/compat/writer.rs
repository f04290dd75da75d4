//! The one writer of a compat WebSocket connection. It sends the connection's own control answers and,
//! while a tunnel is bound to the connection, drains that tunnel's [`Outbox`] (which belongs to the
//! tunnel, not the connection: see `outbox`).

use std::sync::Arc;
use std::time::Duration;

use futures_util::{Sink, SinkExt};
use tokio::sync::{mpsc, OwnedMutexGuard};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_util::sync::CancellationToken;

use super::outbox::Outbox;

/// A peer that has not taken a message for this long is dead (the seed client itself gives up after
/// 21 s without traffic).
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// What the rest of the connection asks the writer to do.
pub enum WriterCmd {
    /// Send a message on this connection (control answers; never queued behind tunnel frames).
    Send(Message),
    /// From now on also drain this tunnel's frame queue.
    Bind(Arc<Outbox>),
    /// Close the WebSocket with this code and reason, and stop.
    Close(CloseFrame),
}

/// How a tunnel reaches the connection it is bound to.
#[derive(Clone)]
pub struct ConnHandle {
    /// Unique per connection in this process.
    pub id: u64,
    /// The connection's writer.
    pub cmds: mpsc::Sender<WriterCmd>,
    /// Cancelled to drop the connection (another connection took its tunnel over with `use`).
    pub kick: CancellationToken,
}

/// Writes until `stop` is cancelled, the command channel closes, or a send fails; then closes the sink.
pub async fn run<S>(mut sink: S, mut cmds: mpsc::Receiver<WriterCmd>, stop: CancellationToken)
where
    S: Sink<Message, Error = WsError> + Unpin,
{
    let mut bound: Option<Arc<Outbox>> = None;
    let mut queue: Option<OwnedMutexGuard<mpsc::Receiver<Message>>> = None;
    loop {
        let tunnel = bound.clone();
        let need_queue = tunnel.is_some() && queue.is_none();
        let (msg, from_tunnel) = tokio::select! {
            biased;
            _ = stop.cancelled() => {
                // A Close asked for just before the connection stopped still goes out, with its code.
                while let Ok(cmd) = cmds.try_recv() {
                    if let WriterCmd::Close(frame) = cmd {
                        let bye = sink.send(Message::Close(Some(frame)));
                        let _ = tokio::time::timeout(Duration::from_secs(2), bye).await;
                        return;
                    }
                }
                break;
            }
            cmd = cmds.recv() => match cmd {
                None => break,
                Some(WriterCmd::Send(m)) => (m, false),
                Some(WriterCmd::Close(frame)) => {
                    let bye = sink.send(Message::Close(Some(frame)));
                    let _ = tokio::time::timeout(Duration::from_secs(2), bye).await;
                    return;
                }
                Some(WriterCmd::Bind(t)) => {
                    queue = None;
                    bound = Some(t);
                    continue;
                }
            },
            _ = closed(&tunnel) => {
                queue = None;
                bound = None;
                continue;
            }
            guard = lock_queue(&tunnel), if need_queue => {
                queue = Some(guard);
                // A frame whose send failed on the previous connection goes first.
                match tunnel.as_ref().and_then(|t| t.take_retry()) {
                    Some(m) => (m, true),
                    None => continue,
                }
            }
            m = next_frame(&mut queue) => match m {
                Some(m) => (m, true),
                None => {
                    queue = None;
                    bound = None;
                    continue;
                }
            },
        };
        let keep = from_tunnel.then(|| msg.clone());
        let sent = tokio::time::timeout(WRITE_TIMEOUT, sink.send(msg)).await;
        if !matches!(sent, Ok(Ok(()))) {
            if let (Some(t), Some(m)) = (&bound, keep) {
                t.set_retry(m);
            }
            tracing::debug!("compat: WebSocket send failed or timed out");
            return;
        }
    }
    drop(queue);
    let _ = tokio::time::timeout(Duration::from_secs(2), sink.close()).await;
}

async fn closed(tunnel: &Option<Arc<Outbox>>) {
    match tunnel {
        Some(t) => t.closed().await,
        None => std::future::pending().await,
    }
}

async fn lock_queue(tunnel: &Option<Arc<Outbox>>) -> OwnedMutexGuard<mpsc::Receiver<Message>> {
    match tunnel {
        Some(t) => t.lock_queue().await,
        None => std::future::pending().await,
    }
}

async fn next_frame(queue: &mut Option<OwnedMutexGuard<mpsc::Receiver<Message>>>) -> Option<Message> {
    match queue {
        Some(q) => q.recv().await,
        None => std::future::pending().await,
    }
}
