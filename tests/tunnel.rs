//! The WebSocket stream tunnel end to end: `ws-server` and `ws-client` binaries (and the library on
//! ephemeral ports) with local and remote forwards, the SOCKS5 entry, many streams, half-close, a relay
//! that resets or blackholes the connection (nothing lost, nothing duplicated), hijack attempts, a
//! stalled reader, and hold-time expiry.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use support::chaos::ChaosRelay;
use support::origin::{echo_server, firehose, Origin};
use support::streams::{echo_through, pattern, sha};
use support::tunnel_lib::lib_server;
use support::{curl, loopback_proxy, Proc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tunnelkit::tunnel::frame::{stamp, Frame, FrameType};
use tunnelkit::tunnel::wire::{self, Message};
use tunnelkit::tunnel::{ConnectError, Limits, TunnelClient, TunnelEvent};
use tunnelkit::tunnel::{Mode, ResumeSecret, TunnelId};

const LIMIT: Duration = Duration::from_secs(60);

fn ws_server(extra: &[&str]) -> Proc {
    let mut args = vec!["ws-server", "--listen", "127.0.0.1:0", "--allow", "127.0.0.0/8"];
    args.extend_from_slice(extra);
    // `--metrics` prints a second `metrics listening on` line after the main one.
    Proc::start(&args, 1 + usize::from(extra.contains(&"--metrics")))
}

fn ws_client(server: SocketAddr, extra: &[&str], listeners: usize) -> Proc {
    let url = format!("ws://{server}/tunnel");
    let mut args = vec!["ws-client", url.as_str()];
    args.extend_from_slice(extra);
    Proc::start(&args, listeners)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_forward_carries_64_concurrent_streams_exactly() {
    let echo = echo_server().await;
    let server = ws_server(&[]);
    let client = ws_client(server.addr(), &["-L", &format!("127.0.0.1:0:{echo}")], 1);
    let entry = client.addr();
    let mut tasks = Vec::new();
    for i in 0..64u64 {
        tasks.push(tokio::spawn(async move {
            let data = pattern(64 * 1024 + i as usize * 997, i);
            let got = echo_through(entry, data.clone()).await.expect("stream works");
            assert_eq!(sha(&got), sha(&data), "stream {i} echoed exactly");
        }));
    }
    tokio::time::timeout(LIMIT, async {
        for t in tasks {
            t.await.unwrap();
        }
    })
    .await
    .expect("64 streams finish in time");
}

/// Writes of every size, some after a pause, so each side's relay reads small pieces (copied into frames
/// of their own) and large ones (read straight into frames split off its slab) in turn, both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_of_every_size_arrive_exactly_both_ways() {
    let echo = echo_server().await;
    let server = ws_server(&[]);
    let client = ws_client(server.addr(), &["-L", &format!("127.0.0.1:0:{echo}")], 1);
    let s = TcpStream::connect(client.addr()).await.unwrap();
    echo_writes_of_every_size(s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socks_entry_carries_writes_of_every_size_both_ways() {
    // The SOCKS5 server's relay moves the tunnel stream's own buffers too (`net::ChunkStream`).
    let echo = echo_server().await;
    let server = ws_server(&[]);
    let client = ws_client(server.addr(), &["--socks", "127.0.0.1:0"], 1);
    let socks = client.addr_of("socks5");
    let s = tokio_socks::tcp::Socks5Stream::connect(socks, echo)
        .await
        .expect("SOCKS5 CONNECT through the tunnel");
    echo_writes_of_every_size(s.into_inner()).await;
}

/// Writes 24 MiB to `s` in sizes from 1 B to 200 KB (some after a pause: small reads, large reads,
/// reads across frame sizes) and checks that the echo brings back every byte once, in order.
async fn echo_writes_of_every_size(s: TcpStream) {
    let data = pattern(24 << 20, 41);
    s.set_nodelay(true).unwrap();
    let (mut r, mut w) = s.into_split();
    let sent = data.clone();
    let writer = tokio::spawn(async move {
        let sizes = [1usize, 700, 16 * 1024 - 1, 16 * 1024, 16 * 1024 + 1, 64 * 1024, 200_000];
        let mut rest = &sent[..];
        for i in 0.. {
            if rest.is_empty() {
                break;
            }
            let n = sizes[i % sizes.len()].min(rest.len());
            w.write_all(&rest[..n]).await.unwrap();
            rest = &rest[n..];
            if i % 3 == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        w.shutdown().await.unwrap();
        w
    });
    let mut got = Vec::new();
    tokio::time::timeout(LIMIT, r.read_to_end(&mut got)).await.expect("the echo ends in time").unwrap();
    writer.await.unwrap();
    assert_eq!(got.len(), data.len(), "every byte, once");
    assert_eq!(sha(&got), sha(&data), "the same bytes in the same order");
}

/// Origin that reads until EOF, then answers with what it counted: the client half-closed and still
/// receives. It also first sends a greeting and half-closes its own side while the client keeps writing.
async fn half_close_origin() -> (SocketAddr, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let seen2 = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else { return };
            let seen = seen2.clone();
            tokio::spawn(async move {
                let mut first = [0u8; 1];
                s.read_exact(&mut first).await.unwrap();
                if first[0] == b'A' {
                    // Client half-closes after sending; we answer after its EOF.
                    let mut rest = Vec::new();
                    s.read_to_end(&mut rest).await.unwrap();
                    s.write_all(format!("got {}", rest.len() + 1).as_bytes()).await.unwrap();
                    s.shutdown().await.unwrap();
                } else {
                    // We half-close first; the client keeps sending and we count it.
                    s.write_all(b"bye").await.unwrap();
                    s.shutdown().await.unwrap();
                    let mut rest = Vec::new();
                    s.read_to_end(&mut rest).await.unwrap();
                    seen.store(rest.len() + 1, Ordering::SeqCst);
                }
            });
        }
    });
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_close_works_both_ways() {
    let (origin, seen) = half_close_origin().await;
    let server = ws_server(&[]);
    let client = ws_client(server.addr(), &["-L", &format!("127.0.0.1:0:{origin}")], 1);
    let entry = client.addr();
    tokio::time::timeout(LIMIT, async {
        // Client → origin EOF first, answer still arrives.
        let mut s = TcpStream::connect(entry).await.unwrap();
        s.write_all(&[b'A'; 100_000]).await.unwrap();
        s.shutdown().await.unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).await.unwrap();
        assert_eq!(answer, "got 100000");

        // Origin → client EOF first, client's later bytes still arrive.
        let mut s = TcpStream::connect(entry).await.unwrap();
        s.write_all(b"B").await.unwrap();
        let mut bye = Vec::new();
        s.read_to_end(&mut bye).await.unwrap();
        assert_eq!(bye, b"bye", "origin's half-close arrives as EOF");
        s.write_all(&[b'C'; 50_000]).await.unwrap();
        s.shutdown().await.unwrap();
        while seen.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(seen.load(Ordering::SeqCst), 50_001);
    })
    .await
    .expect("half-close test in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_forward_reaches_a_service_beside_the_client() {
    let echo = echo_server().await;
    let server = ws_server(&[]);
    let client = ws_client(server.addr(), &["-R", &format!("127.0.0.1:0:{echo}")], 1);
    let remote = client.addr_of("remote");
    let data = pattern(300_000, 7);
    let got = tokio::time::timeout(LIMIT, echo_through(remote, data.clone())).await.unwrap().unwrap();
    assert_eq!(sha(&got), sha(&data));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socks_entry_serves_curl_and_reports_policy_refusals() {
    let origin = Origin::start().await;
    let server = ws_server(&[]);
    let client = ws_client(server.addr(), &["--socks", "127.0.0.1:0"], 1);
    let socks = client.addr_of("socks5");
    let proxy = format!("socks5h://{socks}");
    let (ok, body, err) = curl(&["--proxy", &proxy, &origin.url("/big")]).await;
    assert!(ok, "curl through the SOCKS entry: {err}");
    assert_eq!(body.len(), 4 << 20);
    // The server's policy (10/8 is private and not allowed) refuses: curl sees a SOCKS error at once.
    let (ok, _, err) = curl(&["--proxy", &proxy, "http://10.1.2.3:80/"]).await;
    assert!(!ok);
    assert!(err.contains("SOCKS") || err.contains("socks") || err.contains("proxy"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_mode_gives_each_connection_its_own_tunnel() {
    let echo = echo_server().await;
    let server = ws_server(&[]);
    let client = ws_client(server.addr(), &["--mode", "single", "-L", &format!("127.0.0.1:0:{echo}")], 1);
    for i in 0..3 {
        let data = pattern(100_000, i);
        let got =
            tokio::time::timeout(LIMIT, echo_through(client.addr(), data.clone())).await.unwrap().unwrap();
        assert_eq!(sha(&got), sha(&data));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resets_every_half_second_lose_and_duplicate_nothing() {
    let echo = echo_server().await;
    let server = ws_server(&[]);
    let relay = ChaosRelay::start(server.addr()).await;
    let client = ws_client(relay.addr, &["-L", &format!("127.0.0.1:0:{echo}")], 1);
    let entry = client.addr();
    // Every 0.5 s, and also every 24 MiB carried so resets land mid-transfer however fast it runs.
    relay.reset_every_bytes(24 << 20);
    let chaos = {
        let relay = relay.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                relay.reset_all();
            }
        })
    };
    let mut tasks = Vec::new();
    for i in 0..8u64 {
        tasks.push(tokio::spawn(async move {
            let data = pattern(16 << 20, 100 + i);
            let got = echo_through(entry, data.clone()).await.expect("no application socket sees a reset");
            assert_eq!(got.len(), data.len(), "stream {i}: every byte, once");
            assert_eq!(sha(&got), sha(&data), "stream {i}: same bytes in the same order");
        }));
    }
    tokio::time::timeout(Duration::from_secs(240), async {
        for t in tasks {
            t.await.unwrap();
        }
    })
    .await
    .expect("8 × 16 MiB both ways through resets finish");
    chaos.abort();
    let connections = relay.accepted.load(Ordering::SeqCst);
    eprintln!("chaos: {connections} connections carried the tunnel");
    assert!(connections >= 8, "the connection really was reset and resumed ({connections} connections)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_waiting_on_a_dead_server_share_one_retry_schedule() {
    let server = ws_server(&[]);
    let relay = ChaosRelay::start(server.addr()).await;
    let client = ws_client(relay.addr, &["--keep-broken-tunnel", "1s", "-L", "127.0.0.1:0:127.0.0.1:9"], 1);
    relay.set_refuse(true);
    relay.reset_all();
    tokio::time::timeout(LIMIT, async {
        while !client.stderr.lock().unwrap().contains("could not resume within the hold time") {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the broken tunnel expires after its 1 s hold");
    let before = relay.refused.load(Ordering::SeqCst);
    // Four connections at once while the server is unreachable: each is closed once no tunnel can be
    // had, after one shared schedule of attempts (8), not one schedule each (32, the last waiting 4×).
    let entry = client.addr();
    let conns: Vec<_> = (0..4)
        .map(|_| {
            tokio::spawn(async move {
                let mut s = TcpStream::connect(entry).await.unwrap();
                let mut b = [0u8; 1];
                let n = s.read(&mut b).await.unwrap_or(0);
                assert_eq!(n, 0, "nothing arrives without a tunnel");
            })
        })
        .collect();
    tokio::time::timeout(LIMIT, async {
        for c in conns {
            c.await.unwrap();
        }
    })
    .await
    .expect("every waiting connection is closed");
    let attempts = relay.refused.load(Ordering::SeqCst) - before;
    assert!((1..=8).contains(&attempts), "{attempts} connection attempts for 4 waiting connections");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_blackhole_is_detected_by_heartbeat_and_resumed() {
    let echo = echo_server().await;
    let server = ws_server(&["--heartbeat", "300ms"]);
    let relay = ChaosRelay::start(server.addr()).await;
    let client = ws_client(relay.addr, &["-L", &format!("127.0.0.1:0:{echo}")], 1);
    let s = TcpStream::connect(client.addr()).await.unwrap();
    let (mut r, mut w) = s.into_split();
    w.write_all(b"before").await.unwrap();
    let mut buf = [0u8; 6];
    r.read_exact(&mut buf).await.unwrap();
    relay.set_blackhole(true);
    w.write_all(b"during").await.unwrap();
    // Once the client notices (2 × 300 ms of silence) it reconnects: new connections pass again.
    let accepted = relay.accepted.load(Ordering::SeqCst);
    tokio::time::timeout(LIMIT, async {
        while relay.accepted.load(Ordering::SeqCst) == accepted {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the dead connection was detected and replaced");
    relay.set_blackhole(false);
    let mut buf = [0u8; 6];
    tokio::time::timeout(LIMIT, r.read_exact(&mut buf)).await.unwrap().unwrap();
    assert_eq!(&buf, b"during", "bytes written into the blackhole arrive after the resume");
    w.write_all(b"after!").await.unwrap();
    tokio::time::timeout(LIMIT, r.read_exact(&mut buf)).await.unwrap().unwrap();
    assert_eq!(&buf, b"after!");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_time_expiry_ends_streams_with_an_error_and_the_server_cap_wins() {
    let echo = echo_server().await;
    let server = ws_server(&["--max-keep-broken", "1s"]);
    let relay = ChaosRelay::start(server.addr()).await;
    let client =
        ws_client(relay.addr, &["--keep-broken-tunnel", "1h", "-L", &format!("127.0.0.1:0:{echo}")], 1);
    let mut s = TcpStream::connect(client.addr()).await.unwrap();
    s.write_all(b"x").await.unwrap();
    let mut b = [0u8; 1];
    s.read_exact(&mut b).await.unwrap();
    relay.set_refuse(true);
    relay.reset_all();
    // The server granted 1 s, not the hour asked: the stream fails soon, with an error, not EOF.
    let mut rest = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut rest))
        .await
        .expect("expiry in time");
    assert!(r.is_err(), "expired stream must fail, not end cleanly (got EOF after {} bytes)", rest.len());
}

/// Sends RESUME for `id` with `secret` and `token`, returns the answer's frame type.
async fn try_resume(server: SocketAddr, token: &str, id: [u8; 16], secret: [u8; 16]) -> (FrameType, String) {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("ws://{server}/tunnel").into_client_request().unwrap();
    req.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let f = Message::Resume { id: TunnelId(id), secret: ResumeSecret(secret) }.encode(0);
    ws.send(tokio_tungstenite::tungstenite::Message::Binary(f.freeze())).await.unwrap();
    let msg = tokio::time::timeout(LIMIT, ws.next()).await.unwrap().unwrap().unwrap();
    let frame = Frame::decode(msg.into_data(), wire::MAX_SERVER_HANDSHAKE).unwrap();
    match Message::of(&frame).unwrap() {
        Message::Refused { reason, .. } => (frame.kind, reason),
        _ => (frame.kind, String::new()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hijack_with_wrong_secret_or_another_token_is_refused() {
    let echo = echo_server().await;
    let server = lib_server(&["alice", "mallory"], Limits::default()).await;
    let tunnel = TunnelClient::new(&format!("ws://{server}/tunnel"))
        .unwrap()
        .token(Some("alice".into()))
        .connect()
        .await
        .unwrap();
    let id = tunnel.id().0;
    let (kind, why) = try_resume(server, "alice", id, [0u8; 16]).await;
    assert_eq!(kind, FrameType::Refused, "right id, wrong secret");
    assert!(why.contains("unknown tunnel or wrong secret"), "{why}");
    let (kind, _) = try_resume(server, "mallory", id, [1u8; 16]).await;
    assert_eq!(kind, FrameType::Refused, "another token");
    let bad = TunnelClient::new(&format!("ws://{server}/tunnel"))
        .unwrap()
        .token(Some("eve".into()))
        .connect()
        .await;
    assert!(matches!(bad, Err(ConnectError::TokenRefused)), "unknown token gets 401");
    // The real tunnel is untouched.
    let mut s = tunnel.open(&echo.to_string()).unwrap();
    s.write_all(b"still mine").await.unwrap();
    s.shutdown().await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(LIMIT, s.read_to_end(&mut got)).await.unwrap().unwrap();
    assert_eq!(got, b"still mine");
    assert!(!tunnel.is_broken());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_reader_does_not_block_another_stream_and_memory_stays_bounded() {
    let echo = echo_server().await;
    let hose = firehose().await;
    let server = lib_server(&[], Limits::default()).await;
    let tunnel = TunnelClient::new(&format!("ws://{server}/tunnel")).unwrap().connect().await.unwrap();
    // Never read from this one.
    let stalled = tunnel.open(&hose.to_string()).unwrap();
    stalled.connected().await.unwrap();
    let mut s = tunnel.open(&echo.to_string()).unwrap();
    let data = pattern(32 << 20, 3);
    let (mut r, mut w) = tokio::io::split(&mut s);
    let expected = data.clone();
    tokio::time::timeout(LIMIT, async {
        let write = async {
            w.write_all(&data).await.unwrap();
            w.shutdown().await.unwrap();
        };
        let read = async {
            let mut got = Vec::new();
            r.read_to_end(&mut got).await.unwrap();
            got
        };
        let (_, got) = tokio::join!(write, read);
        assert_eq!(sha(&got), sha(&expected));
    })
    .await
    .expect("the other stream moves 32 MiB while one is stalled");
    let held = stalled.buffered();
    assert!(held <= 256 * 1024, "a stalled stream holds at most one window, held {held}");
    assert!(tunnel.unacked_bytes() <= 4 << 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_report_broken_and_resumed_and_the_cap_is_granted() {
    let echo = echo_server().await;
    let limits = Limits { max_keep_broken: Duration::from_secs(7), ..Limits::default() };
    let server = lib_server(&[], limits).await;
    let relay = ChaosRelay::start(server).await;
    let tunnel = TunnelClient::new(&format!("ws://{}/tunnel", relay.addr))
        .unwrap()
        .keep_broken_tunnel(Duration::from_secs(3600))
        .connect()
        .await
        .unwrap();
    assert_eq!(tunnel.params().keep_broken, Duration::from_secs(7), "server caps the hold time");
    let mut events = tunnel.events();
    let mut s = tunnel.open(&echo.to_string()).unwrap();
    relay.reset_all();
    let mut seen = Vec::new();
    tokio::time::timeout(LIMIT, async {
        while !seen.contains(&TunnelEvent::Resumed) {
            if let Ok(e) = events.recv().await {
                seen.push(e);
            }
        }
    })
    .await
    .expect("resumed");
    assert!(seen.contains(&TunnelEvent::Broken), "{seen:?}");
    s.write_all(b"ok").await.unwrap();
    let mut b = [0u8; 2];
    tokio::time::timeout(LIMIT, s.read_exact(&mut b)).await.unwrap().unwrap();
    assert_eq!(&b, b"ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_with_a_private_ca_through_an_http_proxy() {
    let echo = echo_server().await;
    let dir = tempfile::tempdir().unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let server = ws_server(&["--tls-cert", cert, "--tls-key", key, "--token", "t0k"]);
    let proxy = loopback_proxy(&[]);
    let url = format!("wss://localhost:{}/tunnel", server.addr().port());
    let proxy_url = format!("http://{}", proxy.addr());
    let client = Proc::start(
        &[
            "ws-client",
            &url,
            "--token",
            "t0k",
            "--ca",
            cert,
            "--proxy",
            &proxy_url,
            "-L",
            &format!("127.0.0.1:0:{echo}"),
        ],
        1,
    );
    let data = pattern(1 << 20, 11);
    let got = tokio::time::timeout(LIMIT, echo_through(client.addr(), data.clone())).await.unwrap().unwrap();
    assert_eq!(sha(&got), sha(&data));
    // Without the CA the certificate is not trusted: the client refuses to come up.
    let mut untrusted = std::process::Command::new(support::bin())
        .args(["ws-client", &url, "--token", "t0k", "-L", "127.0.0.1:0:127.0.0.1:9"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + LIMIT;
        loop {
            if let Some(s) = untrusted.try_wait().unwrap() {
                return Some(s);
            }
            if std::time::Instant::now() > deadline {
                let _ = untrusted.kill();
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .await
    .unwrap();
    assert!(status.is_some_and(|s| !s.success()), "an untrusted certificate must fail");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_tunnel_closes_in_order_and_the_cli_opens_a_new_one() {
    let echo = echo_server().await;
    let server = lib_server(&[], Limits::default()).await;
    let tunnel = TunnelClient::new(&format!("ws://{server}/tunnel"))
        .unwrap()
        .idle_timeout(Some(Duration::from_millis(300)))
        .connect()
        .await
        .unwrap();
    let mut s = tunnel.open(&echo.to_string()).unwrap();
    s.write_all(b"hi").await.unwrap();
    s.shutdown().await.unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).await.unwrap();
    drop(s);
    let why = tokio::time::timeout(LIMIT, tunnel.closed()).await.expect("idle tunnel closes");
    assert_eq!(why, tunnelkit::tunnel::EndReason::Closed, "an orderly close, not an expiry");

    let ws = ws_server(&[]);
    let client = ws_client(ws.addr(), &["--idle-timeout", "200ms", "-L", &format!("127.0.0.1:0:{echo}")], 1);
    for i in 0..2 {
        let data = pattern(10_000, i);
        let got =
            tokio::time::timeout(LIMIT, echo_through(client.addr(), data.clone())).await.unwrap().unwrap();
        assert_eq!(got, data, "connection {i} works, the second one on a fresh tunnel");
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_metrics_count_tunnels_streams_and_resumes() {
    let echo = echo_server().await;
    let server = ws_server(&["--metrics", "127.0.0.1:0"]);
    let metrics = server.addr_of("metrics");
    let relay = ChaosRelay::start(server.addr()).await;
    let client = ws_client(relay.addr, &["-L", &format!("127.0.0.1:0:{echo}")], 1);
    let data = pattern(10_000, 1);
    assert_eq!(echo_through(client.addr(), data.clone()).await.unwrap(), data);
    relay.reset_all();
    assert_eq!(
        tokio::time::timeout(LIMIT, echo_through(client.addr(), data.clone())).await.unwrap().unwrap(),
        data
    );
    let value = |text: &str, name: &str| -> f64 {
        text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok()).unwrap_or(0.0)
    };
    let deadline = std::time::Instant::now() + LIMIT;
    loop {
        let (ok, out, err) = curl(&[&format!("http://{metrics}/metrics")]).await;
        let text = String::from_utf8_lossy(&out).into_owned();
        if ok
            && value(&text, "tunnelkit_tunnel_tunnels") == 1.0
            && value(&text, "tunnelkit_tunnel_streams_total") >= 2.0
            && value(&text, "tunnelkit_tunnel_resumes_total") >= 1.0
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "metrics never showed the tunnel: {err}\n{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_limits_refuse_extra_tunnels_and_streams() {
    let echo = echo_server().await;
    let limits = Limits { max_tunnels: 1, max_streams: 2, ..Limits::default() };
    let server = lib_server(&[], limits).await;
    let url = format!("ws://{server}/tunnel");
    let tunnel = TunnelClient::new(&url).unwrap().connect().await.unwrap();
    let second = TunnelClient::new(&url).unwrap().connect().await;
    assert!(
        matches!(second, Err(ConnectError::Refused { ref reason, .. }) if reason.contains("too many tunnels")),
        "{second:?}"
    );
    let a = tunnel.open(&echo.to_string()).unwrap();
    let b = tunnel.open(&echo.to_string()).unwrap();
    a.connected().await.unwrap();
    b.connected().await.unwrap();
    // The client enforces the limit the server announced, so a third stream fails before the wire.
    assert!(tunnel.open(&echo.to_string()).is_err());
    drop((a, b));
}

/// A peer that sends garbage after a valid HELLO gets its connection dropped; the server stays healthy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_frames_drop_the_connection_and_nothing_else() {
    use tokio_tungstenite::tungstenite::Message as WsMessage;
    let echo = echo_server().await;
    let server = lib_server(&[], Limits::default()).await;
    let inputs: Vec<Vec<u8>> = vec![
        vec![],
        vec![0x11; 5],
        vec![0x99; 30],
        pattern(22, 1),
        pattern(5000, 2),
        {
            // DATA on a stream never opened, with a sequence gap.
            let mut f = wire::data(1, b"abc");
            stamp(&mut f, 7, 0);
            f.to_vec()
        },
        {
            // An ack of frames never sent.
            let mut f = Message::Ack.encode(0);
            stamp(&mut f, 0, 1_000_000);
            f.to_vec()
        },
        {
            // OPEN with an even (server-side) id and a truncated target: bytes no encoder would write.
            let mut f = Frame::start(FrameType::Open, 0, 2, 4);
            f.extend_from_slice(&[0, 200, b'x', b'y']);
            stamp(&mut f, 1, 0);
            f.to_vec()
        },
    ];
    for (i, bad) in inputs.into_iter().enumerate() {
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{server}/tunnel")).await.unwrap();
        let hello = Message::Hello { mode: Mode::Multi, keep_broken: Duration::from_secs(30) }.encode(0);
        ws.send(WsMessage::Binary(hello.freeze())).await.unwrap();
        let welcome = ws.next().await.unwrap().unwrap();
        let welcome = Frame::decode(welcome.into_data(), wire::MAX_SERVER_HANDSHAKE).unwrap();
        assert!(matches!(Message::of(&welcome), Ok(Message::Welcome(_))));
        let _ = ws.send(WsMessage::Binary(bad.into())).await;
        let ended = tokio::time::timeout(LIMIT, async {
            loop {
                match ws.next().await {
                    None | Some(Err(_)) | Some(Ok(WsMessage::Close(_))) => return,
                    Some(Ok(_)) => {}
                }
            }
        })
        .await;
        assert!(ended.is_ok(), "input {i}: the server dropped the connection");
    }
    let tunnel = TunnelClient::new(&format!("ws://{server}/tunnel")).unwrap().connect().await.unwrap();
    let mut s = tunnel.open(&echo.to_string()).unwrap();
    s.write_all(b"fine").await.unwrap();
    s.shutdown().await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(LIMIT, s.read_to_end(&mut got)).await.unwrap().unwrap();
    assert_eq!(got, b"fine");
}
