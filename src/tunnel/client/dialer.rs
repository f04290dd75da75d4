//! [`TunnelDialer`]: a [`Dialer`] whose connections are tunnel streams, so that the SOCKS5 server of
//! [`crate::net::socks`] can serve `ws-client --socks` unchanged.

use std::sync::Arc;

use super::keeper::Keeper;
use crate::net::{BoxStream, ChunkStream, DialError, DialFuture, Dialer, Purpose, Target};

/// Opens streams through the client's tunnel (the shared one, or one per connection in single mode).
pub(crate) struct TunnelDialer {
    keeper: Arc<Keeper>,
}

impl TunnelDialer {
    /// A dialer asking `keeper` for its tunnels.
    pub(crate) fn new(keeper: Arc<Keeper>) -> Self {
        TunnelDialer { keeper }
    }
}

impl Dialer for TunnelDialer {
    fn dial<'a>(&'a self, target: &'a Target, _purpose: Purpose) -> DialFuture<'a> {
        Box::pin(async move {
            let tunnel = self
                .keeper
                .tunnel_for_connection()
                .await
                .map_err(|e| DialError::Upstream(format!("tunnel: {e}")))?;
            let stream =
                tunnel.open(&target.to_string()).map_err(|e| DialError::Upstream(format!("tunnel: {e}")))?;
            // SOCKS must answer success or failure before data flows: wait for the server's dial.
            stream.connected().await.map_err(|e| match e.kind() {
                std::io::ErrorKind::PermissionDenied => {
                    DialError::Upstream(format!("refused by policy: {e}"))
                }
                _ => DialError::Connect { target: target.to_string(), source: e },
            })?;
            // As a `ChunkStream`, so the SOCKS5 server's relay moves its buffers instead of copying.
            Ok(Box::new(ChunkStream::new(stream)) as BoxStream)
        })
    }
}
