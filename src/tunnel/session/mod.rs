//! One tunnel's state, shared by the link tasks of its current WebSocket and by its stream handles.
//!
//! The session outlives connections: when a WebSocket breaks, streams, credits, the replay buffer and the
//! sequence counters stay here, and the next connection (a resume) carries on from them. Everything is
//! under one short-held mutex, taken once per read, write or frame; the link's writer is woken through a
//! [`Notify`] and stream handles through their stored wakers, always after the lock is released.
//!
//! The files of this module, one concept each, in the order a frame meets them:
//! - `streams`: one stream's slot, its [`Lifecycle`](streams::Lifecycle) and flow control;
//! - `io`: what a stream handle asks (read, write, shutdown, reset, drop);
//! - `scheduler`: what the link's writer sends next, sequence numbers, acks, replay, pings;
//! - `dispatch`: what each received frame does, one function per message;
//! - `memory`: the stream memory counters; `events`: the types the session reports with.
//!
//! This file holds the session itself: its lifetime across connections (attach, link down, end) and the
//! calls that create streams (open, accept, listen).

mod dispatch;
mod events;
mod io;
mod memory;
mod scheduler;
mod streams;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::{broadcast, mpsc, oneshot, watch, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use self::memory::StreamMemory;
use self::streams::StreamSlot;
use super::id::TunnelId;
use super::params::{LinkParams, Mode};
use super::replay::ReplayBuffer;
use super::wire::Message;

pub use self::events::{EndReason, LinkError, LinkStatus, ListenRequest, TunnelEvent};
/// RST codes (the wire values of `docs/protocol.md`), owned by [`super::wire`].
pub use super::wire::rst;

/// Which end of the tunnel this is; it decides stream id parity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Opens odd stream ids, sends HELLO/RESUME.
    Client,
    /// Opens even stream ids, grants tunnels.
    Server,
}

/// Everything under the session lock. Only this module's files see it.
struct State {
    /// Number of the connection allowed to use the session; older link tasks see a mismatch and stop.
    gen: u64,
    link_up: bool,
    link_cancel: CancellationToken,
    ended: Option<EndReason>,
    next_local_id: u32,
    highest_peer_id: u32,
    /// Streams opened and the peer's OPENs accepted, ever (single mode allows one).
    opened_streams: u32,
    streams: HashMap<u32, StreamSlot>,
    /// Streams with frames queued, served round-robin one frame per turn.
    ready: VecDeque<u32>,
    /// Small sequenced control frames (WINDOW, RST, LISTEN, BOUND, CONNECTED), sent ahead of data.
    control: VecDeque<BytesMut>,
    /// The nonce of the latest PING not yet answered: answers coalesce, so a peer that pings without
    /// reading costs one slot, not one per ping.
    pong: Option<u64>,
    replay: ReplayBuffer,
    /// Highest sequence received in order from the peer: our cumulative ack.
    recv_seq: u64,
    /// Highest ack the peer has sent us.
    peer_ack: u64,
    /// Sequenced frames and their bytes received since our ack last left (see `scheduler`).
    ack_frames: u32,
    ack_bytes: usize,
    /// When the oldest of those arrived: a bare ACK is due `ACK_DELAY` later.
    ack_since: Option<Instant>,
    close_queued: bool,
    close_sent: bool,
    next_listen_id: u32,
    listens: HashMap<u32, oneshot::Sender<Result<SocketAddr, String>>>,
    /// Last time a stream opened, closed or moved data (for the idle timeout).
    last_activity: Instant,
    memory: StreamMemory,
}

impl State {
    /// Puts stream `id` in the round-robin queue if it is not there; true if it was added.
    fn enqueue_ready(&mut self, id: u32) -> bool {
        let added = self.streams.get_mut(&id).is_some_and(|slot| slot.mark_ready());
        if added {
            self.ready.push_back(id);
        }
        added
    }

    /// Drops every queued frame of stream `id` and releases their bytes from the budget. Writers waiting
    /// for room are woken: the link may have nothing else to take that would wake them. (Waking only
    /// schedules their tasks, which take the lock when they run, so doing it under the lock is safe.)
    fn clear_pending(&mut self, id: u32) {
        let Some(slot) = self.streams.get_mut(&id) else { return };
        let freed = slot.clear_pending();
        if self.memory.dropped(freed) {
            for w in self.streams.values_mut().filter_map(|s| s.take_write_waker()) {
                w.wake();
            }
        }
    }
}

/// A tunnel's shared state and the channels around it.
pub struct Session {
    /// The tunnel's name.
    pub id: TunnelId,
    /// This end's role.
    pub role: Role,
    /// The agreed numbers.
    pub params: LinkParams,
    state: Mutex<State>,
    /// Wakes the current link's writer.
    writer: Notify,
    status: watch::Sender<LinkStatus>,
    events: broadcast::Sender<TunnelEvent>,
    /// Streams the peer opened, as (id, target), for whoever accepts them to wrap in a handle.
    accept_tx: mpsc::UnboundedSender<(u32, String)>,
    accept_rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<(u32, String)>>,
    listen_tx: Option<mpsc::UnboundedSender<ListenRequest>>,
    /// Fires when the tunnel ends (stops listeners and services bound to it).
    pub ended: CancellationToken,
}

fn proto(msg: impl Into<String>) -> LinkError {
    LinkError::Protocol(msg.into())
}

fn wake_all(wakers: Vec<Waker>) {
    for w in wakers {
        w.wake();
    }
}

/// A connection that now carries the tunnel ([`Session::attach`]).
pub(crate) struct Attached {
    /// Its number: link tasks of older connections see a mismatch and stop.
    pub gen: u64,
    /// Stops this connection's tasks when a newer one takes over or the tunnel ends.
    pub cancel: CancellationToken,
    /// Our cumulative ack (what we have received), to send in RESUMED.
    pub our_ack: u64,
}

impl Session {
    /// A session with no connection yet. On the server, `listen_tx` receives the client's `-R` requests.
    pub fn new(
        id: TunnelId,
        role: Role,
        params: LinkParams,
        listen_tx: Option<mpsc::UnboundedSender<ListenRequest>>,
    ) -> Arc<Session> {
        let (accept_tx, accept_rx) = mpsc::unbounded_channel();
        let (events, _) = broadcast::channel(256);
        let first_id = match role {
            Role::Client => 1,
            Role::Server => 2,
        };
        Arc::new(Session {
            id,
            role,
            params,
            state: Mutex::new(State {
                gen: 0,
                link_up: false,
                link_cancel: CancellationToken::new(),
                ended: None,
                next_local_id: first_id,
                highest_peer_id: 0,
                opened_streams: 0,
                streams: HashMap::new(),
                ready: VecDeque::new(),
                control: VecDeque::new(),
                pong: None,
                replay: ReplayBuffer::new(params.replay_bytes),
                recv_seq: 0,
                peer_ack: 0,
                ack_frames: 0,
                ack_bytes: 0,
                ack_since: None,
                close_queued: false,
                close_sent: false,
                next_listen_id: 1,
                listens: HashMap::new(),
                last_activity: Instant::now(),
                memory: StreamMemory::new(params.stream_memory),
            }),
            writer: Notify::new(),
            status: watch::channel(LinkStatus::Down(0)).0,
            events,
            accept_tx,
            accept_rx: tokio::sync::Mutex::new(accept_rx),
            listen_tx,
            ended: CancellationToken::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Subscribes to the tunnel's events.
    pub fn events(&self) -> broadcast::Receiver<TunnelEvent> {
        self.events.subscribe()
    }

    fn emit(&self, e: TunnelEvent) {
        let _ = self.events.send(e);
    }

    /// Watches the connection state.
    pub fn status(&self) -> watch::Receiver<LinkStatus> {
        self.status.subscribe()
    }

    /// Resolves when the session has something for the link's writer (create it, then call
    /// [`Session::take_batch`], then await it, so that no wake-up is lost in between).
    pub(crate) fn writer_wakeup(&self) -> tokio::sync::futures::Notified<'_> {
        self.writer.notified()
    }

    /// Wakes the link's writer for something of the link's own (a WebSocket pong to send).
    pub(crate) fn wake_writer(&self) {
        self.writer.notify_one();
    }

    /// Hands the tunnel to a new connection: cancels the previous one, drops what the peer has acked and
    /// says what the new connection needs ([`Attached`]). Frames still unacked are replayed first by the
    /// new writer.
    pub(crate) fn attach(&self, peer_ack: u64) -> Result<Attached, EndReason> {
        let mut st = self.lock();
        if let Some(r) = &st.ended {
            return Err(r.clone());
        }
        st.link_cancel.cancel();
        st.link_cancel = CancellationToken::new();
        st.gen += 1;
        st.link_up = true;
        let resumed = st.gen > 1;
        st.peer_ack = st.peer_ack.max(peer_ack);
        st.replay.ack(peer_ack);
        let out = Attached { gen: st.gen, cancel: st.link_cancel.clone(), our_ack: st.recv_seq };
        drop(st);
        self.status.send_replace(LinkStatus::Up(out.gen));
        if resumed {
            metrics::counter!("tunnelkit_tunnel_resumes_total").increment(1);
            self.emit(TunnelEvent::Resumed);
        }
        self.writer.notify_one();
        Ok(out)
    }

    /// The connection `gen` is gone. If it was the current one, the tunnel is now broken (held for resume).
    pub(crate) fn link_down(&self, gen: u64) {
        let mut st = self.lock();
        if st.gen != gen || !st.link_up {
            return;
        }
        st.link_up = false;
        st.link_cancel.cancel();
        let ended = st.ended.is_some();
        drop(st);
        if !ended {
            self.status.send_replace(LinkStatus::Down(gen));
            self.emit(TunnelEvent::Broken);
        }
    }

    /// Whether the tunnel has ended.
    pub fn is_ended(&self) -> bool {
        self.lock().ended.is_some()
    }

    /// Why the tunnel ended, if it has.
    pub fn end_reason(&self) -> Option<EndReason> {
        self.lock().ended.clone()
    }

    /// Whether a connection currently carries the tunnel.
    pub fn is_up(&self) -> bool {
        self.lock().link_up
    }

    /// Ends the tunnel: every unfinished stream fails with an error (never a clean EOF), listeners stop,
    /// the link closes. Idempotent.
    pub fn end(&self, reason: EndReason) {
        let mut wakers = Vec::new();
        let mut guard = self.lock();
        let st = &mut *guard;
        if st.ended.is_some() {
            return;
        }
        tracing::debug!(tunnel = %self.id, %reason, "tunnel ended");
        st.ended = Some(reason.clone());
        let mut freed = 0;
        for slot in st.streams.values_mut() {
            slot.end(|| format!("tunnel {reason}"));
            slot.wake(&mut wakers);
            freed += slot.clear_pending();
        }
        // Every writer was just woken; this only settles the count of queued bytes.
        st.memory.dropped(freed);
        for (_, tx) in st.listens.drain() {
            let _ = tx.send(Err(format!("tunnel {reason}")));
        }
        drop(guard);
        wake_all(wakers);
        self.ended.cancel();
        self.status.send_replace(LinkStatus::Ended);
        self.emit(TunnelEvent::Closed(reason));
        self.writer.notify_one();
    }

    /// Queues an orderly CLOSE after everything already queued.
    pub(crate) fn queue_close(&self) {
        let mut st = self.lock();
        if st.ended.is_none() {
            st.close_queued = true;
        }
        drop(st);
        self.writer.notify_one();
    }

    /// Waits for the next stream opened by the peer, as (id, target); `None` once the tunnel has ended.
    pub async fn accept(&self) -> Option<(u32, String)> {
        let mut rx = self.accept_rx.lock().await;
        tokio::select! {
            s = rx.recv() => s,
            _ = self.ended.cancelled() => None,
        }
    }

    /// Opens a stream to `target` and returns its id (0-RTT: returns at once, bytes may be written
    /// immediately; a refusal arrives as a reset).
    pub fn open(&self, target: &str) -> std::io::Result<u32> {
        use std::io::{Error, ErrorKind};
        let mut st = self.lock();
        if let Some(r) = &st.ended {
            return Err(Error::new(ErrorKind::NotConnected, format!("tunnel {r}")));
        }
        if self.params.mode == Mode::Single && (self.role == Role::Server || st.opened_streams > 0) {
            return Err(Error::other(
                "a single-mode tunnel carries exactly one stream, opened by the client",
            ));
        }
        if st.streams.len() >= self.params.max_streams as usize {
            return Err(Error::other("stream limit of the tunnel reached"));
        }
        if target.len() > u16::MAX as usize {
            return Err(Error::new(ErrorKind::InvalidInput, "target too long"));
        }
        let id = st.next_local_id;
        st.next_local_id = id.checked_add(2).ok_or_else(|| Error::other("stream ids exhausted"))?;
        st.opened_streams += 1;
        let open = Message::Open { target: target.to_owned(), data: Bytes::new() }.encode(id);
        st.streams.insert(id, StreamSlot::opening(open));
        st.enqueue_ready(id);
        st.last_activity = Instant::now();
        drop(st);
        metrics::counter!("tunnelkit_tunnel_streams_total").increment(1);
        self.emit(TunnelEvent::StreamOpen { id, target: target.to_owned() });
        self.writer.notify_one();
        Ok(id)
    }

    /// Asks the server to listen on `bind` and open a stream back for each connection (client only).
    pub async fn listen(&self, bind: &str) -> std::io::Result<(u32, SocketAddr)> {
        use std::io::{Error, ErrorKind};
        let (tx, rx) = oneshot::channel();
        let id = {
            let mut st = self.lock();
            if let Some(r) = &st.ended {
                return Err(Error::new(ErrorKind::NotConnected, format!("tunnel {r}")));
            }
            let id = st.next_listen_id;
            st.next_listen_id += 1;
            st.listens.insert(id, tx);
            st.control.push_back(Message::Listen { bind: bind.to_owned() }.encode(id));
            id
        };
        self.writer.notify_one();
        match rx.await {
            Ok(Ok(addr)) => Ok((id, addr)),
            Ok(Err(why)) => Err(Error::other(why)),
            Err(_) => Err(Error::new(ErrorKind::NotConnected, "tunnel ended")),
        }
    }

    /// Answers a [`ListenRequest`] (server only).
    pub fn answer_listen(&self, id: u32, result: Result<SocketAddr, String>) {
        self.queue_control(Message::Bound(result.map(|a| a.to_string())).encode(id));
    }

    /// Queues a sequenced control frame ahead of stream data.
    fn queue_control(&self, f: BytesMut) {
        let mut st = self.lock();
        if st.ended.is_some() {
            return;
        }
        st.control.push_back(f);
        drop(st);
        self.writer.notify_one();
    }

    /// Forgets stream `id` once nothing is left to do for it; in single mode, the client's tunnel then
    /// closes with its one stream.
    fn maybe_remove(&self, st: &mut State, id: u32) {
        if !st.streams.get(&id).is_some_and(|s| s.finished()) {
            return;
        }
        if let Some(slot) = st.streams.remove(&id) {
            st.memory.released(slot.unread());
        }
        st.last_activity = Instant::now();
        self.emit(TunnelEvent::StreamClose { id });
        if self.params.mode == Mode::Single && self.role == Role::Client && st.streams.is_empty() {
            st.close_queued = true;
        }
    }

    // ---- what the client, the link and the tunnel handle observe ----

    /// Our cumulative ack: the highest sequence received in order (sent in RESUME).
    pub(crate) fn our_ack(&self) -> u64 {
        self.lock().recv_seq
    }

    /// Whether our CLOSE has gone out: the connection dropping now is the expected end, not a break.
    pub(crate) fn close_sent(&self) -> bool {
        self.lock().close_sent
    }

    /// Whether the tunnel is ending in order: ended, or our CLOSE is sent.
    pub(crate) fn is_closing(&self) -> bool {
        let st = self.lock();
        st.ended.is_some() || st.close_sent
    }

    /// Whether an orderly close has nothing left to wait for: the tunnel ended, or the peer acked
    /// everything up to and including our CLOSE.
    pub(crate) fn close_acked(&self) -> bool {
        let st = self.lock();
        st.ended.is_some() || (st.close_sent && st.replay.len_bytes() == 0)
    }

    /// Whether the tunnel has had no stream and no traffic for `limit` (the client's idle timeout).
    pub(crate) fn is_idle_for(&self, limit: Duration) -> bool {
        let st = self.lock();
        st.streams.is_empty() && st.last_activity.elapsed() >= limit
    }

    /// Bytes of frames waiting for the peer's ack (for tests and metrics).
    pub fn unacked_bytes(&self) -> usize {
        self.lock().replay.len_bytes()
    }

    /// Number of open streams.
    pub fn stream_count(&self) -> usize {
        self.lock().streams.len()
    }

    /// Control frames queued for the peer and not yet taken by the writer (see `backlog`).
    pub(crate) fn control_backlog(&self) -> usize {
        self.lock().control.len()
    }
}
