//! Helpers shared by the integration tests: the real binary as a child process, and small origins.
#![allow(dead_code)]

pub mod chaos;
pub mod haproxy;
pub mod load;
pub mod origin;
pub mod redis;
pub mod scripted;
pub mod socketio;
pub mod streams;
pub mod tls_origin;
pub mod tunnel_lib;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

/// The `tunnelkit` binary under test: the one cargo built, or `TUNNELKIT_BIN` (to show that a
/// regression test fails against an older binary).
pub fn bin() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        std::env::var("TUNNELKIT_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_tunnelkit").to_owned())
    })
}

/// A loopback port for a server that cannot bind port 0 and report what it got (redis-server,
/// tinyproxy). A port taken from `bind(0)` and released is in the kernel's ephemeral range, where
/// any outgoing connection of a parallel test can grab it before the server binds. These come
/// from below that range instead, from a sequence offset by the pid so test binaries differ.
pub fn reserve_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768);
    let (low, span) = (10_000u32, ephemeral_low.saturating_sub(10_000));
    if span >= 1_000 {
        for _ in 0..span {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let port = low + (std::process::id().wrapping_mul(97).wrapping_add(n)) % span;
            if std::net::TcpListener::bind(("127.0.0.1", port as u16)).is_ok() {
                return port as u16;
            }
        }
    }
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running `tunnelkit` child, killed on drop.
pub struct Proc {
    pub child: Child,
    /// Every `... listening on ADDR` line, in order, as (label, addr).
    pub listening: Vec<(String, SocketAddr)>,
    pub stderr: Arc<Mutex<String>>,
}

impl Proc {
    /// Starts `tunnelkit ARGS...` and waits until it printed `expect_listeners` listening lines.
    pub fn start(args: &[&str], expect_listeners: usize) -> Proc {
        Self::start_env(args, expect_listeners, &[])
    }

    /// Like [`Proc::start`] with extra environment variables.
    pub fn start_env(args: &[&str], expect_listeners: usize, env: &[(&str, &str)]) -> Proc {
        let mut cmd = Command::new(bin());
        cmd.args(args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        cmd.env("RUST_LOG", "warn");
        for (k, v) in env {
            cmd.env(k, v);
        }
        Self::spawn(cmd, expect_listeners)
    }

    /// Like [`Proc::start_env`] with `RUST_LOG` removed from the environment (the others set it to
    /// `warn`), for tests of what chooses the log filter when it is not set.
    pub fn start_without_rust_log(args: &[&str], expect_listeners: usize, env: &[(&str, &str)]) -> Proc {
        let mut cmd = Command::new(bin());
        cmd.args(args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        cmd.env_remove("RUST_LOG");
        for (k, v) in env {
            cmd.env(k, v);
        }
        Self::spawn(cmd, expect_listeners)
    }

    /// Spawns `cmd` (a `tunnelkit` invocation with stderr piped, perhaps through a shell or with
    /// descriptors set up in `pre_exec`) and waits until it printed `expect_listeners` listening lines.
    pub fn spawn(mut cmd: Command, expect_listeners: usize) -> Proc {
        let args: Vec<_> = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        let mut child = cmd.spawn().expect("spawn tunnelkit");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let log2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some((label, addr)) = line.split_once("listening on ") {
                    if let Ok(a) = addr.trim().parse::<SocketAddr>() {
                        let _ = tx.send((label.trim().to_owned(), a));
                    }
                }
                let mut l = log2.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let mut listening = Vec::new();
        while listening.len() < expect_listeners {
            match rx.recv_timeout(Duration::from_secs(20)) {
                Ok(x) => listening.push(x),
                Err(_) => {
                    let _ = child.kill();
                    panic!("tunnelkit {args:?} did not start; stderr:\n{}", log.lock().unwrap());
                }
            }
        }
        Proc { child, listening, stderr: log }
    }

    /// The first listening address.
    pub fn addr(&self) -> SocketAddr {
        self.listening[0].1
    }

    /// The address printed with `label` (e.g. `socks5`).
    pub fn addr_of(&self, label: &str) -> SocketAddr {
        self.listening.iter().find(|(l, _)| l == label).unwrap_or_else(|| panic!("no {label} listener")).1
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
    }

    /// Sends SIGHUP (a configuration reload).
    pub fn hup(&self) {
        // SAFETY: sends a signal to our own child.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGHUP);
        }
    }

    /// Waits until the log holds `needle` `times` times (a reload finished, say), at most 20 s.
    pub async fn wait_log(&self, needle: &str, times: usize) {
        for _ in 0..400 {
            if self.stderr.lock().unwrap().matches(needle).count() >= times {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no `{needle}` (x{times}) in the log:\n{}", self.stderr.lock().unwrap());
    }

    /// Waits for exit, at most `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let start = std::time::Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs curl with `args`, returning (exit ok, stdout, stderr). Bounded by `--max-time 20`.
pub async fn curl(args: &[&str]) -> (bool, Vec<u8>, String) {
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .await
        .expect("curl is installed (run ./test.sh)");
    (out.status.success(), out.stdout, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Runs curl with `args` and returns only the status code it printed (`000` when it got none).
pub async fn curl_status(args: &[&str]) -> String {
    let mut all = args.to_vec();
    all.extend_from_slice(&["-o", "/dev/null", "-w", "%{http_code}"]);
    String::from_utf8_lossy(&curl(&all).await.1).into_owned()
}

/// Starts `tunnelkit proxy` on a loopback port 0 that may reach loopback destinations on any port
/// (what tests of the proxy need), with `extra` flags; waits for its `listening on` line(s).
pub fn loopback_proxy(extra: &[&str]) -> Proc {
    let mut args =
        vec!["proxy", "--listen", "127.0.0.1:0", "--allow", "127.0.0.0/8", "--connect-ports", "1-65535"];
    args.extend_from_slice(extra);
    let listeners = 1 + ["--metrics", "--socks", "--inspect"].iter().filter(|f| extra.contains(f)).count();
    Proc::start(&args, listeners)
}

/// The proxy environment variables curl and tunnelkit read: removed where a test must not inherit
/// the user's proxy.
pub const PROXY_VARS: [&str; 8] = [
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
];

/// Runs `tunnelkit ARGS` to its exit, at most `limit`, with stdin closed, `RUST_LOG=warn`, no proxy
/// variables, and `env` on top; returns the exit status (`None`: still running at the limit, then
/// killed) and stderr.
pub async fn run_to_exit(
    args: &[&str],
    env: &[(&str, &str)],
    limit: Duration,
) -> (Option<std::process::ExitStatus>, String) {
    use tokio::io::AsyncReadExt;
    let mut cmd = tokio::process::Command::new(bin());
    cmd.args(args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).kill_on_drop(true);
    cmd.env("RUST_LOG", "warn");
    for var in [
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "no_proxy",
        "NO_PROXY",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn tunnelkit");
    let mut stderr = child.stderr.take().expect("piped");
    let read = tokio::spawn(async move {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s).await;
        s
    });
    let status = match tokio::time::timeout(limit, child.wait()).await {
        Ok(s) => s.ok(),
        Err(_) => {
            let _ = child.kill().await;
            None
        }
    };
    (status, read.await.unwrap_or_default())
}

/// `tests/node/NAME`, after checking that `./test.sh` installed its npm packages (`marker` is one of
/// them).
pub fn node_dir(name: &str, marker: &str) -> std::path::PathBuf {
    let d = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node").join(name);
    assert!(
        d.join("node_modules").join(marker).exists(),
        "npm packages missing in {}: run ./test.sh",
        d.display()
    );
    d
}

/// Runs `agent.js` of the `client` node package: `count` requests of `kind` (`http` or `socks`) to
/// `target` through `proxy`, trusting `ca`; returns its stdout (a JSON summary). Bounded by 60 s.
pub async fn run_node_agent(
    kind: &str,
    proxy: &str,
    target: &str,
    count: usize,
    ca: &std::path::Path,
) -> String {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new("node")
            .current_dir(node_dir("client", "https-proxy-agent"))
            .args(["agent.js", kind, proxy, target, &count.to_string(), ca.to_str().unwrap()])
            .output(),
    )
    .await
    .expect("node agent finished")
    .expect("node is installed");
    assert!(out.status.success(), "node agent failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Sends raw bytes to `addr` and reads until the peer closes (or 10 s pass).
pub async fn raw(addr: SocketAddr, req: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(req).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads from `s` until a blank line ends an HTTP head; `None` if the peer closed first.
pub async fn read_head<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    Some(head)
}
