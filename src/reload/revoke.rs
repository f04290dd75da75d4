//! The open tunnels of a principal (a proxy user, a tunnel token) that a reload removed: each
//! tunnel watches its principal's [`CancellationToken`], and [`Revocations::revoke_after`] cancels
//! the tokens of the removed principals once the grace (`--reload-grace`) has passed, so a client
//! whose credentials are rotated has time to reconnect with the new ones. One timer task per
//! reload, ending with the grace: nothing is left running.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// The tokens by which the open tunnels of each principal can be closed. Cheap to clone.
#[derive(Clone, Default)]
pub struct Revocations {
    by_principal: Arc<Mutex<HashMap<String, CancellationToken>>>,
}

impl Revocations {
    /// Nothing watched yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A token cancelled when `principal` is revoked; a tunnel holds it for its life.
    pub fn watch(&self, principal: &str) -> CancellationToken {
        let mut map = self.by_principal.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(principal.to_owned()).or_default().child_token()
    }

    /// After `grace`, closes the tunnels of each of `removed` that `still_removed` confirms is gone
    /// then (one put back by a later reload within the grace keeps its tunnels).
    pub fn revoke_after(
        &self,
        removed: Vec<String>,
        grace: Duration,
        still_removed: impl Fn(&str) -> bool + Send + 'static,
    ) {
        if removed.is_empty() {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            for principal in removed.iter().filter(|p| still_removed(p)) {
                let token = me.by_principal.lock().unwrap_or_else(|e| e.into_inner()).remove(principal);
                if let Some(token) = token {
                    tracing::info!(principal = %principal, "removed by reload: closing its open tunnels");
                    token.cancel();
                }
            }
        });
    }
}

/// The names in `old` that are not in `new`.
pub fn removed<'a>(old: impl IntoIterator<Item = &'a str>, new: &[&str]) -> Vec<String> {
    old.into_iter().filter(|o| !new.contains(o)).map(str::to_owned).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_removed_principal_loses_its_tunnels_after_the_grace_and_others_keep_theirs() {
        let r = Revocations::new();
        let (alice, bob) = (r.watch("alice"), r.watch("bob"));
        r.revoke_after(removed(["alice", "bob"], &["bob"]), Duration::from_secs(10), |_| true);
        tokio::time::sleep(Duration::from_secs(9)).await;
        assert!(!alice.is_cancelled());
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(alice.is_cancelled() && !bob.is_cancelled());
        // Put back later: a fresh token, not the cancelled one.
        assert!(!r.watch("alice").is_cancelled());
    }
}
