//! The entries of `ws-client`: `-L` local forwards (each accepted connection becomes a stream), `-R`
//! remote forwards (the server listens; each connection there comes back as a stream that we connect to a
//! local target) and the `--socks` entry (each CONNECT becomes a stream).
//!
//! All of them honour one [`Drain`]: once it is triggered (SIGTERM/SIGINT) the listeners close and `-R`
//! streams opened by the server are refused, while the streams already open carry on until they end or
//! the drain's deadline (`--shutdown-timeout`) passes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use super::{ConnectError, Keeper, TunnelDialer};
use crate::net::socks::SocksServer;
use crate::net::{relay, socket, Dialer, ForwardSpec, Target};
use crate::policy::Users;
use crate::shutdown::Drain;
use crate::telemetry::access_log::AccessLog;
use crate::tunnel::handle::Tunnel;
use crate::tunnel::rst;
use crate::tunnel::stream::TunnelStream;

/// How long connecting to a `-R` forward's local target may take, as for any dial of ours.
const LOCAL_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The `-R` forwards, registered on each new shared tunnel.
pub(crate) struct RemoteForwards {
    specs: Vec<ForwardSpec>,
    drain: Drain,
}

impl RemoteForwards {
    /// The forwards `specs`, whose streams are tracked by `drain`.
    pub(crate) fn new(specs: Vec<ForwardSpec>, drain: Drain) -> Self {
        RemoteForwards { specs, drain }
    }

    /// Asks the server to listen for each forward on `tunnel`, then serves the streams it opens back.
    /// A refusal is final: the server's limits or policy will say the same next time.
    pub(crate) async fn register(&self, tunnel: &Tunnel) -> Result<(), ConnectError> {
        let mut targets = HashMap::new();
        for spec in &self.specs {
            let (id, bound) = tunnel
                .listen(&spec.bind.to_string())
                .await
                .map_err(|e| ConnectError::ListenRefused { bind: spec.bind, why: e.to_string() })?;
            crate::telemetry::announce(&format!("remote listening on {bound}"));
            targets.insert(format!("listen:{id}"), spec.target.clone());
        }
        // Also without -R: a stream the server opens on its own is refused rather than left waiting.
        tokio::spawn(serve_incoming(tunnel.clone(), targets, self.drain.clone()));
        Ok(())
    }
}

/// Streams the server opens back to us (`-R`): connect the local target registered for that listener.
async fn serve_incoming(tunnel: Tunnel, targets: HashMap<String, Target>, drain: Drain) {
    while let Some(stream) = tunnel.accept().await {
        if drain.is_triggered() {
            stream.reset(rst::LIMIT, "the client is shutting down");
            continue;
        }
        let Some(target) = targets.get(stream.target()).cloned() else {
            stream.reset(rst::POLICY, "this client only accepts streams of its -R forwards");
            continue;
        };
        drain.spawn(connect_local(stream, target));
    }
}

/// Connects a `-R` stream to its local target: a destination the local user named, so the plain
/// [`socket::connect`] without a policy.
async fn connect_local(mut stream: TunnelStream, target: Target) {
    match tokio::time::timeout(LOCAL_CONNECT_TIMEOUT, socket::connect(&target)).await {
        Ok(Ok(mut local)) => {
            socket::set_nodelay(&local);
            stream.confirm();
            let _ = relay(&mut stream, &mut local, None).await;
        }
        Ok(Err(e)) => stream.reset(rst::DIAL_FAILED, &format!("connecting to {target}: {e}")),
        Err(_) => stream.reset(rst::TIMEOUT, &format!("connecting to {target} timed out")),
    }
}

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
    if let Err(e) = relay(&mut tcp, &mut stream, None).await {
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
