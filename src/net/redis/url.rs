//! What a Redis URL names (sticky's `--redis` and `--redis-cluster`, ws-server's `--cluster-redis`):
//! one Redis node (`redis://`, `rediss://`), a master found through Sentinel
//! (`redis+sentinel://[user:password@]host:port[,host:port…]/MASTERNAME`), or the seed nodes of a
//! Redis Cluster. Settings check the URLs with this at start, so a typo is a configuration error
//! naming the flag; [`super::RedisConn`] reads them again with it to connect.
//!
//! Sentinel URLs have no standard and redis-rs does not parse them, hence this small parser. The
//! credentials are the master's (and its replicas'), not the sentinels': sentinels usually run
//! without a password, and sending one to a sentinel that has none fails the connection.

/// The `--redis` forms, for error messages.
pub const REDIS_FORMS: &str = "redis://[:password@]host:port[/db], rediss://[:password@]host:port[/db] \
                               for TLS, or redis+sentinel://[user:password@]host:port[,host:port…]/MASTERNAME";

/// The port sentinels listen on unless told otherwise.
const SENTINEL_PORT: u16 = 26379;

/// Where the shared sid map lives, as `--redis` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisUrl {
    /// One node (`redis://` or `rediss://`), kept as written: redis-rs parses it.
    Node(String),
    /// A master named by sentinels.
    Sentinel(SentinelUrl),
}

/// `redis+sentinel://[user:password@]host:port[,host:port…]/MASTERNAME`, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentinelUrl {
    /// The master's user (ACL), if any.
    pub username: Option<String>,
    /// The master's password, if any.
    pub password: Option<String>,
    /// Sentinel addresses, in the order given (asked in that order).
    pub sentinels: Vec<(String, u16)>,
    /// The name the sentinels monitor the master under.
    pub master: String,
}

impl RedisUrl {
    /// Reads a `--redis` value; the error says what is wrong and shows the accepted forms.
    pub fn parse(url: &str) -> Result<RedisUrl, String> {
        let shown = crate::config::redact_password(url);
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(format!("`{shown}` has no scheme; write {REDIS_FORMS}"));
        };
        match scheme {
            "redis" | "rediss" => Ok(RedisUrl::Node(url.to_owned())),
            "redis+sentinel" => SentinelUrl::parse(rest)
                .map(RedisUrl::Sentinel)
                .map_err(|why| format!("`{shown}`: {why}; write {}", SENTINEL_FORM)),
            "rediss+sentinel" => Err(format!(
                "`{shown}`: Sentinel over TLS is not supported; use redis+sentinel:// on a trusted network, \
                 or a single node with rediss://"
            )),
            other => Err(format!("`{shown}` has the scheme `{other}://`; write {REDIS_FORMS}")),
        }
    }
}

/// The one Sentinel form, for error messages.
const SENTINEL_FORM: &str = "redis+sentinel://[user:password@]host:port[,host:port…]/MASTERNAME";

impl SentinelUrl {
    /// Reads what follows `redis+sentinel://`.
    fn parse(rest: &str) -> Result<SentinelUrl, String> {
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let master = path.strip_suffix('/').unwrap_or(path);
        if master.is_empty() {
            return Err("no master name after the sentinel addresses".into());
        }
        if master.contains(['/', '?', '#']) {
            return Err(format!("`{master}` is not a master name (the path is the name alone)"));
        }
        let (userinfo, hosts) = match authority.rfind('@') {
            Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
            None => (None, authority),
        };
        let (username, password) = match userinfo {
            None => (None, None),
            Some(info) => {
                let (user, pw) = info.split_once(':').map_or((info, None), |(u, p)| (u, Some(p)));
                let user = (!user.is_empty()).then(|| percent_decode(user)).transpose()?;
                (user, pw.map(percent_decode).transpose()?)
            }
        };
        let sentinels = hosts.split(',').map(host_port).collect::<Result<Vec<_>, _>>()?;
        Ok(SentinelUrl { username, password, sentinels, master: percent_decode(master)? })
    }
}

/// `host:port`, `[v6]:port`, or a host alone (the sentinel port).
fn host_port(s: &str) -> Result<(String, u16), String> {
    let (host, port) = if let Some(v6) = s.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or_else(|| format!("`{s}` lacks its closing ]"))?;
        (host, after.strip_prefix(':'))
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if host.is_empty() {
        return Err(format!("`{s}` has no host (empty entry in the sentinel list?)"));
    }
    let port = match port {
        None => SENTINEL_PORT,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("`{p}` in `{s}` is not a port"))?,
    };
    Ok((host.to_owned(), port))
}

/// `%XX` escapes decoded, as in any URL's user, password and path.
fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
            let byte = hex
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("a % not followed by two hex digits")?;
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "a %-escape that is not UTF-8".to_owned())
}

/// Checks the `--redis-cluster` seed URLs: one or more `redis://` or `rediss://` nodes, all the
/// same scheme (the cluster speaks TLS to every node or to none).
pub fn check_cluster(urls: &[String]) -> Result<(), String> {
    let form = "--redis-cluster (config key redis_cluster) takes redis://[:password@]host:port[,redis://host:port…] \
                (rediss:// for TLS): a few nodes of the cluster, which names the others";
    if urls.is_empty() {
        return Err(format!("no node given; {form}"));
    }
    let mut schemes = urls.iter().map(|u| {
        let shown = crate::config::redact_password(u);
        match u.split_once("://") {
            Some((s @ ("redis" | "rediss"), hosts)) if !hosts.is_empty() => Ok(s),
            Some((s, _)) if s.ends_with("+sentinel") => Err(format!(
                "`{shown}` is a Sentinel URL, which belongs in --redis (config key redis); {form}"
            )),
            _ => Err(format!("`{shown}` is not a node URL; {form}")),
        }
    });
    let first = schemes.next().expect("not empty")?;
    for s in schemes {
        if s? != first {
            return Err(format!("mixes redis:// and rediss:// nodes; {form}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sentinel(url: &str) -> SentinelUrl {
        match RedisUrl::parse(url) {
            Ok(RedisUrl::Sentinel(s)) => s,
            other => panic!("{url}: {other:?}"),
        }
    }

    #[test]
    fn sentinel_urls() {
        let s = sentinel("redis+sentinel://127.0.0.1:26379,10.0.0.2:26380,[::1]:1,sentinel.local/mymaster");
        assert_eq!(s.master, "mymaster");
        assert_eq!((s.username, s.password), (None, None));
        let hosts =
            [("127.0.0.1", 26379), ("10.0.0.2", 26380), ("::1", 1), ("sentinel.local", SENTINEL_PORT)];
        assert_eq!(s.sentinels, hosts.map(|(h, p)| (h.to_owned(), p)));
        let s = sentinel("redis+sentinel://app:p%40ss@h:1/m%2Fx/");
        assert_eq!((s.username.as_deref(), s.password.as_deref()), (Some("app"), Some("p@ss")));
        assert_eq!(s.master, "m/x");
        let s = sentinel("redis+sentinel://:pw@h:1/m");
        assert_eq!((s.username, s.password.as_deref()), (None, Some("pw")));
        assert_eq!(RedisUrl::parse("rediss://:pw@h:1/2"), Ok(RedisUrl::Node("rediss://:pw@h:1/2".into())));
    }

    #[test]
    fn bad_sentinel_urls_show_the_form_without_the_password() {
        for (url, why) in [
            ("redis+sentinel://:secret@h:1", "no master name"),
            ("redis+sentinel://:secret@h:1/", "no master name"),
            ("redis+sentinel://:secret@h:1/a/b", "not a master name"),
            ("redis+sentinel://:secret@h:1,,h:2/m", "no host"),
            ("redis+sentinel://:secret@h:x/m", "not a port"),
            ("redis+sentinel://:secret@[::1/m", "closing ]"),
            ("redis+sentinel://:secret@h:1/m%zz", "two hex digits"),
        ] {
            let e = RedisUrl::parse(url).unwrap_err();
            assert!(e.contains(why) && e.contains(SENTINEL_FORM) && !e.contains("secret"), "{url}: {e}");
        }
        let e = RedisUrl::parse("rediss+sentinel://h:1/m").unwrap_err();
        assert!(e.contains("not supported"), "{e}");
        let e = RedisUrl::parse("http://:secret@h:1").unwrap_err();
        assert!(e.contains("`http://`") && e.contains("redis+sentinel://") && !e.contains("secret"), "{e}");
    }

    #[test]
    fn cluster_seed_urls() {
        let urls = |u: &[&str]| u.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(check_cluster(&urls(&["redis://a:1", "redis://:pw@b:2"])).is_ok());
        for (u, why) in [
            (urls(&[]), "no node"),
            (urls(&["redis://a:1", "rediss://b:2"]), "mixes"),
            (urls(&["redis+sentinel://a:1/m"]), "belongs in --redis"),
            (urls(&["a:1"]), "not a node URL"),
            (urls(&["redis://a:1", ""]), "not a node URL"),
            (urls(&["http://:secret@a:1"]), "not a node URL"),
        ] {
            let e = check_cluster(&u).unwrap_err();
            assert!(e.contains(why) && e.contains("--redis-cluster") && !e.contains("secret"), "{u:?}: {e}");
        }
    }
}
