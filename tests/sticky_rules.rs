//! `tunnelkit sticky` rules at its edges: the header fields a backend gets and what counts as an
//! upgrade, flags refused at start, and a client closing its session while a poll is in flight.
//! Every server runs on a port the kernel picked; every wait is bounded.

mod sticky_peers;
mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use sticky_peers::{exchange, head_echo, sticky};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The request head as [`head_echo`] received it through the balancer.
async fn forwarded_head(addr: SocketAddr, raw: &str) -> String {
    let (text, _) = exchange(addr, raw.as_bytes(), Duration::from_secs(10)).await;
    assert!(text.starts_with("HTTP/1.1 200 "), "{raw}\n->\n{text}");
    text
}

fn count_fields(head: &str, name: &str) -> usize {
    head.lines()
        .filter(|l| l.split_once(':').is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case(name)))
        .count()
}

#[tokio::test]
async fn exactly_one_host_and_only_get_upgrades() {
    let origin = head_echo().await;
    let s = sticky(&[origin], &[]);
    // `Connection: host` does not drop the client's Host (the backend would see its own address).
    let head = forwarded_head(
        s.addr(),
        "GET /head HTTP/1.1\r\nHost: app.example\r\nConnection: host, close\r\nX-Hop: 1\r\nConnection: x-hop\r\n\r\n",
    )
    .await;
    assert_eq!(count_fields(&head, "host"), 1, "{head}");
    assert!(head.to_ascii_lowercase().contains("host: app.example"), "{head}");
    assert_eq!(count_fields(&head, "x-hop"), 0, "other named fields still go: {head}");
    // An absolute-form target names the host the backend sees.
    let head = forwarded_head(
        s.addr(),
        "GET http://app.example/head HTTP/1.1\r\nHost: other.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(count_fields(&head, "host"), 1, "{head}");
    assert!(head.to_ascii_lowercase().contains("host: app.example\r\n"), "{head}");
    // Two Host fields: refused.
    let (text, _) = exchange(
        s.addr(),
        b"GET /head HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\nConnection: close\r\n\r\n",
        Duration::from_secs(10),
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 400 "), "{text}");
    // Not upgrades: a POST asking for one, and a GET whose Connection does not say upgrade. They
    // are ordinary requests, and their Upgrade field is hop-by-hop.
    for raw in [
        "POST /head HTTP/1.1\r\nHost: x\r\nConnection: upgrade, close\r\nUpgrade: websocket\r\nContent-Length: 0\r\n\r\n",
        "GET /head HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: close\r\n\r\n",
    ] {
        let head = forwarded_head(s.addr(), raw).await;
        assert_eq!(count_fields(&head, "upgrade"), 0, "{raw}\n->\n{head}");
    }
    // A real upgrade still is one.
    let mut ws = TcpStream::connect(s.addr()).await.unwrap();
    ws.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), ws.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got.starts_with(b"HTTP/1.1 101 "), "{}", String::from_utf8_lossy(&got));
}

/// Runs `tunnelkit ARGS`, which must exit within 10 s; returns (success, stderr).
async fn run_to_exit(args: &[&str]) -> (bool, String) {
    let (status, err) = support::run_to_exit(args, &[], Duration::from_secs(10)).await;
    (status.unwrap_or_else(|| panic!("tunnelkit {args:?} did not exit")).success(), err)
}

#[tokio::test]
async fn zero_or_absurd_durations_and_counts_are_refused_at_start() {
    let common = ["sticky", "--listen", "127.0.0.1:0", "--backend", "127.0.0.1:1"];
    for (flag, value, range) in [
        ("--check-interval", "0s", "10ms"),
        ("--check-timeout", "0s", "10ms"),
        ("--key-expiry", "0s", "1s"),
        ("--header-timeout", "0s", "10ms"),
        ("--backend-timeout", "0s", "10ms"),
        ("--idle-timeout", "0s", "10ms"),
        ("--check-interval", "1000years", "1h"),
        ("--max-connections", "0", "1000000"),
    ] {
        let (ok, err) = run_to_exit(&[&common[..], &[flag, value]].concat()).await;
        assert!(!ok, "{flag} {value} accepted: {err}");
        assert!(err.contains(flag) && err.contains(range), "{flag} {value}: {err}");
        assert!(!err.contains("panicked"), "{flag} {value}: {err}");
    }
    // The same checks apply to the config file's keys.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sticky.toml");
    std::fs::write(&file, "backends = [\"127.0.0.1:1\"]\ncheck_interval = \"0s\"\n").unwrap();
    let (ok, err) =
        run_to_exit(&["sticky", "--listen", "127.0.0.1:0", "--config", file.to_str().unwrap()]).await;
    assert!(!ok && err.contains("check_interval") && !err.contains("panicked"), "{err}");
}

#[tokio::test]
async fn a_redis_url_with_another_scheme_is_refused() {
    let (ok, err) = run_to_exit(&[
        "sticky",
        "--listen",
        "127.0.0.1:0",
        "--backend",
        "127.0.0.1:1",
        "--redis",
        "http://:pw@127.0.0.1:1",
    ])
    .await;
    assert!(!ok, "{err}");
    for part in ["--redis", "`http://`", "redis://", "rediss://"] {
        assert!(err.contains(part), "missing {part}: {err}");
    }
    assert!(!err.contains(":pw@"), "password shown: {err}");
}

fn node_dir() -> PathBuf {
    support::node_dir("sticky", "socket.io")
}

/// A real Socket.IO backend (tests/node/sticky/backend.js) on a port it picked, killed on drop.
struct NodeBackend {
    /// Held for `kill_on_drop`.
    _child: tokio::process::Child,
    addr: SocketAddr,
}

impl NodeBackend {
    async fn start(name: &str) -> NodeBackend {
        use tokio::io::AsyncBufReadExt;
        let mut child = tokio::process::Command::new("node")
            .current_dir(node_dir())
            .args(["backend.js", name, "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("node is installed");
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("backend started")
            .unwrap()
            .unwrap_or_default();
        let addr =
            line.trim().rsplit(' ').next().and_then(|a| a.parse().ok()).expect("backend prints its address");
        NodeBackend { _child: child, addr }
    }
}

/// One request on its own connection: (status, text of the whole answer).
async fn request(addr: SocketAddr, method: &str, target: &str, body: &str) -> (u16, String) {
    let raw = format!(
        "{method} {target} HTTP/1.1\r\nHost: app\r\nConnection: close\r\nContent-Type: text/plain;charset=UTF-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let (text, _) = exchange(addr, raw.as_bytes(), Duration::from_secs(40)).await;
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text)
}

async fn handshake(addr: SocketAddr) -> String {
    let (status, text) = request(addr, "GET", "/socket.io/?EIO=4&transport=polling", "").await;
    assert_eq!(status, 200, "{text}");
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    tunnelkit::sticky::engine::learn_sid("text/plain", body.as_bytes()).expect("an open packet").sid
}

/// The balancer's own "Session ID unknown" answers so far (its metric).
async fn own_400s(metrics: SocketAddr) -> f64 {
    let (status, text) = request(metrics, "GET", "/metrics", "").await;
    assert_eq!(status, 200, "{text}");
    text.lines()
        .find_map(|l| l.strip_prefix("tunnelkit_sticky_routing_errors_total{kind=\"session_unknown\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polls_in_flight_when_the_client_closes_are_answered_by_the_backend() {
    let backend = NodeBackend::start("A").await;
    // A loaded node may answer a health check late; that must not take it out of rotation here.
    let s = sticky(&[backend.addr], &["--metrics", "127.0.0.1:0", "--check-timeout", "30s"]);
    let (addr, metrics) = (s.addr(), s.addr_of("metrics"));
    let poll = |sid: &str| format!("/socket.io/?EIO=4&transport=polling&sid={sid}");

    // A poll that reaches the balancer just after the close was answered (the race at its worst,
    // made deterministic): the binding is still there for it, so the backend answers it.
    for _ in 0..5 {
        let sid = handshake(addr).await;
        let (status, text) = request(addr, "POST", &poll(&sid), "1").await;
        assert_eq!(status, 200, "{text}");
        request(addr, "GET", &poll(&sid), "").await;
    }
    assert_eq!(own_400s(metrics).await, 0.0, "the balancer answered a straggling poll itself");

    // 300 sessions, each closing while its poll is in flight (the poll sent first, the close at
    // once after it, as engine.io-client does on close()).
    let sessions = futures_util::future::join_all((0..300).map(|_| async move {
        let sid = handshake(addr).await;
        let p = poll(&sid);
        let polling = tokio::spawn(async move { request(addr, "GET", &p, "").await });
        tokio::time::sleep(Duration::from_millis(5)).await;
        let (closed, text) = request(addr, "POST", &poll(&sid), "1").await;
        assert_eq!(closed, 200, "{text}");
        polling.await.unwrap()
    }))
    .await;
    let answered_200 = sessions
        .iter()
        .filter(|(status, text)| *status == 200 && text.to_ascii_lowercase().contains("x-backend: a"))
        .count();
    eprintln!("{answered_200}/300 polls in flight at the close answered 200 by the backend");
    for (status, text) in &sessions {
        assert!(*status == 200 || *status == 400, "{text}");
    }
    assert_eq!(
        own_400s(metrics).await,
        0.0,
        "the balancer answered polls itself ({answered_200}/300 got 200)"
    );
    drop(backend);
}
