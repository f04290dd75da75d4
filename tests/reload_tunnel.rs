//! `tunnelkit ws-server --config FILE` reloads its tokens on SIGHUP: a revoked token can neither open
//! nor resume a tunnel (its upgrade is refused before any handshake) and its open tunnels are closed
//! after `reload_grace`, while the tunnels of the tokens kept go on carrying streams. A reload also
//! changes the limits of the tunnels opened after it (`max_tunnels_per_token` here).

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::origin::echo_server;
use support::{run_to_exit, Proc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tunnelkit::tunnel::{ConnectError, TunnelClient};

const LIMIT: Duration = Duration::from_secs(20);

fn tokens_file(tokens: &[&str]) -> String {
    format!("allow = [\"127.0.0.0/8\"]\n{}", file_without_allow(tokens))
}

fn file_without_allow(tokens: &[&str]) -> String {
    let list: Vec<String> = tokens.iter().map(|t| format!("\"{t}\"")).collect();
    format!("listen = \"127.0.0.1:0\"\nreload_grace = \"1s\"\ntokens = [{}]\n", list.join(", "))
}

/// `ws-server --config FILE`, logging its reloads.
fn server_from(file: &std::path::Path) -> Proc {
    Proc::start_env(
        &["ws-server", "--config", file.to_str().unwrap()],
        1,
        &[("RUST_LOG", "warn,tunnelkit::reload=info")],
    )
}

fn client(url: &str, token: &str, target: SocketAddr) -> Proc {
    Proc::start(&["ws-client", url, "--token", token, "-L", &format!("127.0.0.1:0:{target}")], 1)
}

/// Sends `data` through a `-L` entry with an echo behind it: true if it all came back.
async fn echoes(entry: SocketAddr, data: &[u8]) -> bool {
    let Ok(mut s) = TcpStream::connect(entry).await else { return false };
    if s.write_all(data).await.is_err() || s.shutdown().await.is_err() {
        return false;
    }
    let mut got = Vec::new();
    matches!(tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got)).await, Ok(Ok(_)))
        && got == data
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_cannot_open_or_resume_and_loses_its_tunnels_while_others_flow() {
    let echo = echo_server().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ws-server.toml");
    std::fs::write(&file, tokens_file(&["keep", "revoke"])).unwrap();
    let server = server_from(&file);
    let url = format!("ws://{}/tunnel", server.addr());
    let kept = client(&url, "keep", echo);
    let revoked = client(&url, "revoke", echo);
    assert!(echoes(kept.addr(), b"before, kept").await);
    assert!(echoes(revoked.addr(), b"before, revoked").await);

    std::fs::write(&file, tokens_file(&["keep"])).unwrap();
    server.hup();
    server.wait_log("config reloaded (generation 2)", 1).await;

    // A new tunnel with the revoked token: refused at the upgrade (so is a RESUME, which needs it too).
    let (status, err) =
        run_to_exit(&["ws-client", &url, "--token", "revoke", "-L", "127.0.0.1:0:127.0.0.1:9"], &[], LIMIT)
            .await;
    assert!(status.is_some_and(|s| !s.success()) && err.contains("401"), "{err}");

    // After the 1 s grace the revoked token's tunnel is closed, and the client cannot get another.
    let mut cut = false;
    for _ in 0..40 {
        if !echoes(revoked.addr(), b"after, revoked").await {
            cut = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(cut, "the revoked token's tunnel still carries streams");
    for i in 0..5 {
        assert!(echoes(kept.addr(), format!("after, kept {i}").as_bytes()).await, "the kept token's tunnel");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_file_on_reload_is_logged_and_the_tokens_in_force_stay() {
    let echo = echo_server().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ws-server.toml");
    std::fs::write(&file, tokens_file(&["keep"])).unwrap();
    let server = server_from(&file);
    let url = format!("ws://{}/tunnel", server.addr());
    let kept = client(&url, "keep", echo);
    std::fs::write(&file, "tokens = [\"\"]\n").unwrap();
    server.hup();
    server.wait_log("config reload failed", 1).await;
    let log = server.stderr.lock().unwrap().clone();
    assert!(log.contains("tokens") && log.contains("keeping generation 1"), "{log}");
    assert!(echoes(kept.addr(), b"still flowing").await);
    let again = client(&url, "keep", echo);
    assert!(echoes(again.addr(), b"a new tunnel with the kept token").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_drops_an_allowed_range_refuses_new_streams_of_open_tunnels() {
    let echo = echo_server().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ws-server.toml");
    std::fs::write(&file, tokens_file(&["keep"])).unwrap();
    let server = server_from(&file);
    let url = format!("ws://{}/tunnel", server.addr());
    let c = client(&url, "keep", echo);
    assert!(echoes(c.addr(), b"loopback allowed").await);
    std::fs::write(&file, file_without_allow(&["keep"])).unwrap();
    server.hup();
    server.wait_log("config reloaded (generation 2)", 1).await;
    assert!(!echoes(c.addr(), b"loopback denied now").await, "a new stream reached a denied range");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_raises_max_tunnels_per_token_for_the_tunnels_opened_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ws-server.toml");
    let with_limit = |n: usize| format!("{}max_tunnels_per_token = {n}\n", tokens_file(&["keep"]));
    std::fs::write(&file, with_limit(1)).unwrap();
    let server = server_from(&file);
    let url = format!("ws://{}/tunnel", server.addr());
    let open = || async { TunnelClient::new(&url).unwrap().token(Some("keep".into())).connect().await };
    let refused = |r: &Result<_, ConnectError>| matches!(r, Err(ConnectError::Refused { reason, .. }) if reason.contains("--max-tunnels-per-token"));
    let _first = open().await.expect("the first tunnel");
    let second = open().await;
    assert!(refused(&second), "{second:?}");

    std::fs::write(&file, with_limit(2)).unwrap();
    server.hup();
    server.wait_log("config reloaded (generation 2)", 1).await;
    let _second = open().await.expect("a second tunnel once the reload allows two");
    let third = open().await;
    assert!(refused(&third), "{third:?}");
    let log = server.stderr.lock().unwrap().clone();
    assert!(!log.contains("which a reload cannot apply"), "{log}");
}
