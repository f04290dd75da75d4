//! One compat tunnel: its streams, its outbound frame queue (an `Outbox`), the connection it is bound
//! to, and what happens when that connection breaks (held for the agreed time, then destroyed).
//!
//! Frame handling mirrors the seed's `subStreamTunnel.receive`, including its error messages, with
//! these deliberate differences: a `start` for a live sid replaces that stream silently (the seed
//! reports an error on it first, which sends the client into its start-retry path); a `close` for a
//! stream still dialling cancels the dial; data beyond the granted credit resets the stream.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use bytes::Bytes;
use tokio::task::AbortHandle;
use tokio_tungstenite::tungstenite::Message;

use super::codec::{self, Frame, FrameType};
use super::control::{self, Mode};
use super::outbox::Outbox;
use super::registry::{new_tunnel_id, Registered, Registry};
use super::stream::{self, Destination, StreamOwner, StreamShared, StreamSlot};
use super::writer::{ConnHandle, WriterCmd};

/// Most streams one `subStream` tunnel may have open (the seed has no limit; each stream may buffer up
/// to ~1.4 × 5 MiB for a slow target). A `start` beyond it gets the seed's "cannot create" answer.
pub const MAX_STREAMS: usize = 1024;

/// Frames queued for the WebSocket per tunnel before stream relays wait (data frames are ≤ 64 KiB).
const QUEUE_FRAMES: usize = 64;

/// A tunnel created by a seed client.
pub struct Tunnel {
    /// Our 128-bit random id (see `registry`).
    pub id: String,
    /// `subStream` or `stream`.
    pub mode: Mode,
    /// The bearer token that created it (`--token`); only the same token may `use` it.
    pub principal: Option<String>,
    hold: Duration,
    destination: Destination,
    registry: Weak<Registry<Tunnel>>,
    outbox: Arc<Outbox>,
    state: Mutex<State>,
}

struct State {
    closed: bool,
    streams: HashMap<u32, StreamSlot>,
    binding: Option<ConnHandle>,
    hold_timer: Option<AbortHandle>,
}

impl Tunnel {
    /// Creates a tunnel bound to `conn` whose streams go to `destination`, and registers it in
    /// `registry`. `hold` is how long it survives a broken connection (the client's
    /// `keepBrokenTunnel`, already capped by the server).
    pub fn open(
        registry: &Arc<Registry<Tunnel>>,
        destination: Destination,
        mode: Mode,
        hold: Duration,
        conn: ConnHandle,
        principal: Option<String>,
    ) -> Arc<Tunnel> {
        let tunnel = Arc::new(Tunnel {
            id: new_tunnel_id(),
            mode,
            principal,
            hold,
            destination,
            registry: Arc::downgrade(registry),
            outbox: Arc::new(Outbox::new(QUEUE_FRAMES)),
            state: Mutex::new(State {
                closed: false,
                streams: HashMap::new(),
                binding: Some(conn),
                hold_timer: None,
            }),
        });
        registry.insert(tunnel.clone());
        tracing::debug!(tunnel = %tunnel.id, ?mode, ?hold, "compat tunnel open");
        tunnel
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the tunnel is open and bound to connection `conn_id`.
    pub fn is_bound_to(&self, conn_id: u64) -> bool {
        let st = self.lock();
        !st.closed && st.binding.as_ref().is_some_and(|b| b.id == conn_id)
    }

    /// Binds the tunnel to `conn` (a `use`): stops the hold timer and drops the connection it was bound
    /// to, if any. False if the tunnel has closed meanwhile.
    pub fn bind(&self, conn: ConnHandle) -> bool {
        let mut st = self.lock();
        if st.closed {
            return false;
        }
        if let Some(timer) = st.hold_timer.take() {
            timer.abort();
        }
        let id = conn.id;
        if let Some(old) = st.binding.replace(conn) {
            if old.id != id {
                old.kick.cancel();
            }
        }
        true
    }

    /// The connection `conn_id` ended. If the tunnel is bound to it: a clean close (1000) closes the
    /// tunnel (the seed would keep it registered forever); anything else breaks it, and it is held for
    /// its hold time, then closed.
    pub fn connection_lost(self: &Arc<Self>, conn_id: u64, clean: bool) {
        let mut st = self.lock();
        if st.closed || st.binding.as_ref().map(|b| b.id) != Some(conn_id) {
            return;
        }
        st.binding = None;
        if clean || self.hold.is_zero() {
            drop(st);
            self.close(Some(if clean { "websocket closed" } else { "websocket lost" }));
            return;
        }
        tracing::debug!(tunnel = %self.id, hold = ?self.hold, "compat tunnel broken");
        let me = self.clone();
        let hold = self.hold;
        let timer = tokio::spawn(async move {
            tokio::time::sleep(hold).await;
            me.close(Some("broken timeout"));
        });
        st.hold_timer = Some(timer.abort_handle());
    }

    /// Closes the tunnel: every stream's target connection is dropped, the bound connection (if any) is
    /// told `{"_":"close","msg":reason}`, and the id is forgotten.
    pub fn close(&self, reason: Option<&str>) {
        let (streams, binding, timer) = {
            let mut st = self.lock();
            if st.closed {
                return;
            }
            st.closed = true;
            (std::mem::take(&mut st.streams), st.binding.take(), st.hold_timer.take())
        };
        self.outbox.close();
        for slot in streams.into_values() {
            slot.abort();
        }
        if let Some(timer) = timer {
            timer.abort();
        }
        if let Some(conn) = binding {
            let _ = conn.cmds.try_send(WriterCmd::Send(Message::text(control::close(reason))));
        }
        if let Some(registry) = self.registry.upgrade() {
            registry.remove(self);
        }
        tracing::debug!(tunnel = %self.id, reason = reason.unwrap_or(""), "compat tunnel closed");
    }

    /// Queues a frame for whichever connection is (or will be) bound. Waits while the queue is full;
    /// returns at once if the tunnel is closed.
    pub async fn send(&self, frame: Bytes) {
        self.outbox.send(Message::Binary(frame)).await
    }

    /// The frame queue, for the writer of the bound connection.
    pub fn outbox(&self) -> Arc<Outbox> {
        self.outbox.clone()
    }

    /// Handles one frame from the client.
    pub async fn receive(self: &Arc<Self>, frame: Frame) {
        let sid = frame.sid;
        let reply = match frame.kind {
            FrameType::Data => self.on_data(sid, frame.payload),
            FrameType::Start => self.on_start(sid),
            FrameType::Close => self.on_close(sid),
            FrameType::Started => Some(if self.lock().streams.contains_key(&sid) {
                (FrameType::Error, "Stream not at starting state".to_owned())
            } else {
                (FrameType::Error, "Stream not exists".to_owned())
            }),
            // We never close first and wait: a `closed` for a live stream is out of place.
            FrameType::Closed => self
                .lock()
                .streams
                .contains_key(&sid)
                .then(|| (FrameType::Error, "Stream not at closing state".to_owned())),
            FrameType::Error => {
                if let Some(slot) = self.lock().streams.remove(&sid) {
                    tracing::debug!(tunnel = %self.id, sid, "compat stream reset by the client");
                    slot.abort();
                }
                None
            }
            FrameType::Read => {
                match (self.lock().streams.get(&sid), codec::decode_credit(&frame.payload)) {
                    (Some(slot), Some(n)) => slot.shared.credit.add(n),
                    (Some(_), None) => {
                        tracing::debug!(sid, "compat: read frame with an over-long credit ignored")
                    }
                    (None, _) => {}
                }
                None
            }
            FrameType::Unused => None,
        };
        if let Some((kind, payload)) = reply {
            self.send(codec::encode(kind, sid, payload.as_bytes())).await;
        }
    }

    fn on_data(&self, sid: u32, payload: Bytes) -> Option<(FrameType, String)> {
        let mut st = self.lock();
        let Some(slot) = st.streams.get(&sid) else {
            return Some((FrameType::Error, "Stream not exists".into()));
        };
        if !slot.shared.is_started() {
            return Some((FrameType::Error, "Stream not started".into()));
        }
        if slot.shared.window.receive(payload.len() as u64).is_err() {
            if let Some(slot) = st.streams.remove(&sid) {
                slot.abort();
            }
            return Some((FrameType::Error, "Data beyond the granted credit".into()));
        }
        if !payload.is_empty() {
            let _ = slot.uplink.send(payload);
        }
        None
    }

    fn on_start(self: &Arc<Self>, sid: u32) -> Option<(FrameType, String)> {
        let mut st = self.lock();
        if st.closed {
            return None;
        }
        if let Some(old) = st.streams.remove(&sid) {
            old.abort();
        }
        let limit = match self.mode {
            Mode::Stream => 1,
            Mode::SubStream => MAX_STREAMS,
        };
        if st.streams.len() >= limit {
            // The seed answers a refused start with an error frame without a message.
            return Some((FrameType::Error, String::new()));
        }
        st.streams.insert(sid, stream::spawn(self.clone(), sid));
        None
    }

    fn on_close(&self, sid: u32) -> Option<(FrameType, String)> {
        let slot = self.lock().streams.remove(&sid);
        match slot {
            None => Some((FrameType::Error, format!("Stream not exists : {sid}"))),
            Some(slot) => {
                slot.close_by_client();
                Some((FrameType::Closed, String::new()))
            }
        }
    }
}

impl Registered for Tunnel {
    fn id(&self) -> &str {
        &self.id
    }

    fn principal(&self) -> Option<&str> {
        self.principal.as_deref()
    }
}

impl StreamOwner for Tunnel {
    fn id(&self) -> &str {
        &self.id
    }

    fn destination(&self) -> &Destination {
        &self.destination
    }

    fn send(&self, frame: Bytes) -> impl std::future::Future<Output = ()> + Send {
        Tunnel::send(self, frame)
    }

    fn remove_stream(&self, shared: &Arc<StreamShared>) -> bool {
        let mut st = self.lock();
        match st.streams.get(&shared.sid) {
            Some(slot) if Arc::ptr_eq(&slot.shared, shared) => {
                st.streams.remove(&shared.sid);
                true
            }
            _ => false,
        }
    }
}
