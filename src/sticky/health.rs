//! Health checks: every `--check-interval`, each backend gets a request that allocates no
//! session, a polling GET with an unknown sid, which a live engine answers with 400 (code 1). Each
//! probe is bounded by `--check-timeout`, so a hung backend counts as down. The same loop keeps
//! the session gauges, expired bindings and the Redis link up to date.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, StatusCode};

use super::state::{live_sessions, State};

/// Runs forever (the caller aborts it).
pub async fn health_loop(state: Arc<State>) {
    let mut tick = tokio::time::interval(state.settings.check_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let path = if state.settings.path.ends_with('/') {
        state.settings.path.clone()
    } else {
        format!("{}/", state.settings.path)
    };
    loop {
        tick.tick().await;
        let checks = state.backends.iter().map(|(id, b)| {
            let state = state.clone();
            let uri = format!("http://{}{path}?EIO=4&transport=polling&sid=tunnelkit-health-check", b.addr);
            async move {
                let up = match Request::get(uri).body(Full::new(Bytes::new())) {
                    Ok(req) => matches!(
                        tokio::time::timeout(state.settings.check_timeout, state.probe.request(req)).await,
                        Ok(Ok(r)) if r.status() == StatusCode::BAD_REQUEST
                    ),
                    // A backend address that makes no URI never passes.
                    Err(_) => false,
                };
                if state.backends.mark(id, up) {
                    let now = if up { "up" } else { "down" };
                    tracing::warn!(backend = %state.backends.get(id).addr, "backend is now {now}");
                }
            }
        });
        futures_util::future::join_all(checks).await;
        state.store.check_redis().await;
        state.store.purge_expired();
        let counts = live_sessions(&state);
        for ((_, b), n) in state.backends.iter().zip(&counts) {
            metrics::gauge!("tunnelkit_sticky_sessions", "backend" => b.addr.clone()).set(*n as f64);
        }
    }
}
