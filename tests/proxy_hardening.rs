//! `tunnelkit proxy` off the happy path: origins that misbehave, clients that never read, limits,
//! parents that want credentials, and what the logs say. Each test failed before its fix.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::origin::{echo_server, Origin};
use support::scripted::{write, Scripted, Step};
use support::{curl, loopback_proxy, raw, Proc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn get(url: &str, host: SocketAddr, method: &str) -> Vec<u8> {
    format!("{method} {url} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").into_bytes()
}

/// An origin that sends a fake response 80 ms after a bodiless or length-delimited one: a second
/// client of the same origin within 120 ms must get its own answer, never the injected one.
#[tokio::test]
async fn pooled_connection_with_stray_bytes_is_never_reused() {
    for (first, method) in [
        ("HTTP/1.1 204 No Content\r\n\r\n", "GET"),
        ("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", "HEAD"),
        ("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", "GET"),
    ] {
        let origin = Scripted::start(move |req| {
            if req.target == "/first" {
                vec![
                    write(first),
                    Step::Sleep(Duration::from_millis(80)),
                    write("HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nINJECTED"),
                ]
            } else {
                vec![write("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nREAL")]
            }
        })
        .await;
        let p = loopback_proxy(&[]);
        let start = Instant::now();
        let mut a = TcpStream::connect(p.addr()).await.unwrap();
        let req = format!("{method} {} HTTP/1.1\r\nHost: {}\r\n\r\n", origin.url("/first"), origin.addr);
        a.write_all(req.as_bytes()).await.unwrap();
        let mut buf = [0u8; 1024];
        let n = a.read(&mut buf).await.unwrap();
        assert!(n > 0);
        tokio::time::sleep(Duration::from_millis(100).saturating_sub(start.elapsed())).await;
        let resp = raw(p.addr(), &get(&origin.url("/second"), origin.addr, "GET")).await;
        assert!(resp.ends_with("REAL"), "after `{}` + {method}: second client got {resp:?}", first.trim());
        assert!(!resp.contains("INJECTED"));
    }
}

/// 20 clients ask for 64 MiB and read nothing, filling `--max-connections 20`: after the 5 s idle
/// timeout their connections are gone and a new client is served.
#[tokio::test]
async fn clients_that_never_read_are_dropped_after_the_idle_timeout() {
    let big = 64usize << 20;
    let origin = Scripted::start(move |req| {
        if req.target == "/big" {
            let mut steps = vec![write(&format!("HTTP/1.1 200 OK\r\nContent-Length: {big}\r\n\r\n"))];
            steps.extend((0..64).map(|_| Step::Write(vec![b'x'; 1 << 20])));
            steps
        } else {
            vec![write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")]
        }
    })
    .await;
    let p = loopback_proxy(&[
        "--max-connections",
        "20",
        "--idle-timeout",
        "5s",
        "--upstream-timeout",
        "5s",
        "--tunnel-idle-timeout",
        "5s",
    ]);
    let mut stuck = Vec::new();
    for _ in 0..20 {
        let mut s = TcpStream::connect(p.addr()).await.unwrap();
        s.write_all(&get(&origin.url("/big"), origin.addr, "GET")).await.unwrap();
        stuck.push(s);
    }
    // Once the proxy has accepted all 20 (on a loaded machine that takes a moment), the limit is
    // reached and a new client is turned away. The probe is an in-process socket, not a curl
    // process, so that a loaded CI machine still probes well inside the 5 s the stuck clients live.
    let small = get(&origin.url("/small"), origin.addr, "GET");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = raw_within(p.addr(), &small, Duration::from_secs(2)).await;
        if answer.starts_with("HTTP/1.1 503") || answer.is_empty() {
            break;
        }
        assert!(answer.ends_with("ok"), "a probe below the limit got {answer:?}");
        assert!(Instant::now() < deadline, "20 clients that never read never filled --max-connections 20");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (ok, body, _) = curl(&["-x", &format!("http://{}", p.addr()), &origin.url("/small")]).await;
        if ok && body == b"ok" {
            break;
        }
        assert!(Instant::now() < deadline, "the stuck clients still hold every connection");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(stuck);
}

/// Sends `req` to `addr` and returns what came back before the peer closed or `wait` passed.
async fn raw_within(addr: SocketAddr, req: &[u8], wait: Duration) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let _ = s.write_all(req).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The SOCKS5 listener shares `--max-connections` with the HTTP listener.
#[tokio::test]
async fn socks_connections_count_against_max_connections() {
    let echo = echo_server().await;
    let p = loopback_proxy(&["--max-connections", "2", "--socks", "127.0.0.1:0"]);
    let socks = p.addr_of("socks5");
    let _held: Vec<TcpStream> =
        vec![TcpStream::connect(p.addr()).await.unwrap(), TcpStream::connect(p.addr()).await.unwrap()];
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut s = TcpStream::connect(socks).await.unwrap();
    let _ = s.write_all(&[5, 1, 0]).await;
    let mut buf = [0u8; 2];
    let got = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await.expect("closed at once");
    assert!(matches!(got, Ok(0) | Err(_)), "SOCKS handshake answered beyond the limit: {buf:?}");
    drop(_held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // With the HTTP connections gone, SOCKS works again.
    let mut s = TcpStream::connect(socks).await.unwrap();
    s.write_all(&[5, 1, 0]).await.unwrap();
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(buf, [5, 0]);
    let _ = echo;
}

/// Content transfer codings travel on; only `chunked` is per hop (RFC 9112 §6.1, §6.3).
#[tokio::test]
async fn transfer_codings_are_forwarded_intact() {
    let origin = Origin::start().await;
    let p = loopback_proxy(&[]);
    let req = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        origin.url("/head"),
        origin.addr
    );
    let resp = raw(p.addr(), req.as_bytes()).await;
    assert!(resp.contains("Transfer-Encoding: gzip, chunked"), "origin saw: {resp}");

    let scripted = Scripted::start(|req| match req.target.as_str() {
        "/gzip-chunked" => {
            vec![write("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")]
        }
        _ => vec![write("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nRAWGZ"), Step::Close],
    })
    .await;
    let resp = raw(p.addr(), &get(&scripted.url("/gzip-chunked"), scripted.addr, "GET")).await;
    assert!(resp.contains("Transfer-Encoding: gzip, chunked\r\n"), "{resp}");
    assert!(resp.ends_with("5\r\nhello\r\n0\r\n\r\n"), "{resp}");
    // A non-chunked final coding: close-delimited upstream, re-chunked for the client, gzip kept.
    let resp = raw(p.addr(), &get(&scripted.url("/gzip-close"), scripted.addr, "GET")).await;
    assert!(resp.contains("Transfer-Encoding: gzip, chunked\r\n"), "{resp}");
    assert!(resp.ends_with("5\r\nRAWGZ\r\n0\r\n\r\n"), "{resp}");
}

/// A bad chunk size gives a 502, an unsolicited 101 gives a 502, interim responses lose their
/// hop-by-hop fields.
#[tokio::test]
async fn broken_upstream_framing_gets_a_502_and_interim_answers_are_cleaned() {
    let origin = Scripted::start(|req| match req.target.as_str() {
        "/bad-chunk" => vec![write("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n")],
        "/bad-chunk-later" => vec![
            write("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Step::Sleep(Duration::from_millis(100)),
            write("-1\r\n"),
        ],
        "/unsolicited-101" => vec![write("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")],
        _ => vec![
            write("HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\nConnection: X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\n\r\n"),
            write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
        ],
    })
    .await;
    let p = loopback_proxy(&[]);
    for path in ["/bad-chunk", "/bad-chunk-later", "/unsolicited-101"] {
        let resp = raw(p.addr(), &get(&origin.url(path), origin.addr, "GET")).await;
        assert!(resp.starts_with("HTTP/1.1 502 "), "{path}: {resp:?}");
    }
    let resp = raw(p.addr(), &get(&origin.url("/hints"), origin.addr, "GET")).await;
    assert!(resp.starts_with("HTTP/1.1 103 Early Hints\r\n"), "{resp}");
    let interim = resp.split("\r\n\r\n").next().unwrap();
    assert!(interim.contains("Link: </a.css>"), "{interim}");
    for hop in ["X-Secret", "Keep-Alive", "Connection"] {
        assert!(!interim.contains(hop), "{hop} forwarded in {interim}");
    }
    assert!(resp.ends_with("ok"));
}

/// A parent that wants credentials the child lacks: the client learns that, in words.
#[tokio::test]
async fn parent_proxy_asking_for_credentials_is_named() {
    let echo = echo_server().await;
    let origin = Origin::start().await;
    let parent = loopback_proxy(&["--auth", "alice:secret"]);
    let upstream = format!("http://{}", parent.addr());
    let child = loopback_proxy(&["--upstream", &upstream]);
    let resp = raw(child.addr(), format!("CONNECT {echo} HTTP/1.1\r\nHost: {echo}\r\n\r\n").as_bytes()).await;
    assert!(resp.starts_with("HTTP/1.1 502 "), "{resp}");
    assert!(resp.contains("407") && resp.contains("--upstream"), "{resp}");
    assert!(!resp.contains("proxy_internal_error"), "{resp}");
    let resp = raw(child.addr(), &get(&origin.url("/1k"), origin.addr, "GET")).await;
    assert!(resp.starts_with("HTTP/1.1 502 ") && resp.contains("407"), "{resp}");
    // With the credentials in the parent's URL, both work.
    let upstream = format!("http://alice:secret@{}", parent.addr());
    let child = loopback_proxy(&["--upstream", &upstream]);
    let (ok, body, err) = curl(&["-x", &format!("http://{}", child.addr()), &origin.url("/1k")]).await;
    assert!(ok && body.len() == 1024, "{err}");
}

/// `RUST_LOG=tunnelkit::proxy=debug` shows each request's decisions, and `--log-format json` makes
/// every log line JSON.
#[tokio::test]
async fn debug_logs_show_decisions_and_json_format_works() {
    let origin = Origin::start().await;
    let args = ["proxy", "--listen", "127.0.0.1:0", "--allow", "127.0.0.0/8"];
    let p = Proc::start_env(&args, 1, &[("RUST_LOG", "tunnelkit::proxy=debug")]);
    let (ok, _, err) = curl(&["-x", &format!("http://{}", p.addr()), &origin.url("/1k")]).await;
    assert!(ok, "{err}");
    let (_, _, _) = curl(&["-x", &format!("http://{}", p.addr()), "http://10.0.0.1/"]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = p.stderr.lock().unwrap().clone();
    assert!(log.contains("sending upstream"), "{log}");
    assert!(log.contains("exchange finished") && log.contains("status=200"), "{log}");
    assert!(log.contains("not dialled") && log.contains("10.0.0.1"), "{log}");

    let mut json_args = args.to_vec();
    json_args.extend(["--log-format", "json"]);
    let p = Proc::start_env(&json_args, 1, &[("RUST_LOG", "tunnelkit::proxy=debug")]);
    let (ok, _, _) = curl(&["-x", &format!("http://{}", p.addr()), &origin.url("/1k")]).await;
    assert!(ok);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = p.stderr.lock().unwrap().clone();
    let json: Vec<&str> = log.lines().filter(|l| !l.contains("listening on")).collect();
    assert!(!json.is_empty(), "{log}");
    for line in json {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v.get("level").is_some(), "{line}");
    }
}

/// A closed stderr (`tunnelkit proxy 2>&1 | head -1`) must not break request handling.
#[tokio::test]
async fn a_closed_stderr_does_not_break_the_proxy() {
    use std::io::BufRead;
    let origin = Origin::start().await;
    let mut child = std::process::Command::new(support::bin())
        .args(["proxy", "--listen", "127.0.0.1:0", "--allow", "127.0.0.0/8"])
        .env("RUST_LOG", "debug")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    stderr.read_line(&mut first).unwrap();
    drop(stderr); // what `head -1` does after its line
    let addr: SocketAddr = first.trim().rsplit(' ').next().unwrap().parse().unwrap();
    for _ in 0..5 {
        let (ok, body, err) = curl(&["-x", &format!("http://{addr}"), &origin.url("/1k")]).await;
        assert!(ok && body.len() == 1024, "{err}");
    }
    assert!(child.try_wait().unwrap().is_none(), "the proxy died");
    // Shutting down logs too: it must still be a clean exit, not a panic.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit after SIGTERM with a closed stderr: {status}");
}

/// A second SIGTERM during the drain ends it at once instead of waiting `--shutdown-timeout`.
#[tokio::test]
async fn a_second_signal_ends_the_drain_at_once() {
    let echo = echo_server().await;
    let mut p = loopback_proxy(&["--shutdown-timeout", "60s"]);
    let mut tunnel = TcpStream::connect(p.addr()).await.unwrap();
    tunnel.write_all(format!("CONNECT {echo} HTTP/1.1\r\nHost: {echo}\r\n\r\n").as_bytes()).await.unwrap();
    let mut buf = [0u8; 64];
    let n = tunnel.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    p.terminate();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The open tunnel holds the drain: still running.
    assert!(p.child.try_wait().unwrap().is_none(), "exited although a tunnel was open");
    p.terminate();
    assert!(p.wait_exit(Duration::from_secs(5)).is_some(), "a second SIGTERM did not end the drain");
}

/// Error lines of the access log carry the status the client got and the time it took: a 504 after
/// the upstream timeout, a refused `Expect: 100-continue` with the origin's status, a 502 for a
/// broken chunk (not the origin's 200).
#[tokio::test]
async fn access_log_error_lines_carry_the_real_status_and_duration() {
    let origin = Scripted::start(|req| match req.target.as_str() {
        "/silent" => vec![Step::Sleep(Duration::from_secs(5))],
        "/expect" => vec![write("HTTP/1.1 417 Expectation Failed\r\nContent-Length: 0\r\n\r\n")],
        _ => vec![write("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")],
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let p = loopback_proxy(&["--access-log", log.to_str().unwrap(), "--upstream-timeout", "700ms"]);
    let resp = raw(p.addr(), &get(&origin.url("/silent"), origin.addr, "GET")).await;
    assert!(resp.starts_with("HTTP/1.1 504 "), "{resp}");
    let expect = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
        origin.url("/expect"),
        origin.addr
    );
    let resp = raw(p.addr(), expect.as_bytes()).await;
    assert!(resp.starts_with("HTTP/1.1 417 "), "{resp}");
    let resp = raw(p.addr(), &get(&origin.url("/bad-chunk"), origin.addr, "GET")).await;
    assert!(resp.starts_with("HTTP/1.1 502 "), "{resp}");

    let mut text = String::new();
    for _ in 0..200 {
        text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.lines().count() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let fields = |path: &str| -> Vec<String> {
        let line =
            text.lines().find(|l| l.contains(path)).unwrap_or_else(|| panic!("no line for {path}: {text}"));
        line.split(' ').map(str::to_owned).collect()
    };
    // TIMESTAMP CLIENT METHOD TARGET STATUS UP DOWN DURATION_MS [NOTE]
    let silent = fields("/silent");
    assert_eq!(silent[4], "504", "{text}");
    let ms: u64 = silent[7].parse().unwrap();
    assert!(ms >= 600, "a 504 after the 700 ms upstream timeout logged {ms} ms: {text}");
    let expect = fields("/expect");
    assert_eq!(expect[4], "417", "{text}");
    assert_eq!(expect.get(8).map(String::as_str), Some("expect_refused"), "{text}");
    assert_eq!(fields("/bad-chunk")[4], "502", "{text}");
}
