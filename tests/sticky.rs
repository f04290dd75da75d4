//! `tunnelkit sticky` with real Socket.IO 4 servers (npm `socket.io`, `allowEIO3`) as backends and real
//! clients (npm `socket.io-client` 4, and 2.x for Engine.IO v3), all run under node by the test.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{curl, Proc};

fn node_dir() -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node/sticky");
    assert!(
        d.join("node_modules/socket.io").exists(),
        "npm packages missing in {}: run ./test.sh",
        d.display()
    );
    d
}

/// A Socket.IO backend process, killed on drop.
struct Backend {
    child: Child,
    port: u16,
}

impl Backend {
    fn start(name: &str, port: u16) -> Backend {
        use std::io::{BufRead, BufReader};
        let mut child = Command::new("node")
            .current_dir(node_dir())
            .args(["backend.js", name, &port.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node is installed");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port =
            line.trim().rsplit(':').next().and_then(|p| p.parse().ok()).expect("backend prints its port");
        Backend { child, port }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
struct ClientRun {
    acks: u64,
    backends: Vec<String>,
    transport: String,
}

async fn client(url: &str, transports: &str, count: usize, v2: bool) -> ClientRun {
    let mut args = vec!["client.js".to_owned(), url.to_owned(), transports.to_owned(), count.to_string()];
    if v2 {
        args.push("v2".into());
    }
    let out = tokio::time::timeout(
        Duration::from_secs(40),
        tokio::process::Command::new("node").current_dir(node_dir()).args(&args).output(),
    )
    .await
    .expect("client finished")
    .unwrap();
    assert!(
        out.status.success(),
        "client {transports} v2={v2} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    ClientRun {
        acks: v["acks"].as_u64().unwrap(),
        backends: v["backends"].as_array().unwrap().iter().map(|b| b.as_str().unwrap().to_owned()).collect(),
        transport: v["transport"].as_str().unwrap().to_owned(),
    }
}

fn sticky(backends: &[&Backend], extra: &[&str]) -> Proc {
    let mut args = vec!["sticky".to_owned(), "--listen".into(), "127.0.0.1:0".into()];
    for b in backends {
        args.push("--backend".into());
        args.push(b.addr());
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Proc::start(&args, 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transport_and_protocol_version_sticks_to_one_backend() {
    let (a, b, c) = (Backend::start("A", 0), Backend::start("B", 0), Backend::start("C", 0));
    let s = sticky(&[&a, &b, &c], &[]);
    let url = format!("http://{}", s.addr());
    let mut seen = std::collections::BTreeSet::new();
    for (transports, v2, want) in [
        ("polling", false, "polling"),
        ("polling,websocket", false, "websocket"),
        ("websocket", false, "websocket"),
        ("polling", true, "polling"),
        ("polling,websocket", true, "websocket"),
        ("websocket", true, "websocket"),
    ] {
        let r = client(&url, transports, 30, v2).await;
        assert_eq!(r.acks, 30, "{transports} v2={v2}: {r:?}");
        assert_eq!(r.backends.len(), 1, "{transports} v2={v2}: one session, one backend: {r:?}");
        assert_eq!(r.transport, want, "{transports} v2={v2}");
        seen.insert(r.backends[0].clone());
    }
    assert!(seen.len() >= 2, "sessions spread over backends: {seen:?}");
    // Other paths go to some backend (the app's own pages).
    let (ok, body, _) = curl(&[&format!("{url}/")]).await;
    assert!(ok && String::from_utf8_lossy(&body).starts_with("page from "));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sessions_spread_and_stay_sticky() {
    let (a, b) = (Backend::start("A", 0), Backend::start("B", 0));
    let s = sticky(&[&a, &b], &["--balance", "least-sessions"]);
    let url = format!("http://{}", s.addr());
    let runs = futures_util::future::join_all((0..6).map(|_| client(&url, "polling", 40, false))).await;
    let mut per = std::collections::BTreeMap::new();
    for r in &runs {
        assert_eq!(r.acks, 40);
        assert_eq!(r.backends.len(), 1, "{r:?}");
        *per.entry(r.backends[0].clone()).or_insert(0) += 1;
    }
    assert_eq!(per.len(), 2, "least-sessions uses both backends: {per:?}");
}

/// A raw polling handshake through the balancer: (sid, backend name).
async fn raw_handshake(url: &str) -> (String, String) {
    let (ok, out, err) = curl(&["-i", &format!("{url}/socket.io/?EIO=4&transport=polling")]).await;
    assert!(ok, "{err}");
    let text = String::from_utf8_lossy(&out).into_owned();
    let backend = text
        .lines()
        .find_map(|l| l.to_ascii_lowercase().starts_with("x-backend:").then(|| l[10..].trim().to_owned()))
        .unwrap_or_else(|| panic!("no X-Backend in {text}"));
    let body = text.split("\r\n\r\n").nth(1).unwrap();
    let sid = tunnelkit::sticky::engine::learn_sid("text/plain", body.as_bytes()).expect("handshake").sid;
    (sid, backend)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_backend_gets_fast_400_and_returns_after_restart() {
    let a = Backend::start("A", 0);
    let b = Backend::start("B", 0);
    let a_port = a.port;
    let s = sticky(
        &[&a, &b],
        &["--check-interval", "200ms", "--check-timeout", "200ms", "--balance", "round-robin"],
    );
    let url = format!("http://{}", s.addr());
    // A session bound to A.
    let mut bound_to_a = None;
    for _ in 0..6 {
        let (sid, backend) = raw_handshake(&url).await;
        if backend == "A" {
            bound_to_a = Some(sid);
            break;
        }
    }
    let sid = bound_to_a.expect("round robin reaches A");
    let poll = format!("{url}/socket.io/?EIO=4&transport=polling&sid={sid}");
    let (_, out, _) = curl(&["-i", "-X", "POST", "-d", "40", &poll]).await;
    assert!(
        String::from_utf8_lossy(&out).contains("x-backend: A")
            || String::from_utf8_lossy(&out).contains("X-Backend: A")
    );

    drop(a);
    // Within interval + timeout (plus slack) the balancer answers A's sessions with Engine.IO's 400.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, out, _) = curl(&["-s", "-w", "\n%{http_code}", &poll]).await;
        let text = String::from_utf8_lossy(&out).into_owned();
        if text.ends_with("\n400") && text.contains(r#"{"code":1,"message":"Session ID unknown"}"#) {
            break;
        }
        assert!(Instant::now() < deadline, "no fast 400 for a dead backend's session: {text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // New sessions avoid A.
    for _ in 0..4 {
        let r = client(&url, "polling", 5, false).await;
        assert_eq!(r.backends, vec!["B".to_owned()]);
    }
    // A comes back on the same port and returns to rotation.
    let _a = Backend::start("A", a_port);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, backend) = raw_handshake(&url).await;
        if backend == "A" {
            break;
        }
        assert!(Instant::now() < deadline, "A never returned to rotation");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A redis-server on a loopback port, killed on drop.
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    async fn start(port: u16) -> Redis {
        let port = if port == 0 {
            std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
        } else {
            port
        };
        let mut child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (run ./test.sh)");
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return Redis { child, port };
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("redis-server did not start");
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn query(&self, args: &[&str]) -> redis::Value {
        let client = redis::Client::open(self.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query_async(&mut conn).await.unwrap()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A poll through `url` for `sid`: the backend that answered.
async fn poll_backend(url: &str, sid: &str) -> String {
    let (ok, out, err) = curl(&[
        "-i",
        "-X",
        "POST",
        "-d",
        "40",
        &format!("{url}/socket.io/?EIO=4&transport=polling&sid={sid}"),
    ])
    .await;
    assert!(ok, "{err}");
    let text = String::from_utf8_lossy(&out).into_owned();
    text.lines()
        .find_map(|l| l.to_ascii_lowercase().starts_with("x-backend:").then(|| l[10..].trim().to_owned()))
        .unwrap_or_else(|| panic!("no backend answered: {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_balancers_share_sessions_through_redis_and_survive_its_outage() {
    let (a, b, c) = (Backend::start("A", 0), Backend::start("B", 0), Backend::start("C", 0));
    let redis = Redis::start(0).await;
    let redis_port = redis.port;
    let common = [
        "--redis",
        &redis.url(),
        "--key-expiry",
        "30s",
        "--check-interval",
        "200ms",
        "--check-timeout",
        "200ms",
    ];
    // The second balancer lists the backends in another order: Redis holds addresses, not indexes.
    let s1 = sticky(&[&a, &b, &c], &common);
    let s2 = sticky(&[&c, &a, &b], &common);
    let (u1, u2) = (format!("http://{}", s1.addr()), format!("http://{}", s2.addr()));
    for _ in 0..3 {
        let (sid, backend) = raw_handshake(&u1).await;
        assert_eq!(poll_backend(&u2, &sid).await, backend, "balancer 2 routes balancer 1's session");
        let key = format!("socket.io#{sid}");
        match redis.query(&["PTTL", &key]).await {
            redis::Value::Int(ms) => assert!(ms > 20_000 && ms <= 30_000, "TTL {ms}"),
            v => panic!("no TTL for {key}: {v:?}"),
        }
    }
    // Real clients alternate nothing between balancers, but each stays sticky through either.
    let r = client(&u2, "polling,websocket", 20, false).await;
    assert_eq!((r.acks, r.backends.len()), (20, 1));

    // Redis goes away: known sessions keep working, new sessions are still assigned.
    let (live_sid, live_backend) = raw_handshake(&u1).await;
    drop(redis);
    assert_eq!(poll_backend(&u1, &live_sid).await, live_backend);
    let r = client(&u1, "polling", 10, false).await;
    assert_eq!((r.acks, r.backends.len()), (10, 1));
    let (during_sid, during_backend) = raw_handshake(&u1).await;

    // Redis returns (empty): new sessions are stored again, and cached ones are written back.
    let redis = Redis::start(redis_port).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (sid, _) = raw_handshake(&u1).await;
        let stored =
            matches!(redis.query(&["EXISTS", &format!("socket.io#{sid}")]).await, redis::Value::Int(1));
        let resynced = matches!(
            redis.query(&["EXISTS", &format!("socket.io#{during_sid}")]).await,
            redis::Value::Int(1)
        );
        if stored && resynced {
            break;
        }
        assert!(Instant::now() < deadline, "bindings not written to the restarted Redis");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        poll_backend(&u2, &during_sid).await,
        during_backend,
        "a session made during the outage is shared after it"
    );
}

#[test]
fn config_errors_name_the_key() {
    let out = Command::new(support::bin()).args(["sticky", "--listen", "127.0.0.1:0"]).output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--backend"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(support::bin())
        .args(["sticky", "--backend", "127.0.0.1:1", "--redis", "redis://127.0.0.1:1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--redis"));
}
