//! The certificates the proxy presents when it intercepts a host: made on first use, signed by the
//! CA, and kept in a bounded LRU (`--cert-cache`, default 10 000 hosts).
//!
//! Three properties, each a denial of service when missing (billion-context #79, goproxy #340):
//! - generation runs on the blocking pool, never on the threads that serve connections (ECDSA
//!   P-256 key generation and signing take well under a millisecond, but a burst of new hosts
//!   must not stall every connection of a worker);
//! - a burst of concurrent CONNECTs to one new host shares one generation: the first caller makes
//!   it, the others wait on the same cell;
//! - the cache is bounded, so a client naming millions of hosts costs at most `--cert-cache`
//!   entries (a `ServerConfig` with its leaf is about 2 KiB).

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

use crate::ca::Ca;

/// One host's TLS server config, shared by every connection that intercepts that host.
type Entry = Arc<OnceCell<Arc<rustls::ServerConfig>>>;

/// Leaf certificates by host name.
pub struct LeafCache {
    ca: Arc<Ca>,
    entries: Mutex<lru::LruCache<String, Entry>>,
}

impl LeafCache {
    /// An empty cache holding at most `capacity` hosts (at least one).
    pub fn new(ca: Arc<Ca>, capacity: usize) -> LeafCache {
        let cap = NonZeroUsize::new(capacity.max(1)).expect("at least one");
        LeafCache { ca, entries: Mutex::new(lru::LruCache::new(cap)) }
    }

    /// The server config presenting a leaf for `host` (a DNS name or an IP literal), offering
    /// only HTTP/1.1 over ALPN: the intercepting engine speaks HTTP/1 on both sides, and offering
    /// `h2` would make clients pick a protocol we would have to translate.
    pub async fn server_config(&self, host: &str) -> Result<Arc<rustls::ServerConfig>, String> {
        let host = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        let entry = {
            let mut entries = self.entries.lock().expect("leaf cache lock");
            entries.get_or_insert(host.clone(), Entry::default).clone()
        };
        let ca = self.ca.clone();
        let made = entry
            .get_or_try_init(|| async move {
                let started = std::time::Instant::now();
                let cfg = tokio::task::spawn_blocking(move || {
                    let leaf = ca.issue(&host).map_err(|e| e.to_string())?;
                    leaf.server_config(&[b"http/1.1"]).map_err(|e| e.to_string())
                })
                .await
                .map_err(|e| format!("certificate generation stopped: {e}"))??;
                metrics::counter!("tunnelkit_proxy_leaf_certificates_total").increment(1);
                metrics::histogram!("tunnelkit_proxy_leaf_generation_seconds")
                    .record(started.elapsed().as_secs_f64());
                Ok::<_, String>(Arc::new(cfg))
            })
            .await?;
        Ok(made.clone())
    }

    /// Hosts currently cached.
    pub fn len(&self) -> usize {
        self.entries.lock().expect("leaf cache lock").len()
    }

    /// True if no host is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_burst_for_one_host_shares_one_generation() {
        let cache = Arc::new(LeafCache::new(Arc::new(Ca::generate().unwrap()), 10));
        let mut tasks = Vec::new();
        for _ in 0..32 {
            let c = cache.clone();
            tasks.push(tokio::spawn(async move { c.server_config("burst.test").await.unwrap() }));
        }
        let mut configs = Vec::new();
        for t in tasks {
            configs.push(t.await.unwrap());
        }
        assert!(configs.iter().all(|c| Arc::ptr_eq(c, &configs[0])), "one config for every caller");
        assert_eq!(cache.len(), 1);
    }

    #[tokio::test]
    async fn the_cache_is_bounded_and_names_are_case_folded() {
        let cache = LeafCache::new(Arc::new(Ca::generate().unwrap()), 3);
        let a = cache.server_config("A.test").await.unwrap();
        let a2 = cache.server_config("a.test").await.unwrap();
        assert!(Arc::ptr_eq(&a, &a2));
        for h in ["b.test", "c.test", "d.test", "e.test"] {
            cache.server_config(h).await.unwrap();
        }
        assert_eq!(cache.len(), 3);
        let a3 = cache.server_config("a.test").await.unwrap();
        assert!(!Arc::ptr_eq(&a, &a3), "the least recently used host was evicted and made again");
        cache.server_config("[::1]").await.unwrap();
    }
}
