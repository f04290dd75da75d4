//! The server's compat tunnels by id, and how ids are made.
//!
//! The seed derives ids from the clock, ~24 bits of `Math.random()` and CPU time, and the id is the only
//! credential `use` asks for; it also lets `create` pick the id. We issue 128-bit ids from the OS CSPRNG
//! and never take one from a client, so taking a tunnel over needs its id, which only its client has.
//!
//! The registry holds any [`Registered`] value (the compat `Tunnel`, which removes itself when it
//! closes), so this file does not depend on the tunnel that depends on it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// A fresh tunnel id: 16 random bytes, base64url without padding (22 characters).
pub fn new_tunnel_id() -> String {
    URL_SAFE_NO_PAD.encode(crate::tunnel::id::random16())
}

/// What the registry reads of a tunnel.
pub trait Registered {
    /// Its id (from [`new_tunnel_id`]).
    fn id(&self) -> &str;
    /// The bearer token that created it, if the server has tokens.
    fn principal(&self) -> Option<&str>;
}

/// Live tunnels (bound or broken and held), by id.
pub struct Registry<T> {
    tunnels: Mutex<HashMap<String, Arc<T>>>,
}

impl<T> Default for Registry<T> {
    fn default() -> Self {
        Registry { tunnels: Mutex::new(HashMap::new()) }
    }
}

impl<T: Registered> Registry<T> {
    /// Registers `tunnel` under its id.
    pub fn insert(&self, tunnel: Arc<T>) {
        self.lock().insert(tunnel.id().to_owned(), tunnel);
    }

    /// The tunnel with this id.
    pub fn get(&self, id: &str) -> Option<Arc<T>> {
        self.lock().get(id).cloned()
    }

    /// Forgets `tunnel` (only that one, should the id ever have been reused).
    pub fn remove(&self, tunnel: &T) {
        let mut map = self.lock();
        if map.get(tunnel.id()).is_some_and(|t| std::ptr::eq(Arc::as_ptr(t), tunnel)) {
            map.remove(tunnel.id());
        }
    }

    /// How many tunnels were created with this token.
    pub fn count_of(&self, principal: &str) -> usize {
        self.lock().values().filter(|t| t.principal() == Some(principal)).count()
    }

    /// How many tunnels are registered.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<T>>> {
        self.tunnels.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_long_random_and_url_safe() {
        let a = new_tunnel_id();
        let b = new_tunnel_id();
        assert_eq!(a.len(), 22);
        assert_ne!(a, b);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
    }
}
