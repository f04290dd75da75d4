//! The local entries of `ws-client`: `-L` forwards (each accepted connection becomes a stream) and the
//! `--socks` entry (each CONNECT becomes a stream). The `-R` forwards are in `remote_forwards`.
//!
//! Both honour one [`Drain`]: once it is triggered (SIGTERM/SIGINT) the listeners close, while the
//! streams already open carry on until they end or the drain's deadline (`--shutdown-timeout`) passes.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use super::dialer::TunnelDialer;
use super::keeper::Keeper;
use crate::net::relay::Relay;
use crate::net::socks::SocksServer;
use crate::net::{socket, Dialer};
use crate::policy::Users;
use crate::shutdown::Drain;
use crate::telemetry::access_log::AccessLog;
use crate::tunnel::stream::TunnelStream;

/// `-L`: each accepted connection becomes a stream to `target` (0-RTT: bytes flow before the server's dial
/// completes; a refusal resets the local connection). Returns when `drain` is triggered, closing the
/// listener; the connections already accepted are tracked by `drain`.
pub(crate) async fn serve_local(listener: TcpListener, target: String, keeper: Arc<Keeper>, drain: Drain) {
    loop {
        let (tcp, peer) = tokio::select! {
            _ = drain.cancelled() => return,
            x = socket::accept(&listener) => x,
        };
        let keeper = keeper.clone();
        let target = target.clone();
        drain.spawn(async move {
            let tunnel = match keeper.tunnel_for_connection().await {
                Ok(t) => t,
                Err(e) => return tracing::warn!(%peer, "no tunnel for -L connection: {e}"),
            };
            match tunnel.open(&target) {
                Ok(stream) => forward(tcp, stream).await,
                Err(e) => tracing::warn!(%peer, "cannot open a stream: {e}"),
            }
        });
    }
}

/// Relays a local connection and a stream; if the stream fails, the local side is reset rather than
/// closed, so the application cannot take a truncated transfer for a complete one.
async fn forward(mut tcp: TcpStream, mut stream: TunnelStream) {
    if let Err(e) = Relay::new(&mut tcp, &mut stream, None).lending().await {
        tracing::debug!(target = stream.target(), "stream failed: {e}");
        let _ = socket2::SockRef::from(&tcp).set_linger(Some(Duration::ZERO));
    }
}

/// `--socks`: a SOCKS5 entry (no auth) whose CONNECTs become streams. Returns when `drain` is triggered;
/// the SOCKS connections are tracked by `drain`.
pub(crate) async fn serve_socks(listener: TcpListener, keeper: Arc<Keeper>, drain: Drain) {
    let dialer: Arc<dyn Dialer> = Arc::new(TunnelDialer::new(keeper));
    let socks = Arc::new(SocksServer::new(dialer, Arc::new(Users::default()), AccessLog::disabled()));
    socks.serve(listener, drain).await
}
