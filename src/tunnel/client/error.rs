//! [`ConnectError`]: why a client could not create or resume a tunnel, in words for the person at the
//! terminal. Each refusal names what to change (the URL's path, `--token`, `--ca`, a server limit); only
//! [`ConnectError::Unreachable`] and [`ConnectError::TimedOut`] may pass by themselves and are retried.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::tunnel::EndReason;

/// Why a connection attempt failed. Cheap to clone, so that connections queued behind one attempt can
/// all be given its outcome.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConnectError {
    /// The upgrade was answered 404: the URL's path is not the server's `--path`.
    #[error(
        "refused by the server: 404: no tunnel endpoint at {path} (the server's path is its --path, \
         default /tunnel)"
    )]
    NoEndpoint {
        /// The path the client asked for.
        path: String,
    },
    /// The upgrade was answered 401 although a token was presented.
    #[error("refused by the server: 401: the server refused the token (check --token)")]
    TokenRefused,
    /// The upgrade was answered 401 and no token was presented.
    #[error("refused by the server: 401: the server wants a token: give it with --token")]
    TokenMissing,
    /// The upgrade was answered with a status no tunnelkit ws-server (nor a gateway in front of one) gives.
    #[error(
        "refused by the server: the server answered the WebSocket upgrade with {status}: is this the URL \
         of a tunnelkit ws-server?"
    )]
    NotATunnelServer {
        /// What the server answered.
        status: http::StatusCode,
    },
    /// The server's certificate is not trusted; the message says whether `--ca` or the server's
    /// `--tls-cert` is what to fix. Retrying would not help.
    #[error("refused by the server: {0}")]
    Untrusted(String),
    /// The server answered the handshake with `REFUSED` (a limit, an unknown tunnel or wrong secret,
    /// another token's tunnel, a protocol version it does not speak).
    #[error("refused by the server: {reason} (code {code})")]
    Refused {
        /// The `REFUSED` code (docs/protocol.md).
        code: u16,
        /// The server's words.
        reason: String,
    },
    /// The server would not bind a `-R` listener; its reason names the server flag that decides.
    #[error("refused by the server: -R {bind}: {why}")]
    ListenRefused {
        /// The address asked for.
        bind: SocketAddr,
        /// The server's words.
        why: String,
    },
    /// The tunnel ended (locally) while it was being resumed.
    #[error("the tunnel {0}")]
    Ended(EndReason),
    /// Network, proxy, TLS or WebSocket failure (the message carries the whole cause chain): the server may
    /// be down or restarting, so the attempt is worth repeating.
    #[error("{0:#}")]
    Unreachable(Arc<anyhow::Error>),
    /// The whole attempt (connect, TLS, upgrade, handshake) took longer than the connect timeout.
    #[error("connecting to {url} timed out after {after:?} (is the server up, and does --proxy reach it?)")]
    TimedOut {
        /// The server URL.
        url: String,
        /// The connect timeout.
        after: Duration,
    },
}

impl ConnectError {
    /// True when retrying cannot help: the server (or our own trust settings) said no.
    pub fn is_final(&self) -> bool {
        !matches!(self, ConnectError::Unreachable(_) | ConnectError::TimedOut { .. })
    }
}

impl From<anyhow::Error> for ConnectError {
    fn from(e: anyhow::Error) -> Self {
        ConnectError::Unreachable(Arc::new(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_final_and_say_what_to_change() {
        let e = ConnectError::NoEndpoint { path: "/nope".into() };
        assert!(e.is_final());
        assert!(e.to_string().contains("--path"), "{e}");
        assert!(ConnectError::TokenMissing.to_string().contains("--token"));
        let down = ConnectError::from(anyhow::anyhow!("connection refused"));
        assert!(!down.is_final());
        let slow = ConnectError::TimedOut { url: "ws://h/tunnel".into(), after: Duration::from_secs(10) };
        assert!(!slow.is_final());
    }
}
