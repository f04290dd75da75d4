//! The header fields the balancer passes on: hop-by-hop fields go (the one rule, `http::hop`), but a
//! `Connection` token can never remove a field the exchange needs end to end, and a request reaches
//! its backend with exactly one `Host`.
//!
//! RFC 9110 §7.6.1 lets `Connection` name any field as hop-by-hop, so a client sending
//! `Connection: host` would otherwise have its `Host` dropped here and replaced by the backend's
//! address (the backend would see another virtual host); `Connection: sec-websocket-key` would
//! break a handshake the same way. Those tokens are ignored; every other named field still goes.

use hyper::header::{GetAll, HeaderMap, HeaderName, HeaderValue, CONNECTION, HOST};
use hyper::http::uri::Authority;

use crate::http::{connection_names, is_always_hop_by_hop};

/// Fields a `Connection` token may not remove: what the backend needs to serve the request (the
/// virtual host, the body's length and type, credentials, the origin CORS checks) and the
/// WebSocket handshake fields.
const END_TO_END: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "cookie",
    "set-cookie",
    "authorization",
    "origin",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
    "sec-websocket-accept",
];

/// Removes the hop-by-hop fields of a message the balancer passes on, never the end-to-end ones
/// above. With `upgrade` (a WebSocket upgrade being relayed), `Upgrade` stays and `Connection:
/// upgrade` is set again.
///
/// This runs twice per request (its head and its answer's), so it allocates nothing and reads the
/// fields once: the doomed ones are noted in a few slots (a head has one or two besides
/// `Connection`; more take another pass), then removed, `Connection` last since its tokens name
/// the others.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    loop {
        let mut doomed: [Option<HeaderName>; 4] = Default::default();
        let mut full = false;
        let connection = headers.get_all(CONNECTION);
        for name in headers.keys().filter(|n| *n != CONNECTION && goes(&connection, n, upgrade)) {
            match doomed.iter_mut().find(|slot| slot.is_none()) {
                Some(slot) => *slot = Some(name.clone()),
                None => full = true,
            }
        }
        for name in doomed.into_iter().flatten() {
            headers.remove(name);
        }
        if !full {
            break;
        }
    }
    headers.remove(CONNECTION);
    if upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// True if the field `name` goes: `Upgrade` unless relayed, the fields hop-by-hop whatever
/// `Connection` says (`http::hop`), and those a token of `connection` names, except the
/// [`END_TO_END`] ones.
fn goes(connection: &GetAll<'_, HeaderValue>, name: &HeaderName, upgrade: bool) -> bool {
    let name = name.as_str();
    if name == "upgrade" {
        return !upgrade;
    }
    if is_always_hop_by_hop(name) {
        return true;
    }
    !END_TO_END.contains(&name) && connection_names(connection.iter().map(|v| v.as_bytes()), name)
}

/// Prepares a client's request headers for its backend: hop-by-hop fields removed as above, and
/// exactly one `Host` (the client's; hyper's client adds the backend's address only when the
/// client sent none, as HTTP/1.0 allows). Two `Host` fields are refused (RFC 9112 §3.2: 400),
/// since the backend might pick another one than we saw. `target` is the authority of an
/// absolute-form request target, which wins over `Host` (RFC 9112 §3.2.2), so it becomes the
/// `Host` the backend sees (without any userinfo).
pub fn for_backend(
    headers: &mut HeaderMap,
    target: Option<&Authority>,
    upgrade: bool,
) -> Result<(), &'static str> {
    if headers.get_all(HOST).iter().nth(1).is_some() {
        return Err("more than one Host field\n");
    }
    strip_hop_by_hop(headers, upgrade);
    if let Some(target) = target {
        let host = match target.port() {
            Some(port) => format!("{}:{port}", target.host()),
            None => target.host().to_owned(),
        };
        let value = HeaderValue::from_str(&host).map_err(|_| "bad request target\n")?;
        headers.insert(HOST, value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(fields: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in fields {
            h.append(HeaderName::from_bytes(n.as_bytes()).unwrap(), v.parse().unwrap());
        }
        h
    }

    #[test]
    fn connection_cannot_name_end_to_end_fields() {
        let mut h = map(&[
            ("host", "app.example"),
            ("connection", "Host, content-length, X-Trace, keep-alive"),
            ("content-length", "2"),
            ("x-trace", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
        ]);
        for_backend(&mut h, None, false).unwrap();
        assert_eq!(h.get_all(HOST).iter().collect::<Vec<_>>(), ["app.example"]);
        assert_eq!(h.get("content-length").unwrap(), "2");
        for gone in ["connection", "x-trace", "keep-alive", "te"] {
            assert!(!h.contains_key(gone), "{gone} is hop-by-hop");
        }
    }

    #[test]
    fn many_hop_by_hop_fields_all_go() {
        let mut h = map(&[
            ("connection", "a, B, c"),
            ("Connection", "d, e, keep-alive"),
            ("a", "1"),
            ("b", "1"),
            ("c", "1"),
            ("d", "1"),
            ("e", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("x-kept", "1"),
        ]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.keys().map(|n| n.as_str()).collect::<Vec<_>>(), ["x-kept"]);
    }

    #[test]
    fn exactly_one_host() {
        let mut h = map(&[("host", "a"), ("host", "b")]);
        assert!(for_backend(&mut h, None, false).is_err());
        let mut h = map(&[("x", "1")]);
        assert!(for_backend(&mut h, None, false).is_ok(), "no Host: hyper's client adds the backend's");
        // An absolute-form target names the host.
        let target: Authority = "user:pw@app.example:8080".parse().unwrap();
        let mut h = map(&[("host", "other.example")]);
        for_backend(&mut h, Some(&target), false).unwrap();
        assert_eq!(h.get_all(HOST).iter().collect::<Vec<_>>(), ["app.example:8080"]);
    }

    #[test]
    fn upgrades_keep_upgrade_and_the_handshake() {
        let mut h = map(&[
            ("host", "a"),
            ("connection", "Upgrade, Sec-WebSocket-Key"),
            ("upgrade", "websocket"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ]);
        for_backend(&mut h, None, true).unwrap();
        assert_eq!(h.get("upgrade").unwrap(), "websocket");
        assert_eq!(h.get("connection").unwrap(), "upgrade");
        assert!(h.contains_key("sec-websocket-key"));
        // Not an upgrade: Upgrade is hop-by-hop and goes.
        let mut h = map(&[("connection", "upgrade"), ("upgrade", "websocket")]);
        for_backend(&mut h, None, false).unwrap();
        assert!(h.is_empty(), "{h:?}");
    }
}
