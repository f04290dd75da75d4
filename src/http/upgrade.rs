//! The one rule for what an HTTP/1 upgrade request is (RFC 9110 §7.8, RFC 6455 §4.1): a `GET` whose
//! `Connection` lists the `upgrade` token and that carries exactly one non-empty `Upgrade` field.
//!
//! Anything else (a `POST` with `Upgrade`, an `Upgrade` without `Connection: upgrade`, two
//! `Upgrade` fields) is an ordinary request: its `Upgrade` field is hop-by-hop and dropped, and
//! the connection is never switched to a byte relay on its say-so. The rule reads headers through
//! [`HeaderFields`], so the proxy's own parsed heads and hyper's [`http::HeaderMap`] share it.

use http::header::HeaderMap;

use super::head::Header;

/// Read access to header fields by case-insensitive name, whatever holds them.
pub trait HeaderFields {
    /// Calls `f` on each value of every field named `name` (case-insensitive), in order, until `f`
    /// returns true; returns whether it did.
    fn any_value(&self, name: &str, f: &mut dyn FnMut(&[u8]) -> bool) -> bool;
}

impl HeaderFields for HeaderMap {
    fn any_value(&self, name: &str, f: &mut dyn FnMut(&[u8]) -> bool) -> bool {
        self.get_all(name).iter().any(|v| f(v.as_bytes()))
    }
}

impl HeaderFields for [Header] {
    fn any_value(&self, name: &str, f: &mut dyn FnMut(&[u8]) -> bool) -> bool {
        self.iter().filter(|h| h.name.eq_ignore_ascii_case(name)).any(|h| f(&h.value))
    }
}

/// True if the request asks to switch protocols: method `GET` (methods are case-sensitive),
/// `Connection` listing `upgrade` (any case, any position), and exactly one non-empty `Upgrade`.
pub fn is_upgrade_request<H: HeaderFields + ?Sized>(method: &str, headers: &H) -> bool {
    if method != "GET" {
        return false;
    }
    let connection_upgrade = headers.any_value("connection", &mut |v| {
        v.split(|&b| b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(b"upgrade"))
    });
    if !connection_upgrade {
        return false;
    }
    // Two Upgrade fields, or an empty one, leave it unclear what to switch to: not an upgrade.
    let (mut count, mut empty) = (0, false);
    headers.any_value("upgrade", &mut |v| {
        count += 1;
        empty |= v.trim_ascii().is_empty();
        false
    });
    count == 1 && !empty
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(fields: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in fields {
            h.append(http::header::HeaderName::from_bytes(n.as_bytes()).unwrap(), v.parse().unwrap());
        }
        h
    }

    fn list(fields: &[(&str, &str)]) -> Vec<Header> {
        fields.iter().map(|(n, v)| Header { name: (*n).into(), value: v.as_bytes().to_vec() }).collect()
    }

    /// The same verdict from both header representations.
    fn verdict(method: &str, fields: &[(&str, &str)]) -> bool {
        let a = is_upgrade_request(method, &map(fields));
        let b = is_upgrade_request(method, list(fields).as_slice());
        assert_eq!(a, b, "{method} {fields:?}");
        a
    }

    #[test]
    fn get_with_connection_upgrade_and_upgrade_is_an_upgrade() {
        assert!(verdict("GET", &[("Connection", "Upgrade"), ("Upgrade", "websocket")]));
        assert!(verdict("GET", &[("connection", "keep-alive, UPGRADE"), ("upgrade", "websocket")]));
        // Tokens may be spread over several Connection fields.
        assert!(verdict(
            "GET",
            &[("Connection", "keep-alive"), ("Connection", "upgrade"), ("Upgrade", "h2c")]
        ));
    }

    #[test]
    fn anything_else_is_not() {
        // Not GET.
        assert!(!verdict("POST", &[("Connection", "upgrade"), ("Upgrade", "websocket")]));
        assert!(!verdict("get", &[("Connection", "upgrade"), ("Upgrade", "websocket")]));
        assert!(!verdict("CONNECT", &[("Connection", "upgrade"), ("Upgrade", "websocket")]));
        // No `upgrade` token in Connection.
        assert!(!verdict("GET", &[("Upgrade", "websocket")]));
        assert!(!verdict("GET", &[("Connection", "keep-alive"), ("Upgrade", "websocket")]));
        assert!(!verdict("GET", &[("Connection", "upgraded"), ("Upgrade", "websocket")]));
        assert!(!verdict("GET", &[("Connection", "upgrade")]));
        // The token in another field does not count.
        assert!(!verdict("GET", &[("Proxy-Connection", "upgrade"), ("Upgrade", "websocket")]));
        // Empty or repeated Upgrade.
        assert!(!verdict("GET", &[("Connection", "upgrade"), ("Upgrade", " ")]));
        assert!(!verdict("GET", &[("Connection", "upgrade"), ("Upgrade", "websocket"), ("Upgrade", "h2c")]));
    }
}
