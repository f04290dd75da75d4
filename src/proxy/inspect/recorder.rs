//! The recording store: every finished flow gets its id here, the last `--inspect-flows` of them
//! stay in a ring for the inspector and `--har`, each goes to `--flows-log` if there is one, and
//! live subscribers (the inspector's event stream) hear of it.
//!
//! [`Recorder::record`] runs on the proxy's threads at the end of every exchange, so it does only
//! constant work under its one lock (an id, a push, maybe an eviction) and nothing that could wait:
//! the evicted flow is freed after the lock is let go (a 1 MiB body is an `munmap`), subscribers
//! are told through a bounded broadcast channel (one that does not keep up misses flows and is told
//! how many, it never slows the proxy), and the flows log is fed through a bounded queue to its own
//! thread (see [`super::flows_log`] for why a queue and not a writer behind a lock: serialising a
//! flow with its bodies takes milliseconds).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use super::flow::{Flow, FlowId};
use super::flows_log::{FlowsLog, LogQueue};

/// How many flows a live subscriber may fall behind before it misses some: a page receiving
/// events one at a time at 10 000 flows/s keeps up, and 1024 summaries are small.
pub const SUBSCRIBER_BACKLOG: usize = 1024;

/// What a [`Recorder`] keeps and where it writes.
#[derive(Debug)]
pub struct RecorderConfig {
    /// How many finished flows the ring keeps (`--inspect-flows`); the oldest goes first.
    pub flows: usize,
    /// The most body bytes kept per body (`--inspect-body-max`): the proxy captures this much and
    /// exports decode up to this much.
    pub body_max: usize,
    /// `--flows-log`, if given.
    pub flows_log: Option<FlowsLog>,
}

impl Default for RecorderConfig {
    /// The flag defaults: 1000 flows, 1 MiB bodies, no flows log.
    fn default() -> Self {
        RecorderConfig { flows: 1000, body_max: 1024 * 1024, flows_log: None }
    }
}

/// A handle on the recording store; clones share it.
#[derive(Debug, Clone)]
pub struct Recorder {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    ring: Mutex<Ring>,
    body_max: usize,
    events: broadcast::Sender<Arc<Flow>>,
    log: Option<LogQueue>,
}

/// The last flows, oldest first. Ids are given out under the same lock as the push, so the ring
/// always holds consecutive ids and a lookup is an index.
#[derive(Debug)]
struct Ring {
    flows: VecDeque<Arc<Flow>>,
    capacity: usize,
    next_id: u64,
}

impl Recorder {
    /// A store keeping `config.flows` flows; starts the flows log's writer thread when there is a
    /// log (which is why this can fail: the thread could not be started).
    pub fn new(config: RecorderConfig) -> std::io::Result<Recorder> {
        let log = config.flows_log.map(|log| log.start(config.body_max)).transpose()?;
        let (events, _) = broadcast::channel(SUBSCRIBER_BACKLOG);
        let ring = Ring {
            flows: VecDeque::with_capacity(config.flows.min(4096)),
            capacity: config.flows,
            next_id: 1,
        };
        Ok(Recorder {
            inner: Arc::new(Inner { ring: Mutex::new(ring), body_max: config.body_max, events, log }),
        })
    }

    /// The most body bytes to capture per body (`--inspect-body-max`).
    pub fn body_max(&self) -> usize {
        self.inner.body_max
    }

    /// Takes a finished flow: gives it the next id (ids start at 1), keeps it in the ring, queues
    /// its flows-log line and tells subscribers. Never waits on anything but the ring's lock.
    pub fn record(&self, flow: Flow) -> FlowId {
        // Allocated before the lock; the id is set through `get_mut` while the Arc is still ours.
        let mut flow = Arc::new(flow);
        let evicted;
        let id = {
            let mut ring = self.inner.ring.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let id = FlowId(ring.next_id);
            ring.next_id += 1;
            Arc::get_mut(&mut flow).expect("a new Arc has one owner").id = id;
            evicted = if ring.flows.len() >= ring.capacity { ring.flows.pop_front() } else { None };
            if ring.capacity > 0 {
                ring.flows.push_back(flow.clone());
            }
            id
        };
        drop(evicted);
        if let Some(log) = &self.inner.log {
            log.send(flow.clone());
        }
        // An error only means nobody is subscribed.
        let _ = self.inner.events.send(flow);
        id
    }

    /// The flows in the ring, oldest first.
    pub fn flows(&self) -> Vec<Arc<Flow>> {
        self.lock().flows.iter().cloned().collect()
    }

    /// One flow, if it is still in the ring.
    pub fn get(&self, id: FlowId) -> Option<Arc<Flow>> {
        let ring = self.lock();
        let first = ring.flows.front()?.id.0;
        let index = usize::try_from(id.0.checked_sub(first)?).ok()?;
        ring.flows.get(index).cloned()
    }

    /// Every flow recorded from now on. A receiver that falls [`SUBSCRIBER_BACKLOG`] flows behind
    /// gets `RecvError::Lagged(n)` and then carries on with newer flows.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Flow>> {
        self.inner.events.subscribe()
    }

    /// Resolves once the flows log has written and flushed every flow recorded before the call;
    /// at once without a log. Call at shutdown.
    pub async fn flush_log(&self) {
        if let Some(log) = &self.inner.log {
            log.flush().await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ring> {
        // A panic elsewhere while holding the lock leaves a ring that is still consistent (each
        // step above is a single push or pop), so recording goes on.
        self.inner.ring.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::inspect::flow::FlowKind;

    fn flow(url: &str) -> Flow {
        Flow::new(FlowKind::Plain, "127.0.0.1:1".parse().unwrap(), "GET", url, 16)
    }

    fn recorder(flows: usize) -> Recorder {
        Recorder::new(RecorderConfig { flows, ..RecorderConfig::default() }).unwrap()
    }

    #[test]
    fn ids_count_up_from_one_and_the_ring_keeps_the_last_n() {
        let r = recorder(3);
        let ids: Vec<u64> = (0..5).map(|i| r.record(flow(&format!("http://a/{i}"))).0).collect();
        assert_eq!(ids, [1, 2, 3, 4, 5]);
        let kept: Vec<(u64, String)> = r.flows().iter().map(|f| (f.id.0, f.url.clone())).collect();
        assert_eq!(kept, [(3, "http://a/2".into()), (4, "http://a/3".into()), (5, "http://a/4".into())]);
        assert_eq!(r.get(FlowId(4)).unwrap().url, "http://a/3");
        assert!(r.get(FlowId(2)).is_none(), "evicted");
        assert!(r.get(FlowId(6)).is_none(), "not yet recorded");
        assert!(r.get(FlowId(0)).is_none());
    }

    #[test]
    fn a_ring_of_zero_keeps_nothing_but_still_numbers_flows() {
        let r = recorder(0);
        assert_eq!(r.record(flow("http://a/")), FlowId(1));
        assert_eq!(r.record(flow("http://a/")), FlowId(2));
        assert!(r.flows().is_empty());
        assert!(r.get(FlowId(2)).is_none());
    }

    #[test]
    fn concurrent_recording_gives_unique_consecutive_ids() {
        let r = recorder(10_000);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let r = r.clone();
                std::thread::spawn(move || {
                    (0..500).map(|_| r.record(flow("http://a/")).0).collect::<Vec<_>>()
                })
            })
            .collect();
        let mut ids: Vec<u64> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
        ids.sort_unstable();
        assert_eq!(ids, (1..=2000).collect::<Vec<_>>());
        let ring: Vec<u64> = r.flows().iter().map(|f| f.id.0).collect();
        assert_eq!(ring, (1..=2000).collect::<Vec<_>>(), "the ring is in id order");
    }

    #[tokio::test]
    async fn subscribers_hear_of_flows_and_a_slow_one_lags_without_blocking() {
        let r = recorder(10);
        let mut rx = r.subscribe();
        r.record(flow("http://a/first"));
        assert_eq!(rx.recv().await.unwrap().url, "http://a/first");
        for _ in 0..SUBSCRIBER_BACKLOG + 5 {
            r.record(flow("http://a/"));
        }
        assert!(matches!(rx.recv().await, Err(broadcast::error::RecvError::Lagged(5))));
        assert!(rx.recv().await.is_ok(), "carries on after lagging");
    }

    #[tokio::test]
    async fn recorded_flows_reach_the_flows_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flows.jsonl");
        let log = FlowsLog::open(path.to_str().unwrap()).unwrap();
        let r = Recorder::new(RecorderConfig { flows: 1, body_max: 16, flows_log: Some(log) }).unwrap();
        r.record(flow("http://a/1"));
        r.record(flow("http://a/2"));
        r.flush_log().await;
        let text = std::fs::read_to_string(&path).unwrap();
        let urls: Vec<String> = text
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["url"].as_str().unwrap().to_owned()
            })
            .collect();
        assert_eq!(urls, ["http://a/1", "http://a/2"], "the log has every flow, not just the ring's");
    }
}
