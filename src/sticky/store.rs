//! `SidStore`: where sid -> backend bindings live. In memory by default; entries expire after
//! `--key-expiry` and are refreshed lazily (only when less than half the expiry remains), so a live
//! session never expires and steady-state requests do not rewrite anything.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The sid -> backend map, in process memory.
pub struct SidStore {
    entries: Mutex<HashMap<String, (usize, Instant)>>,
    expiry: Duration,
}

impl SidStore {
    /// An empty store whose bindings live `expiry` past their last refresh.
    pub fn new(expiry: Duration) -> Self {
        SidStore { entries: Mutex::new(HashMap::new()), expiry }
    }

    /// Binds `sid` to backend index `backend`.
    pub fn put(&self, sid: &str, backend: usize) {
        let mut e = self.entries.lock().expect("store lock");
        e.insert(sid.to_owned(), (backend, Instant::now() + self.expiry));
    }

    /// The backend of `sid`, refreshing the expiry when under half of it remains.
    pub fn get(&self, sid: &str) -> Option<usize> {
        let mut e = self.entries.lock().expect("store lock");
        let now = Instant::now();
        match e.get_mut(sid) {
            Some((b, until)) if *until > now => {
                if *until - now < self.expiry / 2 {
                    *until = now + self.expiry;
                }
                Some(*b)
            }
            Some(_) => {
                e.remove(sid);
                None
            }
            None => None,
        }
    }

    /// Forgets `sid`; returns the backend it was bound to.
    pub fn remove(&self, sid: &str) -> Option<usize> {
        self.entries.lock().expect("store lock").remove(sid).map(|(b, _)| b)
    }

    /// Live sessions per backend (for least-sessions balancing), dropping expired entries.
    pub fn sessions_per_backend(&self, backends: usize) -> Vec<usize> {
        let mut counts = vec![0; backends];
        let now = Instant::now();
        let mut e = self.entries.lock().expect("store lock");
        e.retain(|_, (b, until)| {
            let live = *until > now;
            if live && *b < backends {
                counts[*b] += 1;
            }
            live
        });
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_refresh_expire() {
        let s = SidStore::new(Duration::from_millis(100));
        s.put("a", 1);
        assert_eq!(s.get("a"), Some(1));
        assert_eq!(s.sessions_per_backend(2), vec![0, 1]);
        std::thread::sleep(Duration::from_millis(120));
        assert_eq!(s.get("a"), None);
        s.put("b", 0);
        assert_eq!(s.remove("b"), Some(0));
        assert_eq!(s.get("b"), None);
    }
}
