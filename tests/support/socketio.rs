//! Real Socket.IO 4 servers (`tests/node/sticky/backend.js`, npm `socket.io` with `allowEIO3`) as the
//! sticky balancer's backends, one node process each.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// The client setups every sticky suite runs: (transports offered, a socket.io 2 client (Engine.IO
/// v3) rather than 4, the transport the session must end on).
pub const TRANSPORT_CASES: [(&str, bool, &str); 6] = [
    ("polling", false, "polling"),
    ("polling,websocket", false, "websocket"),
    ("websocket", false, "websocket"),
    ("polling", true, "polling"),
    ("polling,websocket", true, "websocket"),
    ("websocket", true, "websocket"),
];

/// `tests/node/sticky`, with its npm packages installed.
pub fn node_dir() -> PathBuf {
    super::node_dir("sticky", "socket.io")
}

/// A Socket.IO backend process, killed on drop.
pub struct Backend {
    pub child: Child,
    pub port: u16,
}

impl Backend {
    /// A backend named `name` (it answers with its name) on a port of its own choosing.
    pub fn start(name: &str) -> Backend {
        Self::start_on(name, 0)
    }

    /// A backend on `port` (0: any), e.g. to bring one back where it was.
    pub fn start_on(name: &str, port: u16) -> Backend {
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

    /// `127.0.0.1:PORT`, as `--backend` takes it.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An Engine.IO v4 polling handshake through `url` (a balancer): the sid the client was given and
/// the backend that answered (its `X-Backend` header).
pub async fn handshake(url: &str) -> (String, String) {
    let (ok, out, err) = super::curl(&["-i", &format!("{url}/socket.io/?EIO=4&transport=polling")]).await;
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

/// Handshakes through `url` until one lands on `backend` (round robin gets there within `tries`);
/// returns that session's sid.
pub async fn session_on(url: &str, backend: &str, tries: usize) -> String {
    for _ in 0..tries {
        let (sid, b) = handshake(url).await;
        if b == backend {
            return sid;
        }
    }
    panic!("{tries} handshakes through {url} never reached backend {backend}");
}
