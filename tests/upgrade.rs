//! Zero-downtime upgrade with the real binary: a running server hands its listening sockets to a
//! new process (`--upgrade-socket PATH` + `--upgrade`) under steady load, and a server started by
//! systemd socket activation (`LISTEN_FDS`) serves on the listener it inherits.

mod support;

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::load::{connect_loop, echo_round, get_loop, long_tunnel, Tally};
use support::origin::{echo_server, Origin};
use support::streams::pattern;
use support::Proc;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::watch;

/// The handover's own lines (`upgrade: took N listeners from pid P`) besides warnings.
const LOG: (&str, &str) = ("RUST_LOG", "warn,tunnelkit::upgrade=info");

fn proxy(socket: &Path, extra: &[&str]) -> Proc {
    let mut args = vec!["proxy", "--listen", "127.0.0.1:0", "--allow", "127.0.0.0/8", "--connect-ports"];
    args.extend_from_slice(&["1-65535", "--upgrade-socket", socket.to_str().unwrap()]);
    args.extend_from_slice(extra);
    let listeners = 1 + ["--socks", "--metrics"].iter().filter(|f| extra.contains(f)).count();
    Proc::start_env(&args, listeners, &[LOG])
}

/// Every flag of the proxy under load: all three listeners on port 0, matched by role.
const LOADED: [&str; 6] = ["--socks", "127.0.0.1:0", "--metrics", "127.0.0.1:0", "--shutdown-timeout", "30s"];

fn log_of(p: &Proc) -> String {
    p.stderr.lock().unwrap().clone()
}

/// Starts the successor of the process serving `socket` and waits until it listens where `old` did.
fn upgrade(socket: &Path, old: &Proc, extra: &[&str]) -> Proc {
    let mut args = vec!["--upgrade"];
    args.extend_from_slice(extra);
    let new = proxy(socket, &args);
    assert_eq!(new.listening, old.listening, "the successor listens where its predecessor did");
    new
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn steady_load_across_two_upgrades_fails_nothing_and_long_tunnels_finish_intact() {
    let origin = Origin::start().await;
    let echo = echo_server().await;
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("upgrade.sock");
    let mut old = proxy(&socket, &LOADED);
    let addr = old.addr();

    let (resume, resumed) = watch::channel(false);
    let long: Vec<_> =
        (0..2).map(|i| tokio::spawn(long_tunnel(addr, echo, 32 << 20, 100 + i, resumed.clone()))).collect();
    let (stop, tally) = (Arc::new(AtomicBool::new(false)), Arc::new(Tally::default()));
    let mut load = Vec::new();
    for per_connection in [1, 5, 50, 1000] {
        load.push(tokio::spawn(get_loop(addr, origin.addr, per_connection, stop.clone(), tally.clone())));
    }
    for _ in 0..2 {
        load.push(tokio::spawn(connect_loop(addr, echo, stop.clone(), tally.clone())));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = tally.ok.load(Ordering::Relaxed);

    let mut new = tokio::task::block_in_place(|| upgrade(&socket, &old, &LOADED));
    // The long tunnels are the old process's to finish: it drains them before it exits.
    tokio::time::sleep(Duration::from_millis(500)).await;
    resume.send(true).unwrap();
    for t in long {
        t.await.unwrap().expect("a tunnel opened before the upgrade finishes intact");
    }
    let status = tokio::task::block_in_place(|| old.wait_exit(Duration::from_secs(20)));
    assert!(
        status.is_some_and(|s| s.success()),
        "the old process exits after its drain: {status:?}\n{}",
        log_of(&old)
    );
    assert!(
        log_of(&old).contains(&format!("upgrade: handed 3 listeners to pid {}", new.child.id())),
        "{}",
        log_of(&old)
    );
    assert!(
        log_of(&new).contains(&format!("upgrade: took 3 listeners from pid {}", old.child.id())),
        "{}",
        log_of(&new)
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let during = tally.ok.load(Ordering::Relaxed);

    // And again: the new process serves the upgrade socket in its turn.
    let mut newer = tokio::task::block_in_place(|| upgrade(&socket, &new, &LOADED));
    let status = tokio::task::block_in_place(|| new.wait_exit(Duration::from_secs(20)));
    assert!(
        status.is_some_and(|s| s.success()),
        "the second process exits after its drain: {status:?}\n{}",
        log_of(&new)
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.await.unwrap();
    }
    let failures = tally.failures.lock().unwrap().clone();
    assert_eq!(tally.refused.load(Ordering::Relaxed), 0, "connections refused: {failures:?}");
    assert!(
        failures.is_empty(),
        "{} failed requests: {:?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
    let after = tally.ok.load(Ordering::Relaxed);
    let retried = tally.retried.load(Ordering::Relaxed);
    eprintln!("{after} requests answered ({before} before the first upgrade, {during} by 2 s after it), {retried} retried on a new connection after a keep-alive close");
    assert!(
        before > 0 && during > before && after > during,
        "load ran throughout: {before} {during} {after}"
    );
    assert!(newer.child.try_wait().unwrap().is_none(), "the newest process still serves");
    let socks = format!("socks5h://{}", newer.addr_of("socks5"));
    let (ok, body, err) = support::curl(&["-x", &socks, &origin.url("/1k")]).await;
    assert!(ok && body.len() == 1024, "SOCKS5 through the handed-over listener: {err}");
    let (ok, body, err) = support::curl(&[&format!("http://{}/metrics", newer.addr_of("metrics"))]).await;
    assert!(ok && String::from_utf8_lossy(&body).contains("tunnelkit_"), "metrics: {err}");
    newer.terminate();
    tokio::task::block_in_place(|| newer.wait_exit(Duration::from_secs(20)));
    assert!(!socket.exists(), "the last process removes its upgrade socket on exit");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_successor_with_another_listen_address_is_refused_and_the_running_one_keeps_serving() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("upgrade.sock");
    let old = proxy(&socket, &[]);
    let other = format!("127.0.0.1:{}", support::reserve_port());
    let args = ["proxy", "--listen", &other, "--upgrade-socket", socket.to_str().unwrap(), "--upgrade"];
    let (status, stderr) = support::run_to_exit(&args, &[], Duration::from_secs(20)).await;
    assert!(status.is_some_and(|s| !s.success()), "{stderr}");
    assert!(
        stderr.contains(&format!("--listen {other}: the listen listener from pid {}", old.child.id())),
        "{stderr}"
    );
    let proxy_url = format!("http://{}", old.addr());
    let code = support::curl_status(&["-x", &proxy_url, &origin.url("/1k")]).await;
    assert_eq!(code, "200", "the running process still serves");
    let mut logged = false;
    for _ in 0..100 {
        logged = log_of(&old).contains("closed before it was ready (see its log); still serving");
        if logged {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(logged, "the running process says why it still serves:\n{}", log_of(&old));
    // And it can still be upgraded: the failed attempt changed nothing.
    let new = tokio::task::block_in_place(|| proxy(&socket, &["--upgrade"]));
    assert_eq!(new.addr(), old.addr());
}

#[tokio::test(flavor = "multi_thread")]
async fn upgrade_errors_name_the_flag_and_do_not_hang() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("upgrade.sock");
    let path = socket.to_str().unwrap();
    let base = ["proxy", "--listen", "127.0.0.1:0", "--upgrade-socket", path];
    let limit = Duration::from_secs(20);

    let (status, stderr) = support::run_to_exit(&[&base[..], &["--upgrade"][..]].concat(), &[], limit).await;
    assert!(status.is_some_and(|s| !s.success()), "{stderr}");
    assert!(
        stderr.contains(&format!("--upgrade: no running tunnelkit serves {path} (--upgrade-socket)")),
        "{stderr}"
    );

    let (status, stderr) = support::run_to_exit(&["proxy", "--upgrade"], &[], limit).await;
    assert!(status.is_some_and(|s| !s.success()) && stderr.contains("--upgrade-socket"), "{stderr}");

    // A socket file left by a crash (nothing listens on it) is replaced; a live one is not.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    let running = tokio::task::block_in_place(|| proxy(&socket, &[]));
    let (status, stderr) = support::run_to_exit(&base, &[], limit).await;
    assert!(status.is_some_and(|s| !s.success()), "{stderr}");
    assert!(
        stderr.contains(&format!("another process serves upgrades on {path} (--upgrade-socket)")),
        "{stderr}"
    );
    drop(running);
}

#[tokio::test(flavor = "multi_thread")]
async fn ws_server_hands_over_and_a_tunnel_stream_open_across_it_finishes() {
    let echo = echo_server().await;
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("upgrade.sock");
    let start = |extra: &[&str]| {
        let mut args = vec!["ws-server", "--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0"];
        args.extend_from_slice(&["--allow", "127.0.0.0/8", "--upgrade-socket", socket.to_str().unwrap()]);
        args.extend_from_slice(extra);
        Proc::start_env(&args, 2, &[LOG])
    };
    let mut old = tokio::task::block_in_place(|| start(&[]));
    let url = format!("ws://{}/tunnel", old.addr());
    let forward = format!("127.0.0.1:0:{echo}");
    let client = tokio::task::block_in_place(|| Proc::start(&["ws-client", &url, "-L", &forward], 1));
    let mut stream = TcpStream::connect(client.addr()).await.unwrap();
    echo_round(&mut stream, &pattern(256 << 10, 1)).await.expect("a stream before the upgrade");

    let new = tokio::task::block_in_place(|| start(&["--upgrade"]));
    assert_eq!(new.listening, old.listening, "the successor listens where its predecessor did");
    // The old process drains: the stream opened before goes on until it ends.
    echo_round(&mut stream, &pattern(256 << 10, 2)).await.expect("the stream opened before the upgrade");
    drop(stream);
    let status = tokio::task::block_in_place(|| old.wait_exit(Duration::from_secs(20)));
    assert!(status.is_some_and(|s| s.success()), "{status:?}\n{}", log_of(&old));
    assert!(log_of(&old).contains("upgrade: handed 2 listeners"), "{}", log_of(&old));
    // The client's next tunnel is to the successor, on the same address.
    let mut last = String::new();
    for _ in 0..40 {
        match TcpStream::connect(client.addr()).await {
            Ok(mut s) => match echo_round(&mut s, &pattern(64 << 10, 3)).await {
                Ok(()) => return,
                Err(e) => last = e,
            },
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("no stream through the successor: {last}\nclient:\n{}", log_of(&client));
}

/// A stand-in Socket.IO backend: 400 under `/socket.io/` (what the health check expects of a live
/// Engine.IO server asked about an unknown session), `hello` anywhere else.
async fn backend() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                while let Some(head) = support::read_head(&mut s).await {
                    let answer: &[u8] = if head.starts_with(b"GET /socket.io/") {
                        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"
                    } else {
                        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
                    };
                    if s.write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread")]
async fn sticky_hands_over_and_answers_across_it() {
    let b = backend().await.to_string();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("upgrade.sock");
    let start = |extra: &[&str]| {
        let mut args =
            vec!["sticky", "--listen", "127.0.0.1:0", "--backend", &b, "--check-interval", "100ms"];
        args.extend_from_slice(&["--upgrade-socket", socket.to_str().unwrap()]);
        args.extend_from_slice(extra);
        Proc::start_env(&args, 1, &[LOG])
    };
    let hello = |p: &Proc| format!("http://{}/hello", p.addr());
    let mut old = tokio::task::block_in_place(|| start(&[]));
    let mut answered = false;
    for _ in 0..50 {
        if support::curl(&[&hello(&old)]).await.1 == b"hello" {
            answered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(answered, "the balancer forwards once its backend is up:\n{}", log_of(&old));
    let new = tokio::task::block_in_place(|| start(&["--upgrade"]));
    assert_eq!(new.addr(), old.addr());
    // Whichever process takes a connection, it is answered: the old one until it stops accepting.
    for _ in 0..20 {
        let (ok, body, err) = support::curl(&[&hello(&new)]).await;
        assert!(ok && (body == b"hello" || body.starts_with(b"no healthy backend")), "{err}");
    }
    let status = tokio::task::block_in_place(|| old.wait_exit(Duration::from_secs(20)));
    assert!(status.is_some_and(|s| s.success()), "{status:?}\n{}", log_of(&old));
}

#[test]
fn a_listener_inherited_by_socket_activation_is_served_without_binding() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let fd = listener.as_raw_fd();
    // LISTEN_PID must be the server's own pid: the shell's `$$`, which `exec` keeps.
    let script = r#"LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=listen exec "$0" "$@""#;
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        script,
        support::bin(),
        "proxy",
        "--listen",
        &addr.to_string(),
        "--allow",
        "127.0.0.0/8",
    ]);
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).env("RUST_LOG", "warn");
    // SAFETY: dup2 and fcntl are async-signal-safe; they put the listener at descriptor 3 (without
    // close-on-exec) in the child only.
    unsafe {
        cmd.pre_exec(move || {
            // dup2 onto itself would keep close-on-exec: clear it instead.
            let r = if fd == 3 { libc::fcntl(3, libc::F_SETFD, 0) } else { libc::dup2(fd, 3) };
            match r {
                -1 => Err(std::io::Error::last_os_error()),
                _ => Ok(()),
            }
        });
    }
    // Our own copy stays open: binding the address again would fail, so serving proves inheritance.
    let p = Proc::spawn(cmd, 1);
    assert_eq!(p.addr(), addr);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let origin = Origin::start().await;
        let code = support::curl_status(&["-x", &format!("http://{addr}"), &origin.url("/1k")]).await;
        assert_eq!(code, "200");
    });
    drop(listener);
}
