//! Graceful shutdown of the tunnel binaries: on SIGTERM `ws-server` and `ws-client` stop accepting, let the
//! streams already open finish (up to `--shutdown-timeout`) and exit 0 as soon as they have; a second
//! SIGTERM ends the wait at once. Every server runs on port 0 and every wait is bounded.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::origin::echo_server;
use support::Proc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tunnelkit::tunnel::TunnelClient;

/// Longer than any test here needs: a drain that waits for it has failed.
const LONG: &str = "60s";

fn ws_server(extra: &[&str]) -> Proc {
    let mut args = vec!["ws-server", "--listen", "127.0.0.1:0", "--allow", "127.0.0.0/8"];
    args.extend_from_slice(extra);
    Proc::start(&args, 1)
}

/// Writes `msg` and reads its echo back, within 10 s.
async fn echo_once<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, msg: &[u8]) {
    tokio::time::timeout(Duration::from_secs(10), async {
        s.write_all(msg).await.expect("write through the open stream");
        let mut back = vec![0u8; msg.len()];
        s.read_exact(&mut back).await.expect("read the echo through the open stream");
        assert_eq!(back, msg);
    })
    .await
    .expect("the open stream answers in time");
}

/// Half-closes `s` and reads until the far side closes too: the stream has ended.
async fn finish<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S) {
    tokio::time::timeout(Duration::from_secs(10), async {
        s.shutdown().await.expect("half-close");
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).await.expect("clean end of the stream");
        assert!(rest.is_empty(), "nothing was left unread");
    })
    .await
    .expect("the stream ends in time");
}

/// Waits (at most 10 s) until `addr` refuses connections: its listener has closed.
async fn until_refused(addr: SocketAddr) {
    let start = Instant::now();
    loop {
        match TcpStream::connect(addr).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return,
            _ => {}
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{addr} still accepts 10 s after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_server_on_sigterm_refuses_new_connections_keeps_the_open_stream_and_exits_when_it_ends() {
    let echo = echo_server().await;
    let mut server = ws_server(&["--shutdown-timeout", LONG]);
    let tunnel =
        TunnelClient::new(&format!("ws://{}/tunnel", server.addr())).unwrap().connect().await.unwrap();
    let mut stream = tunnel.open(&echo.to_string()).unwrap();
    echo_once(&mut stream, b"before").await;

    server.terminate();
    until_refused(server.addr()).await;
    assert!(server.child.try_wait().unwrap().is_none(), "the server waits for the open stream");
    echo_once(&mut stream, b"after SIGTERM the stream still flows").await;
    assert!(server.child.try_wait().unwrap().is_none(), "the server waits for the open stream");

    finish(&mut stream).await;
    drop(stream);
    let status = server.wait_exit(Duration::from_secs(10)).expect("exits once the last stream ended");
    assert!(status.success(), "exit status {status:?}; stderr:\n{}", server.stderr.lock().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sigterm_ends_the_ws_server_drain_at_once() {
    let echo = echo_server().await;
    let mut server = ws_server(&["--shutdown-timeout", LONG]);
    let tunnel =
        TunnelClient::new(&format!("ws://{}/tunnel", server.addr())).unwrap().connect().await.unwrap();
    let mut stream = tunnel.open(&echo.to_string()).unwrap();
    echo_once(&mut stream, b"held open").await;

    server.terminate();
    until_refused(server.addr()).await;
    // The drain is under way (its listener is gone); give its wait a moment to watch for the next signal.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(server.child.try_wait().unwrap().is_none(), "the first SIGTERM waits for the open stream");
    let second = Instant::now();
    server.terminate();
    server.wait_exit(Duration::from_secs(5)).expect("the second SIGTERM ends the process at once");
    assert!(second.elapsed() < Duration::from_secs(5));
    drop(stream);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_client_local_forward_on_sigterm_keeps_the_open_stream_until_it_ends_then_exits_0() {
    let echo = echo_server().await;
    let server = ws_server(&[]);
    let url = format!("ws://{}/tunnel", server.addr());
    let forward = format!("127.0.0.1:0:{echo}");
    let mut client = Proc::start(&["ws-client", &url, "-L", &forward, "--shutdown-timeout", LONG], 1);
    let entry = client.addr();
    let mut local = TcpStream::connect(entry).await.unwrap();
    echo_once(&mut local, b"before").await;

    client.terminate();
    until_refused(entry).await;
    assert!(client.child.try_wait().unwrap().is_none(), "the client waits for the open stream");
    echo_once(&mut local, b"after SIGTERM the stream still flows").await;

    finish(&mut local).await;
    let status = client.wait_exit(Duration::from_secs(10)).expect("exits once the last stream ended");
    assert!(status.success(), "exit status {status:?}; stderr:\n{}", client.stderr.lock().unwrap());
}

/// A SOCKS5 CONNECT to an IPv4 `target` through `entry`; returns the connection once the server answered
/// success.
async fn socks_connect(entry: SocketAddr, target: SocketAddr) -> TcpStream {
    let SocketAddr::V4(v4) = target else { panic!("IPv4 target") };
    let mut s = TcpStream::connect(entry).await.unwrap();
    s.write_all(&[5, 1, 0]).await.unwrap();
    let mut choice = [0u8; 2];
    s.read_exact(&mut choice).await.unwrap();
    assert_eq!(choice, [5, 0], "no authentication");
    let mut req = vec![5, 1, 0, 1];
    req.extend_from_slice(&v4.ip().octets());
    req.extend_from_slice(&v4.port().to_be_bytes());
    s.write_all(&req).await.unwrap();
    let mut reply = [0u8; 10];
    s.read_exact(&mut reply).await.unwrap();
    assert_eq!(reply[1], 0, "CONNECT succeeded");
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_client_socks_entry_on_sigterm_closes_its_port_and_keeps_the_open_connection() {
    let echo = echo_server().await;
    let server = ws_server(&[]);
    let url = format!("ws://{}/tunnel", server.addr());
    let mut client =
        Proc::start(&["ws-client", &url, "--socks", "127.0.0.1:0", "--shutdown-timeout", LONG], 1);
    let entry = client.addr_of("socks5");
    let mut conn = tokio::time::timeout(Duration::from_secs(10), socks_connect(entry, echo))
        .await
        .expect("SOCKS CONNECT in time");
    echo_once(&mut conn, b"before").await;

    client.terminate();
    until_refused(entry).await;
    echo_once(&mut conn, b"after SIGTERM the SOCKS connection still flows").await;
    assert!(client.child.try_wait().unwrap().is_none(), "the client waits for the SOCKS connection");

    finish(&mut conn).await;
    let status = client.wait_exit(Duration::from_secs(10)).expect("exits once the last stream ended");
    assert!(status.success(), "exit status {status:?}; stderr:\n{}", client.stderr.lock().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_client_remote_forward_on_sigterm_refuses_new_streams_and_keeps_the_open_one() {
    let echo = echo_server().await;
    let server = ws_server(&[]);
    let url = format!("ws://{}/tunnel", server.addr());
    let forward = format!("127.0.0.1:0:{echo}");
    let mut client = Proc::start(&["ws-client", &url, "-R", &forward, "--shutdown-timeout", LONG], 1);
    let remote = client.addr_of("remote");
    let mut open = TcpStream::connect(remote).await.unwrap();
    echo_once(&mut open, b"before").await;

    client.terminate();
    // The server still listens for us, but the streams it opens back are refused: the connection ends
    // without an answer.
    let start = Instant::now();
    loop {
        let mut late = TcpStream::connect(remote).await.unwrap();
        let _ = late.write_all(b"late").await;
        let mut buf = [0u8; 4];
        match tokio::time::timeout(Duration::from_secs(10), late.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(_)) => {} // served before the signal was handled
            Err(_) => panic!("a connection after SIGTERM was neither served nor ended"),
        }
        assert!(start.elapsed() < Duration::from_secs(10), "-R streams still served 10 s after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    echo_once(&mut open, b"after SIGTERM the -R stream still flows").await;
    assert!(client.child.try_wait().unwrap().is_none(), "the client waits for the open -R stream");

    finish(&mut open).await;
    let status = client.wait_exit(Duration::from_secs(10)).expect("exits once the last stream ended");
    assert!(status.success(), "exit status {status:?}; stderr:\n{}", client.stderr.lock().unwrap());
}
