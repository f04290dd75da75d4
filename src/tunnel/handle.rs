//! [`Tunnel`]: the application's handle on one tunnel, on either side. Streams are opened with
//! [`Tunnel::open`] and arrive through [`Tunnel::accept`]; [`Tunnel::events`] reports what happens to the
//! tunnel (broken, resumed, closed) and its streams, mirroring the seed's events.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;

use super::id::TunnelId;
use super::params::LinkParams;
use super::session::{EndReason, LinkStatus, Session, TunnelEvent};
use super::stream::TunnelStream;

/// A tunnel: many streams over one (replaceable) WebSocket connection. Cheap to clone.
#[derive(Clone)]
pub struct Tunnel {
    session: Arc<Session>,
}

impl std::fmt::Debug for Tunnel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tunnel").field("id", &self.session.id).finish()
    }
}

impl Tunnel {
    pub(crate) fn new(session: Arc<Session>) -> Self {
        Tunnel { session }
    }

    pub(crate) fn session(&self) -> &Arc<Session> {
        &self.session
    }

    /// The tunnel id the server issued.
    pub fn id(&self) -> TunnelId {
        self.session.id
    }

    /// What the two sides agreed on.
    pub fn params(&self) -> LinkParams {
        self.session.params
    }

    /// Opens a stream to `target` (`host:port`; the server dials it under its policy). Returns at once and
    /// bytes may be written immediately (0-RTT); a refusal shows up as a reset, or through
    /// [`TunnelStream::connected`].
    pub fn open(&self, target: &str) -> io::Result<TunnelStream> {
        let id = self.session.open(target)?;
        Ok(TunnelStream::new(self.session.clone(), id, target.to_owned()))
    }

    /// The next stream opened by the peer, or `None` once the tunnel has ended.
    ///
    /// ```no_run
    /// # async fn demo(tunnel: tunnelkit::tunnel::Tunnel) {
    /// // Serve streams the server opens back to us (after `tunnel.listen(..)`): echo them.
    /// while let Some(mut stream) = tunnel.accept().await {
    ///     stream.confirm();
    ///     tokio::spawn(async move {
    ///         let (mut r, mut w) = tokio::io::split(stream);
    ///         let _ = tokio::io::copy(&mut r, &mut w).await;
    ///     });
    /// }
    /// # }
    /// ```
    pub async fn accept(&self) -> Option<TunnelStream> {
        let (id, target) = self.session.accept().await?;
        Some(TunnelStream::new(self.session.clone(), id, target))
    }

    /// Client side: asks the server to listen on `bind` (`host:port`) and open a stream back for every
    /// connection it accepts; those streams arrive through [`Tunnel::accept`] with target `listen:<id>`.
    /// Returns the request id and the address the server bound.
    pub async fn listen(&self, bind: &str) -> io::Result<(u32, SocketAddr)> {
        self.session.listen(bind).await
    }

    /// Subscribes to the tunnel's events.
    pub fn events(&self) -> broadcast::Receiver<TunnelEvent> {
        self.session.events()
    }

    /// Whether the connection is currently broken (the tunnel is held for resumption).
    pub fn is_broken(&self) -> bool {
        !self.session.is_up() && !self.session.is_ended()
    }

    /// Number of open streams.
    pub fn stream_count(&self) -> usize {
        self.session.stream_count()
    }

    /// Bytes of frames sent but not yet acknowledged by the peer (bounded by the replay buffer).
    pub fn unacked_bytes(&self) -> usize {
        self.session.unacked_bytes()
    }

    /// Why the tunnel ended, if it has.
    pub fn end_reason(&self) -> Option<EndReason> {
        self.session.end_reason()
    }

    /// Waits until the tunnel ends and says why.
    pub async fn closed(&self) -> EndReason {
        self.session.ended.cancelled().await;
        self.session.end_reason().unwrap_or(EndReason::Closed)
    }

    /// Ends the tunnel in order: sends CLOSE after everything queued, waits (at most 5 s) for the peer to
    /// acknowledge it, then ends locally. Streams still open end with an error.
    pub async fn close(&self) {
        self.session.queue_close();
        let mut status = self.session.status();
        let acked = async {
            loop {
                if self.session.close_acked() {
                    return;
                }
                if *status.borrow_and_update() == LinkStatus::Ended {
                    return;
                }
                tokio::select! {
                    _ = status.changed() => {}
                    _ = tokio::time::sleep(Duration::from_millis(5)) => {}
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), acked).await;
        self.session.end(EndReason::Closed);
    }
}
