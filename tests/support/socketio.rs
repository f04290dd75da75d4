//! Real Socket.IO 4 servers (`tests/node/sticky/backend.js`, npm `socket.io` with `allowEIO3`) as the
//! sticky balancer's backends, one node process each.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

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
