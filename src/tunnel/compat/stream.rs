//! One compat stream: dial `--compat-target` through the server's dialer, answer `started` and grant
//! credit, then relay both ways under the seed's credit rules until either side closes.
//!
//! The seed has no half-close: a `close` from the client ends both directions (bytes already received
//! from it are still written to the target; bytes the target sends afterwards are dropped), and a target
//! EOF is reported with a `close` frame. A failed dial is answered `started` then `error` with the
//! reason, which a seed client surfaces as its stream's error (an `error` to the `start` itself would
//! make it retry with new sids ten times and report only "Up to retry limit").
//!
//! The relay reaches its tunnel through [`StreamOwner`], which the compat `Tunnel` implements: the
//! tunnel spawns relays and keeps their [`StreamSlot`]s, and this file needs nothing else of it.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use super::codec::{self, FrameType};
use super::credit::{Credit, Window};
use crate::net::{BoxStream, Dialer, Purpose, Target};

/// Largest data frame we send (the seed's receiver takes any size).
const CHUNK: u64 = 64 << 10;

/// After the client closed a stream, how long we keep reading (and discarding) what the target still
/// sends, so that closing with unread bytes does not reset the connection before it read ours.
const LINGER: Duration = Duration::from_secs(5);

const NO_TARGET: &str = "No --compat-target is configured on this server";

/// Where every stream of a compat tunnel is connected: `--compat-target`, through the server's dialer
/// and so under its policy.
#[derive(Clone)]
pub struct Destination {
    /// The server's dialer.
    pub dialer: Arc<dyn Dialer>,
    /// `--compat-target`, if configured.
    pub target: Option<Target>,
}

impl Destination {
    /// Connects a new stream; the error is the message the client gets.
    async fn dial(&self) -> Result<BoxStream, String> {
        match &self.target {
            None => Err(NO_TARGET.to_owned()),
            Some(target) => self.dialer.dial(target, Purpose::Tunnel).await.map_err(|e| e.to_string()),
        }
    }
}

/// What a stream's relay needs from the tunnel it belongs to.
pub trait StreamOwner: Send + Sync + 'static {
    /// The tunnel's id, for logs.
    fn id(&self) -> &str;
    /// Where its streams are connected.
    fn destination(&self) -> &Destination;
    /// Queues a frame for the client; waits while the tunnel's queue is full.
    fn send(&self, frame: Bytes) -> impl Future<Output = ()> + Send;
    /// Removes the stream `shared` from the tunnel's table if it is still there (not replaced, closed
    /// or reset meanwhile). True if it was: only then may the relay still report on it.
    fn remove_stream(&self, shared: &Arc<StreamShared>) -> bool;
}

/// What the tunnel and the relay task share about one stream.
pub struct StreamShared {
    /// The stream id.
    pub sid: u32,
    started: AtomicBool,
    closing: AtomicBool,
    /// Credit we granted (client → target).
    pub window: Window,
    /// Credit the client granted (target → client).
    pub credit: Credit,
}

impl StreamShared {
    /// Whether the target is connected and `started` was sent.
    pub fn is_started(&self) -> bool {
        self.started.load(Ordering::Acquire)
    }

    fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }
}

/// A stream's entry in its tunnel's table. Dropping it ends the client → target direction gracefully.
pub struct StreamSlot {
    /// State shared with the relay task.
    pub shared: Arc<StreamShared>,
    /// Data from the client, in order. Unbounded, but bounded in practice by the credit we grant:
    /// data beyond it resets the stream.
    pub uplink: mpsc::UnboundedSender<Bytes>,
    task: AbortHandle,
}

impl StreamSlot {
    /// Tears the stream down at once (tunnel closed, stream reset or replaced).
    pub fn abort(self) {
        self.task.abort();
    }

    /// The client closed the stream: stop sending to it; what it sent still reaches the target.
    pub fn close_by_client(self) {
        if self.shared.is_started() {
            self.shared.closing.store(true, Ordering::Release);
        } else {
            self.task.abort(); // still dialling: nothing to deliver
        }
    }
}

/// Starts the relay task for a new stream `sid` of `tunnel`.
pub fn spawn<T: StreamOwner>(tunnel: Arc<T>, sid: u32) -> StreamSlot {
    let shared = Arc::new(StreamShared {
        sid,
        started: AtomicBool::new(false),
        closing: AtomicBool::new(false),
        window: Window::default(),
        credit: Credit::default(),
    });
    let (uplink, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(run(tunnel, shared.clone(), rx));
    StreamSlot { shared, uplink, task: task.abort_handle() }
}

enum End {
    ClientClosed,
    TargetEof,
    Failed(String),
}

async fn run<T: StreamOwner>(
    tunnel: Arc<T>,
    shared: Arc<StreamShared>,
    mut uplink: mpsc::UnboundedReceiver<Bytes>,
) {
    let sid = shared.sid;
    let conn = match tunnel.destination().dial().await {
        Ok(conn) => conn,
        Err(msg) => {
            tracing::debug!(tunnel = %tunnel.id(), sid, "compat stream refused: {msg}");
            if tunnel.remove_stream(&shared) {
                tunnel.send(codec::encode(FrameType::Started, sid, &[])).await;
                tunnel.send(codec::encode(FrameType::Error, sid, msg.as_bytes())).await;
            }
            return;
        }
    };
    shared.started.store(true, Ordering::Release);
    tunnel.send(codec::encode(FrameType::Started, sid, &[])).await;
    tunnel.send(codec::encode(FrameType::Read, sid, &codec::encode_credit(shared.window.open()))).await;

    let (mut rd, mut wr) = tokio::io::split(conn);
    let end = tokio::select! {
        r = uplink_loop(&*tunnel, &shared, &mut uplink, &mut wr) => match r {
            Ok(()) => End::ClientClosed,
            Err(e) => End::Failed(e),
        },
        r = downlink_loop(&*tunnel, &shared, &mut rd) => match r {
            Ok(()) => End::TargetEof,
            Err(e) => End::Failed(e),
        },
    };
    match end {
        End::ClientClosed => {
            let _ = wr.shutdown().await;
            linger(&mut rd).await;
        }
        End::TargetEof => {
            if tunnel.remove_stream(&shared) {
                tunnel.send(codec::encode(FrameType::Close, sid, &[])).await;
            }
            while let Ok(chunk) = uplink.try_recv() {
                if wr.write_all(&chunk).await.is_err() {
                    break;
                }
            }
            let _ = wr.shutdown().await;
        }
        End::Failed(msg) => {
            tracing::debug!(tunnel = %tunnel.id(), sid, "compat stream failed: {msg}");
            if tunnel.remove_stream(&shared) {
                // As the seed reports a local stream error: the message, then a close.
                tunnel.send(codec::encode(FrameType::Error, sid, msg.as_bytes())).await;
                tunnel.send(codec::encode(FrameType::Close, sid, &[])).await;
            }
        }
    }
}

/// Client → target. Ends `Ok` when the client closed the stream (its slot was dropped) and everything it
/// sent was written.
async fn uplink_loop<T: StreamOwner, W: AsyncWrite + Unpin>(
    tunnel: &T,
    shared: &StreamShared,
    uplink: &mut mpsc::UnboundedReceiver<Bytes>,
    wr: &mut W,
) -> Result<(), String> {
    let mut consumed = 0u64;
    while let Some(chunk) = uplink.recv().await {
        wr.write_all(&chunk).await.map_err(|e| format!("Writing to the target failed: {e}"))?;
        consumed += chunk.len() as u64;
        if let Some(grant) = shared.window.after_consume(consumed) {
            if !shared.is_closing() {
                tunnel.send(codec::encode(FrameType::Read, shared.sid, &codec::encode_credit(grant))).await;
            }
        }
    }
    Ok(())
}

/// Target → client, never beyond the client's credit. Ends `Ok` at the target's EOF.
async fn downlink_loop<T: StreamOwner, R: AsyncRead + Unpin>(
    tunnel: &T,
    shared: &StreamShared,
    rd: &mut R,
) -> Result<(), String> {
    let sid = shared.sid;
    let hl = codec::header_len(sid);
    loop {
        let n = shared.credit.take(CHUNK).await;
        let mut buf = vec![0u8; hl + n as usize];
        let got =
            rd.read(&mut buf[hl..]).await.map_err(|e| format!("Reading from the target failed: {e}"))?;
        shared.credit.give_back(n - got as u64);
        if got == 0 {
            return Ok(());
        }
        if shared.is_closing() {
            // The client closed: what the target still says is dropped (no half-close in the seed);
            // the uplink side finishes the stream.
            return std::future::pending().await;
        }
        buf.truncate(hl + got);
        codec::write_header(&mut buf, FrameType::Data, sid);
        tunnel.send(Bytes::from(buf)).await;
    }
}

async fn linger<R: AsyncRead + Unpin>(rd: &mut R) {
    let mut sink = [0u8; 16 << 10];
    let _ = tokio::time::timeout(LINGER, async {
        while let Ok(n) = rd.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}
