//! The tunnel's specification, as a state machine: a client and a server [`Session`] wired back to back
//! in-process. A pump moves what one side's writer would send (`take_batch`) into the other side's
//! reader (`on_frame`); a hand-written peer ([`raw`]) sends what a correct session never would. No
//! sockets and no link tasks, and the clock is tokio's paused one, so every test is deterministic and
//! the whole suite runs in milliseconds.
//!
//! The files follow the life of a tunnel: `lifecycle` (streams open, half-close, reset, end),
//! `flow` (credit and stream memory), `acks`, `replay` (cuts and resumes) and `rules` (limits, single
//! mode, protocol errors). How long a broken tunnel is held is `service::hold`'s, tested there.

mod acks;
mod chunks;
mod flow;
mod lifecycle;
mod replay;
mod rules;

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Poll, Wake, Waker};
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use tokio::io::ReadBuf;

use super::{LinkError, Role, Session};
use crate::tunnel::frame::{stamp, Frame, FLAG_FIN, OFFSET_FLAGS};
use crate::tunnel::id::TunnelId;
use crate::tunnel::params::{LinkParams, Mode};
use crate::tunnel::wire::Message;

/// Small frames so that a few KiB make several of them; everything else generous.
fn params() -> LinkParams {
    LinkParams {
        mode: Mode::Multi,
        keep_broken: Duration::from_secs(30),
        max_frame: 16 * 1024,
        max_streams: 8,
        replay_bytes: 1 << 20,
        heartbeat: Duration::from_secs(10),
        stream_memory: 8 << 20,
    }
}

/// A waker that counts how often it was woken.
struct Counter(AtomicUsize);

impl Wake for Counter {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A task's waker, to see whether the session woke it.
struct Probe {
    count: Arc<Counter>,
    waker: Waker,
}

impl Probe {
    fn new() -> Self {
        let count = Arc::new(Counter(AtomicUsize::new(0)));
        Probe { waker: Waker::from(count.clone()), count }
    }

    fn woken(&self) -> usize {
        self.count.0.load(Ordering::SeqCst)
    }
}

/// How a read of everything available ended.
#[derive(Debug, PartialEq, Eq)]
enum Tail {
    /// The reader would wait.
    Pending,
    /// Clean end of the stream.
    Eof,
    /// The read failed.
    Error(io::ErrorKind),
}

/// One end of the tunnel: its session and the connection number it is attached with.
struct End {
    s: Arc<Session>,
    gen: u64,
}

impl End {
    fn new(role: Role, params: LinkParams) -> End {
        let s = Session::new(TunnelId::random(), role, params, None);
        let gen = s.attach(0).expect("a new session attaches").gen;
        End { s, gen }
    }

    /// One write as a stream handle would make it.
    fn write(&self, id: u32, bytes: &[u8], waker: &Waker) -> Poll<io::Result<usize>> {
        self.s.write_from(id, bytes, waker)
    }

    /// Writes all of `bytes`, which must fit the credit and the budget.
    fn write_all(&self, id: u32, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match self.write(id, bytes, Waker::noop()) {
                Poll::Ready(Ok(n)) => bytes = &bytes[n..],
                other => panic!("write on stream {id} did not go through: {other:?}"),
            }
        }
    }

    /// Reads everything available on stream `id`.
    fn read(&self, id: u32) -> (Vec<u8>, Tail) {
        self.read_with(id, Waker::noop())
    }

    fn read_with(&self, id: u32, waker: &Waker) -> (Vec<u8>, Tail) {
        let mut out = Vec::new();
        loop {
            let mut storage = [0u8; 4096];
            let mut buf = ReadBuf::new(&mut storage);
            match self.s.read_into(id, &mut buf, waker) {
                Poll::Ready(Ok(())) if buf.filled().is_empty() => return (out, Tail::Eof),
                Poll::Ready(Ok(())) => out.extend_from_slice(buf.filled()),
                Poll::Ready(Err(e)) => return (out, Tail::Error(e.kind())),
                Poll::Pending => return (out, Tail::Pending),
            }
        }
    }

    /// The next stream the peer opened, if one is waiting.
    fn accept(&self) -> Option<(u32, String)> {
        self.s.accept().now_or_never().flatten()
    }

    /// What this end's writer would send now.
    fn batch(&self) -> Vec<Bytes> {
        self.s.take_batch(self.gen, 64).expect("the current connection").frames
    }

    /// Applies frames as this end's reader would.
    fn deliver(&self, frames: impl IntoIterator<Item = Bytes>) -> Result<(), LinkError> {
        frames.into_iter().try_for_each(|f| self.s.on_frame(self.gen, f))
    }
}

/// A client and a server, both attached to their first connection.
struct Pair {
    client: End,
    server: End,
}

impl Pair {
    fn new() -> Pair {
        Pair::with(params(), params())
    }

    fn with(client: LinkParams, server: LinkParams) -> Pair {
        Pair { client: End::new(Role::Client, client), server: End::new(Role::Server, server) }
    }

    /// Moves frames both ways until neither side has anything to send; returns how many moved.
    fn pump(&self) -> usize {
        let mut moved = 0;
        for _ in 0..10_000 {
            let up = self.client.batch();
            let down = self.server.batch();
            if up.is_empty() && down.is_empty() {
                return moved;
            }
            moved += up.len() + down.len();
            self.server.deliver(up).expect("the server takes what the client sends");
            self.client.deliver(down).expect("the client takes what the server sends");
        }
        panic!("the two sides never went quiet");
    }

    /// The client opens a stream to `target` and the server accepts it.
    fn open(&self, target: &str) -> u32 {
        let id = self.client.s.open(target).expect("open");
        self.pump();
        assert_eq!(self.server.accept(), Some((id, target.to_owned())));
        id
    }
}

/// A frame as a hand-written peer sends it: `m` on `stream`, with FIN if `fin`, seq and ack as given.
fn raw(m: Message, stream: u32, fin: bool, seq: u64, ack: u64) -> Bytes {
    let mut f = m.encode(stream);
    if fin {
        f[OFFSET_FLAGS] |= FLAG_FIN;
    }
    stamp(&mut f, seq, ack);
    f.freeze()
}

/// A frame a session sent, decoded.
fn decode(b: &Bytes) -> (Frame, Message) {
    let f = Frame::decode(b.clone(), usize::MAX).expect("a session sends whole frames");
    let m = Message::of(&f).expect("a session sends valid payloads");
    (f, m)
}

/// `n` bytes of a pattern unique to `seed`, so a misplaced or repeated chunk shows.
fn pattern(seed: u32, n: usize) -> Vec<u8> {
    (0..n).map(|i| (i as u32).wrapping_mul(31).wrapping_add(seed.wrapping_mul(7)) as u8).collect()
}
