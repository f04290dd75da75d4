//! [`ServerOptions`]: how a ws-server [`super::Server`] is set up, from the library or from
//! `ws-server`'s flags and file (`cli`).

use std::sync::Arc;

use tokio::sync::mpsc;

use super::cluster::Cluster;
use super::compat::CompatContext;
use super::handle::Tunnel;
use super::params::Limits;
use crate::net::workers::Workers;
use crate::net::Dialer;
use crate::policy::Policy;

/// How a server is set up.
pub struct ServerOptions {
    /// URL path of the WebSocket endpoint.
    pub path: String,
    /// Accepted bearer tokens; empty = no authentication.
    pub tokens: Vec<String>,
    /// Limits applied to every tunnel; [`super::Server::set_limits`] replaces them for tunnels created
    /// later.
    pub limits: Limits,
    /// Dials stream targets (carries the server's policy).
    pub dialer: Arc<dyn Dialer>,
    /// The policy, also used to vet `-R` listen addresses.
    pub policy: Arc<Policy>,
    /// TLS for `wss://`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Speak the seed's protocol instead of ours.
    pub compat: Option<Arc<CompatContext>>,
    /// When set, new tunnels are handed here and the application serves their streams itself, instead of
    /// the server dialling their targets.
    pub on_tunnel: Option<mpsc::UnboundedSender<Tunnel>>,
    /// When set, each accepted connection is served on one of these single-threaded runtimes
    /// (with its tunnel's tasks) instead of the runtime that accepted it.
    pub workers: Option<Arc<Workers>>,
    /// When set, this server is one of a cluster: it claims its tunnels in the cluster's registry and
    /// hands resumes of tunnels held elsewhere to their holders.
    pub cluster: Option<Arc<Cluster>>,
}

impl ServerOptions {
    /// Options with defaults: path `/tunnel`, no tokens, default limits, no TLS.
    pub fn new(dialer: Arc<dyn Dialer>, policy: Arc<Policy>) -> Self {
        ServerOptions {
            path: "/tunnel".into(),
            tokens: Vec::new(),
            limits: Limits::default(),
            dialer,
            policy,
            tls: None,
            compat: None,
            on_tunnel: None,
            workers: None,
            cluster: None,
        }
    }
}
