//! `tunnelkit sticky --config FILE` reloads its backends on SIGHUP, with real Socket.IO servers and
//! clients under node: an added backend takes new sessions; a removed one is drained like a dead one
//! (its sessions get Engine.IO's fast 400, its WebSocket clients are moved, it takes no new session);
//! clients on the other backends see nothing.

mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use support::socketio::{handshake, node_dir, session_on, Backend};
use support::{curl, Proc};
use tokio::io::AsyncBufReadExt;

fn config_text(backends: &[&Backend]) -> String {
    let list: Vec<String> = backends.iter().map(|b| format!("\"{}\"", b.addr())).collect();
    format!(
        "listen = \"127.0.0.1:0\"\nbackends = [{}]\nbalance = \"round-robin\"\ncheck_interval = \"200ms\"\ncheck_timeout = \"200ms\"\n",
        list.join(", ")
    )
}

/// `reconnect.js`: a Socket.IO client over WebSocket that reconnects, one JSON line per event.
struct Client {
    _child: tokio::process::Child,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

impl Client {
    fn start(url: &str) -> Client {
        let mut child = tokio::process::Command::new("node")
            .current_dir(node_dir())
            .args(["reconnect.js", url, "websocket"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("node is installed");
        let lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        Client { _child: child, lines }
    }

    /// The next event, or `None` if none came within `limit`.
    async fn next(&mut self, limit: Duration) -> Option<serde_json::Value> {
        let line = tokio::time::timeout(limit, self.lines.next_line()).await.ok()?.unwrap()?;
        Some(serde_json::from_str(&line).unwrap())
    }
}

/// Polls session `sid` through `url`: (HTTP status, body, backend that answered if any).
async fn poll(url: &str, sid: &str) -> (String, String) {
    let poll = format!("{url}/socket.io/?EIO=4&transport=polling&sid={sid}");
    let (_, out, _) = curl(&["-s", "-i", "-X", "POST", "-d", "40", &poll]).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.split(' ').nth(1).unwrap_or("").to_owned();
    (status, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_adds_a_backend_for_new_sessions_and_drains_a_removed_one() {
    let (a, b, c) = (Backend::start("A"), Backend::start("B"), Backend::start("C"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sticky.toml");
    std::fs::write(&file, config_text(&[&a, &b])).unwrap();
    let s = Proc::start_env(
        &[
            "sticky",
            "--config",
            file.to_str().unwrap(),
            "--pid-file",
            dir.path().join("s.pid").to_str().unwrap(),
        ],
        1,
        &[("RUST_LOG", "warn,tunnelkit::reload=info")],
    );
    let url = format!("http://{}", s.addr());

    // WebSocket clients on A and on B, and a polling session on each.
    let (mut on_a, mut on_b) = (None, None);
    for _ in 0..8 {
        let mut client = Client::start(&url);
        let first = client.next(Duration::from_secs(20)).await.expect("client connects");
        assert_eq!(first["event"], "connect", "{first}");
        match first["backend"].as_str() {
            Some("A") if on_a.is_none() => on_a = Some(client),
            Some("B") if on_b.is_none() => on_b = Some(client),
            _ => {}
        }
        if on_a.is_some() && on_b.is_some() {
            break;
        }
    }
    let (mut on_a, mut on_b) = (on_a.expect("a client on A"), on_b.expect("a client on B"));
    let sid_a = session_on(&url, "A", 6).await;
    let sid_b = session_on(&url, "B", 6).await;

    std::fs::write(&file, config_text(&[&b, &c])).unwrap();
    s.hup();
    s.wait_log("config reloaded (generation 2)", 1).await;

    // A's polling session: Engine.IO's 400 at once, as for a dead backend.
    let (status, text) = poll(&url, &sid_a).await;
    assert_eq!(status, "400", "{text}");
    assert!(text.contains(r#"{"code":1,"message":"Session ID unknown"}"#), "{text}");
    // A's WebSocket client is told and reconnects elsewhere.
    let lost = on_a.next(Duration::from_secs(10)).await.expect("A's client is told");
    assert_eq!(lost["event"], "disconnect", "{lost}");
    let again = on_a.next(Duration::from_secs(10)).await.expect("A's client reconnects");
    assert_eq!(again["event"], "connect", "{again}");
    assert_ne!(again["backend"], "A", "{again}");
    // B's sessions see nothing.
    let (status, text) = poll(&url, &sid_b).await;
    assert_eq!(status, "200", "{text}");
    assert!(text.to_ascii_lowercase().contains("x-backend: b"), "{text}");
    assert!(on_b.next(Duration::from_secs(1)).await.is_none(), "B's client saw the reload");

    // New sessions go to B and the added C, never to A.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..6 {
        seen.insert(handshake(&url).await.1);
    }
    assert!(!seen.contains("A") && seen.contains("C"), "{seen:?}");

    // An invalid file: the error names the key, generation 2 stays in force.
    std::fs::write(&file, "backends = [\"no-port-here\"]\n").unwrap();
    s.hup();
    s.wait_log("config reload failed", 1).await;
    let log = s.stderr.lock().unwrap().clone();
    assert!(log.contains("backend") && log.contains("keeping generation 2"), "{log}");
    let (status, text) = poll(&url, &sid_b).await;
    assert_eq!(status, "200", "{text}");
    assert!(Path::new(&dir.path().join("s.pid")).exists());
}
