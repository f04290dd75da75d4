//! Which CONNECT hosts are intercepted: `--intercept [HOSTGLOB]...` minus `--no-intercept HOSTGLOB`.
//!
//! A glob is a host name where `*` stands for any run of characters (dots included), matched
//! case-insensitively against the whole CONNECT host: `*.example.com` takes every subdomain but not
//! `example.com` itself, `api.*` any host starting with `api.`. `--no-intercept` wins, because it is
//! how apps that pin their certificates are kept working.

/// One `HOSTGLOB`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostGlob {
    /// Lower-case, split at `*`: the host must start with the first part, end with the last, and
    /// contain the others in order between them.
    parts: Vec<String>,
}

impl HostGlob {
    /// Parses a glob; only host-name characters, `*`, and the brackets and colons of IPv6 literals
    /// are accepted, so a URL or a port given by mistake is an error that says so.
    pub fn parse(s: &str) -> Result<HostGlob, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("an empty host glob matches nothing; give a host such as *.example.com".into());
        }
        if let Some(c) = s.chars().find(|c| !(c.is_ascii_alphanumeric() || "-.*_[]:".contains(*c))) {
            return Err(format!(
                "{s:?} is not a host glob ({c:?} is not allowed); give a host name such as \
                 api.example.com or *.example.com, without scheme, port or path"
            ));
        }
        if s.contains(':') && !s.starts_with('[') && s.matches(':').count() < 2 {
            return Err(format!("{s:?} has a port; give the host alone (every port of it is intercepted)"));
        }
        let host = s.trim_start_matches('[').trim_end_matches(']');
        Ok(HostGlob { parts: host.to_ascii_lowercase().split('*').map(str::to_owned).collect() })
    }

    /// True if `host` (without port or brackets) matches.
    pub fn matches(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        let (first, rest) = self.parts.split_first().expect("split yields at least one part");
        let Some(mut left) = host.strip_prefix(first.as_str()) else { return false };
        let Some((last, middle)) = rest.split_last() else { return left.is_empty() };
        for part in middle {
            match left.find(part.as_str()) {
                Some(i) => left = &left[i + part.len()..],
                None => return false,
            }
        }
        left.ends_with(last.as_str())
    }
}

/// The hosts to intercept.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// Empty: every host.
    include: Vec<HostGlob>,
    exclude: Vec<HostGlob>,
}

impl Scope {
    /// Every host matching one of `include` (all hosts when it is empty) and none of `exclude`.
    pub fn new(include: Vec<HostGlob>, exclude: Vec<HostGlob>) -> Scope {
        Scope { include, exclude }
    }

    /// True if a CONNECT to `host` is intercepted.
    pub fn intercepts(&self, host: &str) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        (self.include.is_empty() || self.include.iter().any(|g| g.matches(host)))
            && !self.exclude.iter().any(|g| g.matches(host))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(s: &str) -> HostGlob {
        HostGlob::parse(s).unwrap()
    }

    #[test]
    fn globs_match_whole_hosts_case_insensitively() {
        assert!(g("api.example.com").matches("API.example.com"));
        assert!(!g("api.example.com").matches("api.example.com.evil"));
        assert!(g("*.example.com").matches("a.b.example.com"));
        assert!(!g("*.example.com").matches("example.com"));
        assert!(g("api.*").matches("api.test"));
        assert!(g("*").matches("anything"));
        assert!(g("a*b*c").matches("a-x-b-y-c"));
        assert!(!g("a*b*c").matches("a-x-c-y-b"));
        assert!(g("[::1]").matches("::1"));
        assert!(g("127.0.0.1").matches("127.0.0.1"));
    }

    #[test]
    fn urls_and_ports_are_refused_in_words() {
        assert!(HostGlob::parse("https://x.com").unwrap_err().contains("without scheme"));
        assert!(HostGlob::parse("x.com/a").is_err());
        assert!(HostGlob::parse("").is_err());
        assert!(HostGlob::parse("x.com:443").unwrap_err().contains("port"));
    }

    #[test]
    fn no_intercept_wins_and_an_empty_include_means_every_host() {
        let all = Scope::new(vec![], vec![g("*.bank.test")]);
        assert!(all.intercepts("shop.test"));
        assert!(!all.intercepts("www.bank.test"));
        let some = Scope::new(vec![g("api.test")], vec![]);
        assert!(some.intercepts("api.test") && !some.intercepts("www.test"));
    }
}
