//! A real HAProxy (Debian's package) in TCP mode on a reserved loopback port, balancing round-robin
//! over the given servers; killed on drop. Failed connects are retried on the next server
//! (`option redispatch`), as a production front end is configured.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A haproxy process.
pub struct Haproxy {
    child: Child,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    /// Starts haproxy in front of `servers`.
    pub async fn round_robin(servers: &[SocketAddr]) -> Haproxy {
        let port = super::reserve_port();
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = format!(
            "global\n  maxconn 2000\n\
             defaults\n  mode tcp\n  retries 3\n  option redispatch\n  timeout connect 2s\n  \
             timeout client 120s\n  timeout server 120s\n\
             frontend tunnels\n  bind 127.0.0.1:{port}\n  default_backend servers\n\
             backend servers\n  balance roundrobin\n"
        );
        for (i, s) in servers.iter().enumerate() {
            cfg.push_str(&format!("  server s{i} {s}\n"));
        }
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, cfg).unwrap();
        let mut child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("haproxy is installed (run ./test.sh)");
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return Haproxy { child, addr, _dir: dir };
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("haproxy did not start on {addr}");
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
