//! `tunnelkit sticky` with real Socket.IO 4 servers (npm `socket.io`, `allowEIO3`) as backends and real
//! clients (npm `socket.io-client` 4, and 2.x for Engine.IO v3), all run under node by the test.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::redis::Redis;
use support::socketio::{handshake, node_dir, session_on, Backend, TRANSPORT_CASES};
use support::{curl, Proc};

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
    // `--metrics` prints a second `metrics listening on` line after the main one.
    Proc::start(&args, 1 + usize::from(extra.contains(&"--metrics")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transport_and_protocol_version_sticks_to_one_backend() {
    let (a, b, c) = (Backend::start("A"), Backend::start("B"), Backend::start("C"));
    let s = sticky(&[&a, &b, &c], &[]);
    let url = format!("http://{}", s.addr());
    let mut seen = std::collections::BTreeSet::new();
    for (transports, v2, want) in TRANSPORT_CASES {
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
    let (a, b) = (Backend::start("A"), Backend::start("B"));
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_backend_gets_fast_400_and_returns_after_restart() {
    let a = Backend::start("A");
    let b = Backend::start("B");
    let a_port = a.port;
    let s = sticky(
        &[&a, &b],
        &["--check-interval", "200ms", "--check-timeout", "200ms", "--balance", "round-robin"],
    );
    let url = format!("http://{}", s.addr());
    // A session bound to A.
    let sid = session_on(&url, "A", 6).await;
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
    let _a = Backend::start_on("A", a_port);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, backend) = handshake(&url).await;
        if backend == "A" {
            break;
        }
        assert!(Instant::now() < deadline, "A never returned to rotation");
        tokio::time::sleep(Duration::from_millis(100)).await;
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
    let (a, b, c) = (Backend::start("A"), Backend::start("B"), Backend::start("C"));
    let redis = Redis::node(0, None, &[]).await;
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
        let (sid, backend) = handshake(&u1).await;
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
    let (live_sid, live_backend) = handshake(&u1).await;
    drop(redis);
    assert_eq!(poll_backend(&u1, &live_sid).await, live_backend);
    let r = client(&u1, "polling", 10, false).await;
    assert_eq!((r.acks, r.backends.len()), (10, 1));
    let (during_sid, during_backend) = handshake(&u1).await;

    // Redis returns (empty): new sessions are stored again, and cached ones are written back.
    let redis = Redis::node(redis_port, None, &[]).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (sid, _) = handshake(&u1).await;
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

/// Every run names `--listen 127.0.0.1:0`: the default port 4000 may be taken on the machine.
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
        .args([
            "sticky",
            "--listen",
            "127.0.0.1:0",
            "--backend",
            "127.0.0.1:1",
            "--redis",
            "redis://127.0.0.1:1",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--redis"));
}

/// A node script driven line by line (tests/node/sticky/hold.js, reconnect.js): commands on stdin,
/// one JSON line per answer or event on stdout. Killed on drop.
struct NodeScript {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

impl NodeScript {
    fn start(args: &[&str]) -> NodeScript {
        use tokio::io::AsyncBufReadExt;
        let mut child = tokio::process::Command::new("node")
            .current_dir(node_dir())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("node is installed");
        let stdin = child.stdin.take().unwrap();
        let lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        NodeScript { child, stdin, lines }
    }

    async fn send(&mut self, line: &str) {
        use tokio::io::AsyncWriteExt;
        self.stdin.write_all(format!("{line}\n").as_bytes()).await.unwrap();
    }

    /// The next JSON line, waiting at most `limit`.
    async fn next(&mut self, limit: Duration) -> serde_json::Value {
        let line = tokio::time::timeout(limit, self.lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("no line from node within {limit:?}"))
            .unwrap()
            .unwrap_or_else(|| panic!("node script exited: {:?}", self.child.try_wait()));
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
    }

    /// `open N` on hold.js: the backend of each new session.
    async fn open(&mut self, n: usize) -> Vec<String> {
        self.send(&format!("open {n}")).await;
        let v = self.next(Duration::from_secs(40)).await;
        v["opened"].as_array().unwrap().iter().map(|b| b.as_str().unwrap().to_owned()).collect()
    }
}

/// The Prometheus text of `tunnelkit sticky --metrics`, retried until it answers.
async fn scrape(port: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (ok, out, err) = curl(&[&format!("http://127.0.0.1:{port}/metrics")]).await;
        if ok {
            return String::from_utf8_lossy(&out).into_owned();
        }
        assert!(Instant::now() < deadline, "metrics endpoint never answered: {err}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The value of the sample `name{labels}` (labels exactly as rendered), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Scrapes until `done(text)` holds (the session gauge is refreshed every check interval).
async fn scrape_until(port: u16, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = scrape(port).await;
        if done(&text) {
            return text;
        }
        assert!(Instant::now() < deadline, "metrics never showed {what}:\n{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn sessions_of(text: &str, backend: &Backend) -> Option<f64> {
    sample(text, &format!("tunnelkit_sticky_sessions{{backend=\"{}\"}}", backend.addr()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ended_sessions_stop_counting_for_least_sessions() {
    let (a, b) = (Backend::start("A"), Backend::start("B"));
    let s = sticky(
        &[&a, &b],
        &["--balance", "least-sessions", "--check-interval", "200ms", "--metrics", "127.0.0.1:0"],
    );
    let metrics = s.addr_of("metrics").port();
    let url = format!("http://{}", s.addr());
    // Client close packets (v4 `1`, v3 `1:1`), the end of an upgraded session's WebSocket, and the
    // end of a WebSocket-only session.
    for (transports, v2) in
        [("polling", false), ("polling", true), ("polling,websocket", false), ("websocket", false)]
    {
        let what = format!("{transports} v2={v2}");
        let mut hold =
            NodeScript::start(&[&["hold.js", &url, transports][..], if v2 { &["v2"] } else { &[] }].concat());
        let first = hold.open(6).await;
        let on_a = first.iter().filter(|x| *x == "A").count();
        assert_eq!(on_a, 3, "{what}: least-sessions spreads 6 sessions 3/3: {first:?}");
        scrape_until(metrics, "3 sessions per backend", |t| {
            sessions_of(t, &a) == Some(3.0) && sessions_of(t, &b) == Some(3.0)
        })
        .await;
        // A's clients leave: the balancer sees the sessions end, not just their bindings expire.
        hold.send("close A").await;
        assert_eq!(hold.next(Duration::from_secs(10)).await["closed"], 3);
        scrape_until(metrics, &format!("{what}: A's sessions ended"), |t| {
            sessions_of(t, &a) == Some(0.0) && sessions_of(t, &b) == Some(3.0)
        })
        .await;
        // So the next sessions all go to A.
        let next = hold.open(3).await;
        assert_eq!(next, vec!["A"; 3], "{what}: new sessions go to the emptied backend");
        hold.send("exit").await;
        scrape_until(metrics, &format!("{what}: every session ended"), |t| {
            sessions_of(t, &a) == Some(0.0) && sessions_of(t, &b) == Some(0.0)
        })
        .await;
    }
    let text = scrape(metrics).await;
    for reason in ["client_close", "websocket_closed"] {
        let ended = sample(&text, &format!("tunnelkit_sticky_sessions_ended_total{{reason=\"{reason}\"}}"));
        assert!(ended.is_some_and(|n| n >= 3.0), "sessions ended by {reason}: {ended:?}\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_forgetting_a_session_ends_it() {
    let (a, b) = (Backend::start("A"), Backend::start("B"));
    let s = sticky(&[&a, &b], &["--check-interval", "200ms", "--metrics", "127.0.0.1:0"]);
    let metrics = s.addr_of("metrics").port();
    let url = format!("http://{}", s.addr());
    let (sid, backend) = handshake(&url).await;
    let served_by = if backend == "A" { &a } else { &b };
    scrape_until(metrics, "the session", |t| sessions_of(t, served_by) == Some(1.0)).await;
    // The backend closes the session itself (a duplicate poll is an Engine.IO protocol error, the
    // same path as a ping timeout); its next answer is the 400 "Session ID unknown".
    let poll = format!("{url}/socket.io/?EIO=4&transport=polling&sid={sid}");
    let _ = futures_util::future::join(curl(&["-s", &poll]), curl(&["-s", &poll])).await;
    let (_, out, _) = curl(&["-s", "-w", "\n%{http_code}", &poll]).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    assert!(text.ends_with("\n400") && text.contains(r#""code":1"#), "{text}");
    scrape_until(metrics, "the forgotten session ended", |t| sessions_of(t, served_by) == Some(0.0)).await;
    let text = scrape(metrics).await;
    assert_eq!(
        sample(&text, "tunnelkit_sticky_sessions_ended_total{reason=\"session_unknown\"}"),
        Some(1.0),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_report_sessions_health_errors_and_redis() {
    let (a, b) = (Backend::start("A"), Backend::start("B"));
    let redis = Redis::node(0, None, &[]).await;
    let s = sticky(
        &[&a, &b],
        &[
            "--redis",
            &redis.url(),
            "--check-interval",
            "200ms",
            "--check-timeout",
            "200ms",
            "--metrics",
            "127.0.0.1:0",
        ],
    );
    let metrics = s.addr_of("metrics").port();
    let url = format!("http://{}", s.addr());
    for _ in 0..4 {
        handshake(&url).await;
    }
    let (_, out, _) =
        curl(&["-s", "-w", "%{http_code}", &format!("{url}/socket.io/?EIO=4&transport=polling&sid=nope")])
            .await;
    assert!(String::from_utf8_lossy(&out).ends_with("400"));

    let text = scrape_until(metrics, "4 sessions", |t| {
        sessions_of(t, &a).unwrap_or(0.0) + sessions_of(t, &b).unwrap_or(0.0) == 4.0
    })
    .await;
    assert_eq!(sessions_of(&text, &a), Some(2.0), "least-sessions: 2 each\n{text}");
    for backend in [&a, &b] {
        let up = format!("tunnelkit_sticky_backend_up{{backend=\"{}\"}}", backend.addr());
        assert_eq!(sample(&text, &up), Some(1.0), "{up}\n{text}");
        let total = format!("tunnelkit_sticky_sessions_total{{backend=\"{}\"}}", backend.addr());
        assert_eq!(sample(&text, &total), Some(2.0), "{total}\n{text}");
    }
    assert_eq!(
        sample(&text, "tunnelkit_sticky_routing_errors_total{kind=\"session_unknown\"}"),
        Some(1.0),
        "{text}"
    );
    // Every handshake wrote Redis (plus a GET for the unknown sid, and health-loop PINGs).
    let redis_commands = sample(&text, "tunnelkit_sticky_redis_seconds_count").unwrap_or(0.0);
    assert!(redis_commands >= 5.0, "Redis latency histogram: {redis_commands}\n{text}");
    let slowest = sample(&text, "tunnelkit_sticky_redis_seconds{quantile=\"1\"}").expect("latency quantiles");
    assert!(slowest > 0.0 && slowest < 0.5, "Redis latency within the command bound: {slowest}");

    // A backend going down shows, and so does a Redis outage.
    let a_up = format!("tunnelkit_sticky_backend_up{{backend=\"{}\"}}", a.addr());
    drop(a);
    drop(redis);
    handshake(&url).await;
    let text = scrape_until(metrics, "a backend down and Redis errors", |t| {
        sample(t, &a_up) == Some(0.0)
            && sample(t, "tunnelkit_sticky_redis_errors_total").is_some_and(|n| n >= 1.0)
    })
    .await;
    assert_eq!(sample(&text, &format!("tunnelkit_sticky_backend_up{{backend=\"{}\"}}", b.addr())), Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_marked_down_has_its_websockets_closed_so_clients_move_at_once() {
    for transports in ["websocket", "polling,websocket"] {
        let (a, b) = (Backend::start("A"), Backend::start("B"));
        let s = sticky(&[&a, &b], &["--check-interval", "200ms", "--check-timeout", "200ms"]);
        let url = format!("http://{}", s.addr());
        let mut client = NodeScript::start(&["reconnect.js", &url, transports]);
        let first = client.next(Duration::from_secs(20)).await;
        assert_eq!(first["event"], "connect", "{transports}: {first}");
        let hung = if first["backend"] == "A" { &a } else { &b };
        // The backend hangs (SIGSTOP): its sockets stay open, so only the balancer can tell the
        // client. Without that the client would wait for Engine.IO's ping timeout (25 s + 20 s).
        unsafe { libc::kill(hung.child.id() as i32, libc::SIGSTOP) };
        let lost = client.next(Duration::from_secs(10)).await;
        assert_eq!(lost["event"], "disconnect", "{transports}: {lost}");
        let again = client.next(Duration::from_secs(10)).await;
        assert_eq!(again["event"], "connect", "{transports}: {again}");
        assert_ne!(again["backend"], first["backend"], "{transports}: reconnected to the healthy backend");
        unsafe { libc::kill(hung.child.id() as i32, libc::SIGCONT) };
    }
}

/// A CA and a server certificate for 127.0.0.1 signed by it, as PEM files in `dir`:
/// (ca.pem, server.pem, server.key).
fn tls_files(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "tunnelkit test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate().unwrap();
    let server_cert = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .unwrap()
        .signed_by(&server_key, &issuer)
        .unwrap();
    let paths = (dir.join("ca.pem"), dir.join("server.pem"), dir.join("server.key"));
    std::fs::write(&paths.0, ca_cert.pem()).unwrap();
    std::fs::write(&paths.1, server_cert.pem()).unwrap();
    std::fs::write(&paths.2, server_key.serialize_pem()).unwrap();
    paths
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_with_password_and_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = tls_files(dir.path());
    let port = support::reserve_port();
    let mut server = Command::new("redis-server")
        .args([
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--tls-cert-file")
        .arg(&cert)
        .arg("--tls-key-file")
        .arg(&key)
        .arg("--tls-ca-cert-file")
        .arg(&ca)
        .args(["--tls-auth-clients", "no", "--requirepass", "secret"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server is installed (run ./test.sh)");
    let _stop = KillOnDrop(&mut server);
    let url = format!("rediss://:secret@127.0.0.1:{port}/");
    let tls = redis::Client::build_with_tls(
        url.as_str(),
        redis::TlsCertificates { client_tls: None, root_cert: Some(std::fs::read(&ca).unwrap()) },
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut conn = loop {
        match tls.get_multiplexed_async_connection().await {
            Ok(c) => break c,
            Err(e) => assert!(Instant::now() < deadline, "redis-server with TLS did not start: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    let a = Backend::start("A");
    let ca_arg = ca.to_str().unwrap();
    let s = sticky(&[&a], &["--redis", &url, "--redis-ca", ca_arg]);
    let (sid, _) = handshake(&format!("http://{}", s.addr())).await;
    let bound: Option<String> =
        redis::cmd("GET").arg(format!("socket.io#{sid}")).query_async(&mut conn).await.unwrap();
    assert_eq!(bound, Some(a.addr()), "the binding went to Redis over TLS");

    // Without the CA the server's certificate is not trusted; a wrong password is refused. Neither
    // message shows the password.
    for (args, why) in [
        (vec!["--redis".to_owned(), url.clone()], "untrusted certificate"),
        (
            vec![
                "--redis".to_owned(),
                format!("rediss://:wrong@127.0.0.1:{port}/"),
                "--redis-ca".into(),
                ca_arg.into(),
            ],
            "wrong password",
        ),
    ] {
        let out = Command::new(support::bin())
            .args(["sticky", "--listen", "127.0.0.1:0", "--backend", &a.addr()])
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{why}: {err}");
        assert!(
            err.contains("--redis") && !err.contains("secret") && !err.contains("wrong@"),
            "{why}: {err}"
        );
    }
    // A CA needs a TLS URL.
    let out = Command::new(support::bin())
        .args(["sticky", "--listen", "127.0.0.1:0", "--backend", &a.addr()])
        .args(["--redis", "redis://127.0.0.1:1", "--redis-ca", ca_arg])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("rediss://"));
}

/// Kills a child process when dropped.
struct KillOnDrop<'a>(&'a mut Child);

impl Drop for KillOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
