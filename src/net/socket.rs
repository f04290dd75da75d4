//! Socket options applied to every TCP connection we open or accept, and the plain connect to a
//! [`Target`] for peers the local user named (an upstream proxy, a tunnel server), which no policy vets.

use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};
use tokio::net::TcpStream;

use super::{Host, Target};

/// Disables Nagle: we relay interactive traffic and always write whole buffers.
pub fn set_nodelay(stream: &TcpStream) {
    let _ = stream.set_nodelay(true);
}

/// Turns on TCP keepalive probes after `idle` without traffic, so dead peers and silently dropped
/// NAT entries are noticed on long-lived idle connections.
pub fn set_keepalive(stream: &TcpStream, idle: Duration) {
    let interval = (idle / 4).max(Duration::from_secs(1));
    let ka = TcpKeepalive::new().with_time(idle).with_interval(interval);
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "macos", target_os = "freebsd"))]
    let ka = ka.with_retries(4);
    let _ = SockRef::from(stream).set_tcp_keepalive(&ka);
}

/// Accepts the next connection, with `TCP_NODELAY` set.
///
/// Accept errors (out of file descriptors, a connection reset before it was taken) are transient
/// for a server: they are logged and retried after a short pause instead of ending the accept loop
/// or spinning on the error.
pub async fn accept(listener: &tokio::net::TcpListener) -> (TcpStream, std::net::SocketAddr) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                set_nodelay(&stream);
                return (stream, peer);
            }
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                metrics::counter!("tunnelkit_accept_errors_total").increment(1);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Connects to `target` as the user named it (DNS through the system resolver), without policy checks:
/// only for destinations the local user configured, such as an upstream proxy or a tunnel server.
pub async fn connect(target: &Target) -> std::io::Result<TcpStream> {
    match &target.host {
        Host::Ip(ip) => TcpStream::connect((*ip, target.port)).await,
        Host::Domain(name) => TcpStream::connect((name.as_str(), target.port)).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keepalive_is_set_with_the_idle_time_asked_for() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        set_keepalive(&stream, Duration::from_secs(42));
        let sock = SockRef::from(&stream);
        assert!(sock.keepalive().unwrap());
        assert_eq!(sock.tcp_keepalive_time().unwrap(), Duration::from_secs(42));
    }
}
