//! Hop-by-hop headers (RFC 9110 §7.6.1): the one place that decides which headers an intermediary
//! must not forward.
//!
//! `Connection` and every header it names, `Proxy-Connection`, `Keep-Alive`, `TE`, `Trailer`,
//! `Transfer-Encoding` (the framing is re-done per hop), `Upgrade` (unless we are relaying the
//! upgrade), and the credentials meant for the proxy itself (`Proxy-Authorization`,
//! `Proxy-Authenticate`).

use http::header::{HeaderMap, HeaderName};

const ALWAYS: &[&str] = &[
    "connection",
    "proxy-connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "proxy-authorization",
    "proxy-authenticate",
];

/// Lower-cased tokens listed in all `Connection` header values.
pub fn connection_tokens<'a, I>(connection_values: I) -> Vec<String>
where
    I: IntoIterator<Item = &'a [u8]>,
{
    let mut out = Vec::new();
    for v in connection_values {
        for tok in v.split(|&b| b == b',') {
            let tok = tok.trim_ascii();
            if !tok.is_empty() {
                if let Ok(s) = std::str::from_utf8(tok) {
                    out.push(s.to_ascii_lowercase());
                }
            }
        }
    }
    out
}

/// True if a token of the `Connection` values names the field `name` (case-insensitive): what
/// [`connection_tokens`] tells, without collecting the tokens (the balancer asks it per field, per
/// message).
pub fn connection_names<'a, I>(connection_values: I, name: &str) -> bool
where
    I: IntoIterator<Item = &'a [u8]>,
{
    let named = |t: &[u8]| {
        let t = t.trim_ascii();
        !t.is_empty() && t.eq_ignore_ascii_case(name.as_bytes())
    };
    connection_values.into_iter().any(|v| v.split(|&b| b == b',').any(named))
}

/// True if a header named `name` must not be forwarded, given the `Connection` tokens of the
/// message and whether an `Upgrade` is being relayed.
pub fn is_hop_by_hop(name: &str, connection_tokens: &[String], keep_upgrade: bool) -> bool {
    if name.eq_ignore_ascii_case("upgrade") {
        return !keep_upgrade;
    }
    is_always_hop_by_hop(name)
        || connection_tokens.iter().any(|t| name.eq_ignore_ascii_case(t) && !(keep_upgrade && t == "upgrade"))
}

/// True if a header named `name` is hop-by-hop whatever the `Connection` header says (`Upgrade`,
/// which depends on what is relayed, aside: see [`is_hop_by_hop`]).
pub fn is_always_hop_by_hop(name: &str) -> bool {
    ALWAYS.iter().any(|h| name.eq_ignore_ascii_case(h))
}

/// Removes hop-by-hop headers from a [`HeaderMap`]. With `keep_upgrade`, `Upgrade` survives (the
/// caller re-adds `Connection: upgrade`).
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let tokens = connection_tokens(headers.get_all(http::header::CONNECTION).iter().map(|v| v.as_bytes()));
    let doomed: Vec<HeaderName> =
        headers.keys().filter(|n| is_hop_by_hop(n.as_str(), &tokens, keep_upgrade)).cloned().collect();
    for n in doomed {
        headers.remove(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_names_agrees_with_the_tokens() {
        let values: [&[u8]; 2] = [b"close, X-Secret ,,", b" keep-alive"];
        let tokens = connection_tokens(values);
        for name in ["close", "x-secret", "X-SECRET", "keep-alive", "x", "secret", ""] {
            let listed = tokens.iter().any(|t| t.eq_ignore_ascii_case(name));
            assert_eq!(connection_names(values, name), listed, "{name:?}");
        }
    }

    #[test]
    fn strips_named_and_fixed() {
        let mut h = HeaderMap::new();
        h.insert("connection", "close, X-Secret".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("proxy-authorization", "Basic x".parse().unwrap());
        h.insert("upgrade", "websocket".parse().unwrap());
        h.insert("host", "a".parse().unwrap());
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("host"));
    }

    #[test]
    fn keeps_upgrade_when_asked() {
        let mut h = HeaderMap::new();
        h.insert("connection", "Upgrade".parse().unwrap());
        h.insert("upgrade", "websocket".parse().unwrap());
        strip_hop_by_hop(&mut h, true);
        assert!(h.contains_key("upgrade"));
        assert!(!h.contains_key("connection"));
    }
}
