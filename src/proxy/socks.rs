//! The SOCKS5 listener of `tunnelkit proxy --socks ADDR` (RFC 1928 CONNECT, RFC 1929 user/password
//! when authentication is on), dialling through the same [`Dialer`] and policy as the HTTP proxy.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::net::Dialer;
use crate::policy::Users;
use crate::shutdown::Drain;
use crate::telemetry::access_log::AccessLog;

/// A SOCKS5 server sharing the HTTP proxy's dialer, users and access log.
pub struct SocksServer {
    dialer: Arc<dyn Dialer>,
    users: Arc<Users>,
    access_log: AccessLog,
    handshake_timeout: Duration,
    idle_timeout: Option<Duration>,
}

impl SocksServer {
    /// A server dialling through `dialer`; user/password auth is required when `users` is non-empty.
    pub fn new(dialer: Arc<dyn Dialer>, users: Arc<Users>, access_log: AccessLog) -> Self {
        SocksServer {
            dialer,
            users,
            access_log,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Some(Duration::from_secs(300)),
        }
    }

    /// Bounds the time from accept to the end of the SOCKS handshake.
    pub fn handshake_timeout(mut self, t: Duration) -> Self {
        self.handshake_timeout = t;
        self
    }

    /// Ends tunnels with no traffic either way for this long.
    pub fn idle_timeout(mut self, t: Option<Duration>) -> Self {
        self.idle_timeout = t;
        self
    }

    /// Accepts connections until `drain` is triggered; each connection runs as a tracked task.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, drain: Drain) {
        let _ = (&self.dialer, &self.users, &self.access_log, listener, drain);
        tracing::error!("SOCKS5 listener not implemented yet");
    }
}
