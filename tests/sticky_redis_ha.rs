//! `tunnelkit sticky` sharing sessions through highly available Redis: a master with a replica
//! watched by three sentinels (`--redis redis+sentinel://…`), and a Redis Cluster of three masters
//! with a replica each (`--redis-cluster`). In both, a master is killed (SIGKILL) while sessions are
//! live, and after its replica is promoted the sessions still route to their backends, also through
//! a balancer that never saw them (so they were read from the promoted replica), and a session made
//! during the switch is written to the new master.
//!
//! Real processes only: redis-server (also run as a sentinel), redis-cli for `--cluster create`,
//! Socket.IO 4 backends and clients under node. Redis ports come from `support::reserve_port()`,
//! tunnelkit listens on port 0; every process is killed when the test ends, however it ends.

mod support;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use support::redis::Redis;
use support::socketio::{node_dir, Backend};
use support::{curl, Proc};

/// `args` sent to the node on `port` on a new connection (after `READONLY` when `readonly`, so a
/// cluster replica answers reads), bounded by 2 s.
async fn query(port: u16, readonly: bool, args: &[&str]) -> redis::RedisResult<redis::Value> {
    let run = async {
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}"))?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        if readonly {
            redis::cmd("READONLY").query_async::<()>(&mut conn).await?;
        }
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query_async(&mut conn).await
    };
    tokio::time::timeout(Duration::from_secs(2), run).await.unwrap_or_else(|_| {
        Err(redis::RedisError::from(std::io::Error::new(std::io::ErrorKind::TimedOut, "query timed out")))
    })
}

/// Whether the node on `port` holds the binding of `sid`.
async fn holds(port: u16, readonly: bool, sid: &str) -> bool {
    matches!(query(port, readonly, &["EXISTS", &format!("socket.io#{sid}")]).await, Ok(redis::Value::Int(1)))
}

/// Retries `check` every 100 ms until it holds; fails naming `what` after `limit`.
async fn wait_until<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `tunnelkit sticky` over `backends` with `extra` flags, checking health every 200 ms.
fn sticky(backends: &[&Backend], extra: &[&str]) -> Proc {
    let mut args = vec!["sticky".to_owned(), "--listen".into(), "127.0.0.1:0".into()];
    for b in backends {
        args.extend(["--backend".to_owned(), b.addr()]);
    }
    args.extend(
        ["--check-interval", "200ms", "--check-timeout", "200ms", "--balance", "round-robin"]
            .map(String::from),
    );
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Proc::start(&args, 1)
}

fn url_of(p: &Proc) -> String {
    format!("http://{}", p.addr())
}

/// The `X-Backend` header of a raw answer.
fn backend_of(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.to_ascii_lowercase().starts_with("x-backend:").then(|| l[10..].trim().to_owned()))
}

/// A raw polling handshake through the balancer: (sid, backend name).
async fn handshake(url: &str) -> (String, String) {
    let (ok, out, err) = curl(&["-i", &format!("{url}/socket.io/?EIO=4&transport=polling")]).await;
    assert!(ok, "{err}");
    let text = String::from_utf8_lossy(&out).into_owned();
    let backend = backend_of(&text).unwrap_or_else(|| panic!("no X-Backend in {text}"));
    let body = text.split("\r\n\r\n").nth(1).unwrap();
    let sid = tunnelkit::sticky::engine::learn_sid("text/plain", body.as_bytes()).expect("handshake").sid;
    (sid, backend)
}

/// A poll of session `sid` through `url` (the Socket.IO connect packet): the backend that answered,
/// or `None` when the balancer knew no binding and answered "Session ID unknown" itself.
async fn poll(url: &str, sid: &str) -> Option<String> {
    let target = format!("{url}/socket.io/?EIO=4&transport=polling&sid={sid}");
    let (ok, out, err) = curl(&["-i", "-X", "POST", "-d", "40", &target]).await;
    assert!(ok, "{err}");
    backend_of(&String::from_utf8_lossy(&out))
}

/// A real Socket.IO client: `count` acknowledged events over polling, through `url`; returns the
/// backends that answered.
async fn client(url: &str, count: usize) -> Vec<String> {
    let out = tokio::time::timeout(
        Duration::from_secs(40),
        tokio::process::Command::new("node")
            .current_dir(node_dir())
            .args(["client.js", url, "polling", &count.to_string()])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("client finished")
    .unwrap();
    assert!(out.status.success(), "client failed: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["acks"].as_u64(), Some(count as u64), "{v}");
    v["backends"].as_array().unwrap().iter().map(|b| b.as_str().unwrap().to_owned()).collect()
}

/// The master the sentinel on `port` names for `mymaster`, as its port.
async fn named_master(port: u16) -> Option<u16> {
    let v = query(port, false, &["SENTINEL", "get-master-addr-by-name", "mymaster"]).await.ok()?;
    let addr: Vec<String> = redis::from_redis_value(v).ok()?;
    addr.get(1)?.parse().ok()
}

/// The sentinel on `port` sees the replica and the two other sentinels (a failover needs a
/// majority of sentinels that know each other).
async fn sentinel_ready(port: u16) -> bool {
    let Ok(v) = query(port, false, &["SENTINEL", "MASTER", "mymaster"]).await else { return false };
    let Ok(info) = redis::from_redis_value::<BTreeMap<String, String>>(v) else { return false };
    let num = |k: &str| info.get(k).and_then(|n| n.parse::<u32>().ok()).unwrap_or(0);
    num("num-slaves") >= 1 && num("num-other-sentinels") >= 2
}

/// The first word of `ROLE` on the node at `port` (`master`, `slave`), and for a replica its
/// master's port.
async fn role(port: u16) -> Option<(String, Option<u16>)> {
    let v: Vec<redis::Value> = redis::from_redis_value(query(port, false, &["ROLE"]).await.ok()?).ok()?;
    let word: String = redis::from_redis_value(v.first()?.clone()).ok()?;
    let master = v.get(2).and_then(|p| redis::from_redis_value::<u16>(p.clone()).ok());
    Some((word, master))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_failover_keeps_sessions_routing() {
    let (a, b) = (Backend::start("A"), Backend::start("B"));
    let dir = tempfile::tempdir().unwrap();
    let master_port = support::reserve_port();
    let mut master = Redis::node(master_port, Some(dir.path()), &[]).await;
    let replica_port = support::reserve_port();
    let _replica =
        Redis::node(replica_port, Some(dir.path()), &["--replicaof", "127.0.0.1", &master_port.to_string()])
            .await;
    let mut sentinels = Vec::new();
    for i in 0..3 {
        let port = support::reserve_port();
        let conf = dir.path().join(format!("sentinel-{i}.conf"));
        // Quick to act: down after 500 ms, and a failover attempt retried after 2 s.
        let text = format!(
            "port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor mymaster 127.0.0.1 {master_port} 2\n\
             sentinel down-after-milliseconds mymaster 500\nsentinel failover-timeout mymaster 2000\n",
            dir.path().display()
        );
        std::fs::write(&conf, text).unwrap();
        sentinels.push(Redis::start(port, &[conf.display().to_string(), "--sentinel".into()]).await);
    }
    let ports: Vec<u16> = sentinels.iter().map(|s| s.port).collect();
    wait_until(Duration::from_secs(20), "sentinels to see the replica and each other", || async {
        for p in &ports {
            if !sentinel_ready(*p).await {
                return false;
            }
        }
        true
    })
    .await;

    let hosts = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect::<Vec<_>>().join(",");
    let url = format!("redis+sentinel://{hosts}/mymaster");
    let s1 = sticky(&[&a, &b], &["--redis", &url]);
    let u1 = url_of(&s1);
    let mut live = Vec::new();
    for _ in 0..4 {
        let (sid, backend) = handshake(&u1).await;
        assert_eq!(poll(&u1, &sid).await.as_deref(), Some(backend.as_str()), "bound through Sentinel");
        assert!(holds(master_port, false, &sid).await, "the binding is on the master");
        live.push((sid, backend));
    }
    wait_until(Duration::from_secs(10), "bindings replicated to the replica", || async {
        for (sid, _) in &live {
            if !holds(replica_port, false, sid).await {
                return false;
            }
        }
        true
    })
    .await;

    master.kill();
    // A session made while the master is gone: bound locally, its write to Redis fails.
    let during = handshake(&u1).await;
    assert_eq!(poll(&u1, &during.0).await.as_deref(), Some(during.1.as_str()));
    wait_until(Duration::from_secs(20), "Sentinel failover (the replica promoted)", || async {
        named_master(ports[0]).await == Some(replica_port)
            && role(replica_port).await.is_some_and(|(r, _)| r == "master")
    })
    .await;

    // The live sessions still route through the first balancer, and through a second one that
    // never saw them: it reads them from the promoted replica.
    let s2 = sticky(&[&b, &a], &["--redis", &url]);
    let u2 = url_of(&s2);
    for (sid, backend) in &live {
        assert_eq!(poll(&u1, sid).await.as_deref(), Some(backend.as_str()), "{sid} after the failover");
        assert_eq!(poll(&u2, sid).await.as_deref(), Some(backend.as_str()), "{sid} read from the new master");
    }
    // The binding made during the switch is written back to the new master.
    wait_until(Duration::from_secs(10), "the binding made during the failover on the new master", || {
        holds(replica_port, false, &during.0)
    })
    .await;
    assert_eq!(poll(&u2, &during.0).await.as_deref(), Some(during.1.as_str()));
    let log = s1.stderr.lock().unwrap().clone();
    for said in ["Redis unreachable", "Redis master moved", "reachable again; writing back"] {
        assert!(log.contains(said), "the first balancer logs `{said}`:\n{log}");
    }
    // New sessions work, and are shared.
    assert_eq!(client(&u1, 10).await.len(), 1, "a real client sticks to one backend");
    let (sid, backend) = handshake(&u1).await;
    assert!(holds(replica_port, false, &sid).await, "a new binding is written to the new master");
    assert_eq!(poll(&u2, &sid).await, Some(backend));
}

/// Whether the cluster node on `port` reports `cluster_state:ok` (every slot served).
async fn cluster_ok(port: u16) -> bool {
    let info = query(port, false, &["CLUSTER", "INFO"]).await.ok();
    info.and_then(|v| redis::from_redis_value::<String>(v).ok())
        .is_some_and(|t| t.contains("cluster_state:ok"))
}

/// The slot ranges the cluster node on `port` serves (its `myself` line of `CLUSTER NODES`).
async fn own_slots(port: u16) -> Vec<std::ops::RangeInclusive<u16>> {
    let nodes = query(port, false, &["CLUSTER", "NODES"]).await.unwrap();
    let text: String = redis::from_redis_value(nodes).unwrap();
    let line = text.lines().find(|l| l.split(' ').nth(2).is_some_and(|f| f.contains("myself"))).unwrap();
    let range = |r: &str| {
        let (lo, hi) = r.split_once('-').unwrap_or((r, r));
        Some(lo.parse().ok()?..=hi.parse().ok()?)
    };
    line.split(' ').skip(8).filter_map(range).collect()
}

/// Whether the cluster node on `port` lists the node on `master` as a master (`CLUSTER NODES`).
async fn sees_master(port: u16, master: u16) -> bool {
    let nodes = query(port, false, &["CLUSTER", "NODES"]).await.ok();
    let text = nodes.and_then(|v| redis::from_redis_value::<String>(v).ok()).unwrap_or_default();
    let addr = format!("127.0.0.1:{master}@");
    text.lines().any(|l| {
        let fields: Vec<&str> = l.split(' ').collect();
        fields.get(1).is_some_and(|a| a.starts_with(&addr))
            && fields.get(2).is_some_and(|flags| flags.split(',').any(|f| f == "master"))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_node_failure_keeps_sessions_routing() {
    let (a, b) = (Backend::start("A"), Backend::start("B"));
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = BTreeMap::new();
    for _ in 0..6 {
        let port = support::reserve_port();
        // The cluster bus port is named too: its default, port + 10000, is not reserved.
        let bus = support::reserve_port().to_string();
        let conf = dir.path().join(format!("nodes-{port}.conf")).display().to_string();
        let cluster = [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            &conf,
            "--cluster-node-timeout",
            "1000",
            "--cluster-port",
            &bus,
        ];
        nodes.insert(port, Redis::node(port, Some(dir.path()), &cluster).await);
    }
    let ports: Vec<u16> = nodes.keys().copied().collect();
    let create = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(ports.iter().map(|p| format!("127.0.0.1:{p}")))
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("redis-cli --cluster create finished within 30s")
    .expect("redis-cli is installed (run ./test.sh)");
    assert!(create.status.success(), "cluster create: {}", String::from_utf8_lossy(&create.stdout));
    wait_until(Duration::from_secs(20), "the cluster to be up on every node", || async {
        for p in &ports {
            if !cluster_ok(*p).await {
                return false;
            }
        }
        true
    })
    .await;

    let seeds = format!("redis://127.0.0.1:{},redis://127.0.0.1:{}", ports[0], ports[1]);
    let s1 = sticky(&[&a, &b], &["--redis-cluster", &seeds]);
    let u1 = url_of(&s1);
    // Enough sessions that every master holds some: the one holding most is killed.
    let mut masters: BTreeMap<u16, Vec<(String, String)>> = BTreeMap::new();
    for _ in 0..12 {
        let (sid, backend) = handshake(&u1).await;
        assert_eq!(poll(&u1, &sid).await.as_deref(), Some(backend.as_str()), "bound through the cluster");
        let mut owner = None;
        for p in &ports {
            if holds(*p, false, &sid).await {
                owner = Some(*p);
            }
        }
        let owner = owner.unwrap_or_else(|| panic!("no master holds {sid}"));
        masters.entry(owner).or_default().push((sid, backend));
    }
    let (&victim, doomed) = masters.iter().max_by_key(|(_, s)| s.len()).unwrap();
    let mut replica = None;
    for p in &ports {
        if role(*p).await == Some(("slave".to_owned(), Some(victim))) {
            replica = Some(*p);
        }
    }
    let replica = replica.unwrap_or_else(|| panic!("no replica of {victim}"));
    wait_until(Duration::from_secs(10), "the victim's bindings replicated", || async {
        for (sid, _) in doomed {
            if !holds(replica, true, sid).await {
                return false;
            }
        }
        true
    })
    .await;

    let victim_slots = own_slots(victim).await;
    let survivor = *ports.iter().find(|p| **p != victim && **p != replica).unwrap();
    nodes.get_mut(&victim).unwrap().kill();
    // Sessions made during the switch, until two hash to the dead master's slots: their writes fail
    // until its replica takes over.
    let mut during = Vec::new();
    let mut on_victim = 0;
    while on_victim < 2 {
        assert!(during.len() < 40, "no session hashed to the dead master's slots");
        let (sid, backend) = handshake(&u1).await;
        assert_eq!(poll(&u1, &sid).await.as_deref(), Some(backend.as_str()));
        let key = format!("socket.io#{sid}");
        let slot: u16 =
            redis::from_redis_value(query(survivor, false, &["CLUSTER", "KEYSLOT", &key]).await.unwrap())
                .unwrap();
        on_victim += usize::from(victim_slots.iter().any(|r| r.contains(&slot)));
        during.push((sid, backend));
    }
    // Done when every surviving node sees the replica as the master: a client then gets the new
    // slot map from whichever node it asks.
    let survivors: Vec<u16> = ports.iter().copied().filter(|p| *p != victim).collect();
    wait_until(Duration::from_secs(20), "the cluster failover (the victim's replica promoted)", || async {
        for p in &survivors {
            if !(cluster_ok(*p).await && sees_master(*p, replica).await) {
                return false;
            }
        }
        true
    })
    .await;

    // A second balancer that never saw the sessions, seeded with the same two nodes (one may be
    // the dead one): every session routes to its backend, the dead master's ones included.
    let s2 = sticky(&[&b, &a], &["--redis-cluster", &seeds]);
    let u2 = url_of(&s2);
    for (sid, backend) in masters.values().flatten() {
        assert_eq!(poll(&u1, sid).await.as_deref(), Some(backend.as_str()), "{sid} after the failover");
        assert_eq!(poll(&u2, sid).await.as_deref(), Some(backend.as_str()), "{sid} read from the cluster");
    }
    // The bindings made during the switch reach the cluster (written back where they failed).
    wait_until(Duration::from_secs(10), "the bindings made during the failover in the cluster", || async {
        for (sid, backend) in &during {
            if poll(&u2, sid).await.as_deref() != Some(backend.as_str()) {
                return false;
            }
        }
        true
    })
    .await;
    let log = s1.stderr.lock().unwrap().clone();
    for said in ["Redis unreachable", "reachable again; writing back"] {
        assert!(log.contains(said), "the first balancer logs `{said}`:\n{log}");
    }
    assert_eq!(client(&u1, 10).await.len(), 1, "a real client sticks to one backend");
    let (sid, backend) = handshake(&u1).await;
    assert_eq!(poll(&u2, &sid).await, Some(backend));
}

/// `--redis` and `--redis-cluster` together, and a Sentinel URL without a master name, are refused
/// before anything starts, naming the flags and the expected form.
#[tokio::test]
async fn topology_config_errors_name_the_flag_and_the_form() {
    let base = ["sticky", "--listen", "127.0.0.1:0", "--backend", "127.0.0.1:1"];
    for (extra, wants) in [
        (
            &["--redis", "redis://127.0.0.1:1", "--redis-cluster", "redis://127.0.0.1:2"][..],
            &["--redis-cluster", "--redis", "keep one"][..],
        ),
        (&["--redis", "redis+sentinel://:secret@127.0.0.1:1"], &["--redis", "no master name", "/MASTERNAME"]),
        (&["--redis-cluster", "redis+sentinel://127.0.0.1:1/m"], &["--redis-cluster", "belongs in --redis"]),
    ] {
        let args = [&base[..], extra].concat();
        let (status, err) = support::run_to_exit(&args, &[], Duration::from_secs(10)).await;
        assert!(status.is_some_and(|s| !s.success()), "{extra:?} is refused: {err}");
        for want in wants {
            assert!(err.contains(want), "{extra:?}: no `{want}` in {err}");
        }
        assert!(!err.contains("secret"), "the password is hidden: {err}");
    }
    // Nothing answers: the error names the flag, at start.
    let unreachable = [&base[..], &["--redis", "redis+sentinel://127.0.0.1:1/mymaster"]].concat();
    let (status, err) = support::run_to_exit(&unreachable, &[], Duration::from_secs(15)).await;
    assert!(status.is_some_and(|s| !s.success()) && err.contains("--redis"), "{err}");
    let unreachable = [&base[..], &["--redis-cluster", "redis://127.0.0.1:1"]].concat();
    let (status, err) = support::run_to_exit(&unreachable, &[], Duration::from_secs(15)).await;
    assert!(status.is_some_and(|s| !s.success()) && err.contains("--redis-cluster"), "{err}");
}
