//! One tunnel's state, shared by the link tasks of its current WebSocket and by its stream handles.
//!
//! The session outlives connections: when a WebSocket breaks, streams, credits, the replay buffer and the
//! sequence counters stay here, and the next connection (a resume) carries on from them. Everything is
//! under one short-held mutex; the link's writer is woken through a [`Notify`] and stream handles through
//! their stored wakers, always after the lock is released.
//!
//! Frame ordering rules kept here: a stream's OPEN, DATA and FIN leave in the order they were queued (one
//! queue per stream); streams with data are served round-robin one frame per turn; small control frames
//! (WINDOW, RST, LISTEN, BOUND, CONNECTED) go ahead of data; CLOSE goes last, after every queue is empty.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::sync::{broadcast, mpsc, oneshot, watch, Notify};
use tokio_util::sync::CancellationToken;

use super::frame::{payload_len, stamp, Frame, FrameError, HEADER_LEN};
use super::id::TunnelId;
use super::replay::ReplayBuffer;
use super::settings::{LinkParams, Mode, INITIAL_WINDOW, MAX_WINDOW};
use super::stream::TunnelStream;
use super::wire::{self, Message, WireError, OPEN_EXTRA};

/// Which end of the tunnel this is; it decides stream id parity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Opens odd stream ids, sends HELLO/RESUME.
    Client,
    /// Opens even stream ids, grants tunnels.
    Server,
}

/// RST codes (the wire values of `docs/protocol.md`), owned by [`super::wire`].
pub use super::wire::rst;

/// Why a tunnel ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndReason {
    /// Closed in order (CLOSE frame, idle timeout, single-mode stream end).
    Closed,
    /// Broken for longer than the granted hold time.
    Expired,
    /// The server refused to resume it.
    Refused(String),
    /// A local decision (shutdown, unrecoverable error).
    Aborted(String),
}

impl std::fmt::Display for EndReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EndReason::Closed => f.write_str("closed"),
            EndReason::Expired => f.write_str("hold time expired while broken"),
            EndReason::Refused(why) => write!(f, "resume refused: {why}"),
            EndReason::Aborted(why) => write!(f, "aborted: {why}"),
        }
    }
}

/// What happens to a tunnel, mirroring the seed's events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TunnelEvent {
    /// The connection broke; the tunnel is held for resumption.
    Broken,
    /// A new connection took over; nothing was lost.
    Resumed,
    /// The tunnel ended; every open stream ended with an error.
    Closed(EndReason),
    /// A stream opened (by either side).
    StreamOpen {
        /// Stream id.
        id: u32,
        /// Its target as named in OPEN.
        target: String,
    },
    /// A stream ended and was forgotten.
    StreamClose {
        /// Stream id.
        id: u32,
    },
}

/// The state of the tunnel's connection, watched by whoever keeps the tunnel alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkStatus {
    /// Connection number `gen` is carrying the tunnel.
    Up(u64),
    /// Connection number `gen` broke; nothing carries the tunnel.
    Down(u64),
    /// The tunnel ended.
    Ended,
}

/// A request from the client to listen on the server (`-R`), delivered to the server's tunnel service.
#[derive(Debug)]
pub struct ListenRequest {
    /// The client's request id (echoed in BOUND and used as OPEN target `listen:<id>`).
    pub id: u32,
    /// Address to bind, as the client wrote it.
    pub bind: String,
}

/// The per-stream part of the state.
pub(crate) struct StreamSlot {
    /// Bytes we may still send before the peer grants more.
    pub send_credit: usize,
    /// FIN queued: no more writes.
    pub send_fin: bool,
    /// Encoded frames of this stream waiting for the link.
    pub pending: VecDeque<BytesMut>,
    in_ready: bool,
    /// Received bytes not yet read by the application.
    pub recv: VecDeque<Bytes>,
    /// The peer's FIN arrived (after everything in `recv`).
    pub recv_fin: bool,
    /// Bytes the peer may still send before exceeding the credit we granted.
    recv_allowance: usize,
    /// Bytes read by the application since we last returned credit.
    consumed: usize,
    /// Current receive window (auto-tuned between INITIAL_WINDOW and MAX_WINDOW, within the budget).
    pub(crate) window: usize,
    /// The stream was reset (by the peer, us, or the tunnel's end): code and reason.
    pub reset: Option<(u16, String)>,
    /// The accepting side reached the target (CONNECTED).
    pub connected: bool,
    /// The application's handle is gone.
    detached: bool,
    pub read_waker: Option<Waker>,
    pub write_waker: Option<Waker>,
}

impl StreamSlot {
    fn new() -> Self {
        StreamSlot {
            send_credit: INITIAL_WINDOW,
            send_fin: false,
            pending: VecDeque::new(),
            in_ready: false,
            recv: VecDeque::new(),
            recv_fin: false,
            recv_allowance: INITIAL_WINDOW,
            consumed: 0,
            window: INITIAL_WINDOW,
            reset: None,
            connected: false,
            detached: false,
            read_waker: None,
            write_waker: None,
        }
    }

    fn wake(&mut self, wakers: &mut Vec<Waker>) {
        wakers.extend(self.read_waker.take());
        wakers.extend(self.write_waker.take());
    }

    fn finished(&self) -> bool {
        self.detached && self.pending.is_empty() && (self.reset.is_some() || (self.send_fin && self.recv_fin))
    }
}

/// Everything under the session lock.
pub(crate) struct State {
    /// Number of the connection allowed to use the session; older link tasks see a mismatch and stop.
    pub gen: u64,
    link_up: bool,
    link_cancel: CancellationToken,
    pub ended: Option<EndReason>,
    next_local_id: u32,
    highest_peer_id: u32,
    pub streams: HashMap<u32, StreamSlot>,
    ready: VecDeque<u32>,
    control: VecDeque<BytesMut>,
    /// The nonce of the latest PING not yet answered: answers coalesce, so a peer that pings without
    /// reading costs one slot, not one per ping.
    pong: Option<u64>,
    pub replay: ReplayBuffer,
    /// Highest sequence received in order from the peer.
    pub recv_seq: u64,
    /// Highest ack the peer has sent us.
    peer_ack: u64,
    ack_frames: u32,
    ack_bytes: usize,
    ack_since: Option<Instant>,
    close_queued: bool,
    pub close_sent: bool,
    next_listen_id: u32,
    listens: HashMap<u32, oneshot::Sender<Result<SocketAddr, String>>>,
    /// Last time a stream opened, closed or moved data (for the idle timeout).
    pub last_activity: Instant,
    opened_streams: u32,
    /// Received bytes the application has not read yet, all streams (see `budget`).
    pub(crate) recv_held: usize,
    /// DATA bytes written and not yet taken by the link, all streams (see `budget`).
    pub(crate) send_queued: usize,
    /// A writer waits for `send_queued` to fall below the budget.
    pub(crate) memory_blocked: bool,
}

impl State {
    /// Puts stream `id` in the round-robin queue if it is not there; true if it was added.
    pub(crate) fn enqueue_ready(&mut self, id: u32) -> bool {
        match self.streams.get_mut(&id) {
            Some(slot) if !slot.in_ready => {
                slot.in_ready = true;
                self.ready.push_back(id);
                true
            }
            _ => false,
        }
    }
}

/// What the writer should put on the wire next.
pub(crate) struct Batch {
    /// Encoded messages, in order.
    pub frames: Vec<Bytes>,
    /// When a delayed ack becomes due, if one is pending.
    pub ack_due_at: Option<Instant>,
}

/// Why the link must drop its connection.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// A newer connection took over, or the tunnel ended.
    #[error("connection superseded")]
    Stale,
    /// The peer broke the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// Nothing arrived for two heartbeat periods: a half-dead connection or a blackhole.
    #[error("peer silent for {0:?}")]
    Silent(Duration),
    /// The WebSocket failed or closed.
    #[error("connection lost: {0}")]
    Lost(String),
    /// The peer takes nothing from us (a write made no progress, or what we owe it piled up) for too long.
    #[error("peer does not read: {0}")]
    Stalled(String),
}

impl From<FrameError> for LinkError {
    fn from(e: FrameError) -> Self {
        LinkError::Protocol(e.to_string())
    }
}

impl From<WireError> for LinkError {
    fn from(e: WireError) -> Self {
        LinkError::Protocol(e.to_string())
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
    pub(crate) writer: Notify,
    status: watch::Sender<LinkStatus>,
    events: broadcast::Sender<TunnelEvent>,
    accept_tx: mpsc::UnboundedSender<TunnelStream>,
    accept_rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<TunnelStream>>,
    listen_tx: Option<mpsc::UnboundedSender<ListenRequest>>,
    /// Fires when the tunnel ends (stops listeners and services bound to it).
    pub ended: CancellationToken,
}

fn proto(msg: impl Into<String>) -> LinkError {
    LinkError::Protocol(msg.into())
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
                opened_streams: 0,
                recv_held: 0,
                send_queued: 0,
                memory_blocked: false,
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

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
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

    /// Hands the tunnel to a new connection: cancels the previous one, drops what the peer has acked and
    /// returns the connection number, the token that stops its tasks, and our own cumulative ack (what we
    /// have received), to send in RESUMED. Frames still unacked are replayed first by the new writer.
    pub(crate) fn attach(&self, peer_ack: u64) -> Result<(u64, CancellationToken, u64), EndReason> {
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
        let out = (st.gen, st.link_cancel.clone(), st.recv_seq);
        drop(st);
        self.status.send_replace(LinkStatus::Up(out.0));
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
        let mut st = self.lock();
        if st.ended.is_some() {
            return;
        }
        tracing::debug!(tunnel = %self.id, %reason, "tunnel ended");
        st.ended = Some(reason.clone());
        for slot in st.streams.values_mut() {
            if slot.reset.is_none() && !(slot.recv_fin && slot.send_fin) {
                slot.reset = Some((rst::TUNNEL_ENDED, format!("tunnel {reason}")));
            }
            slot.wake(&mut wakers);
        }
        let ids: Vec<u32> = st.streams.keys().copied().collect();
        for id in ids {
            st.clear_pending(id);
        }
        for (_, tx) in st.listens.drain() {
            let _ = tx.send(Err(format!("tunnel {reason}")));
        }
        drop(st);
        for w in wakers {
            w.wake();
        }
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

    /// Waits for the next stream opened by the peer; `None` once the tunnel has ended.
    pub async fn accept(&self) -> Option<TunnelStream> {
        let mut rx = self.accept_rx.lock().await;
        tokio::select! {
            s = rx.recv() => s,
            _ = self.ended.cancelled() => None,
        }
    }

    /// Opens a stream to `target` (0-RTT: returns at once; a refusal arrives as a reset).
    pub fn open(self: &Arc<Self>, target: &str) -> io::Result<TunnelStream> {
        let mut st = self.lock();
        if let Some(r) = &st.ended {
            return Err(io::Error::new(io::ErrorKind::NotConnected, format!("tunnel {r}")));
        }
        if self.params.mode == Mode::Single && (self.role == Role::Server || st.opened_streams > 0) {
            return Err(io::Error::other(
                "a single-mode tunnel carries exactly one stream, opened by the client",
            ));
        }
        if st.streams.len() >= self.params.max_streams as usize {
            return Err(io::Error::other("stream limit of the tunnel reached"));
        }
        if target.len() > u16::MAX as usize {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "target too long"));
        }
        let id = st.next_local_id;
        st.next_local_id = id.checked_add(2).ok_or_else(|| io::Error::other("stream ids exhausted"))?;
        st.opened_streams += 1;
        let open = Message::Open { target: target.to_owned(), data: Bytes::new() }.encode(id);
        let mut slot = StreamSlot::new();
        slot.pending.push_back(open);
        slot.in_ready = true;
        st.ready.push_back(id);
        st.streams.insert(id, slot);
        st.last_activity = Instant::now();
        drop(st);
        metrics::counter!("tunnelkit_tunnel_streams_total").increment(1);
        self.emit(TunnelEvent::StreamOpen { id, target: target.to_owned() });
        self.writer.notify_one();
        Ok(TunnelStream::new(self.clone(), id, target.to_owned()))
    }

    /// Asks the server to listen on `bind` and open a stream back for each connection (client only).
    pub async fn listen(&self, bind: &str) -> io::Result<(u32, SocketAddr)> {
        let (tx, rx) = oneshot::channel();
        let id = {
            let mut st = self.lock();
            if let Some(r) = &st.ended {
                return Err(io::Error::new(io::ErrorKind::NotConnected, format!("tunnel {r}")));
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
            Ok(Err(why)) => Err(io::Error::other(why)),
            Err(_) => Err(io::Error::new(io::ErrorKind::NotConnected, "tunnel ended")),
        }
    }

    /// Answers a [`ListenRequest`] (server only).
    pub fn answer_listen(&self, id: u32, result: Result<SocketAddr, String>) {
        self.queue_control(Message::Bound(result.map(|a| a.to_string())).encode(id));
    }

    /// Queues a sequenced control frame ahead of stream data.
    pub(crate) fn queue_control(&self, f: BytesMut) {
        let mut st = self.lock();
        if st.ended.is_some() {
            return;
        }
        st.control.push_back(f);
        drop(st);
        self.writer.notify_one();
    }

    /// Resets a stream with `code` and tells the peer.
    pub(crate) fn reset_stream(&self, id: u32, code: u16, reason: &str) {
        let mut wakers = Vec::new();
        let mut st = self.lock();
        let Some(slot) = st.streams.get_mut(&id) else { return };
        if slot.reset.is_some() {
            return;
        }
        slot.reset = Some((code, reason.to_owned()));
        slot.wake(&mut wakers);
        st.clear_pending(id);
        if st.ended.is_none() {
            st.control.push_back(rst_frame(id, code, reason));
        }
        self.maybe_remove(&mut st, id);
        drop(st);
        for w in wakers {
            w.wake();
        }
        self.writer.notify_one();
    }

    /// The application's handle of stream `id` is gone: finish our direction, and reset the stream if the
    /// peer may still be sending (like TCP closing with unread data).
    pub(crate) fn detach(&self, id: u32) {
        let mut st = self.lock();
        let ended = st.ended.is_some();
        let Some(slot) = st.streams.get_mut(&id) else { return };
        slot.detached = true;
        slot.read_waker = None;
        slot.write_waker = None;
        let mut notify = false;
        if !ended && slot.reset.is_none() {
            if !slot.send_fin {
                slot.send_fin = true;
                slot.pending.push_back(wire::fin(id));
                notify = true;
            }
            if !slot.recv_fin {
                slot.reset = Some((rst::CANCEL, "stream dropped".into()));
                slot.pending.push_back(rst_frame(id, rst::CANCEL, "stream dropped"));
                notify = true;
            }
            if notify {
                st.enqueue_ready(id);
            }
        }
        self.maybe_remove(&mut st, id);
        drop(st);
        if notify {
            self.writer.notify_one();
        }
    }

    fn maybe_remove(&self, st: &mut State, id: u32) {
        if st.streams.get(&id).is_some_and(|s| s.finished()) {
            if let Some(slot) = st.streams.remove(&id) {
                st.release_received(slot.recv.iter().map(|b| b.len()).sum());
            }
            st.last_activity = Instant::now();
            self.emit(TunnelEvent::StreamClose { id });
            if self.params.mode == Mode::Single && self.role == Role::Client && st.streams.is_empty() {
                st.close_queued = true;
            }
        }
    }

    /// Returns credit for bytes the application has read, in batches of half a window. A reader that has
    /// drained everything when credit is due is keeping up, so its window doubles (up to [`MAX_WINDOW`]):
    /// a fast stream gets a window as large as the pipe, a stalled one stays at its first window.
    pub(crate) fn consumed(&self, st: &mut State, id: u32, n: usize) -> bool {
        st.release_received(n);
        let ended = st.ended.is_some();
        let grow =
            st.streams.get(&id).is_some_and(|slot| st.may_grow(slot.window, self.params.stream_memory));
        let Some(slot) = st.streams.get_mut(&id) else { return false };
        slot.consumed += n;
        if slot.consumed < slot.window / 2 || slot.recv_fin || ended {
            return false;
        }
        let mut credit = std::mem::take(&mut slot.consumed);
        if slot.recv.is_empty() && slot.window < MAX_WINDOW && grow {
            credit += slot.window;
            slot.window *= 2;
        }
        slot.recv_allowance += credit;
        st.control.push_back(Message::Window { credit: credit as u32 }.encode(id));
        true
    }

    /// Marks the stream as connected and tells the peer (the accepting side reached the target).
    pub(crate) fn confirm(&self, id: u32) {
        self.queue_control(Message::Connected.encode(id));
    }

    /// Collects what the writer of connection `gen` should send now: pongs, control, one frame per ready
    /// stream in turn, CLOSE when all is sent, and a bare ACK if one is due and nothing else carries it.
    pub(crate) fn take_batch(&self, gen: u64, max: usize) -> Result<Batch, LinkError> {
        let mut st = self.lock();
        if st.gen != gen || !st.link_up {
            return Err(LinkError::Stale);
        }
        let mut out = Vec::new();
        let mut wakers = Vec::new();
        if let Some(nonce) = st.pong.take() {
            let mut f = Message::Pong { nonce }.encode(0);
            stamp(&mut f, 0, st.recv_seq);
            out.push(f.freeze());
        }
        let mut sequenced = false;
        if st.ended.is_none() {
            'fill: while out.len() < max {
                if let Some(f) = st.control.pop_front() {
                    if !st.replay.has_room(f.len()) {
                        st.control.push_front(f);
                        break 'fill;
                    }
                    out.push(self.sequence(&mut st, f));
                    sequenced = true;
                    continue;
                }
                let Some(id) = st.ready.pop_front() else { break };
                let Some(slot) = st.streams.get_mut(&id) else { continue };
                let Some(len) = slot.pending.front().map(|f| f.len()) else {
                    slot.in_ready = false;
                    continue;
                };
                if !st.replay.has_room(len) {
                    st.ready.push_front(id);
                    break 'fill;
                }
                let Some(slot) = st.streams.get_mut(&id) else { continue };
                let Some(f) = slot.pending.pop_front() else { continue };
                if slot.pending.is_empty() {
                    slot.in_ready = false;
                } else {
                    st.ready.push_back(id);
                }
                st.took_queued(&f, self.params.stream_memory, &mut wakers);
                if payload_len(&f) > 0 {
                    st.last_activity = Instant::now();
                }
                out.push(self.sequence(&mut st, f));
                sequenced = true;
                self.maybe_remove(&mut st, id);
            }
            if st.close_queued
                && !st.close_sent
                && st.control.is_empty()
                && st.ready.is_empty()
                && st.replay.has_room(HEADER_LEN)
            {
                st.close_sent = true;
                let f = Message::Close.encode(0);
                out.push(self.sequence(&mut st, f));
                sequenced = true;
            }
        }
        let ack_due = st.ack_frames >= 16 || st.ack_bytes >= 64 * 1024;
        if !sequenced
            && st.recv_seq > 0
            && (ack_due || st.ack_since.is_some_and(|t| t.elapsed() >= ACK_DELAY))
        {
            let mut f = Message::Ack.encode(0);
            stamp(&mut f, 0, st.recv_seq);
            out.push(f.freeze());
            Self::acked(&mut st);
        }
        let ack_due_at = st.ack_since.map(|t| t + ACK_DELAY);
        drop(st);
        for w in wakers {
            w.wake();
        }
        Ok(Batch { frames: out, ack_due_at })
    }

    fn acked(st: &mut State) {
        st.ack_frames = 0;
        st.ack_bytes = 0;
        st.ack_since = None;
    }

    /// Stamps the next sequence number and our ack, keeps the frame for replay.
    fn sequence(&self, st: &mut State, mut f: BytesMut) -> Bytes {
        let seq = st.replay.next_seq();
        stamp(&mut f, seq, st.recv_seq);
        Self::acked(st);
        let b = f.freeze();
        st.replay.push(b.clone());
        b
    }

    /// Every frame not yet acked by the peer, for a new connection to send first.
    pub(crate) fn replay_frames(&self, gen: u64) -> Result<Vec<Bytes>, LinkError> {
        let st = self.lock();
        if st.gen != gen {
            return Err(LinkError::Stale);
        }
        let frames: Vec<Bytes> = st.replay.unacked().map(|(_, b)| b.clone()).collect();
        if !frames.is_empty() {
            metrics::counter!("tunnelkit_tunnel_replayed_frames_total").increment(frames.len() as u64);
        }
        Ok(frames)
    }

    /// Queues a heartbeat ping.
    pub(crate) fn ping_frame(&self) -> Bytes {
        let st = self.lock();
        // The nonce only has to differ between pings; the next sequence number does, for free.
        let mut f = Message::Ping { nonce: st.replay.next_seq() }.encode(0);
        stamp(&mut f, 0, st.recv_seq);
        f.freeze()
    }

    /// Applies one frame received on connection `gen`.
    pub(crate) fn on_frame(self: &Arc<Self>, gen: u64, msg: Bytes) -> Result<(), LinkError> {
        let frame = Frame::decode(msg, self.params.max_frame + OPEN_EXTRA)?;
        // Decoded before any state changes, so a malformed payload is refused whole.
        let message = Message::of(&frame)?;
        let mut wakers = Vec::new();
        let mut accepted = None;
        let mut notify = false;
        let mut st = self.lock();
        if st.gen != gen || !st.link_up {
            return Err(LinkError::Stale);
        }
        if frame.ack > st.peer_ack {
            if frame.ack >= st.replay.next_seq() {
                return Err(proto(format!("ack {} of a frame never sent", frame.ack)));
            }
            st.peer_ack = frame.ack;
            if st.replay.ack(frame.ack) > 0 {
                notify = true;
            }
        }
        if frame.kind.is_sequenced() {
            if frame.seq <= st.recv_seq {
                return Ok(()); // a replayed duplicate
            }
            if frame.seq != st.recv_seq + 1 {
                return Err(proto(format!("sequence gap: expected {}, got {}", st.recv_seq + 1, frame.seq)));
            }
            st.recv_seq = frame.seq;
            st.ack_frames += 1;
            st.ack_bytes += frame.encoded_len();
            if st.ack_since.is_none() {
                st.ack_since = Some(Instant::now());
            }
            if st.ack_frames >= 16 || st.ack_bytes >= 64 * 1024 {
                notify = true;
            }
        }
        if st.ended.is_some() {
            drop(st);
            if notify {
                self.writer.notify_one();
            }
            return Ok(());
        }
        match message {
            Message::Open { target, data } => {
                let id = frame.stream;
                let peer_parity = match self.role {
                    Role::Client => 0,
                    Role::Server => 1,
                };
                if id % 2 != peer_parity || id <= st.highest_peer_id {
                    return Err(proto(format!("OPEN with stream id {id} out of order or of the wrong side")));
                }
                st.highest_peer_id = id;
                let refuse = if self.params.mode == Mode::Single && (id != 1 || st.opened_streams > 0) {
                    Some("single-mode tunnel already has its stream")
                } else if st.streams.len() >= self.params.max_streams as usize {
                    Some("stream limit of the tunnel reached")
                } else {
                    None
                };
                if let Some(why) = refuse {
                    st.control.push_back(rst_frame(id, rst::LIMIT, why));
                    notify = true;
                } else {
                    st.opened_streams += 1;
                    let mut slot = StreamSlot::new();
                    if !data.is_empty() {
                        if data.len() > slot.recv_allowance {
                            return Err(proto("0-RTT data above the initial window"));
                        }
                        slot.recv_allowance -= data.len();
                        st.recv_held += data.len();
                        slot.recv.push_back(data);
                    }
                    slot.recv_fin = frame.fin();
                    st.streams.insert(id, slot);
                    st.last_activity = Instant::now();
                    accepted = Some((id, target));
                }
            }
            Message::Data(payload) => {
                let id = frame.stream;
                if let Some(slot) = st.streams.get_mut(&id) {
                    let n = payload.len();
                    if slot.recv_fin {
                        return Err(proto(format!("DATA after FIN on stream {id}")));
                    }
                    if n > slot.recv_allowance {
                        drop(st);
                        self.reset_stream(id, rst::FLOW_CONTROL, "peer exceeded its credit");
                        return Ok(());
                    }
                    slot.recv_allowance -= n;
                    // A reset or abandoned stream's late bytes are dropped: our RST stops the sender.
                    // The reader stops reading while the budget is full (`budget`), so what is held
                    // exceeds it by one frame at most.
                    let keep = slot.reset.is_none() && !slot.detached && n > 0;
                    if keep {
                        slot.recv.push_back(payload);
                    }
                    if frame.fin() {
                        slot.recv_fin = true;
                    }
                    slot.wake(&mut wakers);
                    if keep {
                        st.recv_held += n;
                    }
                    if n > 0 {
                        st.last_activity = Instant::now();
                    }
                    self.maybe_remove(&mut st, id);
                }
                // Unknown id: a stream we already forgot (reset); its late data is dropped.
            }
            Message::Window { credit } => {
                if let Some(slot) = st.streams.get_mut(&frame.stream) {
                    slot.send_credit += credit as usize;
                    wakers.extend(slot.write_waker.take());
                }
            }
            Message::Connected => {
                if let Some(slot) = st.streams.get_mut(&frame.stream) {
                    slot.connected = true;
                    slot.wake(&mut wakers);
                }
            }
            Message::Rst { code, reason } => {
                let id = frame.stream;
                if let Some(slot) = st.streams.get_mut(&id) {
                    if slot.reset.is_none() {
                        slot.reset = Some((code, reason));
                    }
                    slot.send_fin = true;
                    slot.wake(&mut wakers);
                    st.clear_pending(id);
                    self.maybe_remove(&mut st, id);
                }
            }
            Message::Listen { bind } => match &self.listen_tx {
                Some(tx) if tx.send(ListenRequest { id: frame.stream, bind }).is_ok() => {}
                _ => {
                    let no = Message::Bound(Err("remote listening is not offered".into()));
                    st.control.push_back(no.encode(frame.stream));
                    notify = true;
                }
            },
            Message::Bound(answer) => {
                if let Some(tx) = st.listens.remove(&frame.stream) {
                    let _ = tx.send(answer.and_then(|text| {
                        text.parse().map_err(|_| format!("server bound an unreadable address `{text}`"))
                    }));
                }
            }
            Message::Ping { nonce } => {
                st.pong = Some(nonce);
                notify = true;
            }
            Message::Close => {
                // Ack it at once so the closer can finish, then end our side.
                st.ack_frames = u32::MAX / 2;
                drop(st);
                self.writer.notify_one();
                self.end(EndReason::Closed);
                return Ok(());
            }
            Message::Ack | Message::Pong { .. } => {}
            Message::Hello { .. }
            | Message::Welcome(_)
            | Message::Resume { .. }
            | Message::Resumed
            | Message::Refused { .. } => {
                return Err(proto(format!("{:?} inside an established tunnel", frame.kind)));
            }
        }
        drop(st);
        for w in wakers {
            w.wake();
        }
        if notify {
            self.writer.notify_one();
        }
        if let Some((id, target)) = accepted {
            metrics::counter!("tunnelkit_tunnel_streams_total").increment(1);
            self.emit(TunnelEvent::StreamOpen { id, target: target.clone() });
            if self.accept_tx.send(TunnelStream::new(self.clone(), id, target)).is_err() {
                self.reset_stream(id, rst::DIAL_FAILED, "no one accepts streams here");
            }
        }
        Ok(())
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

/// How long a receiver may sit on an ack when no traffic carries it.
pub const ACK_DELAY: Duration = Duration::from_millis(100);

fn rst_frame(id: u32, code: u16, reason: &str) -> BytesMut {
    Message::Rst { code, reason: reason.to_owned() }.encode(id)
}
