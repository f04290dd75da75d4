//! Real `redis-server` processes on loopback ports (a node, a replica, a cluster node or a sentinel),
//! killed on drop.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A redis-server process.
pub struct Redis {
    pub child: Child,
    pub port: u16,
}

impl Redis {
    /// Starts `redis-server ARGS` and waits until `port` accepts connections.
    pub async fn start(port: u16, args: &[String]) -> Redis {
        let mut child = Command::new("redis-server")
            .args(args)
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
        panic!("redis-server {args:?} did not start");
    }

    /// A plain node without persistence on `port` (0: a reserved one), its files in `dir` if
    /// given, with `extra` arguments.
    pub async fn node(port: u16, dir: Option<&Path>, extra: &[&str]) -> Redis {
        let port = if port == 0 { super::reserve_port() } else { port };
        let mut args: Vec<String> =
            ["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
                .iter()
                .map(|s| s.to_string())
                .collect();
        if let Some(dir) = dir {
            args.extend(["--dir".to_owned(), dir.display().to_string()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        Redis::start(port, &args).await
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// One command, answered.
    pub async fn query(&self, args: &[&str]) -> redis::Value {
        let client = redis::Client::open(self.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query_async(&mut conn).await.unwrap()
    }

    /// SIGKILL: the node dies without a word to its replicas or clients.
    pub fn kill(&mut self) {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
