//! The one place a client tunnel's life is decided.
//!
//! - [`TunnelClient::connect`] creates a tunnel (`handshake`) and hands it to [`keep`]; the handshake
//!   only does the exchanges, so the dependency runs from here to it and not back.
//! - [`keep`] watches one tunnel: after a break it resumes with jittered backoff until the hold time the
//!   server granted runs out (then the tunnel has expired), a refusal ends it at once, and an idle tunnel
//!   (no stream, no traffic for `--idle-timeout`) is closed in order.
//! - [`Keeper`] is what `ws-client`'s entries ask for a tunnel: in multi mode the one shared tunnel,
//!   created on first use and again after an expiry or an idle close (with the `-R` forwards registered
//!   on each new one); in single mode a new tunnel per connection.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use super::builder::TunnelClient;
use super::error::ConnectError;
use super::handshake::{self, Created};
use super::remote_forwards::RemoteForwards;
use crate::shutdown::Drain;
use crate::tunnel::backoff::Backoff;
use crate::tunnel::handle::Tunnel;
use crate::tunnel::id::ResumeSecret;
use crate::tunnel::params::Mode;
use crate::tunnel::session::{EndReason, LinkStatus, Session};

/// Attempts at creating the shared tunnel before a waiting connection is given up: with the backoff
/// (100 ms doubling, ±50 %) 8 attempts and their connect timeouts take about 12 s when the server
/// refuses connections at once.
const CREATE_ATTEMPTS: u32 = 8;

/// How long the `-R` forwards wait before trying again after the shared tunnel could not be created.
const REMOTE_RETRY: Duration = Duration::from_secs(5);

impl TunnelClient {
    /// Creates a new tunnel, once (no retry), and keeps it alive (resuming after breaks) until it ends.
    pub async fn connect(&self) -> Result<Tunnel, ConnectError> {
        let create = async {
            let Created { session, secret } = handshake::create(self).await?;
            tokio::spawn(keep(self.clone(), session.clone(), secret));
            Ok(Tunnel::new(session))
        };
        tokio::time::timeout(self.connect_timeout, create)
            .await
            .map_err(|_| ConnectError::TimedOut { url: self.url.to_string(), after: self.connect_timeout })?
    }
}

/// Keeps one client tunnel: resumes after breaks within the hold time, ends it when that runs out, and
/// closes it when idle.
async fn keep(client: TunnelClient, session: Arc<Session>, secret: ResumeSecret) {
    let mut status = session.status();
    let tunnel = Tunnel::new(session.clone());
    // Checking a quarter of the idle limit at a time closes an idle tunnel within 125 % of the limit.
    let idle_tick =
        client.idle_timeout.map(|d| (d / 4).clamp(Duration::from_millis(50), Duration::from_secs(1)));
    loop {
        let now = *status.borrow_and_update();
        match now {
            LinkStatus::Ended => {
                if session.params.mode == Mode::Single && session.end_reason() == Some(EndReason::Closed) {
                    tracing::info!(tunnel = %session.id, "single-mode stream ended: tunnel closed");
                }
                return;
            }
            LinkStatus::Up(_) => {
                let idle = async {
                    match idle_tick {
                        Some(t) => tokio::time::sleep(t).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    r = status.changed() => if r.is_err() { return },
                    _ = idle => {
                        let limit = client.idle_timeout.expect("idle tick implies timeout");
                        if session.is_idle_for(limit) {
                            tracing::info!(tunnel = %session.id, "idle for {limit:?}: closing");
                            tunnel.close().await;
                        }
                    }
                }
            }
            LinkStatus::Down(_) => {
                if session.close_sent() {
                    session.end(EndReason::Closed);
                    if session.params.mode == Mode::Single {
                        tracing::info!(tunnel = %session.id, "single-mode stream ended: tunnel closed");
                    } else {
                        tracing::info!(tunnel = %session.id, "tunnel closed");
                    }
                    return;
                }
                if let Some(end) = resume_within_hold(&client, &session, &secret).await {
                    session.end(end);
                    return;
                }
            }
        }
    }
}

/// Resumes a broken tunnel, retrying with backoff until the hold time runs out. `None` once it is
/// carried again; otherwise how the tunnel ends (expired, refused, or already ended by someone else).
async fn resume_within_hold(
    client: &TunnelClient,
    session: &Arc<Session>,
    secret: &ResumeSecret,
) -> Option<EndReason> {
    let deadline = Instant::now() + session.params.keep_broken;
    let mut backoff = Backoff::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            tracing::warn!(tunnel = %session.id, "could not resume within the hold time");
            return Some(EndReason::Expired);
        }
        let attempt = handshake::resume(client, session, secret);
        match tokio::time::timeout(left.min(client.connect_timeout), attempt).await {
            Ok(Ok(())) => return None,
            Ok(Err(e)) if e.is_final() => {
                tracing::warn!(tunnel = %session.id, "resume refused: {e}");
                let why = match e {
                    ConnectError::Refused { code, reason } => format!("{reason} (code {code})"),
                    other => other.to_string(),
                };
                return Some(EndReason::Refused(why));
            }
            Ok(Err(e)) => tracing::debug!(tunnel = %session.id, "resume attempt failed: {e}"),
            Err(_) => tracing::debug!(tunnel = %session.id, "resume attempt timed out"),
        }
        if let Some(end) = session.end_reason() {
            return Some(end);
        }
        let wait = backoff.next_wait().min(deadline.saturating_duration_since(Instant::now()));
        tokio::time::sleep(wait).await;
    }
}

/// Creates a tunnel, retrying failures that may pass (server down, network) with backoff; a refusal is
/// final at once.
async fn create_retrying(client: &TunnelClient) -> Result<Tunnel, ConnectError> {
    let mut backoff = Backoff::new();
    let mut attempt = 0;
    loop {
        attempt += 1;
        match client.connect().await {
            Ok(t) => return Ok(t),
            Err(e) if e.is_final() => return Err(e),
            Err(e) if attempt >= CREATE_ATTEMPTS => {
                tracing::warn!("cannot reach the tunnel server, giving up after {attempt} attempts: {e}");
                return Err(e);
            }
            Err(e) => {
                // The first failure is worth a line; the ones in between would only repeat it.
                if attempt == 1 {
                    tracing::warn!("cannot reach the tunnel server (retrying): {e}");
                }
                tokio::time::sleep(backoff.next_wait()).await;
            }
        }
    }
}

/// Where the shared tunnel of a multi-mode client stands.
enum Shared {
    /// None yet, or the last one ended and nobody has asked for another since.
    Empty,
    /// The tunnel new streams go through (it may have ended since; checked on use).
    Live(Tunnel),
    /// The last attempt to create one gave up.
    Failed {
        /// When it gave up: connections that were already waiting share this outcome.
        at: Instant,
        /// Why.
        error: ConnectError,
    },
}

/// How [`Keeper::close`] ends the shared tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Closing {
    /// Every stream finished: send CLOSE and wait for the server to acknowledge it.
    InOrder,
    /// The drain was cut short (deadline or second signal): do not keep the user waiting.
    AtOnce,
}

/// Gives `ws-client`'s entries their tunnel (see the module documentation).
pub(crate) struct Keeper {
    client: TunnelClient,
    remote: RemoteForwards,
    shared: Mutex<Shared>,
}

impl Keeper {
    /// A keeper creating tunnels with `client` and registering `remote` on each shared one.
    pub(crate) fn new(client: TunnelClient, remote: RemoteForwards) -> Arc<Keeper> {
        Arc::new(Keeper { client, remote, shared: Mutex::new(Shared::Empty) })
    }

    /// The tunnel for one new connection: the shared one in multi mode, a new one in single mode.
    pub(crate) async fn tunnel_for_connection(self: &Arc<Self>) -> Result<Tunnel, ConnectError> {
        match self.client.mode {
            Mode::Multi => self.shared().await,
            Mode::Single => self.client.connect().await,
        }
    }

    /// The shared tunnel, created (with retries) when there is none alive.
    pub(crate) async fn shared(self: &Arc<Self>) -> Result<Tunnel, ConnectError> {
        let asked = Instant::now();
        let mut shared = self.shared.lock().await;
        match &*shared {
            Shared::Live(t) if t.end_reason().is_none() => return Ok(t.clone()),
            // Connections that queued behind an attempt share its failure instead of each starting a
            // full retry schedule of their own (which would make the last of them wait N times as long).
            Shared::Failed { at, error } if *at >= asked => return Err(error.clone()),
            _ => {}
        }
        let created = match create_retrying(&self.client).await {
            Ok(t) => self.remote.register(&t).await.map(|()| t),
            Err(e) => Err(e),
        };
        *shared = match &created {
            Ok(t) => Shared::Live(t.clone()),
            Err(e) => Shared::Failed { at: Instant::now(), error: e.clone() },
        };
        created
    }

    /// For `-R`: the server's listeners live only as long as a tunnel, so keep one at all times,
    /// re-created whenever it ends, until `drain` is triggered.
    pub(crate) async fn keep_shared(self: Arc<Self>, drain: Drain) {
        loop {
            let waited = tokio::select! {
                _ = drain.cancelled() => return,
                r = self.shared() => r,
            };
            match waited {
                Ok(t) => {
                    let why = tokio::select! {
                        _ = drain.cancelled() => return,
                        why = t.closed() => why,
                    };
                    tracing::warn!("tunnel ended ({why}); reconnecting for the -R forwards");
                }
                Err(e) => {
                    tracing::error!("cannot re-establish the tunnel for -R: {e}");
                    tokio::select! {
                        _ = drain.cancelled() => return,
                        _ = tokio::time::sleep(REMOTE_RETRY) => {}
                    }
                }
            }
        }
    }

    /// Closes the shared tunnel at shutdown, after the drain.
    pub(crate) async fn close(&self, how: Closing) {
        let shared = self.shared.lock().await;
        match &*shared {
            Shared::Live(t) if t.end_reason().is_none() => {
                tracing::info!(tunnel = %t.id(), "shutting down on a signal: closing the tunnel");
                match how {
                    Closing::InOrder => t.close().await,
                    // Sends CLOSE but does not wait the up to 5 s for its acknowledgement.
                    Closing::AtOnce => {
                        let _ = tokio::time::timeout(Duration::from_millis(200), t.close()).await;
                    }
                }
            }
            _ => tracing::info!("shutting down on a signal"),
        }
    }
}
