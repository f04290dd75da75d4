//! The SOCKS5 server (RFC 1928 CONNECT, RFC 1929 user/password when authentication is on) behind
//! `tunnelkit proxy --socks ADDR` and `tunnelkit ws-client --socks ADDR`. It dials through whatever
//! [`Dialer`] it is given: the proxy's (same policy as HTTP) or a tunnel's.
//!
//! Only CONNECT is offered: BIND and UDP ASSOCIATE get reply 7 (command not supported). Every
//! refusal maps onto the reply a SOCKS client understands: policy → 2, network unreachable or DNS
//! failure → 4, connection refused → 5, anything else → 1.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::net::relay::Relay;
use crate::net::splice::PipePool;
use crate::net::{socket, write_all_within, DialError, Dialer, Host, Purpose, Target};
use crate::policy::{Credentials, Users};
use crate::shutdown::Drain;
use crate::telemetry::access_log::AccessLog;

/// What gives a user's tunnel the token that ends it (see [`SocksServer::closed_when`]).
type WatchUser = dyn Fn(&str) -> CancellationToken + Send + Sync;

/// A SOCKS5 server sharing the HTTP proxy's dialer, users and access log.
pub struct SocksServer {
    dialer: Arc<dyn Dialer>,
    /// The users in force, asked once per handshake (the proxy's change on reload).
    users: Arc<dyn Fn() -> Arc<Users> + Send + Sync>,
    access_log: AccessLog,
    handshake_timeout: Duration,
    idle_timeout: Option<Duration>,
    /// Shared with the HTTP listener when given: one `--max-connections` for both.
    limit: Option<Arc<Semaphore>>,
    /// Pipes for splicing tunnels; `None` copies.
    pipes: Option<PipePool>,
    /// For a user's tunnel, a token cancelled when the user is removed (the proxy's reload).
    revocation: Option<Arc<WatchUser>>,
}

/// Why a handshake ended without a tunnel.
#[derive(Debug)]
enum Refusal {
    /// The peer is not speaking SOCKS5 or broke the protocol: just close.
    Protocol,
    /// Authentication failed (already answered).
    Auth,
    /// Answer with this reply code.
    Reply(u8, String),
}

impl SocksServer {
    /// A server dialling through `dialer`; user/password auth is required when `users` is non-empty.
    pub fn new(dialer: Arc<dyn Dialer>, users: Arc<Users>, access_log: AccessLog) -> Self {
        SocksServer {
            dialer,
            users: Arc::new(move || users.clone()),
            access_log,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Some(Duration::from_secs(300)),
            limit: None,
            pipes: None,
            revocation: None,
        }
    }

    /// Takes the users from `users` at each handshake instead of the fixed set given to
    /// [`SocksServer::new`], so that a configuration reload applies to new SOCKS connections too.
    pub fn users_from(mut self, users: impl Fn() -> Arc<Users> + Send + Sync + 'static) -> Self {
        self.users = Arc::new(users);
        self
    }

    /// Ends an authenticated tunnel when the token `watch(user)` returned for it is cancelled (a
    /// reload removed the user).
    pub fn closed_when(mut self, watch: impl Fn(&str) -> CancellationToken + Send + Sync + 'static) -> Self {
        self.revocation = Some(Arc::new(watch));
        self
    }

    /// Splices tunnels whose destination is a plain socket, with pipes from `pipes`.
    pub fn splice(mut self, pipes: Option<PipePool>) -> Self {
        self.pipes = pipes;
        self
    }

    /// Counts connections against `limit` (taken from accept to close); beyond it new connections
    /// are closed at once, before any SOCKS byte is read.
    pub fn connection_limit(mut self, limit: Arc<Semaphore>) -> Self {
        self.limit = Some(limit);
        self
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
        loop {
            let (tcp, peer) = tokio::select! {
                _ = drain.cancelled() => return,
                x = socket::accept(&listener) => x,
            };
            let permit = match &self.limit {
                Some(limit) => match limit.clone().try_acquire_owned() {
                    Ok(p) => Some(p),
                    Err(_) => {
                        metrics::counter!("tunnelkit_proxy_errors_total", "kind" => "max_connections")
                            .increment(1);
                        tracing::debug!(%peer, "socks5 connection refused: --max-connections reached");
                        continue;
                    }
                },
                None => None,
            };
            let me = self.clone();
            drain.spawn(async move {
                me.serve_connection(tcp, peer).await;
                drop(permit);
            });
        }
    }

    async fn serve_connection(&self, mut tcp: TcpStream, peer: SocketAddr) {
        let started = Instant::now();
        let handshake = tokio::time::timeout(self.handshake_timeout, self.handshake(&mut tcp)).await;
        let (target, user) = match handshake {
            Err(_) | Ok(Err(Refusal::Protocol)) | Ok(Err(Refusal::Auth)) => return,
            Ok(Err(Refusal::Reply(code, why))) => {
                let _ = write_all_within(&mut tcp, &reply(code, None), self.handshake_timeout).await;
                self.access_log.finished(peer, "SOCKS5", "-", 403, 0, 0, started, Some(&why));
                return;
            }
            Ok(Ok(t)) => t,
        };
        let mut upstream = match self.dialer.dial(&target, Purpose::Tunnel).await {
            Ok(s) => s,
            Err(e) => {
                let code = reply_code(&e);
                let _ = write_all_within(&mut tcp, &reply(code, None), self.handshake_timeout).await;
                metrics::counter!("tunnelkit_proxy_errors_total", "kind" => e.proxy_status_error())
                    .increment(1);
                self.access_log.finished(
                    peer,
                    "SOCKS5",
                    &target.to_string(),
                    e.http_status(),
                    0,
                    0,
                    started,
                    Some(e.proxy_status_error()),
                );
                return;
            }
        };
        let ok = reply(0, tcp.local_addr().ok());
        if write_all_within(&mut tcp, &ok, self.handshake_timeout).await.is_err() {
            return;
        }
        metrics::counter!("tunnelkit_proxy_tunnels_total", "kind" => "socks5").increment(1);
        metrics::gauge!("tunnelkit_proxy_tunnels_active").increment(1.0);
        let revoked = user.as_deref().zip(self.revocation.as_ref()).map(|(u, watch)| watch(u));
        let mut relay = Relay::new(&mut tcp, &mut upstream, self.idle_timeout).splice(self.pipes.as_ref());
        let result = match revoked {
            Some(token) => tokio::select! {
                r = &mut relay => Some(r),
                () = token.cancelled() => None,
            },
            None => Some((&mut relay).await),
        };
        let stats = match &result {
            Some(Ok(s)) => *s,
            _ => relay.stats(),
        };
        metrics::gauge!("tunnelkit_proxy_tunnels_active").decrement(1.0);
        metrics::counter!("tunnelkit_proxy_bytes_total", "direction" => "up").increment(stats.a_to_b);
        metrics::counter!("tunnelkit_proxy_bytes_total", "direction" => "down").increment(stats.b_to_a);
        self.access_log.finished(
            peer,
            "SOCKS5",
            &target.to_string(),
            200,
            stats.a_to_b,
            stats.b_to_a,
            started,
            result.is_none().then_some("user_removed"),
        );
    }

    /// Method negotiation, optional RFC 1929 auth, and the request; returns the CONNECT target and
    /// the user who authenticated (none without users).
    async fn handshake(&self, tcp: &mut TcpStream) -> Result<(Target, Option<String>), Refusal> {
        let mut hdr = [0u8; 2];
        tcp.read_exact(&mut hdr).await.map_err(|_| Refusal::Protocol)?;
        if hdr[0] != 5 || hdr[1] == 0 {
            return Err(Refusal::Protocol);
        }
        let mut methods = vec![0u8; hdr[1] as usize];
        tcp.read_exact(&mut methods).await.map_err(|_| Refusal::Protocol)?;
        let users = (self.users)();
        let wanted = if users.is_empty() { 0 } else { 2 };
        if !methods.contains(&wanted) {
            let _ = tcp.write_all(&[5, 0xff]).await;
            return Err(Refusal::Auth);
        }
        tcp.write_all(&[5, wanted]).await.map_err(|_| Refusal::Protocol)?;
        let mut user = None;
        if wanted == 2 {
            let creds = read_user_pass(tcp).await.ok_or(Refusal::Protocol)?;
            user = users.authenticate(&creds).map(str::to_owned);
            let ok = user.is_some();
            let _ = tcp.write_all(&[1, if ok { 0 } else { 1 }]).await;
            if !ok {
                metrics::counter!("tunnelkit_proxy_errors_total", "kind" => "auth").increment(1);
                return Err(Refusal::Auth);
            }
        }
        let mut req = [0u8; 4];
        tcp.read_exact(&mut req).await.map_err(|_| Refusal::Protocol)?;
        if req[0] != 5 || req[2] != 0 {
            return Err(Refusal::Protocol);
        }
        let host = match req[3] {
            1 => {
                let mut a = [0u8; 4];
                tcp.read_exact(&mut a).await.map_err(|_| Refusal::Protocol)?;
                Host::Ip(IpAddr::from(a))
            }
            4 => {
                let mut a = [0u8; 16];
                tcp.read_exact(&mut a).await.map_err(|_| Refusal::Protocol)?;
                Host::Ip(crate::net::canonical_ip(IpAddr::from(a)))
            }
            3 => {
                let mut len = [0u8; 1];
                tcp.read_exact(&mut len).await.map_err(|_| Refusal::Protocol)?;
                let mut name = vec![0u8; len[0] as usize];
                tcp.read_exact(&mut name).await.map_err(|_| Refusal::Protocol)?;
                let name = String::from_utf8(name).map_err(|_| Refusal::Reply(1, "bad name".into()))?;
                // Parsing normalises numeric forms such as 2130706433, so the policy sees the address.
                Host::parse(&name).map_err(|e| Refusal::Reply(4, e.to_string()))?
            }
            _ => return Err(Refusal::Reply(8, "address type not supported".into())),
        };
        let mut port = [0u8; 2];
        tcp.read_exact(&mut port).await.map_err(|_| Refusal::Protocol)?;
        let port = u16::from_be_bytes(port);
        if req[1] != 1 {
            return Err(Refusal::Reply(7, "only CONNECT is supported".into()));
        }
        if port == 0 {
            return Err(Refusal::Reply(2, "port 0".into()));
        }
        Ok((Target::new(host, port), user))
    }
}

async fn read_user_pass(tcp: &mut TcpStream) -> Option<Credentials> {
    let mut ver = [0u8; 2];
    tcp.read_exact(&mut ver).await.ok()?;
    if ver[0] != 1 {
        return None;
    }
    let mut user = vec![0u8; ver[1] as usize];
    tcp.read_exact(&mut user).await.ok()?;
    let mut plen = [0u8; 1];
    tcp.read_exact(&mut plen).await.ok()?;
    let mut pass = vec![0u8; plen[0] as usize];
    tcp.read_exact(&mut pass).await.ok()?;
    Some(Credentials { user: String::from_utf8(user).ok()?, password: String::from_utf8(pass).ok()? })
}

fn reply_code(e: &DialError) -> u8 {
    match e {
        DialError::Denied(_) => 2,
        DialError::Resolve(_) | DialError::Timeout(_) => 4,
        DialError::Connect { source, .. } if source.kind() == std::io::ErrorKind::ConnectionRefused => 5,
        _ => 1,
    }
}

fn reply(code: u8, bound: Option<SocketAddr>) -> Vec<u8> {
    let mut out = vec![5, code, 0];
    match bound {
        Some(SocketAddr::V6(a)) => {
            out.push(4);
            out.extend_from_slice(&a.ip().octets());
            out.extend_from_slice(&a.port().to_be_bytes());
        }
        Some(SocketAddr::V4(a)) => {
            out.push(1);
            out.extend_from_slice(&a.ip().octets());
            out.extend_from_slice(&a.port().to_be_bytes());
        }
        None => out.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0]),
    }
    out
}
