//! `tunnelkit connect`, `tunnelkit forward` and `proxy --upstream`, through tunnelkit's own proxy and
//! through tinyproxy (a third-party proxy from Debian), driven as processes.

mod support;

use std::process::Stdio;
use std::time::Duration;

use support::origin::{echo_server, Origin};
use support::{curl, curl_status, loopback_proxy, Proc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn tk_proxy(extra: &[&str]) -> Proc {
    let mut args =
        vec!["proxy", "--listen", "127.0.0.1:0", "--allow", "127.0.0.0/8", "--connect-ports", "1-65535"];
    args.extend_from_slice(extra);
    Proc::start(&args, 1)
}

/// Runs `tunnelkit connect ARGS` with `input` on stdin; returns (success, stdout, stderr).
async fn connect(args: &[&str], env: &[(&str, &str)], input: &[u8]) -> (bool, Vec<u8>, String) {
    let mut cmd = tokio::process::Command::new(support::bin());
    cmd.arg("connect").args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    for k in support::PROXY_VARS {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let (progress, mut seen) = tokio::sync::watch::channel(0usize);
    let reader = tokio::spawn(async move {
        let mut out = Vec::new();
        let mut buf = [0u8; 65536];
        while let Ok(n) = stdout.read(&mut buf).await {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
            let _ = progress.send(out.len());
        }
        out
    });
    let err_reader = tokio::spawn(async move {
        let mut err = String::new();
        let _ = stderr.read_to_string(&mut err).await;
        err
    });
    let _ = stdin.write_all(input).await;
    // Close stdin only once the echo is back (or the process ended): some proxies (tinyproxy) turn a
    // client's half-close into a full close and would drop the reply still in flight.
    let want = input.len();
    let _ = tokio::time::timeout(Duration::from_secs(10), seen.wait_for(|n| *n >= want)).await;
    drop(stdin);
    let status =
        tokio::time::timeout(Duration::from_secs(20), child.wait()).await.expect("connect exits").unwrap();
    let out = reader.await.unwrap();
    let err = err_reader.await.unwrap();
    (status.success(), out, err)
}

/// A tinyproxy on an ephemeral port allowing CONNECT to `connect_port`, optionally with Basic auth.
struct Tinyproxy {
    _proc: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        let _ = self._proc.kill();
        let _ = self._proc.wait();
    }
}

async fn tinyproxy(connect_port: u16, auth: Option<&str>) -> Tinyproxy {
    let dir = tempfile::tempdir().unwrap();
    let port = support::reserve_port();
    let mut conf = format!(
        "Port {port}\nListen 127.0.0.1\nTimeout 60\nAllow 127.0.0.1\nConnectPort {connect_port}\nLogLevel Critical\nPidFile \"{}/tp.pid\"\n",
        dir.path().display()
    );
    if let Some(a) = auth {
        let (u, p) = a.split_once(':').unwrap();
        conf.push_str(&format!("BasicAuth {u} {p}\n"));
    }
    let path = dir.path().join("tinyproxy.conf");
    std::fs::write(&path, conf).unwrap();
    let mut child = std::process::Command::new("tinyproxy")
        .args(["-d", "-c", path.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("tinyproxy is installed (run ./test.sh)");
    for _ in 0..200 {
        if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return Tinyproxy { _proc: child, port, _dir: dir };
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("tinyproxy did not start");
}

#[tokio::test]
async fn connect_through_http_and_socks_proxies_with_half_close() {
    let echo = echo_server().await;
    let p = loopback_proxy(&["--socks", "127.0.0.1:0"]);
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    let http = format!("http://{}", p.addr());
    let socks = format!("socks5h://{}", p.addr_of("socks5"));
    let socks_local = format!("socks5://{}", p.addr_of("socks5"));
    for proxy in [&http, &socks, &socks_local] {
        let (ok, out, err) = connect(&["--proxy", proxy, &echo.to_string()], &[], &data).await;
        assert!(ok, "{proxy}: {err}");
        assert!(out == data, "{proxy}: {} bytes back", out.len());
    }
    // Through tinyproxy too.
    let tp = tinyproxy(echo.port(), None).await;
    let (ok, out, err) =
        connect(&["--proxy", &format!("http://127.0.0.1:{}", tp.port), &echo.to_string()], &[], b"hi").await;
    assert!(ok && out == b"hi", "{err}");
}

#[tokio::test]
async fn connect_failure_names_the_proxy_status() {
    let echo = echo_server().await;
    let p = tk_proxy(&["--auth", "u:right"]);
    let (ok, _, err) =
        connect(&["--proxy", &format!("http://u:wrong@{}", p.addr()), &echo.to_string()], &[], b"").await;
    assert!(!ok);
    assert!(err.contains("407 Proxy Authentication Required"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one-line reason: {err}");
    let (ok, out, err) =
        connect(&["--proxy", &format!("http://u:right@{}", p.addr()), &echo.to_string()], &[], b"ok").await;
    assert!(ok && out == b"ok", "{err}");
    // Credentials are sent preemptively; tinyproxy accepts them.
    let tp = tinyproxy(echo.port(), Some("tu:tp")).await;
    let (ok, out, err) =
        connect(&["--proxy", &format!("http://tu:tp@127.0.0.1:{}", tp.port), &echo.to_string()], &[], b"x")
            .await;
    assert!(ok && out == b"x", "{err}");
    // Policy refusal by the proxy.
    let strict = Proc::start(&["proxy", "--listen", "127.0.0.1:0"], 1);
    let (ok, _, err) =
        connect(&["--proxy", &format!("http://{}", strict.addr()), &echo.to_string()], &[], b"").await;
    assert!(!ok && err.contains("403"), "{err}");
}

#[tokio::test]
async fn connect_follows_env_and_no_proxy() {
    let echo = echo_server().await;
    let p = tk_proxy(&[]);
    let via = format!("http://{}", p.addr());
    let (ok, out, err) = connect(&[&echo.to_string()], &[("HTTPS_PROXY", &via)], b"env").await;
    assert!(ok && out == b"env", "{err}");
    // A dead proxy in the env, but NO_PROXY sends us direct.
    let dead = "http://127.0.0.1:1";
    let (ok, _, _) = connect(&[&echo.to_string()], &[("https_proxy", dead)], b"x").await;
    assert!(!ok, "dead proxy must be used when NO_PROXY does not match");
    let (ok, out, err) =
        connect(&[&echo.to_string()], &[("https_proxy", dead), ("NO_PROXY", "127.0.0.0/8")], b"direct").await;
    assert!(ok && out == b"direct", "{err}");
}

#[tokio::test]
async fn forward_local_ports_through_the_proxy_with_prewarm() {
    let echo = echo_server().await;
    let origin = Origin::start().await;
    let p = tk_proxy(&["--access-log", "-"]);
    let f = Proc::start(
        &[
            "forward",
            "--proxy",
            &format!("http://{}", p.addr()),
            "-L",
            &format!("127.0.0.1:0:{echo}"),
            "-L",
            &format!("0:{}", origin.addr),
            "--prewarm",
            "2",
        ],
        2,
    );
    for _ in 0..3 {
        let mut s = TcpStream::connect(f.listening[0].1).await.unwrap();
        s.write_all(b"through the forward").await.unwrap();
        s.shutdown().await.unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await.unwrap().unwrap();
        assert_eq!(out, b"through the forward");
    }
    let url = format!("http://{}/1k", f.listening[1].1);
    let (ok, body, err) = curl(&[&url]).await;
    assert!(ok && body.len() == 1024, "{err}");
}

#[tokio::test]
async fn proxy_upstream_chains_connect_and_absolute_form() {
    let origin = Origin::start().await;
    let parent = tk_proxy(&["--auth", "up:stream", "--access-log", "-"]);
    let upstream = format!("http://up:stream@{}", parent.addr());
    // Our own policy still applies in front of the parent: loopback is refused unless allowed here.
    let strict = Proc::start(&["proxy", "--listen", "127.0.0.1:0", "--upstream", &upstream], 1);
    let strict_url = format!("http://{}", strict.addr());
    assert_eq!(curl_status(&["-x", &strict_url, &origin.url("/1k")]).await, "403");
    let code = curl_status(&["-p", "-x", &strict_url, &origin.url("/1k")]).await;
    assert!(code == "403" || code == "000", "CONNECT refused locally: {code}");
    let child = loopback_proxy(&["--upstream", &upstream]);
    let x = format!("http://{}", child.addr());
    // Absolute-form: twice, reusing the pooled connection to the parent.
    let (ok, body, err) = curl(&["-x", &x, &origin.url("/1k"), &origin.url("/1k")]).await;
    assert!(ok && body.len() == 2048, "{err}");
    assert_eq!(origin.connection_count(), 1);
    // CONNECT chained through the parent.
    let (ok, body, err) = curl(&["-p", "-x", &x, &origin.url("/1k")]).await;
    assert!(ok && body.len() == 1024, "{err}");
    // A SOCKS5 parent.
    let sparent = loopback_proxy(&["--socks", "127.0.0.1:0"]);
    let schild = Proc::start(
        &[
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--allow",
            "127.0.0.0/8",
            "--upstream",
            &format!("socks5h://{}", sparent.addr_of("socks5")),
        ],
        1,
    );
    let (ok, body, err) = curl(&["-x", &format!("http://{}", schild.addr()), &origin.url("/1k")]).await;
    assert!(ok && body.len() == 1024, "{err}");
    // tinyproxy as the parent.
    let tp = tinyproxy(origin.addr.port(), None).await;
    let tchild = loopback_proxy(&["--upstream", &format!("http://127.0.0.1:{}", tp.port)]);
    let (ok, body, err) = curl(&["-x", &format!("http://{}", tchild.addr()), &origin.url("/1k")]).await;
    assert!(ok && body.len() == 1024, "{err}");
    let (ok, body, err) = curl(&["-p", "-x", &format!("http://{}", tchild.addr()), &origin.url("/1k")]).await;
    assert!(ok && body.len() == 1024, "{err}");
}

/// SIGTERM: `forward` stops accepting, the open connection keeps flowing until it ends, then the
/// process exits 0; a second SIGTERM ends the wait at once. Multi-threaded: `wait_exit` blocks its
/// thread while the echo server (in this process) must keep serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_drains_open_connections_on_sigterm() {
    let echo = echo_server().await;
    let spec = format!("127.0.0.1:0:{echo}");
    let mut p = Proc::start(&["forward", "--direct", "-L", &spec, "--shutdown-timeout", "60s"], 1);
    let mut open = TcpStream::connect(p.addr()).await.unwrap();
    let mut buf = [0u8; 5];
    open.write_all(b"hello").await.unwrap();
    open.read_exact(&mut buf).await.unwrap();
    p.terminate();
    // The listener closes (new connections are refused) while the open one still echoes.
    let mut refused = false;
    for _ in 0..100 {
        if TcpStream::connect(p.addr()).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "still accepting after SIGTERM");
    open.write_all(b"again").await.unwrap();
    open.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"again");
    assert!(p.wait_exit(Duration::from_millis(300)).is_none(), "exited with a connection open");
    drop(open);
    let status = p.wait_exit(Duration::from_secs(10)).expect("exits once the connection ended");
    assert!(status.success(), "{status:?}");

    // A second signal does not wait for the 60 s deadline.
    let mut p = Proc::start(&["forward", "--direct", "-L", &spec, "--shutdown-timeout", "60s"], 1);
    let mut open = TcpStream::connect(p.addr()).await.unwrap();
    open.write_all(b"hello").await.unwrap();
    open.read_exact(&mut buf).await.unwrap();
    p.terminate();
    tokio::time::sleep(Duration::from_millis(300)).await;
    p.terminate();
    let status = p.wait_exit(Duration::from_secs(10)).expect("a second SIGTERM ends the drain");
    assert!(status.success(), "{status:?}");
    drop(open);
}
