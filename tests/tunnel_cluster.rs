//! The tunnel cluster (`ws-server --cluster-redis --advertise --cluster-secret`): two ws-servers behind
//! a real HAProxy (`balance roundrobin`) sharing a real Redis, and a relay between the clients and
//! HAProxy that cuts every connection four times a second, so that about half the resumes land on the
//! server that does not hold the tunnel and must be handed to the one that does. Streams carry their
//! bytes exactly through all of it; when the holder dies, its streams fail with an error and the next
//! connection works on a new tunnel.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use support::chaos::ChaosRelay;
use support::haproxy::Haproxy;
use support::origin::echo_server;
use support::redis::Redis;
use support::streams::{echo_through, pattern, sha};
use support::{curl, Proc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SECRET: &str = "cluster-test-secret-0123456789";

/// A cluster member on an ephemeral port (advertising it), with metrics.
fn member(redis: &Redis, extra: &[&str]) -> Proc {
    let url = redis.url();
    let mut args = vec![
        "ws-server",
        "--listen",
        "127.0.0.1:0",
        "--allow",
        "127.0.0.0/8",
        "--token",
        "t0k3n",
        "--metrics",
        "127.0.0.1:0",
        "--cluster-redis",
        &url,
        "--heartbeat",
        "1s",
    ];
    args.extend_from_slice(extra);
    Proc::start_env(&args, 2, &[("TUNNELKIT_CLUSTER_SECRET", SECRET)])
}

fn client(entry: SocketAddr, target: SocketAddr) -> Proc {
    let url = format!("ws://{entry}/tunnel");
    let forward = format!("127.0.0.1:0:{target}");
    Proc::start(&["ws-client", &url, "--token", "t0k3n", "--keep-broken-tunnel", "60s", "-L", &forward], 1)
}

/// The sum of every sample of metric `name` (whatever its labels) that `filter` accepts.
async fn metric(server: &Proc, name: &str, filter: &str) -> f64 {
    let (_, out, _) = curl(&[&format!("http://{}/metrics", server.addr_of("metrics"))]).await;
    String::from_utf8_lossy(&out)
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(filter))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Cuts every connection through `relay` every 250 ms until aborted.
fn cut_every_quarter_second(relay: &ChaosRelay) -> tokio::task::JoinHandle<()> {
    let relay = relay.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            relay.reset_all();
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumes_landing_on_either_server_lose_and_duplicate_nothing() {
    let echo = echo_server().await;
    let redis = Redis::node(0, None, &[]).await;
    let a = member(&redis, &[]);
    let b = member(&redis, &[]);
    let lb = Haproxy::round_robin(&[a.addr(), b.addr()]).await;
    let relay = ChaosRelay::start(lb.addr).await;
    // One client whose tunnel is on each server, so both servers see resumes of a tunnel of theirs,
    // handed over or direct. Round-robin alternates, but a client that lands where one already is
    // is simply replaced by the next.
    let mut on = [None, None];
    for _ in 0..8 {
        let before = metric(&a, "tunnelkit_tunnel_tunnels", "").await;
        let c = client(relay.addr, echo);
        let i = usize::from(metric(&a, "tunnelkit_tunnel_tunnels", "").await == before);
        if on[i].is_none() {
            on[i] = Some(c);
        }
        if on.iter().all(Option::is_some) {
            break;
        }
    }
    let clients: Vec<Proc> = on.into_iter().map(|c| c.expect("a tunnel on each server")).collect();
    let chaos = cut_every_quarter_second(&relay);
    let handed_over = || async {
        metric(&a, "tunnelkit_tunnel_handoffs_total", "relayed").await
            + metric(&b, "tunnelkit_tunnel_handoffs_total", "relayed").await
    };
    // Whether a reconnection lands on the other server depends on which client HAProxy sees first
    // after each cut: rounds of 4 × 64 MiB go on until one has (a round has 6-10 cuts).
    for round in 0..4u64 {
        let mut tasks = Vec::new();
        for (i, c) in clients.iter().enumerate() {
            for j in 0..2u64 {
                let entry = c.addr();
                let seed = 100 * round + 10 * i as u64 + j;
                tasks.push(tokio::spawn(async move {
                    let data = pattern(64 << 20, seed);
                    let got =
                        echo_through(entry, data.clone()).await.expect("no application socket sees a cut");
                    assert_eq!(got.len(), data.len(), "stream {seed}: every byte, once");
                    assert_eq!(sha(&got), sha(&data), "stream {seed}: the same bytes in the same order");
                }));
            }
        }
        tokio::time::timeout(Duration::from_secs(300), async {
            for t in tasks {
                t.await.unwrap();
            }
        })
        .await
        .expect("4 × 64 MiB both ways through cuts finish");
        if handed_over().await >= 1.0 {
            break;
        }
    }
    chaos.abort();
    let cuts = relay.accepted.load(Ordering::SeqCst);
    let (resumes_a, resumes_b) = (
        metric(&a, "tunnelkit_tunnel_resumes_total", "").await,
        metric(&b, "tunnelkit_tunnel_resumes_total", "").await,
    );
    let handed = handed_over().await;
    eprintln!(
        "cluster: {cuts} connections; resumes {resumes_a} on a, {resumes_b} on b; {handed} handed over"
    );
    assert!(
        resumes_a >= 1.0 && resumes_b >= 1.0,
        "both servers resumed their tunnels ({resumes_a}, {resumes_b})"
    );
    assert!(handed >= 1.0, "resumes that landed on the other server were handed to the holder");
    let received = metric(&a, "tunnelkit_tunnel_handoffs_received_total", "").await
        + metric(&b, "tunnelkit_tunnel_handoffs_received_total", "").await;
    // A cut can fall between the holder's `101` and the RESUME it then reads: handed, never received.
    assert!(received >= 1.0 && received <= handed, "handoffs reached the holders ({received} of {handed})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_holder_dies_its_streams_fail_and_the_next_connection_works() {
    let echo = echo_server().await;
    let redis = Redis::node(0, None, &[]).await;
    let mut a = member(&redis, &[]);
    let b = member(&redis, &[]);
    let lb = Haproxy::round_robin(&[a.addr(), b.addr()]).await;
    let relay = ChaosRelay::start(lb.addr).await;
    let c = client(relay.addr, echo);
    let holder_is_a = metric(&a, "tunnelkit_tunnel_tunnels", "").await == 1.0;
    let mut s = TcpStream::connect(c.addr()).await.unwrap();
    s.write_all(b"x").await.unwrap();
    let mut one = [0u8; 1];
    s.read_exact(&mut one).await.unwrap();
    // The holder dies without a word; the client's connection is cut too, and its resume lands on
    // the survivor, which finds the claim, cannot reach the holder, and refuses the resume.
    if holder_is_a {
        a.child.kill().unwrap();
    } else {
        drop(b);
    }
    relay.reset_all();
    let mut rest = Vec::new();
    let r =
        tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut rest)).await.expect("ends in time");
    assert!(r.is_err(), "a stream of the lost tunnel fails, it does not end cleanly ({} bytes)", rest.len());
    let data = pattern(1 << 20, 7);
    let got = tokio::time::timeout(Duration::from_secs(30), echo_through(c.addr(), data.clone()))
        .await
        .expect("the next connection in time")
        .expect("the next connection works, on a new tunnel");
    assert_eq!(sha(&got), sha(&data));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handoff_with_another_secret_is_refused() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let redis = Redis::node(0, None, &[]).await;
    let a = member(&redis, &[]);
    let mut req = format!("ws://{}/tunnel", a.addr()).into_client_request().unwrap();
    req.headers_mut().insert("authorization", "Bearer t0k3n".parse().unwrap());
    let forged = format!("v1 {} {} 192.0.2.1:1 {}", now(), "00".repeat(16), "ab".repeat(32));
    req.headers_mut().insert("tunnelkit-handoff", forged.parse().unwrap());
    let Err(err) = tokio_tungstenite::connect_async(req).await else {
        panic!("a forged handoff must be refused")
    };
    assert!(err.to_string().contains("403"), "{err}");
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_servers_hand_resumes_to_each_other_over_tls() {
    let echo = echo_server().await;
    let redis = Redis::node(0, None, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let tls = ["--tls-cert", cert, "--tls-key", key];
    let (a, b) = (member(&redis, &tls), member(&redis, &tls));
    let lb = Haproxy::round_robin(&[a.addr(), b.addr()]).await;
    let relay = ChaosRelay::start(lb.addr).await;
    let url = format!("wss://localhost:{}/tunnel", relay.addr.port());
    let forward = format!("127.0.0.1:0:{echo}");
    let c = Proc::start(&["ws-client", &url, "--token", "t0k3n", "--ca", cert, "-L", &forward], 1);
    let chaos = cut_every_quarter_second(&relay);
    // Rounds of 32 MiB until a cut has sent a resume to the server that does not hold the tunnel
    // (about one cut in two does).
    let (mut handed, mut received) = (0.0, 0.0);
    for round in 0..8 {
        let data = pattern(32 << 20, round);
        let got = tokio::time::timeout(Duration::from_secs(120), echo_through(c.addr(), data.clone()))
            .await
            .expect("32 MiB through cuts in time")
            .expect("no application socket sees a cut");
        assert_eq!(sha(&got), sha(&data), "round {round}: byte-exact");
        handed = metric(&a, "tunnelkit_tunnel_handoffs_total", "relayed").await
            + metric(&b, "tunnelkit_tunnel_handoffs_total", "relayed").await;
        received = metric(&a, "tunnelkit_tunnel_handoffs_received_total", "").await
            + metric(&b, "tunnelkit_tunnel_handoffs_received_total", "").await;
        if received >= 1.0 {
            break;
        }
    }
    chaos.abort();
    eprintln!("cluster over TLS: {handed} handed over, {received} received");
    assert!(
        received >= 1.0,
        "resumes were handed over TLS to the holder ({handed} handed, {received} received)"
    );
}
