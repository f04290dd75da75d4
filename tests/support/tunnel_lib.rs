//! A `ws-server` started in-process through the library (for tests that set `Limits` or tokens
//! directly), reaching loopback destinations on any port.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tunnelkit::net::DirectDialer;
use tunnelkit::policy::Policy;
use tunnelkit::shutdown::Drain;
use tunnelkit::tunnel::{Limits, Server, ServerOptions};

/// Starts a tunnel server on a loopback port 0 with `tokens` and `limits`; returns its address.
pub async fn lib_server(tokens: &[&str], limits: Limits) -> SocketAddr {
    let policy = Arc::new(
        Policy::new().allow(["127.0.0.0/8".parse().unwrap()]).connect_ports("1-65535".parse().unwrap()),
    );
    let dialer = Arc::new(DirectDialer::new(policy.clone(), Duration::from_secs(5)));
    let mut opts = ServerOptions::new(dialer, policy);
    opts.tokens = tokens.iter().map(|t| t.to_string()).collect();
    opts.limits = limits;
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(Server::new(opts).serve(l, Drain::new()));
    addr
}
