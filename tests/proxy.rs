//! `tunnelkit proxy` driven as a user would: the real binary, curl, raw sockets, in-test origins.

mod support;

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use support::origin::{echo_server, Origin};
use support::{curl, curl_status, loopback_proxy, raw, Proc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LOOPBACK: &[&str] = &["--allow", "127.0.0.0/8", "--connect-ports", "1-65535"];

fn proxy(extra: &[&str]) -> Proc {
    let mut args = vec!["proxy", "--listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    // `--metrics` prints a second `metrics listening on` line after the main one.
    Proc::start(&args, 1 + usize::from(extra.contains(&"--metrics")))
}

fn proxy_url(p: &Proc) -> String {
    format!("http://{}", p.addr())
}

fn status(resp: &str) -> u16 {
    resp.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0)
}

#[tokio::test]
async fn absolute_form_get_and_keep_alive_pool() {
    let origin = Origin::start().await;
    // One worker: each worker keeps its own pooled connections (they are registered with its
    // reactor), so only connections served by the same worker share them.
    let p = proxy(&[LOOPBACK, &["--workers", "1"]].concat());
    let (ok, body, err) =
        curl(&["-x", &proxy_url(&p), &origin.url("/1k"), &origin.url("/1k"), &origin.url("/1k")]).await;
    assert!(ok, "{err}");
    assert_eq!(body.len(), 3 * 1024);
    // Three requests on one client connection reuse one pooled upstream connection.
    assert_eq!(origin.connection_count(), 1);
    // A second client connection (on the same worker) also reuses the pooled upstream connection.
    let (ok, body, _) = curl(&["-x", &proxy_url(&p), &origin.url("/1k")]).await;
    assert!(ok && body.len() == 1024);
    assert_eq!(origin.connection_count(), 1);
}

#[tokio::test]
async fn chunked_close_delimited_and_bodiless_responses_arrive_whole() {
    let origin = Origin::start().await;
    let p = proxy(LOOPBACK);
    let x = proxy_url(&p);
    let (ok, body, _) = curl(&["-x", &x, &origin.url("/chunked")]).await;
    assert!(ok);
    assert_eq!(body, b"hello world");
    let (ok, body, _) = curl(&["-x", &x, &origin.url("/close")]).await;
    assert!(ok);
    assert_eq!(body, b"until the end");
    // HTTP/1.0 client: close-delimited, and chunked is decoded for it.
    let (ok, body, _) = curl(&["-0", "-x", &x, &origin.url("/close")]).await;
    assert!(ok);
    assert_eq!(body, b"until the end");
    let (ok, body, _) = curl(&["-0", "-x", &x, &origin.url("/chunked")]).await;
    assert!(ok);
    assert_eq!(body, b"hello world");
    // Raw: a close-delimited response is re-framed as chunked for an HTTP/1.1 client.
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        origin.url("/close"),
        origin.addr
    );
    let resp = raw(p.addr(), req.as_bytes()).await;
    assert!(resp.contains("Transfer-Encoding: chunked"), "{resp}");
    assert!(resp.ends_with("d\r\nuntil the end\r\n0\r\n\r\n"), "{resp}");
    // HEAD, 204, 304 carry no body.
    let (ok, out, _) = curl(&["-I", "-x", &x, &origin.url("/anything")]).await;
    assert!(ok && String::from_utf8_lossy(&out).contains("Content-Length: 1234"));
    let (ok, out, _) =
        curl(&["-i", "-x", &x, &origin.url("/204"), &origin.url("/304"), &origin.url("/1k")]).await;
    assert!(ok);
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.contains("204 No Content")
            && text.contains("304 Not Modified")
            && text.ends_with(&"x".repeat(1024))
    );
}

#[tokio::test]
async fn request_bodies_stream_with_and_without_expect() {
    let origin = Origin::start().await;
    let p = proxy(LOOPBACK);
    let x = proxy_url(&p);
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("body");
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::File::create(&f).unwrap().write_all(&data).unwrap();
    let at = format!("@{}", f.display());
    for extra in [
        &["-H", "Expect: 100-continue"][..],
        &["-H", "Expect:"][..],
        &["-H", "Transfer-Encoding: chunked"][..],
    ] {
        let mut args = vec!["-x", x.as_str(), "--data-binary", at.as_str()];
        args.extend_from_slice(extra);
        let url = origin.url("/echo");
        args.push(&url);
        let (ok, body, err) = curl(&args).await;
        assert!(ok, "{extra:?}: {err}");
        assert!(body == data, "{extra:?}: body differs ({} bytes)", body.len());
    }
}

#[tokio::test]
async fn connect_tunnel_keeps_pipelined_bytes_and_half_close() {
    let echo = echo_server().await;
    let p = proxy(LOOPBACK);
    let mut s = TcpStream::connect(p.addr()).await.unwrap();
    // CONNECT head and the first tunnel bytes in one write.
    s.write_all(format!("CONNECT {echo} HTTP/1.1\r\nHost: {echo}\r\n\r\nearly bytes").as_bytes())
        .await
        .unwrap();
    s.shutdown().await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out)).await.unwrap().unwrap();
    assert_eq!(out, "HTTP/1.1 200 Connection established\r\n\r\nearly bytes");
    // curl through the tunnel (-p) to an HTTP origin.
    let origin = Origin::start().await;
    let (ok, body, err) = curl(&["-p", "-x", &proxy_url(&p), &origin.url("/1k")]).await;
    assert!(ok, "{err}");
    assert_eq!(body.len(), 1024);
}

#[tokio::test]
async fn dial_failures_map_to_502_and_504() {
    let p = proxy(&["--allow", "127.0.0.0/8", "--connect-ports", "1-65535", "--dial-timeout", "500ms"]);
    // Nothing listens here (and, being below the ephemeral range, nothing will meanwhile).
    let closed = SocketAddr::from(([127, 0, 0, 1], support::reserve_port()));
    let resp = raw(p.addr(), format!("CONNECT {closed} HTTP/1.1\r\nHost: {closed}\r\n\r\n").as_bytes()).await;
    assert_eq!(status(&resp), 502, "{resp}");
    assert!(resp.contains("Proxy-Status: tunnelkit; error=connection_refused"), "{resp}");
    let resp =
        raw(p.addr(), format!("GET http://{closed}/ HTTP/1.1\r\nHost: {closed}\r\n\r\n").as_bytes()).await;
    assert_eq!(status(&resp), 502, "{resp}");
    // A listener whose backlog is full drops SYNs, so connecting hangs until the dial timeout.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into()).unwrap();
    sock.listen(0).unwrap();
    let full: SocketAddr = sock.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(Ok(s)) = tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(full)).await {
            fillers.push(s);
        }
    }
    let resp = raw(p.addr(), format!("CONNECT {full} HTTP/1.1\r\nHost: {full}\r\n\r\n").as_bytes()).await;
    assert_eq!(status(&resp), 504, "{resp}");
}

#[tokio::test]
async fn websocket_upgrade_and_refused_upgrade() {
    let origin = Origin::start().await;
    let p = proxy(LOOPBACK);
    let mut s = TcpStream::connect(p.addr()).await.unwrap();
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: x\r\n\r\nping",
        origin.url("/ws"),
        origin.addr
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&got).ends_with("hiping") {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 101 "), "{text}");
    assert!(text.contains("Upgrade: websocket"), "{text}");
    s.write_all(b" more").await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await.unwrap().unwrap();
    assert_eq!(&buf[..n], b" more");

    // The origin refuses the upgrade: an ordinary response, and the proxy stays healthy.
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nGET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        origin.url("/ws-refuse"),
        origin.addr,
        origin.url("/1k"),
        origin.addr
    );
    let resp = raw(p.addr(), req.as_bytes()).await;
    assert!(resp.starts_with("HTTP/1.1 502 Bad Gateway"), "{resp}");
    assert!(resp.contains("nope") && resp.ends_with(&"x".repeat(1024)), "{resp}");
    // An origin that resets instead of answering.
    let (ok, _, _) = curl(&[
        "-x",
        &proxy_url(&p),
        "-H",
        "Connection: Upgrade",
        "-H",
        "Upgrade: websocket",
        &origin.url("/reset"),
    ])
    .await;
    let _ = ok;
    let (ok, body, _) = curl(&["-x", &proxy_url(&p), &origin.url("/1k")]).await;
    assert!(ok && body.len() == 1024);
}

#[tokio::test]
async fn hop_by_hop_fields_are_removed_and_via_added() {
    let origin = Origin::start().await;
    let p = proxy(&["--allow", "127.0.0.0/8", "--auth", "u:p"]);
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nProxy-Authorization: Basic dTpw\r\nConnection: keep-alive, X-Drop-Me\r\nX-Drop-Me: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nTrailer: X-T\r\nUpgrade: h2c\r\nProxy-Connection: keep-alive\r\nX-Keep: yes\r\n\r\n",
        origin.url("/head"),
        origin.addr
    );
    let mut s = TcpStream::connect(p.addr()).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 8192];
    let mut got = Vec::new();
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await.unwrap().unwrap();
        got.extend_from_slice(&buf[..n]);
        if n == 0 || String::from_utf8_lossy(&got).contains("\r\n\r\nGET ") && got.ends_with(b"\r\n\r\n") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&got).to_ascii_lowercase();
    let forwarded = text.split("\r\n\r\n").nth(1).unwrap();
    assert!(forwarded.starts_with("get /head http/1.1\r\n"), "{forwarded}");
    for gone in [
        "proxy-authorization",
        "x-drop-me",
        "keep-alive",
        "\r\nte:",
        "trailer",
        "upgrade",
        "proxy-connection",
        "connection:",
    ] {
        assert!(!forwarded.contains(gone), "{gone} forwarded: {forwarded}");
    }
    assert!(forwarded.contains("x-keep: yes"));
    assert!(forwarded.contains("via: 1.1 tunnelkit"));
    assert!(text.contains("via: 1.1 tunnelkit"), "response Via missing");
}

#[tokio::test]
async fn max_forwards_for_options_and_trace() {
    let origin = Origin::start().await;
    let p = proxy(LOOPBACK);
    let resp = raw(
        p.addr(),
        format!(
            "OPTIONS {} HTTP/1.1\r\nHost: {}\r\nMax-Forwards: 0\r\n\r\n",
            origin.url("/head"),
            origin.addr
        )
        .as_bytes(),
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 200 OK") && resp.contains("Allow: "), "{resp}");
    assert_eq!(origin.connection_count(), 0, "Max-Forwards: 0 must not reach the origin");
    let resp = raw(
        p.addr(),
        format!(
            "OPTIONS {} HTTP/1.1\r\nHost: {}\r\nMax-Forwards: 3\r\nConnection: close\r\n\r\n",
            origin.url("/head"),
            origin.addr
        )
        .as_bytes(),
    )
    .await;
    assert!(resp.contains("Max-Forwards: 2"), "{resp}");
}

#[tokio::test]
async fn policy_denies_special_ranges_by_default_and_before_dialing() {
    let origin = Origin::start().await;
    let echo = echo_server().await;
    let p = proxy(&["--connect-ports", "1-65535"]);
    let port = origin.addr.port();
    for host in [
        "127.0.0.1",
        "2130706433",
        "0x7f.1",
        "127.1",
        "0177.0.0.1",
        "[::ffff:127.0.0.1]",
        "localhost",
        "[::1]",
    ] {
        let resp =
            raw(p.addr(), format!("GET http://{host}:{port}/1k HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
                .await;
        assert_eq!(status(&resp), 403, "{host}: {resp}");
        assert!(resp.contains("destination_ip_prohibited"), "{resp}");
        let resp =
            raw(p.addr(), format!("CONNECT {host}:{} HTTP/1.1\r\nHost: x\r\n\r\n", echo.port()).as_bytes())
                .await;
        assert_eq!(status(&resp), 403, "{host}: {resp}");
    }
    for target in
        ["169.254.169.254:443", "10.0.0.1:443", "192.168.1.1:443", "[fd00::1]:443", "100.64.0.1:443"]
    {
        let resp = raw(p.addr(), format!("CONNECT {target} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await;
        assert_eq!(status(&resp), 403, "{target}: {resp}");
    }
    assert_eq!(origin.connection_count(), 0);
    // Default CONNECT ports: 443 only, checked before DNS.
    let p = proxy(&["--allow", "127.0.0.0/8"]);
    let resp = raw(p.addr(), format!("CONNECT {echo} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await;
    assert_eq!(status(&resp), 403, "{resp}");
    let resp = raw(p.addr(), b"CONNECT no-such-host.invalid:25 HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(status(&resp) == 403 && resp.contains("port 25"), "{resp}");
    // --deny wins over --allow.
    let p = proxy(&["--allow", "127.0.0.0/8", "--deny", "127.0.0.1/32", "--connect-ports", "1-65535"]);
    let resp = raw(p.addr(), format!("CONNECT {echo} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await;
    assert_eq!(status(&resp), 403, "{resp}");
}

#[tokio::test]
async fn authentication_407_and_success() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users");
    std::fs::write(&users, "# users\nbob:hunter2\n").unwrap();
    let p = proxy(&[
        "--allow",
        "127.0.0.0/8",
        "--connect-ports",
        "1-65535",
        "--auth",
        "alice:s3cret",
        "--users",
        users.to_str().unwrap(),
    ]);
    let x = proxy_url(&p);
    let resp = raw(
        p.addr(),
        format!("GET {} HTTP/1.1\r\nHost: {}\r\n\r\n", origin.url("/1k"), origin.addr).as_bytes(),
    )
    .await;
    assert_eq!(status(&resp), 407, "{resp}");
    assert!(resp.contains("Proxy-Authenticate: Basic realm=\"tunnelkit\""), "{resp}");
    let resp = raw(
        p.addr(),
        format!("CONNECT {} HTTP/1.1\r\nProxy-Authorization: Basic YWxpY2U6d3Jvbmc=\r\n\r\n", origin.addr)
            .as_bytes(),
    )
    .await;
    assert_eq!(status(&resp), 407, "{resp}");
    for user in ["alice:s3cret", "bob:hunter2"] {
        let (ok, body, err) = curl(&["-x", &x, "--proxy-user", user, &origin.url("/1k")]).await;
        assert!(ok && body.len() == 1024, "{user}: {err}");
        let (ok, body, err) = curl(&["-p", "-x", &x, "--proxy-user", user, &origin.url("/1k")]).await;
        assert!(ok && body.len() == 1024, "{user}: {err}");
    }
    assert_eq!(curl_status(&["-x", &x, "--proxy-user", "alice:nope", &origin.url("/1k")]).await, "407");
}

#[test]
fn refuses_open_proxy_on_public_address_without_consent() {
    let out =
        std::process::Command::new(support::bin()).args(["proxy", "--listen", "0.0.0.0:0"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--open") && err.contains("--auth"), "{err}");
    let out = std::process::Command::new(support::bin())
        .args(["proxy", "--config", "/nonexistent/tunnelkit.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/tunnelkit.toml"));
}

#[tokio::test]
async fn slow_headers_get_408_and_big_heads_431() {
    let p = proxy(&["--header-timeout", "300ms"]);
    let resp = raw(p.addr(), b"GET http://example.com/ HTTP/1.1\r\nHost: exa").await;
    assert_eq!(status(&resp), 408, "{resp}");
    let mut big = b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n".to_vec();
    while big.len() < 70 * 1024 {
        big.extend_from_slice(
            b"X-Filler: 0123456789012345678901234567890123456789012345678901234567890123456789\r\n",
        );
    }
    big.extend_from_slice(b"\r\n");
    let resp = raw(p.addr(), &big).await;
    assert_eq!(status(&resp), 431, "{resp}");
    let mut long = b"GET http://example.com/".to_vec();
    long.extend(std::iter::repeat_n(b'a', 70 * 1024));
    long.extend_from_slice(b" HTTP/1.1\r\nHost: example.com\r\n\r\n");
    let resp = raw(p.addr(), &long).await;
    assert_eq!(status(&resp), 431, "{resp}");
}

#[tokio::test]
async fn upstream_framing_errors_are_502() {
    let origin = Origin::start().await;
    let p = proxy(LOOPBACK);
    assert_eq!(curl_status(&["-x", &proxy_url(&p), &origin.url("/bad-framing")]).await, "502");
    assert_eq!(curl_status(&["-x", &proxy_url(&p), &origin.url("/reset")]).await, "502");
    let resp =
        raw(p.addr(), format!("GET {} HTTP/1.1\r\nHost: x\r\n\r\n", origin.url("/1k")).as_bytes()).await;
    assert_eq!(status(&resp), 200, "still healthy");
}

#[tokio::test]
async fn max_connections_answers_503() {
    let p = proxy(&["--max-connections", "1"]);
    let _held = TcpStream::connect(p.addr()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let resp = raw(p.addr(), b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n").await;
    assert_eq!(status(&resp), 503, "{resp}");
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_requests() {
    let origin = Origin::start().await;
    let mut p = proxy(LOOPBACK);
    let x = proxy_url(&p);
    let url = origin.url("/slow");
    let slow = tokio::spawn(async move { curl(&["-x", &x, &url]).await });
    // Wait until the origin has the request, then ask the proxy to stop.
    for _ in 0..200 {
        if origin.connection_count() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    p.terminate();
    let (ok, body, err) = slow.await.unwrap();
    assert!(ok && body == b"slow", "in-flight request cut: {err}");
    let status = p.wait_exit(Duration::from_secs(10)).expect("proxy exits after draining");
    assert!(status.success());
    assert!(TcpStream::connect(p.addr()).await.is_err(), "still accepting after shutdown");
}

#[tokio::test]
async fn access_log_and_metrics() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    // Port 0: the proxy picks the port and prints it, so no other test can take it first.
    let p = proxy(&[LOOPBACK, &["--access-log", log.to_str().unwrap(), "--metrics", "127.0.0.1:0"]].concat());
    let metrics_addr = p.addr_of("metrics");
    let x = proxy_url(&p);
    assert!(curl(&["-x", &x, &origin.url("/1k")]).await.0);
    assert!(curl(&["-p", "-x", &x, &origin.url("/1k")]).await.0);
    let mut text = String::new();
    for _ in 0..100 {
        text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.lines().count() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].contains(&format!("GET {} 200 0 1024", origin.url("/1k"))), "{text}");
    assert!(lines[1].contains(&format!("CONNECT {} 200", origin.addr)), "{text}");
    let (ok, m, err) = curl(&[&format!("http://{metrics_addr}/metrics")]).await;
    assert!(ok, "{err}");
    let m = String::from_utf8_lossy(&m);
    assert!(m.contains("tunnelkit_proxy_requests_total"), "{m}");
    assert!(m.contains("tunnelkit_proxy_tunnels_total"), "{m}");
    assert!(m.contains("tunnelkit_proxy_upstream_connections_total"), "{m}");
}

#[tokio::test]
async fn socks5_listener_shares_policy_and_auth() {
    let origin = Origin::start().await;
    let p = loopback_proxy(&["--socks", "127.0.0.1:0"]);
    let socks = p.addr_of("socks5");
    let (ok, body, err) = curl(&["--socks5-hostname", &socks.to_string(), &origin.url("/1k")]).await;
    assert!(ok && body.len() == 1024, "{err}");
    let (ok, body, err) = curl(&["--socks5", &socks.to_string(), &origin.url("/1k")]).await;
    assert!(ok && body.len() == 1024, "{err}");

    let p = Proc::start(
        &[
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--socks",
            "127.0.0.1:0",
            "--auth",
            "u:pw",
            "--connect-ports",
            "1-65535",
        ],
        2,
    );
    let socks = p.addr_of("socks5").to_string();
    let url = format!("http://2130706433:{}/1k", origin.addr.port());
    // Correct credentials, but the destination is loopback (numeric form): refused by policy.
    let (ok, _, err) = curl(&["--socks5-hostname", &socks, "--proxy-user", "u:pw", &url]).await;
    assert!(!ok && (err.contains("not allowed") || err.contains("(2)") || err.contains("ruleset")), "{err}");
    let (ok, _, err) =
        curl(&["--socks5-hostname", &socks, "--proxy-user", "u:wrong", &origin.url("/1k")]).await;
    assert!(!ok, "{err}");
    // Unsupported command (BIND) gets reply 7.
    let mut s = TcpStream::connect(&socks).await.unwrap();
    s.write_all(&[5, 1, 2]).await.unwrap();
    let mut r = [0u8; 2];
    s.read_exact(&mut r).await.unwrap();
    assert_eq!(r, [5, 2]);
    s.write_all(&[1, 1, b'u', 2, b'p', b'w']).await.unwrap();
    s.read_exact(&mut r).await.unwrap();
    assert_eq!(r, [1, 0]);
    s.write_all(&[5, 2, 0, 1, 1, 2, 3, 4, 0, 80]).await.unwrap();
    let mut rep = [0u8; 10];
    s.read_exact(&mut rep).await.unwrap();
    assert_eq!(rep[1], 7);
}
