//! Proxy settings from the environment, compatible with curl.
//!
//! Precedence for a target URL scheme `s` (`http` or `https`): `s_proxy`, then `S_PROXY` — except
//! that upper-case `HTTP_PROXY` is ignored, as curl does, because CGI servers set it from the
//! client's `Proxy:` request header — then `all_proxy`, then `ALL_PROXY`. `no_proxy` (or
//! `NO_PROXY`) lists destinations reached directly: `*`; host names, which also match their
//! subdomains, with or without a leading dot; IP addresses; CIDR ranges; each optionally with
//! `:port`; IPv6 addresses bare or in brackets.

use std::net::IpAddr;

use crate::net::{Host, Target};
use crate::policy::Cidr;

/// Reads the proxy URL for a destination from the environment (`None`: connect directly).
pub fn proxy_for(scheme: &str, target: &Target) -> Option<String> {
    proxy_for_with(scheme, target, |k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()))
}

/// [`proxy_for`] with an explicit variable lookup (for tests).
pub fn proxy_for_with(scheme: &str, target: &Target, var: impl Fn(&str) -> Option<String>) -> Option<String> {
    let no_proxy = var("no_proxy").or_else(|| var("NO_PROXY"));
    if let Some(list) = no_proxy {
        if no_proxy_matches(&list, target) {
            return None;
        }
    }
    let lower = format!("{}_proxy", scheme.to_ascii_lowercase());
    let upper = lower.to_ascii_uppercase();
    var(&lower)
        .or_else(|| if upper == "HTTP_PROXY" { None } else { var(&upper) })
        .or_else(|| var("all_proxy"))
        .or_else(|| var("ALL_PROXY"))
}

/// True if `target` is listed in a `NO_PROXY` value.
pub fn no_proxy_matches(list: &str, target: &Target) -> bool {
    list.split(',').map(str::trim).filter(|e| !e.is_empty()).any(|entry| entry_matches(entry, target))
}

fn entry_matches(entry: &str, target: &Target) -> bool {
    if entry == "*" {
        return true;
    }
    // Split an optional :port, minding bare IPv6 addresses (more than one colon, no brackets).
    let (host, port) = if let Some(rest) = entry.strip_prefix('[') {
        match rest.split_once(']') {
            Some((h, p)) => (h, p.strip_prefix(':')),
            None => return false,
        }
    } else if entry.matches(':').count() == 1 {
        let (h, p) = entry.split_once(':').expect("one colon");
        (h, Some(p))
    } else {
        (entry, None)
    };
    if let Some(p) = port {
        if p.parse::<u16>().ok() != Some(target.port) {
            return false;
        }
    }
    if host.contains('/') {
        let Ok(cidr) = host.parse::<Cidr>() else { return false };
        return target.host.ip().is_some_and(|ip| cidr.contains(ip));
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return target.host.ip() == Some(crate::net::canonical_ip(ip));
    }
    let want = host.trim_start_matches('.').trim_end_matches('.').to_ascii_lowercase();
    match &target.host {
        Host::Domain(d) => d == &want || d.ends_with(&format!(".{want}")),
        Host::Ip(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Target {
        Target::parse(s).unwrap()
    }

    #[test]
    fn no_proxy_table() {
        let cases = [
            ("*", "example.com:443", true),
            ("example.com", "example.com:443", true),
            ("example.com", "www.example.com:443", true),
            (".example.com", "www.example.com:443", true),
            (".example.com", "example.com:443", true),
            ("example.com", "badexample.com:443", false),
            ("example.com:8443", "example.com:443", false),
            ("example.com:443", "example.com:443", true),
            ("10.0.0.0/8", "10.1.2.3:80", true),
            ("10.0.0.0/8", "11.1.2.3:80", false),
            ("127.0.0.1", "127.0.0.1:80", true),
            ("::1", "[::1]:80", true),
            ("[::1]:80", "[::1]:80", true),
            ("[::1]:81", "[::1]:80", false),
            ("fd00::/8", "[fd12::1]:80", true),
            ("localhost, .internal", "db.internal:5432", true),
            ("", "example.com:443", false),
        ];
        for (list, target, want) in cases {
            assert_eq!(no_proxy_matches(list, &t(target)), want, "{list} vs {target}");
        }
    }

    #[test]
    fn precedence() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
        };
        let target = t("example.com:443");
        assert_eq!(
            proxy_for_with("https", &target, env(&[("https_proxy", "a"), ("HTTPS_PROXY", "b")])),
            Some("a".into())
        );
        assert_eq!(
            proxy_for_with("https", &target, env(&[("HTTPS_PROXY", "b"), ("ALL_PROXY", "c")])),
            Some("b".into())
        );
        assert_eq!(
            proxy_for_with("http", &target, env(&[("HTTP_PROXY", "b"), ("ALL_PROXY", "c")])),
            Some("c".into())
        );
        assert_eq!(proxy_for_with("http", &target, env(&[("http_proxy", "a")])), Some("a".into()));
        assert_eq!(
            proxy_for_with("https", &target, env(&[("https_proxy", "a"), ("NO_PROXY", "example.com")])),
            None
        );
        assert_eq!(proxy_for_with("https", &target, env(&[])), None);
    }
}
