//! Health checks: every `--check-interval`, each backend gets a request that allocates no
//! session, a polling GET with an unknown sid, which a live engine answers with 400 (code 1). Each
//! probe is bounded by `--check-timeout`, so a hung backend counts as down. Both are read again on
//! every round, so a reload changes them; backends a reload retired are not probed. The same loop keeps
//! the session gauges, expired bindings and the Redis link up to date, and sweeps the backend pools.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, StatusCode};

use super::state::{live_sessions, State};

/// Runs forever (the caller aborts it).
pub async fn health_loop(state: Arc<State>) {
    let every = |interval| {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick
    };
    let mut checks = **state.checks.load();
    let mut tick = every(checks.interval);
    let path = if state.settings.path.ends_with('/') {
        state.settings.path.clone()
    } else {
        format!("{}/", state.settings.path)
    };
    loop {
        tick.tick().await;
        // A reload may have changed the interval or the timeout.
        let now = **state.checks.load();
        if now.interval != checks.interval {
            tick = every(now.interval);
            tick.tick().await;
        }
        checks = now;
        // A retired backend (removed by a reload) is not probed: nothing may bring it back.
        let probes = state.backends.iter().filter(|(_, b)| !b.is_retired()).map(|(id, b)| {
            let state = state.clone();
            let uri = format!("http://{}{path}?EIO=4&transport=polling&sid=tunnelkit-health-check", b.addr);
            async move {
                let up = match Request::get(uri).body(Full::new(Bytes::new())) {
                    Ok(req) => matches!(
                        tokio::time::timeout(checks.timeout, state.probe.request(req)).await,
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
        futures_util::future::join_all(probes).await;
        // Idle connections nothing would take again: past the idle timeout, or to a backend down
        // or retired.
        state.pools.sweep(|b| !state.backends.get(b).is_healthy());
        state.store.check_redis().await;
        state.store.purge_expired();
        let counts = live_sessions(&state);
        for ((_, b), n) in state.backends.iter().zip(&counts) {
            metrics::gauge!("tunnelkit_sticky_sessions", "backend" => b.addr.clone()).set(*n as f64);
        }
    }
}
