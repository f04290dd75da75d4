//! The command line off the happy path: bad values and bad files are refused at start with the flag
//! or key and the fix, never a panic; `connect` behaves as ssh's ProxyCommand needs; `forward` does
//! not bypass the proxy silently. Each test failed before its fix.

mod support;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{bin, loopback_proxy, run_to_exit, Proc};

/// ssh options for a test: never prompt, trust a new host key, remember nothing.
const SSH_NON_INTERACTIVE: [&str; 6] =
    ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"];

/// Every subcommand, given bad values or bad files, exits with an error that names what is wrong
/// and never panics.
#[tokio::test]
async fn bad_values_and_files_are_refused_without_panics() {
    let dir = tempfile::tempdir().unwrap();
    let bad_toml = dir.path().join("bad.toml");
    std::fs::write(&bad_toml, "listen = [\n").unwrap();
    let unknown_key = dir.path().join("unknown.toml");
    std::fs::write(&unknown_key, "listen_port = 1\n").unwrap();
    let bad_listen = dir.path().join("listen.toml");
    std::fs::write(&bad_listen, "listen = \"nowhere\"\n").unwrap();
    let missing = dir.path().join("missing");
    let (bad, unknown, listen, missing) = (
        bad_toml.to_str().unwrap(),
        unknown_key.to_str().unwrap(),
        bad_listen.to_str().unwrap(),
        missing.to_str().unwrap(),
    );
    // Servers get a port-0 listen address where the case is not about it: a refusal must never
    // depend on the default port being free.
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["proxy", "--listen", "0", "--idle-timeout", "0s"], "--idle-timeout"),
        (vec!["proxy", "--dial-timeout", "0s"], "--dial-timeout"),
        (vec!["proxy", "--header-timeout", "0s"], "--header-timeout"),
        (vec!["proxy", "--tunnel-idle-timeout", "100y"], "--tunnel-idle-timeout"),
        (vec!["proxy", "--workers", "100000"], "--workers"),
        (vec!["proxy", "--max-connections", "0"], "--max-connections"),
        (vec!["proxy", "--listen", ":3128"], "IP:PORT"),
        (vec!["proxy", "--listen", "nowhere:3128"], "IP:PORT"),
        (vec!["proxy", "--users", missing], "users file"),
        (vec!["proxy", "--config", bad], "bad.toml"),
        (vec!["proxy", "--config", unknown], "listen_port"),
        (vec!["proxy", "--config", listen], "IP:PORT"),
        (vec!["proxy", "--config", missing], "missing"),
        (vec!["proxy", "--listen", "127.0.0.1:0", "--upstream", "ftp://x:1"], "--upstream"),
        (vec!["connect", "nohostport"], "HOST:PORT"),
        (vec!["forward", "-L", "8443"], "PORT:HOST:PORT"),
        (vec!["forward", "-L", "127.0.0.1:0:127.0.0.1:9"], "no proxy configured"),
        (vec!["sticky", "--backend", "127.0.0.1:1", "--check-interval", "0s"], "--check-interval"),
        (vec!["sticky", "--backend", "127.0.0.1:1", "--check-timeout", "0s"], "--check-timeout"),
        (vec!["sticky", "--backend", "127.0.0.1:1", "--config", bad], "bad.toml"),
        (vec!["ws-server", "--listen", "127.0.0.1:0", "--heartbeat", "0s"], "--heartbeat"),
        (vec!["ws-server", "--listen", "127.0.0.1:0", "--workers", "100000"], "--workers"),
        (vec!["ws-client", "ws://127.0.0.1:1/tunnel", "-L", "8443"], "PORT:HOST:PORT"),
        (vec!["ws-server", "--listen", "127.0.0.1:0", "--shutdown-timeout", "2d"], "--shutdown-timeout"),
        (vec!["ws-client", "ws://127.0.0.1:1/tunnel", "--shutdown-timeout", "soon"], "--shutdown-timeout"),
    ];
    let mut failures = Vec::new();
    for (args, expect) in &cases {
        let (status, err) = run_to_exit(args, &[], Duration::from_secs(20)).await;
        let ok = status.is_some_and(|s| s.success());
        if err.contains("panicked") {
            failures.push(format!("{args:?} panicked:\n{err}"));
        } else if ok {
            failures.push(format!("{args:?} exited 0:\n{err}"));
        } else if !err.contains(expect) {
            failures.push(format!("{args:?}: stderr does not name `{expect}`:\n{err}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// `--listen PORT` and `--listen localhost:PORT` mean 127.0.0.1:PORT.
#[test]
fn listen_accepts_a_bare_port_and_localhost() {
    for form in ["0", "localhost:0"] {
        let p = Proc::start(&["proxy", "--listen", form], 1);
        assert!(p.addr().ip().is_loopback(), "{form}: {}", p.addr());
    }
}

/// `forward` without a proxy refuses to go direct unless `--direct` says so.
#[tokio::test]
async fn forward_needs_a_proxy_or_direct() {
    let (status, err) =
        run_to_exit(&["forward", "-L", "127.0.0.1:0:127.0.0.1:9"], &[], Duration::from_secs(20)).await;
    assert!(
        status.is_some_and(|s| !s.success())
            && err.contains("no proxy configured")
            && err.contains("--proxy"),
        "{err}"
    );
    let p = Proc::start(&["forward", "--direct", "-L", "127.0.0.1:0:127.0.0.1:9"], 1);
    assert!(p.addr().ip().is_loopback());
    assert!(!p.stderr.lock().unwrap().contains("not loopback"));
    // A forward other machines can reach says so.
    let p = Proc::start(&["forward", "--direct", "-L", "0.0.0.0:0:127.0.0.1:9"], 1);
    let start = Instant::now();
    while !p.stderr.lock().unwrap().contains("not loopback") {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "no exposure warning: {}",
            p.stderr.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A server that sends a banner and closes, like an sshd refusing a client.
fn banner_server() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            let _ = s.write_all(b"SSH-2.0-test banner\r\n");
            // Closing here is what must end `tunnelkit connect`.
        }
    });
    addr
}

/// As ssh's ProxyCommand, `connect` exits and closes stdout as soon as the remote side ends, while
/// its stdin is still open (ssh keeps it open).
#[test]
fn connect_exits_when_the_remote_side_closes() {
    let remote = banner_server();
    let p = loopback_proxy(&[]);
    let mut child = Command::new(bin())
        .args(["connect", "--proxy", &format!("http://{}", p.addr()), &remote.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _stdin = child.stdin.take().unwrap(); // held open, as ssh does
    let mut stdout = child.stdout.take().unwrap();
    let start = Instant::now();
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = stdout.read_to_end(&mut out);
        out
    });
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if start.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.is_some(), "connect still running 10 s after the remote closed");
    assert_eq!(reader.join().unwrap(), b"SSH-2.0-test banner\r\n");
}

/// A real ssh client with `ProxyCommand='tunnelkit connect …'` against a server that closes: ssh
/// must end with an error instead of hanging. Skipped when ssh is not installed.
#[test]
fn ssh_proxycommand_ends_when_the_server_closes() {
    if Command::new("ssh").arg("-V").output().is_err() {
        eprintln!("ssh not installed: skipped");
        return;
    }
    let remote = banner_server();
    let p = loopback_proxy(&[]);
    let proxy_command = format!("{} connect --proxy http://{} %h:%p", bin(), p.addr());
    let mut child = Command::new("ssh")
        .args(["-o", &format!("ProxyCommand={proxy_command}")])
        .args(SSH_NON_INTERACTIVE)
        .args(["-p", &remote.port().to_string(), "nobody@127.0.0.1", "true"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(15) {
            let _ = child.kill();
            panic!("ssh hung after the server closed");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The example files under `examples/` load as they are (a flag overrides the listen address so the
/// test does not depend on the default ports being free).
#[test]
fn example_configs_load() {
    let dir = env!("CARGO_MANIFEST_DIR");
    let proxy = format!("{dir}/examples/proxy.toml");
    let users = format!("{dir}/examples/users.txt");
    let p = Proc::start(&["proxy", "--config", &proxy, "--users", &users, "--listen", "127.0.0.1:0"], 1);
    assert!(p.addr().ip().is_loopback());
    let sticky = format!("{dir}/examples/sticky.toml");
    let s = Proc::start(&["sticky", "--config", &sticky, "--listen", "127.0.0.1:0"], 1);
    assert!(s.addr().ip().is_loopback());
    let ws_server = format!("{dir}/examples/ws-server.toml");
    let w = Proc::start(&["ws-server", "--config", &ws_server, "--listen", "127.0.0.1:0"], 1);
    assert!(w.addr().ip().is_loopback());
}

/// `tunnelkit completions SHELL` prints a completion script.
#[test]
fn completions_are_printed() {
    let out = Command::new(bin()).args(["completions", "bash"]).output().unwrap();
    assert!(out.status.success());
    let script = String::from_utf8_lossy(&out.stdout);
    assert!(script.contains("tunnelkit") && script.contains("ws-server"), "{script}");
}

/// A real `sshd` on a loopback port, reached by a real `ssh` through `tunnelkit proxy` with
/// `ProxyCommand='tunnelkit connect …'`: ssh logs in, runs a command and exits. Skipped when
/// openssh-server is not installed or we are not root (sshd needs root to switch users).
#[test]
fn ssh_logs_in_through_connect_and_exits() {
    let sshd = "/usr/sbin/sshd";
    if !std::path::Path::new(sshd).exists() || unsafe { libc::geteuid() } != 0 {
        eprintln!("no {sshd} or not root: skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (name, kind) in [("host_key", "ed25519"), ("user_key", "ed25519")] {
        let ok = Command::new("ssh-keygen")
            .args(["-q", "-t", kind, "-N", "", "-f"])
            .arg(d.join(name))
            .status()
            .unwrap()
            .success();
        assert!(ok, "ssh-keygen failed");
    }
    std::fs::copy(d.join("user_key.pub"), d.join("authorized_keys")).unwrap();
    // sshd refuses to start without its privilege-separation directory.
    let _ = std::fs::create_dir_all("/run/sshd");
    let port = support::reserve_port();
    let config = format!(
        "Port {port}\nListenAddress 127.0.0.1\nHostKey {hk}\nAuthorizedKeysFile {ak}\nPidFile {pid}\n\
         StrictModes no\nUsePAM no\nPermitRootLogin yes\nPasswordAuthentication no\n",
        hk = d.join("host_key").display(),
        ak = d.join("authorized_keys").display(),
        pid = d.join("sshd.pid").display(),
    );
    std::fs::write(d.join("sshd_config"), config).unwrap();
    let mut server = Command::new(sshd)
        .args(["-D", "-e", "-f"])
        .arg(d.join("sshd_config"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait for sshd to listen.
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(10), "sshd did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let p = loopback_proxy(&[]);
    let proxy_command = format!("{} connect --proxy http://{} %h:%p", bin(), p.addr());
    // ssh itself is retried when it fails to connect (exit 255: sshd still settling its first
    // connection); every attempt must still log in through `connect` and exit.
    let mut failures = Vec::new();
    for _ in 0..3 {
        let mut child = Command::new("ssh")
            .args(["-o", &format!("ProxyCommand={proxy_command}")])
            .args(SSH_NON_INTERACTIVE)
            .arg("-i")
            .arg(d.join("user_key"))
            .args(["-p", &port.to_string(), "root@127.0.0.1", "echo logged-in"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (mut stdout, mut stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
        let reader = std::thread::spawn(move || {
            let (mut out, mut err) = (String::new(), String::new());
            let _ = stdout.read_to_string(&mut out);
            let _ = stderr.read_to_string(&mut err);
            (out, err)
        });
        let start = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if start.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                let _ = server.kill();
                panic!("ssh through tunnelkit connect did not exit");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let (out, err) = reader.join().unwrap();
        if status.success() {
            let _ = server.kill();
            let _ = server.wait();
            assert_eq!(out.trim(), "logged-in");
            return;
        }
        failures.push(format!("{status}: {err}"));
        std::thread::sleep(Duration::from_millis(300));
    }
    let _ = server.kill();
    let _ = server.wait();
    panic!("ssh failed three times:\n{}", failures.join("\n"));
}
