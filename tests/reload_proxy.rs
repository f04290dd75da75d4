//! `tunnelkit proxy --config FILE` reloads on SIGHUP (or `tunnelkit reload --pid-file FILE`): users
//! and allow/deny ranges change while requests flow and none of them fails; a removed user's open
//! tunnel is closed after `reload_grace`; an invalid file is logged with its key and the old
//! configuration stays in force.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::origin::{echo_server, Origin};
use support::Proc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tunnelkit::policy::Credentials;

const LIMIT: Duration = Duration::from_secs(20);

/// The proxy's file: alice always, bob and a deny of 127.0.0.2 when `with_bob`.
fn config_text(with_bob: bool, grace: &str) -> String {
    let mut t = format!(
        "listen = \"127.0.0.1:0\"\nallow = [\"127.0.0.0/8\"]\nconnect_ports = \"1-65535\"\nreload_grace = \"{grace}\"\n"
    );
    if with_bob {
        t.push_str("auth = [\"alice:s3cret\", \"bob:hunter2\"]\ndeny = [\"127.0.0.2/32\"]\n");
    } else {
        t.push_str("auth = [\"alice:s3cret\"]\n");
    }
    t
}

/// Starts the proxy on `file` with a pid file beside it; info logs on, for the reload lines.
fn start_proxy(file: &Path) -> (Proc, PathBuf) {
    let pid = file.with_extension("pid");
    let p = Proc::start_env(
        &["proxy", "--config", file.to_str().unwrap(), "--pid-file", pid.to_str().unwrap()],
        1,
        &[("RUST_LOG", "warn,tunnelkit::reload=info")],
    );
    (p, pid)
}

fn auth(user: &str) -> String {
    Credentials::parse_pair(user).unwrap().to_basic_header()
}

/// One absolute-form GET through the proxy on a fresh connection: the status, 0 if none came.
async fn get(proxy: SocketAddr, url: &str, user: &str) -> u16 {
    let Ok(mut s) = TcpStream::connect(proxy).await else { return 0 };
    let host = url.trim_start_matches("http://").split('/').next().unwrap_or("");
    let req = format!(
        "GET {url} HTTP/1.1\r\nHost: {host}\r\nProxy-Authorization: {}\r\nConnection: close\r\n\r\n",
        auth(user)
    );
    if s.write_all(req.as_bytes()).await.is_err() {
        return 0;
    }
    let mut out = Vec::new();
    let _ = tokio::time::timeout(LIMIT, s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out);
    text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

/// Opens a CONNECT tunnel as `user`; the stream once `200` came back.
async fn connect(proxy: SocketAddr, target: SocketAddr, user: &str) -> Option<TcpStream> {
    let mut s = TcpStream::connect(proxy).await.ok()?;
    let req =
        format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nProxy-Authorization: {}\r\n\r\n", auth(user));
    s.write_all(req.as_bytes()).await.ok()?;
    let head = tokio::time::timeout(LIMIT, support::read_head(&mut s)).await.ok()??;
    head.starts_with(b"HTTP/1.1 200").then_some(s)
}

/// Sends `data` through an echo tunnel and checks it comes back whole.
async fn echo_round(s: &mut TcpStream, data: &[u8]) -> bool {
    if s.write_all(data).await.is_err() {
        return false;
    }
    let mut back = vec![0u8; data.len()];
    matches!(tokio::time::timeout(LIMIT, s.read_exact(&mut back)).await, Ok(Ok(_))) && back == data
}

/// An origin on 127.0.0.2 (a range the reloaded config denies every other time): `200 ok`.
async fn origin_on_127_0_0_2() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.2:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let _ = support::read_head(&mut s).await;
                let _ =
                    s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok").await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_reloads_under_load_fail_no_request_and_each_takes_effect_at_once() {
    let origin = Origin::start().await;
    let echo = echo_server().await;
    let second = origin_on_127_0_0_2().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("proxy.toml");
    std::fs::write(&file, config_text(false, "10s")).unwrap();
    let (p, pid_file) = start_proxy(&file);
    let proxy = p.addr();

    // Steady load from alice, who every configuration keeps: GETs and CONNECTs from six clients,
    // and one tunnel that stays open across all reloads.
    let stop = Arc::new(AtomicBool::new(false));
    let (done, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut clients = Vec::new();
    for i in 0..6 {
        let (stop, done, failed, url) = (stop.clone(), done.clone(), failed.clone(), origin.url("/1k"));
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let ok = if i % 2 == 0 {
                    get(proxy, &url, "alice:s3cret").await == 200
                } else {
                    match connect(proxy, echo, "alice:s3cret").await {
                        Some(mut s) => echo_round(&mut s, &[i as u8; 4096]).await,
                        None => false,
                    }
                };
                let counter = if ok { &done } else { &failed };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let mut long_tunnel = connect(proxy, echo, "alice:s3cret").await.expect("alice's tunnel");

    for n in 1..=20usize {
        let with_bob = n % 2 == 1;
        std::fs::write(&file, config_text(with_bob, "10s")).unwrap();
        if n % 4 == 0 {
            let out = std::process::Command::new(support::bin())
                .args(["reload", "--pid-file", pid_file.to_str().unwrap()])
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        } else {
            p.hup();
        }
        p.wait_log(&format!("config reloaded (generation {})", n + 1), 1).await;
        let (bob, denied) = (
            get(proxy, &origin.url("/1k"), "bob:hunter2").await,
            get(proxy, &format!("http://{second}/"), "alice:s3cret").await,
        );
        if with_bob {
            assert_eq!((bob, denied), (200, 403), "reload {n}: bob added, 127.0.0.2 denied");
        } else {
            assert_eq!((bob, denied), (407, 200), "reload {n}: bob removed, 127.0.0.2 allowed");
        }
        assert!(echo_round(&mut long_tunnel, format!("after reload {n}").as_bytes()).await, "reload {n}");
        // Let the load run a while under each configuration.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        tokio::time::timeout(LIMIT, c).await.expect("clients stop").unwrap();
    }
    let (done, failed) = (done.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert_eq!(failed, 0, "{failed} of {} requests failed", done + failed);
    assert!(done > 100, "the load ran: {done} requests");
    eprintln!("{done} requests through 20 reloads, none failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_users_open_tunnel_is_closed_after_the_grace_and_others_keep_theirs() {
    let echo = echo_server().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("proxy.toml");
    std::fs::write(&file, config_text(true, "1s")).unwrap();
    let (p, _pid) = start_proxy(&file);
    let mut bob = connect(p.addr(), echo, "bob:hunter2").await.expect("bob's tunnel");
    let mut alice = connect(p.addr(), echo, "alice:s3cret").await.expect("alice's tunnel");
    assert!(echo_round(&mut bob, b"before").await);

    std::fs::write(&file, config_text(false, "1s")).unwrap();
    p.hup();
    p.wait_log("config reloaded (generation 2)", 1).await;
    // Within the grace the tunnel still carries bytes; after it, it is closed.
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(LIMIT, bob.read_to_end(&mut rest)).await;
    assert!(matches!(closed, Ok(Ok(_)) | Ok(Err(_))), "bob's tunnel was not closed");
    assert!(echo_round(&mut alice, b"alice keeps hers").await);
    assert_eq!(get(p.addr(), "http://127.0.0.1:9/", "bob:hunter2").await, 407);
}

/// The Prometheus text of the proxy's `--metrics` listener.
async fn scrape(addr: SocketAddr) -> String {
    let (ok, out, err) = support::curl(&[&format!("http://{addr}/metrics")]).await;
    assert!(ok, "{err}");
    String::from_utf8_lossy(&out).into_owned()
}

/// Waits until `path` has a line containing `needle`.
async fn wait_file(path: &Path, needle: &str) {
    for _ in 0..400 {
        if std::fs::read_to_string(path).unwrap_or_default().contains(needle) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no `{needle}` in {}", path.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_reopens_the_access_log_for_rotation_and_counts_itself_in_metrics() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (file, log) = (dir.path().join("proxy.toml"), dir.path().join("access.log"));
    let text = format!("{}access_log = \"{}\"\n", config_text(false, "10s"), log.display());
    std::fs::write(&file, &text).unwrap();
    let p = Proc::start_env(
        &["proxy", "--config", file.to_str().unwrap(), "--metrics", "127.0.0.1:0"],
        2,
        &[("RUST_LOG", "warn,tunnelkit::reload=info")],
    );
    let metrics = p.addr_of("metrics");
    // The origin answers paths it does not serve with 404: enough to leave a line in the log.
    assert_eq!(get(p.addr(), &origin.url("/before-rotation"), "alice:s3cret").await, 404);
    wait_file(&log, "/before-rotation").await;

    // Rotation: the file is moved away, the reload opens a new one at the configured path.
    let rotated = dir.path().join("access.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    p.hup();
    p.wait_log("config reloaded (generation 2)", 1).await;
    assert_eq!(get(p.addr(), &origin.url("/after-rotation"), "alice:s3cret").await, 404);
    wait_file(&log, "/after-rotation").await;
    assert!(!std::fs::read_to_string(&rotated).unwrap().contains("/after-rotation"));

    std::fs::write(&file, "allow = [\"not a range\"]\n").unwrap();
    p.hup();
    p.wait_log("config reload failed", 1).await;
    let text = scrape(metrics).await;
    for series in [
        r#"tunnelkit_reloads_total{server="proxy",result="ok"} 1"#,
        r#"tunnelkit_reloads_total{server="proxy",result="error"} 1"#,
        r#"tunnelkit_config_generation{server="proxy"} 2"#,
    ] {
        assert!(text.lines().any(|l| l == series), "no `{series}` in:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_file_is_logged_with_its_key_and_the_old_configuration_stays() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("proxy.toml");
    std::fs::write(&file, config_text(true, "10s")).unwrap();
    let (p, pid_file) = start_proxy(&file);
    let mut broken = config_text(false, "10s");
    broken.push_str("deny = [\"10.0.0.0/33\"]\n");
    std::fs::write(&file, &broken).unwrap();
    p.hup();
    p.wait_log("config reload failed", 1).await;
    let log = p.stderr.lock().unwrap().clone();
    let line = log.lines().find(|l| l.contains("config reload failed")).unwrap();
    assert!(
        line.contains("proxy.toml") && line.contains("deny") && line.contains("keeping generation 1"),
        "{line}"
    );
    // Generation 1 is still in force: bob (whom the broken file drops) still gets through.
    assert_eq!(get(p.addr(), &origin.url("/1k"), "bob:hunter2").await, 200);
    assert_eq!(get(p.addr(), &origin.url("/1k"), "alice:s3cret").await, 200);

    // Fixed, the next reload applies it as generation 2.
    std::fs::write(&file, config_text(false, "10s")).unwrap();
    p.hup();
    p.wait_log("config reloaded (generation 2)", 1).await;
    assert_eq!(get(p.addr(), &origin.url("/1k"), "bob:hunter2").await, 407);

    // `tunnelkit reload` explains a missing pid file instead of failing silently.
    drop(p);
    let out = std::process::Command::new(support::bin())
        .args(["reload", "--pid-file", pid_file.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--pid-file"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_raises_max_connections_lets_the_next_client_in() {
    let echo = echo_server().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("proxy.toml");
    std::fs::write(&file, format!("{}max_connections = 1\n", config_text(false, "10s"))).unwrap();
    let (p, _pid) = start_proxy(&file);
    let mut first = connect(p.addr(), echo, "alice:s3cret").await.expect("the one connection");
    // The budget is taken: the next client is answered 503.
    let mut second = TcpStream::connect(p.addr()).await.unwrap();
    let mut refused = String::new();
    let _ = tokio::time::timeout(LIMIT, second.read_to_string(&mut refused)).await;
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");

    std::fs::write(&file, format!("{}max_connections = 3\n", config_text(false, "10s"))).unwrap();
    p.hup();
    p.wait_log("config reloaded (generation 2)", 1).await;
    let mut third = connect(p.addr(), echo, "alice:s3cret").await.expect("room after the reload");
    assert!(echo_round(&mut third, b"let in").await);
    assert!(echo_round(&mut first, b"the first one is untouched").await);
}

/// A SOCKS5 CONNECT to `target` as `user:pass`; the stream once the proxy answered success.
async fn socks_connect(socks: SocketAddr, target: SocketAddr, user: &str, pass: &str) -> Option<TcpStream> {
    let mut s = TcpStream::connect(socks).await.ok()?;
    s.write_all(&[5, 1, 2]).await.ok()?;
    let mut choice = [0u8; 2];
    s.read_exact(&mut choice).await.ok()?;
    let mut auth = vec![1, user.len() as u8];
    auth.extend_from_slice(user.as_bytes());
    auth.push(pass.len() as u8);
    auth.extend_from_slice(pass.as_bytes());
    s.write_all(&auth).await.ok()?;
    let mut status = [0u8; 2];
    s.read_exact(&mut status).await.ok()?;
    let std::net::IpAddr::V4(ip) = target.ip() else { return None };
    let mut req = vec![5, 1, 0, 1];
    req.extend_from_slice(&ip.octets());
    req.extend_from_slice(&target.port().to_be_bytes());
    s.write_all(&req).await.ok()?;
    let mut reply = [0u8; 10];
    s.read_exact(&mut reply).await.ok()?;
    (status == [1, 0] && reply[1] == 0).then_some(s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_users_socks5_tunnel_is_closed_after_the_grace_too() {
    let echo = echo_server().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("proxy.toml");
    let with_socks = |bob| format!("{}socks = \"127.0.0.1:0\"\n", config_text(bob, "1s"));
    std::fs::write(&file, with_socks(true)).unwrap();
    let p = Proc::start_env(
        &["proxy", "--config", file.to_str().unwrap()],
        2,
        &[("RUST_LOG", "warn,tunnelkit::reload=info")],
    );
    let socks = p.addr_of("socks5");
    let mut bob = socks_connect(socks, echo, "bob", "hunter2").await.expect("bob's SOCKS tunnel");
    let mut alice = socks_connect(socks, echo, "alice", "s3cret").await.expect("alice's SOCKS tunnel");
    assert!(echo_round(&mut bob, b"before").await);
    std::fs::write(&file, with_socks(false)).unwrap();
    p.hup();
    p.wait_log("config reloaded (generation 2)", 1).await;
    let mut rest = Vec::new();
    assert!(
        tokio::time::timeout(LIMIT, bob.read_to_end(&mut rest)).await.is_ok(),
        "bob's tunnel stayed open"
    );
    assert!(echo_round(&mut alice, b"alice keeps hers").await);
    assert!(socks_connect(socks, echo, "bob", "hunter2").await.is_none(), "bob got a new SOCKS tunnel");
}
