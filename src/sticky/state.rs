//! [`State`]: what every request handler and the health loop share (settings, backends, the sid
//! store, the backend connection pools and the health checks' client), and [`live_sessions`], the per-backend session count both the
//! balancing of new sessions and the session gauges read. Its own file so that `server` (routing) and
//! `health` (checks) each depend on it and not on each other.

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;

use super::backend::Backends;
use super::backend_pool::BackendPools;
use super::settings::Settings;
use super::sid_tag::SidTagger;
use super::store::SidStore;

/// What every request handler shares.
pub(super) struct State {
    pub(super) settings: Settings,
    pub(super) backends: Backends,
    pub(super) store: SidStore,
    /// Present with `--route-by tag`: the sid tags route, the store only counts sessions. Swapped
    /// by a reload that adds backends (the tagger knows every backend's name).
    pub(super) tags: Option<ArcSwap<SidTagger>>,
    /// The health-check settings in force (a reload changes them).
    pub(super) checks: ArcSwap<Checks>,
    /// Connections to backends: one pool per worker thread.
    pub(super) pools: BackendPools,
    /// Health checks: no pooling, each probe bounded by `--check-timeout`.
    pub(super) probe: Client<HttpConnector, Full<Bytes>>,
}

/// `--check-interval` and `--check-timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Checks {
    pub(super) interval: std::time::Duration,
    pub(super) timeout: std::time::Duration,
}

/// Live sessions per backend: polling sessions (bindings) plus WebSocket-only sessions.
pub(super) fn live_sessions(state: &State) -> Vec<usize> {
    let mut counts = state.store.sessions_per_backend(state.backends.count());
    for (n, (_, b)) in counts.iter_mut().zip(state.backends.iter()) {
        *n += b.websocket_sessions();
    }
    counts
}
