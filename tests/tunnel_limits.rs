//! The tunnel under peers that do not play along, and its start-up checks: a raw client that floods
//! PINGs or refused OPENs and never reads (the server's memory stays flat), one that never reads at
//! all (dropped after the write deadline), protocol errors (close code 1002), the limits on remote
//! listeners, tunnels per token and stream memory, refusals of exposed or absurd configurations, error
//! messages that say what to fix, and logs that say what happened.

mod support;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use support::origin::{echo_server, firehose};
use support::tunnel_lib::lib_server;
use support::{curl, run_to_exit, Proc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tunnelkit::net::DirectDialer;
use tunnelkit::policy::Policy;
use tunnelkit::shutdown::Drain;
use tunnelkit::tunnel::frame::stamp;
use tunnelkit::tunnel::wire::{self, Message as Wire};
use tunnelkit::tunnel::{ConnectError, Limits, Mode, Server, ServerOptions, TunnelClient};

const LIMIT: Duration = Duration::from_secs(60);

fn ws_server(extra: &[&str]) -> Proc {
    let mut args = vec!["ws-server", "--listen", "127.0.0.1:0", "--allow", "127.0.0.0/8"];
    args.extend_from_slice(extra);
    Proc::start(&args, 1)
}

/// Resident memory of a process, from /proc/PID/status (VmRSS), in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the server runs");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS in /proc/PID/status");
    kb * 1024
}

/// One client-to-server WebSocket frame (masked with a zero key, so the payload goes as is).
fn ws_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(payload);
    out
}

/// A new multi-mode tunnel asking for a 30 s hold time.
fn hello_frame() -> bytes::BytesMut {
    Wire::Hello { mode: Mode::Multi, keep_broken: Duration::from_secs(30) }.encode(0)
}

fn hello() -> Vec<u8> {
    ws_frame(2, &hello_frame())
}

/// A raw client: TCP (with a small receive buffer if asked, so the server's writes block early), the
/// upgrade, HELLO; returns once the server's answers have started (the WELCOME is left unread).
async fn raw_tunnel(server: SocketAddr, rcvbuf: Option<u32>) -> TcpStream {
    let sock = TcpSocket::new_v4().unwrap();
    if let Some(n) = rcvbuf {
        sock.set_recv_buffer_size(n).unwrap();
    }
    let mut s = sock.connect(server).await.unwrap();
    s.write_all(
        b"GET /tunnel HTTP/1.1\r\nHost: tunnel\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await.unwrap();
        head.push(b[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
    s.write_all(&hello()).await.unwrap();
    s
}

/// Writes `batch` again and again for `span` or until the server drops the connection.
async fn flood(s: &mut TcpStream, span: Duration, mut batch: impl FnMut() -> Vec<u8>) {
    let end = Instant::now() + span;
    while Instant::now() < end {
        let chunk = batch();
        match tokio::time::timeout(end.saturating_duration_since(Instant::now()), s.write_all(&chunk)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return, // dropped by the server: its memory is bounded either way
            Err(_) => return,     // the server stopped reading: backpressure
        }
    }
}

/// Runs `batch` as a flood against a fresh server for 6 s; returns the server's RSS growth.
async fn flood_growth(batch: impl FnMut() -> Vec<u8>) -> u64 {
    let server = ws_server(&[]);
    let pid = server.child.id();
    let mut s = raw_tunnel(server.addr(), Some(4096)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = rss(pid);
    flood(&mut s, Duration::from_secs(6), batch).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = rss(pid);
    eprintln!("server RSS {} MiB before the flood, {} MiB after", before >> 20, after >> 20);
    after.saturating_sub(before)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_flood_from_a_peer_that_reads_nothing_keeps_server_memory_flat() {
    let mut nonce = 0u64;
    let grew = flood_growth(|| {
        let mut out = Vec::new();
        for _ in 0..1000 {
            nonce += 1;
            out.extend(ws_frame(2, &Wire::Ping { nonce }.encode(0)));
        }
        out
    })
    .await;
    assert!(grew < 64 << 20, "server RSS grew {} MiB under a PING flood", grew >> 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_open_flood_from_a_peer_that_reads_nothing_keeps_server_memory_flat() {
    // 10.0.0.1 is private: the policy refuses it, and each OPEN costs the server an RST it owes.
    let target = "10.0.0.1:80";
    let mut seq = 0u64;
    let grew = flood_growth(|| {
        let mut out = Vec::new();
        for _ in 0..1000 {
            seq += 1;
            let id = (2 * seq - 1) as u32;
            let mut f = Wire::Open { target: target.into(), data: Default::default() }.encode(id);
            stamp(&mut f, seq, 0);
            out.extend(ws_frame(2, &f));
        }
        out
    })
    .await;
    assert!(grew < 64 << 20, "server RSS grew {} MiB under a flood of refused OPENs", grew >> 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_reads_is_dropped_after_the_write_deadline() {
    let hose = firehose().await;
    let server = ws_server(&["--heartbeat", "500ms"]);
    let mut s = raw_tunnel(server.addr(), Some(4096)).await;
    // A stream from the firehose with all the credit there is: the server writes until its socket is
    // full. The peer keeps sending PINGs (so it is not silent), and never reads.
    let target = hose.to_string();
    let mut open = Wire::Open { target, data: Default::default() }.encode(1);
    stamp(&mut open, 1, 0);
    let mut window = Wire::Window { credit: u32::MAX }.encode(1);
    stamp(&mut window, 2, 0);
    s.write_all(&[ws_frame(2, &open), ws_frame(2, &window)].concat()).await.unwrap();
    let started = Instant::now();
    let dropped = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let ping = Wire::Ping { nonce: 1 }.encode(0);
            if s.write_all(&ws_frame(2, &ping)).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(dropped.is_ok(), "a peer that reads nothing still held its connection after 30 s");
    eprintln!("dropped after {:?}", started.elapsed());
}

/// The close code the server ends the connection with after HELLO and then `bad`.
async fn close_code_after(server: SocketAddr, bad: Message) -> Option<CloseCode> {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{server}/tunnel")).await.unwrap();
    ws.send(Message::Binary(hello_frame().freeze())).await.unwrap();
    let _welcome = ws.next().await;
    ws.send(bad).await.unwrap();
    tokio::time::timeout(LIMIT, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(f))) => return f.map(|f| f.code),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    })
    .await
    .expect("the server ends the connection")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_errors_are_answered_with_close_code_1002() {
    let server = lib_server(&[], Limits::default()).await;
    assert_eq!(close_code_after(server, Message::text("hello?")).await, Some(CloseCode::Protocol), "text");
    let mut gap = wire::data(1, b"abc");
    stamp(&mut gap, 7, 0);
    let code = close_code_after(server, Message::Binary(gap.freeze())).await;
    assert_eq!(code, Some(CloseCode::Protocol), "sequence gap");
    // A handshake that is not one.
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{server}/tunnel")).await.unwrap();
    ws.send(Message::Binary(vec![0x99u8; 30].into())).await.unwrap();
    let first = tokio::time::timeout(LIMIT, ws.next()).await.unwrap();
    assert!(
        matches!(&first, Some(Ok(Message::Close(Some(f)))) if f.code == CloseCode::Protocol),
        "bad handshake: {first:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_listeners_are_capped_per_tunnel_and_public_ones_need_the_server_flag() {
    let server = ws_server(&["--max-listeners", "2"]);
    let url = format!("ws://{}/tunnel", server.addr());
    let tunnel = TunnelClient::new(&url).unwrap().connect().await.unwrap();
    tunnel.listen("127.0.0.1:0").await.expect("first listener");
    tunnel.listen("127.0.0.1:0").await.expect("second listener");
    let third = tunnel.listen("127.0.0.1:0").await.unwrap_err().to_string();
    assert!(third.contains("--max-listeners"), "{third}");
    let other = TunnelClient::new(&url).unwrap().connect().await.unwrap();
    let public = other.listen("0.0.0.0:0").await.unwrap_err().to_string();
    assert!(public.contains("--allow-public-listen"), "{public}");
    other.listen("127.0.0.1:0").await.expect("another tunnel has listeners of its own");

    // The CLI client stops with the server's reason.
    let (status, err) = run_to_exit(&["ws-client", &url, "-R", "0.0.0.0:0:127.0.0.1:9"], &[], LIMIT).await;
    assert!(status.is_some_and(|s| !s.success()), "{err}");
    assert!(err.contains("--allow-public-listen"), "{err}");

    let open = ws_server(&["--allow-public-listen"]);
    let t = TunnelClient::new(&format!("ws://{}/tunnel", open.addr())).unwrap().connect().await.unwrap();
    let (_, bound) = t.listen("0.0.0.0:0").await.expect("allowed with --allow-public-listen");
    assert!(bound.ip().is_unspecified());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_token_cannot_take_every_tunnel() {
    let server = ws_server(&["--max-tunnels", "4", "--token", "alice", "--token", "bob"]);
    let url = format!("ws://{}/tunnel", server.addr());
    let as_ = |t: &str| TunnelClient::new(&url).unwrap().token(Some(t.into()));
    let _a = as_("alice").connect().await.expect("alice's first tunnel");
    let second = as_("alice").connect().await;
    assert!(
        matches!(&second, Err(ConnectError::Refused { reason, .. }) if reason.contains("--max-tunnels-per-token")),
        "{second:?}"
    );
    as_("bob").connect().await.expect("bob still gets a tunnel");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_memory_bounds_what_a_tunnels_streams_hold() {
    // The application accepts streams and never reads them: every byte stays in the tunnel.
    let policy = Arc::new(Policy::new());
    let dialer = Arc::new(DirectDialer::new(policy.clone(), Duration::from_secs(5)));
    let mut opts = ServerOptions::new(dialer, policy);
    opts.limits = Limits { max_stream_memory: 1 << 20, ..Limits::default() };
    let (tx, mut tunnels) = tokio::sync::mpsc::unbounded_channel();
    opts.on_tunnel = Some(tx);
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(Server::new(opts).serve(l, Drain::new()));
    let held = tokio::spawn(async move {
        let tunnel = tunnels.recv().await.unwrap();
        let mut streams = Vec::new();
        while let Some(s) = tunnel.accept().await {
            s.confirm();
            streams.push(s);
        }
    });
    let tunnel = TunnelClient::new(&format!("ws://{addr}/tunnel")).unwrap().connect().await.unwrap();
    // 8 streams × 256 KiB (each stream's first window) = 2 MiB offered against a 1 MiB budget.
    let mut streams = Vec::new();
    for _ in 0..8 {
        let mut s = tunnel.open("sink:1").unwrap();
        s.write_all(&vec![1u8; 256 * 1024]).await.unwrap();
        streams.push(s);
    }
    // The server stops reading while its budget is full, and after a grace second resets the streams
    // holding the most until the rest fit: at least 4 of the 8 end that way (one a second), never all.
    let mut reset = vec![false; streams.len()];
    let deadline = Instant::now() + LIMIT;
    while reset.iter().filter(|r| **r).count() < 4 {
        assert!(Instant::now() < deadline, "streams beyond the 1 MiB budget were not reset: {reset:?}");
        for (s, r) in streams.iter_mut().zip(reset.iter_mut()).filter(|(_, r)| !**r) {
            let mut b = [0u8; 1];
            if let Ok(Err(e)) = tokio::time::timeout(Duration::from_millis(100), s.read(&mut b)).await {
                assert!(e.to_string().contains("stream memory"), "{e}");
                *r = true;
            }
        }
    }
    // Once the rest fit, nothing more is reset.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (s, r) in streams.iter_mut().zip(reset.iter_mut()).filter(|(_, r)| !**r) {
        let mut b = [0u8; 1];
        if let Ok(Err(_)) = tokio::time::timeout(Duration::from_millis(100), s.read(&mut b)).await {
            *r = true;
        }
    }
    let n = reset.iter().filter(|r| **r).count();
    assert!((4..8).contains(&n), "streams beyond the 1 MiB budget are reset, the rest kept ({n} reset)");
    held.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_server_on_a_public_address_needs_open_and_exposed_client_entries_are_named() {
    let (status, err) = run_to_exit(&["ws-server", "--listen", "0.0.0.0:0"], &[], LIMIT).await;
    assert!(status.is_some_and(|s| !s.success()), "{err}");
    assert!(err.contains("--open") && err.contains("--token") && !err.contains("panicked"), "{err}");
    let open = Proc::start(&["ws-server", "--listen", "0.0.0.0:0", "--open"], 1);
    let port = open.addr().port();
    drop(open);
    assert!(port > 0);

    let server = ws_server(&[]);
    let url = format!("ws://{}/tunnel", server.addr());
    let client = Proc::start(&["ws-client", &url, "-L", "0.0.0.0:0:127.0.0.1:9", "--socks", "0.0.0.0:0"], 2);
    let log = client.stderr.lock().unwrap().clone();
    assert!(log.contains("-L 0.0.0.0:0") && log.contains("anyone who can reach"), "{log}");
    assert!(log.contains("--socks 0.0.0.0:0"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_path_and_wrong_token_fail_at_once_and_say_why() {
    let server = ws_server(&["--token", "right"]);
    let base = format!("ws://{}", server.addr());
    let started = Instant::now();
    let (status, err) = run_to_exit(
        &["ws-client", &format!("{base}/nope"), "--token", "right", "-L", "127.0.0.1:0:127.0.0.1:9"],
        &[],
        LIMIT,
    )
    .await;
    assert!(status.is_some_and(|s| !s.success()), "{err}");
    assert!(err.contains("no tunnel endpoint at /nope") && err.contains("--path"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5), "no retries: {:?}", started.elapsed());
    let (status, err) = run_to_exit(
        &["ws-client", &format!("{base}/tunnel"), "--token", "wrong", "-L", "127.0.0.1:0:127.0.0.1:9"],
        &[],
        LIMIT,
    )
    .await;
    assert!(status.is_some_and(|s| !s.success()));
    assert!(err.contains("refused the token"), "{err}");
    // Plain HTTP to the server's port gets an answer with a body.
    let (ok, body, e) = curl(&["-i", &format!("http://{}/tunnel", server.addr())]).await;
    let body = String::from_utf8_lossy(&body).into_owned();
    assert!(ok, "{e}");
    assert!(body.starts_with("HTTP/1.1 426") && body.contains("ws-client"), "{body}");
    let (_, body, _) = curl(&["-i", &format!("http://{}/", server.addr())]).await;
    let body = String::from_utf8_lossy(&body).into_owned();
    assert!(body.starts_with("HTTP/1.1 404") && body.contains("/tunnel"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_certificate_used_as_the_servers_own_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let (cert_path, key_path) = (dir.path().join("ca.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let (c, k) = (cert_path.to_str().unwrap(), key_path.to_str().unwrap());
    let server = ws_server(&["--tls-cert", c, "--tls-key", k]);
    let url = format!("wss://localhost:{}/tunnel", server.addr().port());
    let (status, err) =
        run_to_exit(&["ws-client", &url, "--ca", c, "-L", "127.0.0.1:0:127.0.0.1:9"], &[], LIMIT).await;
    assert!(status.is_some_and(|s| !s.success()), "{err}");
    assert!(err.contains("server's certificate is wrong") && !err.contains("CaUsedAsEndEntity"), "{err}");
}

#[test]
fn absurd_values_are_refused_at_start_with_the_flag_and_its_range() {
    let cases: &[(&[&str], &str)] = &[
        (&["ws-server", "--heartbeat", "0s"], "--heartbeat"),
        (&["ws-server", "--heartbeat", "100d"], "--heartbeat"),
        (&["ws-server", "--workers", "100000"], "--workers"),
        (&["ws-server", "--max-tunnels", "0"], "--max-tunnels"),
        (&["ws-server", "--max-streams", "0"], "--max-streams"),
        (&["ws-server", "--max-keep-broken", "1000y"], "--max-keep-broken"),
        (&["ws-server", "--max-stream-memory", "1K"], "--max-stream-memory"),
        (&["ws-server", "--max-listeners", "99999"], "--max-listeners"),
        (&["ws-server", "--max-tunnels-per-token", "0"], "--max-tunnels-per-token"),
        (&["ws-client", "ws://127.0.0.1:9/tunnel", "-L", "8443"], "[BIND:]PORT:HOST:PORT"),
        (&["ws-client", "ws://127.0.0.1:9/tunnel", "--idle-timeout", "1ms", "-L", "1:a:1"], "--idle-timeout"),
        (
            &["ws-client", "ws://127.0.0.1:9/tunnel", "--keep-broken-tunnel", "999d", "-L", "1:a:1"],
            "--keep-broken-tunnel",
        ),
    ];
    for (args, flag) in cases {
        let out = Command::new(support::bin()).args(*args).stdin(Stdio::null()).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(err.contains(flag) && !err.contains("panicked"), "{args:?}: {err}");
    }
    // In range, but more workers than the file descriptor limit allows: named, with the limit.
    let script =
        format!("ulimit -n 256 && exec {} ws-server --workers 100 --listen 127.0.0.1:0", support::bin());
    let out = Command::new("sh").args(["-c", &script]).stdin(Stdio::null()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "100 workers under ulimit -n 256 were started");
    assert!(err.contains("--workers 100") && err.contains("256") && !err.contains("panicked"), "{err}");
}

/// Logs say what ended a tunnel: a signal, the idle timeout, a single-mode stream's end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_logs_name_what_ended_the_tunnel() {
    let echo = echo_server().await;
    let server = ws_server(&[]);
    let url = format!("ws://{}/tunnel", server.addr());
    let fwd = format!("127.0.0.1:0:{echo}");
    let info = [("RUST_LOG", "info")];
    let echo_once = |entry: SocketAddr| async move {
        let mut s = TcpStream::connect(entry).await.unwrap();
        s.write_all(b"ping").await.unwrap();
        s.shutdown().await.unwrap();
        let mut got = Vec::new();
        tokio::time::timeout(LIMIT, s.read_to_end(&mut got)).await.unwrap().unwrap();
        assert_eq!(got, b"ping");
    };
    let lost = |log: &str| log.contains("connection lost") || log.contains("connection dropped");

    let single = Proc::start_env(&["ws-client", &url, "--mode", "single", "-L", &fwd], 1, &info);
    echo_once(single.addr()).await;
    let log = wait_for_log(&single, "single-mode stream ended").await;
    assert!(!lost(&log), "{log}");

    let idle = Proc::start_env(&["ws-client", &url, "--idle-timeout", "300ms", "-L", &fwd], 1, &info);
    echo_once(idle.addr()).await;
    wait_for_log(&idle, "idle for").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let log = idle.stderr.lock().unwrap().clone();
    assert!(!lost(&log), "{log}");

    let mut term = Proc::start_env(&["ws-client", &url, "-L", &fwd], 1, &info);
    echo_once(term.addr()).await;
    term.terminate();
    assert!(term.wait_exit(LIMIT).is_some(), "exits on SIGTERM");
    let log = term.stderr.lock().unwrap().clone();
    assert!(log.contains("shutting down on a signal") && !lost(&log), "{log}");
}

async fn wait_for_log(p: &Proc, needle: &str) -> String {
    let deadline = Instant::now() + LIMIT;
    loop {
        let log = p.stderr.lock().unwrap().clone();
        if log.contains(needle) {
            return log;
        }
        assert!(Instant::now() < deadline, "no `{needle}` in the log:\n{log}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
