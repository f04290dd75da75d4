//! [`TunnelStream`]: one stream of a tunnel, as tokio's `AsyncRead` + `AsyncWrite`.
//!
//! Writes are accepted up to the stream's credit and queued in the session (copied once, straight into the
//! frame that will go on the wire); reads drain what the link delivered and return credit to the peer.
//! Shutdown sends FIN (half-close). Dropping the handle finishes our direction and resets the stream if
//! the peer may still be sending. When the tunnel ends, reads and writes fail with
//! `ConnectionAborted`: never a clean EOF, which would be silent truncation.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Buf;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::session::{rst, Session};
use super::wire;

/// A bidirectional byte stream carried by a tunnel.
pub struct TunnelStream {
    session: Arc<Session>,
    id: u32,
    target: String,
}

impl std::fmt::Debug for TunnelStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunnelStream").field("id", &self.id).field("target", &self.target).finish()
    }
}

/// Maps a reset to the error the application sees.
fn reset_error(code: u16, reason: &str) -> io::Error {
    let kind = match code {
        rst::TUNNEL_ENDED => io::ErrorKind::ConnectionAborted,
        rst::POLICY => io::ErrorKind::PermissionDenied,
        rst::DIAL_FAILED => io::ErrorKind::ConnectionRefused,
        rst::TIMEOUT => io::ErrorKind::TimedOut,
        _ => io::ErrorKind::ConnectionReset,
    };
    io::Error::new(kind, format!("stream reset: {reason}"))
}

impl TunnelStream {
    pub(crate) fn new(session: Arc<Session>, id: u32, target: String) -> Self {
        TunnelStream { session, id, target }
    }

    /// The stream id (odd: opened by the client, even: by the server).
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The target named when the stream was opened (`host:port`, or `listen:<id>` for `-R` streams).
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Received bytes waiting to be read (at most one credit window).
    pub fn buffered(&self) -> usize {
        let st = self.session.lock();
        st.streams.get(&self.id).map_or(0, |s| s.recv.iter().map(|b| b.len()).sum())
    }

    /// Accepting side: tells the opener that the target was reached.
    pub fn confirm(&self) {
        self.session.confirm(self.id);
    }

    /// Ends the stream with an error the peer sees (`code` from [`rst`]).
    pub fn reset(&self, code: u16, reason: &str) {
        self.session.reset_stream(self.id, code, reason);
    }

    /// Opening side: waits until the accepting side reached the target, or fails with the reason it could
    /// not (policy refusal, dial failure, timeout).
    pub async fn connected(&self) -> io::Result<()> {
        poll_fn(|cx| {
            let mut st = self.session.lock();
            let ended = st.ended.clone();
            let Some(slot) = st.streams.get_mut(&self.id) else {
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::NotConnected, "stream is gone")));
            };
            if slot.connected {
                return Poll::Ready(Ok(()));
            }
            if let Some((code, reason)) = &slot.reset {
                return Poll::Ready(Err(reset_error(*code, reason)));
            }
            if let Some(r) = ended {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    format!("tunnel {r}"),
                )));
            }
            slot.read_waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }
}

impl AsyncRead for TunnelStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let session = &self.session;
        let mut st = session.lock();
        let Some(slot) = st.streams.get_mut(&self.id) else {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::NotConnected, "stream is gone")));
        };
        if slot.reset.is_some() && !slot.recv_fin {
            let (code, reason) = slot.reset.clone().expect("checked");
            return Poll::Ready(Err(reset_error(code, &reason)));
        }
        let mut n = 0;
        while buf.remaining() > 0 {
            let Some(chunk) = slot.recv.front_mut() else { break };
            let take = chunk.len().min(buf.remaining());
            buf.put_slice(&chunk[..take]);
            chunk.advance(take);
            if chunk.is_empty() {
                slot.recv.pop_front();
            }
            n += take;
        }
        if n > 0 {
            if session.consumed(&mut st, self.id, n) {
                drop(st);
                session.writer.notify_one();
            }
            return Poll::Ready(Ok(()));
        }
        if slot.recv_fin || buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        slot.read_waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl AsyncWrite for TunnelStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let max_frame = self.session.params.max_frame;
        let mut guard = self.session.lock();
        let st = &mut *guard;
        let Some(slot) = st.streams.get_mut(&self.id) else {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::NotConnected, "stream is gone")));
        };
        if let Some((code, reason)) = &slot.reset {
            return Poll::Ready(Err(reset_error(*code, reason)));
        }
        if slot.send_fin {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::BrokenPipe, "write after shutdown")));
        }
        if slot.send_credit == 0 {
            slot.write_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let room = st.queue_room(self.session.params.stream_memory);
        let Some(slot) = st.streams.get_mut(&self.id) else {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::NotConnected, "stream is gone")));
        };
        if room == 0 {
            // The tunnel's queues hold its whole stream memory: wait for the link to drain them.
            slot.write_waker = Some(cx.waker().clone());
            st.memory_blocked = true;
            return Poll::Pending;
        }
        let n = buf.len().min(slot.send_credit).min(max_frame).min(room);
        slot.send_credit -= n;
        // Small writes join the last queued DATA frame instead of costing a frame each.
        let joined =
            slot.pending.back_mut().is_some_and(|last| wire::append_data(last, &buf[..n], max_frame));
        if !joined {
            slot.pending.push_back(wire::data(self.id, &buf[..n]));
        }
        st.send_queued += n;
        let notify = st.enqueue_ready(self.id);
        drop(guard);
        if notify {
            self.session.writer.notify_one();
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut guard = self.session.lock();
        let st = &mut *guard;
        let Some(slot) = st.streams.get_mut(&self.id) else {
            return Poll::Ready(Ok(()));
        };
        if slot.reset.is_some() || slot.send_fin {
            return Poll::Ready(Ok(()));
        }
        slot.send_fin = true;
        slot.pending.push_back(wire::fin(self.id));
        st.enqueue_ready(self.id);
        drop(guard);
        self.session.writer.notify_one();
        Poll::Ready(Ok(()))
    }
}

impl Drop for TunnelStream {
    fn drop(&mut self) {
        self.session.detach(self.id);
    }
}
