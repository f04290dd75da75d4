//! `tunnelkit sticky --route-by tag`: stateless sid routing. Balancers that share only a key file
//! (no Redis, no store) route every request of a session to its backend, whichever balancer gets it,
//! across balancer restarts, with real Socket.IO 4 servers and real 4.x and 2.x clients (Engine.IO
//! v4 and v3). Every server binds port 0; every wait is bounded.

mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::socketio::{handshake, node_dir, session_on, Backend, TRANSPORT_CASES};
use support::{curl, run_to_exit, Proc};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};

/// Engine.IO's answer for a session it does not know, which the balancer reuses.
const SESSION_UNKNOWN: &str = r#"{"code":1,"message":"Session ID unknown"}"#;

/// Characters of a tag (`SID.TAG`).
const TAG_CHARS: usize = 22;

/// A key file of `bytes`.
fn key_file(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p.to_str().unwrap().to_owned()
}

/// A balancer in tag mode over `backends` (in that order) with `key`.
fn tag_balancer(backends: &[&Backend], key: &str, extra: &[&str]) -> Proc {
    let mut args = vec!["sticky".to_owned(), "--listen".into(), "127.0.0.1:0".into()];
    for b in backends {
        args.extend(["--backend".to_owned(), b.addr()]);
    }
    args.extend(["--route-by".to_owned(), "tag".into(), "--route-key".into(), key.to_owned()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Proc::start(&args, 1)
}

/// `alternate.js`: one Socket.IO session whose requests go to the balancers in turn.
struct Alternator {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Alternator {
    fn start(transports: &str, v2: bool) -> Alternator {
        let mut args = vec!["alternate.js", transports];
        if v2 {
            args.push("v2");
        }
        let mut child = tokio::process::Command::new("node")
            .current_dir(node_dir())
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("node is installed");
        let stdin = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Alternator { child, stdin, lines }
    }

    /// Sends one command and returns its JSON answer.
    async fn send(&mut self, cmd: &str) -> serde_json::Value {
        self.stdin.write_all(format!("{cmd}\n").as_bytes()).await.unwrap();
        let line = tokio::time::timeout(Duration::from_secs(40), self.lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("no answer to `{cmd}` within 40 s"))
            .unwrap()
            .unwrap_or_else(|| panic!("alternate.js exited on `{cmd}` (its stderr is above)"));
        serde_json::from_str(&line).unwrap()
    }

    async fn hosts(&mut self, balancers: &[&Proc]) {
        let list: Vec<String> = balancers.iter().map(|p| p.addr().to_string()).collect();
        self.send(&format!("hosts {}", list.join(","))).await;
    }

    async fn echo(&mut self, n: usize) -> serde_json::Value {
        let r = self.send(&format!("echo {n}")).await;
        assert_eq!(r["acks"], n, "{r}");
        assert_eq!(r["disconnects"], 0, "{r}");
        assert_eq!(r["backends"].as_array().unwrap().len(), 1, "one session, one backend: {r}");
        r
    }
}

impl Drop for Alternator {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_balancers_without_a_store_keep_each_session_on_its_backend() {
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path(), "key", &[0x5a; 32]);
    let (a, b) = (Backend::start("A"), Backend::start("B"));
    // The second balancer lists the backends in the other order: tags name addresses, not places.
    let (s1, s2) = (tag_balancer(&[&a, &b], &key, &[]), tag_balancer(&[&b, &a], &key, &[]));
    let mut seen = std::collections::BTreeSet::new();
    for (transports, v2, want) in TRANSPORT_CASES {
        let mut c = Alternator::start(transports, v2);
        c.hosts(&[&s1, &s2]).await;
        let open = c.send("open").await;
        assert_eq!(open["transport"], want, "{transports} v2={v2}: {open}");
        if transports.starts_with("polling") {
            let id = open["id"].as_str().unwrap();
            assert_eq!(id.rsplit_once('.').map(|(_, t)| t.len()), Some(TAG_CHARS), "tagged sid: {id}");
            // The handshake went to one balancer, the next request (and so on) to the other.
            for s in [&s1, &s2] {
                let n = open["hits"][s.addr().to_string()].as_u64().unwrap_or(0);
                assert!(n >= 1, "{transports} v2={v2}: balancer {} unused while opening: {open}", s.addr());
            }
        }
        let r = c.echo(20).await;
        assert_eq!(r["transport"], want, "{transports} v2={v2}: {r}");
        seen.insert(r["backends"][0].as_str().unwrap().to_owned());
        if transports == "polling" {
            // Every request alternated: both balancers carried this one session.
            for s in [&s1, &s2] {
                let n = r["hits"][s.addr().to_string()].as_u64().unwrap_or(0);
                assert!(n >= 10, "{transports} v2={v2}: balancer {} saw {n} requests: {r}", s.addr());
            }
        }
        drop(c);
    }
    assert_eq!(seen.len(), 2, "new sessions still spread over both backends: {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_balancer_keeps_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path(), "key", &[0x33; 24]);
    let (a, b) = (Backend::start("A"), Backend::start("B"));
    for v2 in [false, true] {
        let s1 = tag_balancer(&[&a, &b], &key, &[]);
        let s2 = tag_balancer(&[&a, &b], &key, &[]);
        let mut c = Alternator::start("polling", v2);
        c.hosts(&[&s1, &s2]).await;
        let id = c.send("open").await["id"].as_str().unwrap().to_owned();
        let before = c.echo(6).await;
        // Move the session onto s2 alone (the poll in flight included), then restart s1: the new
        // process has never seen the session.
        c.hosts(&[&s2]).await;
        c.echo(2).await;
        drop(s1);
        let s1 = tag_balancer(&[&a, &b], &key, &[]);
        c.hosts(&[&s1]).await;
        let after = c.echo(6).await;
        assert_eq!(after["backends"], before["backends"], "v2={v2}");
        assert_eq!(after["id"], id.as_str(), "v2={v2}: the same Engine.IO session");
        // And both again, the restarted one first.
        c.hosts(&[&s1, &s2]).await;
        let both = c.echo(6).await;
        assert_eq!(both["backends"], before["backends"], "v2={v2}");
        drop(c);
    }
}

/// A polling GET with `sid` (which is put in the URL as is): (status, body, time taken).
async fn poll(url: &str, sid: &str) -> (String, String, Duration) {
    let started = Instant::now();
    let (_, out, _) =
        curl(&["-s", "-w", "\n%{http_code}", &format!("{url}/socket.io/?EIO=4&transport=polling&sid={sid}")])
            .await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap();
    (status.to_owned(), body.to_owned(), started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_unknown_and_foreign_tags_get_the_fast_400() {
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path(), "key", &[0x11; 32]);
    let other_key = key_file(dir.path(), "other", &[0x22; 32]);
    let (a, b) = (Backend::start("A"), Backend::start("B"));
    let s1 = tag_balancer(&[&a, &b], &key, &[]);
    let s2 = tag_balancer(&[&a, &b], &key, &[]);
    let foreign = tag_balancer(&[&a, &b], &other_key, &[]);
    let (u1, u2, uf) = (
        format!("http://{}", s1.addr()),
        format!("http://{}", s2.addr()),
        format!("http://{}", foreign.addr()),
    );
    let (sid, _) = handshake(&u1).await;
    let (bare, tag) = sid.rsplit_once('.').unwrap();
    assert_eq!(tag.len(), TAG_CHARS, "{sid}");
    // The genuine tag routes through the other balancer: a POST the backend accepts.
    let (ok, out, _) = curl(&[
        "-s",
        "-X",
        "POST",
        "-d",
        "40",
        &format!("{u2}/socket.io/?EIO=4&transport=polling&sid={sid}"),
    ])
    .await;
    assert!(ok && out == b"ok", "{}", String::from_utf8_lossy(&out));
    let mut forged = tag.as_bytes().to_vec();
    forged[3] = if forged[3] == b'x' { b'y' } else { b'x' };
    let forged = format!("{bare}.{}", String::from_utf8(forged).unwrap());
    for (url, sid, what) in [
        (&u2, forged.as_str(), "forged tag"),
        (&u2, bare, "the backend's bare sid"),
        (&u2, &format!("{bare}.{}", "A".repeat(TAG_CHARS)), "made-up tag"),
        (&u1, &sid[..sid.len() - 1], "truncated tag"),
        (&uf, sid.as_str(), "tag of another key"),
    ] {
        let (status, body, took) = poll(url, sid).await;
        assert_eq!((status.as_str(), body.as_str()), ("400", SESSION_UNKNOWN), "{what}");
        assert!(took < Duration::from_secs(2), "{what}: answered in {took:?}");
    }
    // The session itself is untouched by the attempts.
    let (status, _, _) = poll(&u1, &sid).await;
    assert_eq!(status, "200");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_backends_tags_get_the_400_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path(), "key", &[0x44; 32]);
    let (a, b) = (Backend::start("A"), Backend::start("B"));
    let flags = ["--balance", "round-robin", "--check-interval", "100ms", "--check-timeout", "100ms"];
    let s1 = tag_balancer(&[&a, &b], &key, &flags);
    let s2 = tag_balancer(&[&a, &b], &key, &flags);
    // A third balancer whose health check will not run again during the test: it learns that A is
    // gone from the refused connection itself.
    let s3 = tag_balancer(&[&a, &b], &key, &["--check-interval", "1h"]);
    let (u1, u2) = (format!("http://{}", s1.addr()), format!("http://{}", s2.addr()));
    let u3 = format!("http://{}", s3.addr());
    let sid = session_on(&u1, "A", 4).await;
    // The Socket.IO CONNECT, through the other balancer, then the poll that gets its answer.
    let connect = format!("{u2}/socket.io/?EIO=4&transport=polling&sid={sid}");
    let (ok, out, _) = curl(&["-s", "-X", "POST", "-d", "40", &connect]).await;
    assert!(ok && out == b"ok", "{}", String::from_utf8_lossy(&out));
    assert_eq!(poll(&u1, &sid).await.0, "200");
    // s3 has a pooled connection to A too.
    let (ok, out, _) = curl(&["-s", "-X", "POST", "-d", "3", &connect.replace(&u2, &u3)]).await;
    assert!(ok && out == b"ok", "{}", String::from_utf8_lossy(&out));
    drop(a);
    // Without a health check: the refused connection answers at once, and marks A down.
    for _ in 0..2 {
        let (status, body, took) = poll(&u3, &sid).await;
        assert_eq!((status.as_str(), body.as_str()), ("400", SESSION_UNKNOWN));
        assert!(took < Duration::from_millis(500), "answered in {took:?}");
    }
    // Both other balancers' health checks see A gone within a few periods; from then on A's
    // sessions get the 400 without any attempt to reach A.
    tokio::time::sleep(Duration::from_millis(600)).await;
    for url in [&u1, &u2] {
        let (status, body, took) = poll(url, &sid).await;
        assert_eq!((status.as_str(), body.as_str()), ("400", SESSION_UNKNOWN));
        assert!(took < Duration::from_millis(500), "answered in {took:?}");
    }
    // New sessions go to B.
    for _ in 0..3 {
        assert_eq!(handshake(&u2).await.1, "B");
    }
}

/// Bad `--route-by tag` setups stop the balancer at start, naming the flag and the fix.
#[tokio::test]
async fn bad_route_settings_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let short = key_file(dir.path(), "short", b"0123456789");
    let empty = key_file(dir.path(), "empty", b"");
    let good = key_file(dir.path(), "good", &[9; 32]);
    let missing = dir.path().join("missing").to_str().unwrap().to_owned();
    let base = ["sticky", "--listen", "127.0.0.1:0", "--backend", "127.0.0.1:1"];
    let cases: Vec<(Vec<&str>, &[&str])> = vec![
        (vec!["--route-by", "tag"], &["--route-key", "head -c 32 /dev/urandom"]),
        (vec!["--route-by", "tag", "--route-key", &short], &["--route-key", "10 bytes", "at least 16"]),
        (vec!["--route-by", "tag", "--route-key", &empty], &["--route-key", "is empty"]),
        (vec!["--route-by", "tag", "--route-key", &missing], &["--route-key", "cannot read"]),
        (
            vec!["--route-by", "tag", "--route-key", &good, "--redis", "redis://127.0.0.1:1"],
            &["--route-by", "--redis"],
        ),
        (vec!["--route-key", &good], &["--route-by tag"]),
        (vec!["--route-by", "cookie"], &["--route-by", "store", "tag"]),
    ];
    for (extra, wants) in cases {
        let mut args = base.to_vec();
        args.extend(extra.iter());
        let (status, stderr) = run_to_exit(&args, &[], Duration::from_secs(10)).await;
        let status = status.expect("exits at once");
        assert!(!status.success(), "{args:?} was accepted");
        assert!(!stderr.contains("panicked"), "{stderr}");
        for want in wants {
            assert!(stderr.contains(want), "{args:?}: `{want}` not in: {stderr}");
        }
    }
    // The config file keys work as the flags do.
    let toml = dir.path().join("sticky.toml");
    std::fs::write(
        &toml,
        format!("backends = [\"127.0.0.1:1\"]\nroute_by = \"tag\"\nroute_key = \"{short}\"\n"),
    )
    .unwrap();
    let (status, stderr) =
        run_to_exit(&["sticky", "--config", toml.to_str().unwrap()], &[], Duration::from_secs(10)).await;
    assert!(!status.unwrap().success() && stderr.contains("route_key"), "{stderr}");
    std::fs::write(
        &toml,
        format!("backends = [\"127.0.0.1:1\"]\nroute_by = \"tag\"\nroute_key = \"{good}\"\n"),
    )
    .unwrap();
    let s = Proc::start(&["sticky", "--config", toml.to_str().unwrap(), "--listen", "127.0.0.1:0"], 1);
    assert!(s.addr().ip().is_loopback());
}

/// Engine.IO v3 handshakes (text with its recomputed length prefix, and JSONP) from a real server
/// carry a tagged sid that routes through another balancer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v3_text_and_jsonp_handshakes_carry_routable_tags() {
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path(), "key", &[0x66; 32]);
    let a = Backend::start("A");
    let (s1, s2) = (tag_balancer(&[&a], &key, &[]), tag_balancer(&[&a], &key, &[]));
    for query in ["EIO=3&transport=polling", "EIO=3&transport=polling&b64=1", "EIO=3&transport=polling&j=0"] {
        let (ok, out, err) = curl(&[&format!("http://{}/socket.io/?{query}", s1.addr())]).await;
        assert!(ok, "{err}");
        let text = String::from_utf8(out).unwrap();
        let payload = match text.strip_prefix("___eio[0](") {
            Some(js) => serde_json::from_str::<String>(js.strip_suffix(");").unwrap()).unwrap(),
            None => text.clone(),
        };
        // `len:packet`, with len the packet's length in UTF-16 units, tag included.
        let (len, rest) = payload.split_once(':').unwrap();
        let open: String = rest.chars().take(len.parse().unwrap()).collect();
        assert!(open.starts_with("0{") && open.ends_with('}'), "{query}: {payload}");
        let sid = serde_json::from_str::<serde_json::Value>(&open[1..]).unwrap()["sid"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(sid.rsplit_once('.').unwrap().1.len(), TAG_CHARS, "{query}: {sid}");
        let (ok, out, _) = curl(&[
            "-s",
            "-X",
            "POST",
            "-d",
            "1:2",
            &format!("http://{}/socket.io/?EIO=3&transport=polling&sid={sid}", s2.addr()),
        ])
        .await;
        assert!(ok && out == b"ok", "{query}: {}", String::from_utf8_lossy(&out));
    }
}
