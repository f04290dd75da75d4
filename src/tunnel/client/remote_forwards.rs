//! The `-R` forwards of `ws-client`: the server listens, and each connection there comes back as a
//! stream that we connect to a local target. [`RemoteForwards`] registers them on every new shared
//! tunnel (the keeper calls it), so this file depends on no other part of the client but its error.
//!
//! Once the [`Drain`] is triggered (SIGTERM/SIGINT) new streams opened by the server are refused, while
//! the ones already open carry on until they end or the drain's deadline (`--shutdown-timeout`) passes.

use std::collections::HashMap;
use std::time::Duration;

use super::error::ConnectError;
use crate::net::relay::Relay;
use crate::net::{socket, ForwardSpec, Target};
use crate::shutdown::Drain;
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
            let _ = Relay::new(&mut stream, &mut local, None).lending().await;
        }
        Ok(Err(e)) => stream.reset(rst::DIAL_FAILED, &format!("connecting to {target}: {e}")),
        Err(_) => stream.reset(rst::TIMEOUT, &format!("connecting to {target} timed out")),
    }
}
