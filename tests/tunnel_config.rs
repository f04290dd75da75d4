//! `tunnelkit ws-server --config FILE`: the TOML file sets what the flags set, a flag given on the command
//! line wins over the file, and a file the server cannot use stops it at start with the file and the key.

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use support::origin::echo_server;
use support::{run_to_exit, Proc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LIMIT: Duration = Duration::from_secs(30);

/// Writes `text` as `ws-server.toml` in a fresh directory (kept alive by the returned guard).
fn config_file(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ws-server.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

/// `ws-client URL --token TOKEN -L 127.0.0.1:0:TARGET`, up once the server accepted the tunnel.
fn client(url: &str, token: &str, target: SocketAddr) -> Proc {
    Proc::start(&["ws-client", url, "--token", token, "-L", &format!("127.0.0.1:0:{target}")], 1)
}

/// Sends `data` through a `-L` entry with an echo behind it and returns what came back.
async fn echo_through(entry: SocketAddr, data: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(entry).await.unwrap();
    s.write_all(data).await.unwrap();
    s.shutdown().await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(LIMIT, s.read_to_end(&mut got)).await.expect("echo in time").unwrap();
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_file_with_listen_and_tokens_makes_a_server_that_refuses_a_wrong_token() {
    let echo = echo_server().await;
    let (_dir, file) = config_file(
        "# ws-server for the test\nlisten = \"127.0.0.1:0\"\ntokens = [\"s3cret\"]\nallow = [\"127.0.0.0/8\"]\n",
    );
    let server = Proc::start(&["ws-server", "--config", file.to_str().unwrap()], 1);
    assert!(server.addr().ip().is_loopback(), "{}", server.addr());
    let url = format!("ws://{}/tunnel", server.addr());

    let c = client(&url, "s3cret", echo);
    assert_eq!(
        echo_through(c.addr(), b"through the configured server").await,
        b"through the configured server"
    );

    let (status, err) =
        run_to_exit(&["ws-client", &url, "--token", "wrong", "-L", "127.0.0.1:0:127.0.0.1:9"], &[], LIMIT)
            .await;
    assert!(status.is_some_and(|s| !s.success()), "a wrong token was accepted: {err}");
    assert!(err.contains("401") && err.contains("--token"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flag_on_the_command_line_wins_over_the_file() {
    let echo = echo_server().await;
    let (_dir, file) = config_file(
        "listen = \"0.0.0.0:0\"\npath = \"/from-file\"\ntokens = [\"s3cret\"]\nallow = [\"127.0.0.0/8\"]\n",
    );
    let server = Proc::start(
        &["ws-server", "--config", file.to_str().unwrap(), "--listen", "127.0.0.1:0", "--path", "/from-flag"],
        1,
    );
    assert_eq!(server.addr().ip().to_string(), "127.0.0.1", "--listen wins over listen");

    let c = client(&format!("ws://{}/from-flag", server.addr()), "s3cret", echo);
    assert_eq!(echo_through(c.addr(), b"flag path").await, b"flag path");

    let from_file = format!("ws://{}/from-file", server.addr());
    let (status, err) = run_to_exit(
        &["ws-client", &from_file, "--token", "s3cret", "-L", "127.0.0.1:0:127.0.0.1:9"],
        &[],
        LIMIT,
    )
    .await;
    assert!(status.is_some_and(|s| !s.success()) && err.contains("404"), "--path wins over path: {err}");
}

/// Starts `ws-server --config` with `text` and expects it to stop at once, naming the file and `key`
/// (and `fix`, where the message says what to write).
async fn refused_at_start(text: &str, key: &str, fix: &str) {
    let (_dir, file) = config_file(text);
    let (status, err) = run_to_exit(
        &["ws-server", "--config", file.to_str().unwrap(), "--listen", "127.0.0.1:0"],
        &[],
        LIMIT,
    )
    .await;
    assert!(status.is_some_and(|s| !s.success()), "{text:?} was accepted: {err}");
    assert!(!err.contains("listening on"), "{text:?}: the server started: {err}");
    assert!(
        err.contains(file.to_str().unwrap()) && err.contains(key) && err.contains(fix),
        "{text:?}: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_key_stops_the_server_at_start_naming_the_file_and_the_key() {
    refused_at_start("tokens = [\"t\"]\nmax_tunels = 10\n", "max_tunels", "max_tunnels").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_value_stops_the_server_at_start_naming_the_file_the_key_and_the_range() {
    refused_at_start("heartbeat = \"0s\"\n", "heartbeat", "100ms to 10m").await;
    refused_at_start("max_stream_memory = \"1K\"\n", "max_stream_memory", "1M to 1G").await;
    refused_at_start("allow = [\"10.0.0.0/99\"]\n", "allow", "127.0.0.0/8").await;
}

/// The sample in docs/ws-server.md is `examples/ws-server.toml` as it is (which `cli_errors` starts a
/// server with), so the documented file is one that works.
#[test]
fn the_documented_sample_is_the_example_file() {
    let dir = env!("CARGO_MANIFEST_DIR");
    let example = std::fs::read_to_string(format!("{dir}/examples/ws-server.toml")).unwrap();
    let doc = std::fs::read_to_string(format!("{dir}/docs/ws-server.md")).unwrap();
    assert!(
        doc.contains(&format!("```toml\n{}\n```", example.trim_end())),
        "docs/ws-server.md and the example differ"
    );
}
