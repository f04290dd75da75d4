//! The one rule for what counts as a protocol upgrade request, shared by the proxy and the balancer.
//!
//! Only `GET` with `Connection: upgrade` and an `Upgrade` field is an upgrade (RFC 9110 §7.8, and
//! RFC 6455 for WebSocket): anything else that carries `Upgrade` is an ordinary request whose
//! `Upgrade` field is dropped as hop-by-hop. Treating a `POST` with `Upgrade` as one would let a
//! client turn a request with a body into a raw tunnel.

use super::head::{self, Header};

/// True if a request with `method` and `headers` asks to switch protocols.
pub fn is_upgrade_request(method: &str, headers: &[Header]) -> bool {
    method == "GET"
        && head::has_token(headers, "connection", "upgrade")
        && head::value(headers, "upgrade").is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upgrade(raw: &str) -> bool {
        let (h, _) = head::parse_request(raw.as_bytes()).unwrap().unwrap();
        is_upgrade_request(&h.method, &h.headers)
    }

    #[test]
    fn only_get_with_connection_upgrade_and_upgrade() {
        assert!(upgrade(
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n"
        ));
        assert!(!upgrade("POST / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"));
        assert!(!upgrade("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n"));
        assert!(!upgrade("GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n\r\n"));
    }
}
