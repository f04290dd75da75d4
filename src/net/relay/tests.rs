//! The relay's behaviour, each test run with the buffered copy and with splicing where both
//! ends can be sockets.

use super::*;
use crate::net::Prefixed;
use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn copies_both_ways_with_half_close() {
    let (mut a_far, mut a) = duplex(1024);
    let (mut b, mut b_far) = duplex(1024);
    let task = tokio::spawn(async move { relay(&mut a, &mut b, None).await.unwrap() });
    let data: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
    let d2 = data.clone();
    let w = tokio::spawn(async move {
        a_far.write_all(&d2).await.unwrap();
        a_far.shutdown().await.unwrap();
        // The other direction still flows after our half-close.
        let mut back = Vec::new();
        a_far.read_to_end(&mut back).await.unwrap();
        back
    });
    let mut got = Vec::new();
    b_far.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, data);
    b_far.write_all(b"reply").await.unwrap();
    b_far.shutdown().await.unwrap();
    assert_eq!(w.await.unwrap(), b"reply");
    let stats = task.await.unwrap();
    assert_eq!(stats.a_to_b, 200_000);
    assert_eq!(stats.b_to_a, 5);
}

#[tokio::test]
async fn end_with_b_returns_when_b_closes_while_a_stays_open() {
    let (mut a_far, mut a) = duplex(1024);
    let (mut b, mut b_far) = duplex(1024);
    b_far.write_all(b"bye").await.unwrap();
    drop(b_far);
    // `a` never closes: the relay still ends, and `a` got everything plus EOF.
    let stats = Relay::new(&mut a, &mut b, None).end_with_b().await.unwrap();
    assert_eq!(stats.b_to_a, 3);
    let mut got = Vec::new();
    a_far.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"bye");
}

#[tokio::test(start_paused = true)]
async fn idle_timeout_ends_relay() {
    let (_a_far, mut a) = duplex(1024);
    let (mut b, _b_far) = duplex(1024);
    let stats = relay(&mut a, &mut b, Some(Duration::from_secs(5))).await.unwrap();
    assert!(stats.idle_timeout);
}

// --- The same behaviour over real sockets, once per strategy. ---

/// How a socket test relays.
#[derive(Clone, Copy, Debug)]
enum Strategy {
    Copy,
    /// Splicing with a pool of this many pipes.
    Splice(usize),
}

impl Strategy {
    const ALL: [Strategy; 3] = [Strategy::Copy, Strategy::Splice(64), Strategy::Splice(1)];

    fn pool(self) -> Option<PipePool> {
        match self {
            Strategy::Copy => None,
            Strategy::Splice(n) => Some(PipePool::new(n, None)),
        }
    }
}

/// Two connected loopback sockets.
async fn socket_pair() -> (TcpStream, TcpStream) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let far = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    let (near, _) = l.accept().await.unwrap();
    (far, near)
}

/// `far_a <-> [a relay b] <-> far_b`, relaying on a task; returns the far ends and the relay's result.
async fn relayed(
    strategy: Strategy,
    idle: Option<Duration>,
) -> (TcpStream, TcpStream, tokio::task::JoinHandle<io::Result<RelayStats>>, Option<PipePool>) {
    let (far_a, mut a) = socket_pair().await;
    let (mut b, far_b) = socket_pair().await;
    let pool = strategy.pool();
    let p2 = pool.clone();
    let task = tokio::spawn(async move { Relay::new(&mut a, &mut b, idle).splice(p2.as_ref()).await });
    (far_a, far_b, task, pool)
}

/// A byte pattern that a shifted or duplicated chunk cannot match.
fn pattern(offset: u64, len: usize) -> Vec<u8> {
    (offset..offset + len as u64).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect()
}

/// Writes `total` bytes of the pattern, then half-closes.
async fn send_pattern(w: &mut (impl AsyncWriteExt + Unpin), total: u64) {
    let mut sent = 0u64;
    while sent < total {
        let n = (total - sent).min(256 * 1024) as usize;
        w.write_all(&pattern(sent, n)).await.unwrap();
        sent += n as u64;
    }
    w.shutdown().await.unwrap();
}

/// Reads to EOF, checking every byte against the pattern; returns the count.
async fn check_pattern(r: &mut (impl AsyncReadExt + Unpin)) -> u64 {
    let mut buf = vec![0u8; 256 * 1024];
    let mut got = 0u64;
    loop {
        let n = r.read(&mut buf).await.unwrap();
        if n == 0 {
            return got;
        }
        assert!(buf[..n] == pattern(got, n)[..], "bytes {got}..{} differ", got + n as u64);
        got += n as u64;
    }
}

#[tokio::test]
async fn sockets_keep_half_close_with_every_strategy() {
    for strategy in Strategy::ALL {
        let (mut far_a, mut far_b, task, pool) = relayed(strategy, None).await;
        far_a.write_all(b"request").await.unwrap();
        far_a.shutdown().await.unwrap();
        let mut got = Vec::new();
        far_b.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"request", "{strategy:?}");
        // After a's half-close the other way still flows.
        far_b.write_all(b"late reply").await.unwrap();
        far_b.shutdown().await.unwrap();
        let mut back = Vec::new();
        far_a.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"late reply", "{strategy:?}");
        let stats = task.await.unwrap().unwrap();
        assert_eq!((stats.a_to_b, stats.b_to_a), (7, 10), "{strategy:?}");
        if let Some(pool) = pool {
            assert_eq!(pool.live(), pool.idle(), "{strategy:?}: every pipe is back once the relay ends");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gib_each_way_arrives_byte_exact_with_every_strategy() {
    const GIB: u64 = 1 << 30;
    for strategy in [Strategy::Copy, Strategy::Splice(4)] {
        let (far_a, far_b, task, pool) = relayed(strategy, None).await;
        let (mut ar, mut aw) = far_a.into_split();
        let (mut br, mut bw) = far_b.into_split();
        let up = tokio::spawn(async move { send_pattern(&mut aw, GIB).await });
        let down = tokio::spawn(async move { send_pattern(&mut bw, GIB).await });
        let got_b = tokio::spawn(async move { check_pattern(&mut br).await });
        let got_a = check_pattern(&mut ar).await;
        up.await.unwrap();
        down.await.unwrap();
        assert_eq!((got_a, got_b.await.unwrap()), (GIB, GIB), "{strategy:?}");
        let stats = task.await.unwrap().unwrap();
        assert_eq!((stats.a_to_b, stats.b_to_a), (GIB, GIB), "{strategy:?}");
        if let Some(pool) = pool {
            assert!(pool.live() > 0, "the splice strategy was used");
            assert_eq!(pool.fallbacks(), 0, "four pipes are enough for two directions");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_tunnels_share_two_pipes_and_the_rest_copy() {
    let pool = PipePool::new(2, None);
    // Both pipes are held until the first tunnel is through, so it (at least) must copy: the
    // fallback is exercised whatever the scheduling, then the pipes serve the rest.
    let held = (pool.take().unwrap(), pool.take().unwrap());
    let mut tunnels = Vec::new();
    for i in 0..50u64 {
        let (far_a, mut a) = socket_pair().await;
        let (mut b, far_b) = socket_pair().await;
        let p = pool.clone();
        let relay = tokio::spawn(async move { Relay::new(&mut a, &mut b, None).splice(Some(&p)).await });
        let size = 2 * 1024 * 1024 + i * 4099;
        tunnels.push(tokio::spawn(async move {
            let (mut ar, mut aw) = far_a.into_split();
            let (mut br, mut bw) = far_b.into_split();
            let up = tokio::spawn(async move { send_pattern(&mut aw, size).await });
            let down = tokio::spawn(async move { send_pattern(&mut bw, size).await });
            let got_b = tokio::spawn(async move { check_pattern(&mut br).await });
            let got_a = check_pattern(&mut ar).await;
            up.await.unwrap();
            down.await.unwrap();
            assert_eq!((got_a, got_b.await.unwrap()), (size, size));
            let stats = relay.await.unwrap().unwrap();
            assert_eq!((stats.a_to_b, stats.b_to_a), (size, size));
        }));
    }
    let mut tunnels = tunnels.into_iter();
    tunnels.next().unwrap().await.unwrap();
    drop(held);
    for t in tunnels {
        t.await.unwrap();
    }
    assert!(pool.live() <= 2, "never more pipes than the bound");
    assert!(pool.fallbacks() > 0, "with 100 directions and 2 pipes some directions copied");
    assert_eq!(pool.live(), pool.idle(), "every pipe is back");
}

#[tokio::test]
async fn an_idle_spliced_tunnel_holds_no_pipe() {
    let (mut far_a, mut far_b, task, pool) = relayed(Strategy::Splice(8), None).await;
    let pool = pool.unwrap();
    for round in 0..3u8 {
        far_a.write_all(&[round; 1000]).await.unwrap();
        let mut got = [0u8; 1000];
        far_b.read_exact(&mut got).await.unwrap();
        assert_eq!(got, [round; 1000]);
        // Once the bytes are through and the read would block, the pipe is back in the pool.
        tokio::time::timeout(Duration::from_secs(5), async {
            while pool.idle() != pool.live() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the pipe returns when the direction goes idle");
    }
    assert_eq!(pool.live(), 1, "one pipe served all three bursts");
    drop((far_a, far_b));
    let stats = task.await.unwrap().unwrap();
    assert_eq!(stats.a_to_b, 3000);
}

#[tokio::test]
async fn a_prefix_is_copied_before_the_socket_is_spliced() {
    let (mut far_a, a) = socket_pair().await;
    let (mut b, mut far_b) = socket_pair().await;
    let mut a = Prefixed::new(a, bytes::BytesMut::from(&b"put back;"[..]));
    let pool = PipePool::new(4, None);
    let p = pool.clone();
    let task = tokio::spawn(async move { Relay::new(&mut a, &mut b, None).splice(Some(&p)).await });
    far_a.write_all(b"then the socket").await.unwrap();
    far_a.shutdown().await.unwrap();
    let mut got = Vec::new();
    far_b.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"put back;then the socket");
    drop(far_b);
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_reset_while_splicing_is_an_error_and_the_pipe_is_not_leaked() {
    let (far_a, far_b, task, pool) = relayed(Strategy::Splice(4), None).await;
    let pool = pool.unwrap();
    let (mut ar, mut aw) = far_a.into_split();
    // a sends a lot to b, whose far end closes with unread bytes: a reset.
    let writer = tokio::spawn(async move {
        let chunk = vec![7u8; 64 * 1024];
        for _ in 0..1024 {
            if aw.write_all(&chunk).await.is_err() {
                break;
            }
        }
    });
    socket2::SockRef::from(&far_b).set_linger(Some(Duration::ZERO)).unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(far_b);
    let result = tokio::time::timeout(Duration::from_secs(10), task).await.expect("the relay ends");
    let _ = result.unwrap();
    drop(writer);
    let mut rest = Vec::new();
    let _ = ar.read_to_end(&mut rest).await;
    assert!(pool.live() <= 4);
    assert_eq!(pool.live(), pool.idle(), "a pipe that held bytes was closed, the others returned");
}

#[tokio::test(start_paused = true)]
async fn the_idle_timeout_ends_a_spliced_relay() {
    let (_far_a, _far_b, task, _pool) = relayed(Strategy::Splice(4), Some(Duration::from_secs(5))).await;
    let stats = task.await.unwrap().unwrap();
    assert!(stats.idle_timeout);
}
