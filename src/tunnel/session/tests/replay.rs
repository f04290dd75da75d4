//! A connection may break anywhere. Frames in flight are lost; the resume tells each side what the
//! other has, and each replays exactly the rest. Duplicates are ignored, gaps are errors, and frames
//! of a superseded connection are refused.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;

use super::super::scheduler::ACK_DELAY;
use super::super::{LinkError, Role};
use super::{params, pattern, raw, End, Pair, Tail};
use crate::tunnel::params::LinkParams;
use crate::tunnel::wire::Message;

/// Bytes each client stream sends, and each server stream answers.
const UP: usize = 20_000;
const DOWN: usize = 12_000;

/// What one side of a stream has seen.
#[derive(Default)]
struct Seen {
    bytes: Vec<u8>,
    eof: bool,
    /// The server's answer is written.
    answered: bool,
    detached: bool,
}

/// A scripted exchange, run one frame at a time, with frames in flight modelled as two queues: the
/// client opens two streams and sends each [`UP`] bytes and FIN; the server confirms each, answers
/// [`DOWN`] bytes and FIN; each side drops its handle once it has read to the end.
struct Script {
    p: Pair,
    up: VecDeque<Bytes>,
    down: VecDeque<Bytes>,
    client: BTreeMap<u32, Seen>,
    server: BTreeMap<u32, Seen>,
    delivered: usize,
    cuts: usize,
}

impl Script {
    fn start() -> Script {
        let small = LinkParams { max_frame: 4096, ..params() };
        let mut s = Script {
            p: Pair::with(small, small),
            up: VecDeque::new(),
            down: VecDeque::new(),
            client: BTreeMap::new(),
            server: BTreeMap::new(),
            delivered: 0,
            cuts: 0,
        };
        for target in ["a:1", "b:1"] {
            let id = s.p.client.s.open(target).unwrap();
            s.p.client.write_all(id, &pattern(id, UP));
            s.p.client.s.shutdown_stream(id);
            s.client.insert(id, Seen::default());
        }
        s
    }

    /// What the applications on both sides do between two frames.
    fn apps(&mut self) {
        while let Some((id, _)) = self.p.server.accept() {
            self.server.insert(id, Seen::default());
        }
        for (end, seen, answers) in
            [(&self.p.client, &mut self.client, false), (&self.p.server, &mut self.server, true)]
        {
            for (&id, s) in seen.iter_mut() {
                if s.detached {
                    continue;
                }
                if answers && !s.answered {
                    end.s.confirm(id);
                    end.write_all(id, &pattern(id + 1000, DOWN));
                    end.s.shutdown_stream(id);
                    s.answered = true;
                }
                let (bytes, tail) = end.read(id);
                s.bytes.extend(bytes);
                match tail {
                    Tail::Eof => s.eof = true,
                    Tail::Pending => {}
                    Tail::Error(e) => panic!("stream {id} failed: {e:?}"),
                }
                if s.eof && (s.answered || !answers) {
                    end.s.detach(id);
                    s.detached = true;
                }
            }
        }
    }

    /// Delivers one frame (alternating directions); false when nothing is left to send either way.
    fn step(&mut self) -> bool {
        if self.up.is_empty() {
            self.up.extend(self.p.client.batch());
        }
        if self.down.is_empty() {
            self.down.extend(self.p.server.batch());
        }
        let (queue, to) =
            match (self.delivered.is_multiple_of(2) && !self.up.is_empty()) || self.down.is_empty() {
                true => (&mut self.up, &self.p.server),
                false => (&mut self.down, &self.p.client),
            };
        let Some(frame) = queue.pop_front() else { return false };
        to.deliver([frame]).expect("no protocol error, whatever the cut");
        self.delivered += 1;
        true
    }

    /// The connection breaks: what is in flight is lost. Then a new one: the client's RESUME carries its
    /// ack, the server attaches with it and answers with its own, and each side replays the rest.
    fn cut(&mut self) {
        self.cuts += 1;
        self.up.clear();
        self.down.clear();
        let (c, s) = (&mut self.p.client, &mut self.p.server);
        c.s.link_down(c.gen);
        s.s.link_down(s.gen);
        let a = s.s.attach(c.s.our_ack()).unwrap();
        let (sgen, server_ack) = (a.gen, a.our_ack);
        let cgen = c.s.attach(server_ack).unwrap().gen;
        (c.gen, s.gen) = (cgen, sgen);
        self.up.extend(c.s.replay_frames(cgen).unwrap());
        self.down.extend(s.s.replay_frames(sgen).unwrap());
    }

    /// Runs to the end, cutting after `cut_at` delivered frames; false if the exchange was shorter.
    async fn run(mut self, cut_at: usize) -> bool {
        loop {
            self.apps();
            if self.delivered == cut_at && self.cuts == 0 {
                self.cut();
            }
            if !self.step() {
                break;
            }
        }
        for (id, seen) in &self.client {
            assert_eq!(seen.bytes, pattern(id + 1000, DOWN), "client stream {id}, cut at {cut_at}");
            assert!(seen.eof && seen.detached);
        }
        assert_eq!(self.server.len(), 2, "cut at {cut_at}");
        for (id, seen) in &self.server {
            assert_eq!(seen.bytes, pattern(*id, UP), "server stream {id}, cut at {cut_at}");
            assert!(seen.eof && seen.detached);
        }
        // Once the last acks are due, both replay buffers drain and every stream is forgotten.
        tokio::time::advance(ACK_DELAY).await;
        self.p.pump();
        for end in [&self.p.client, &self.p.server] {
            assert_eq!((end.s.stream_count(), end.s.unacked_bytes()), (0, 0), "cut at {cut_at}");
        }
        self.cuts > 0
    }
}

#[tokio::test(start_paused = true)]
async fn a_cut_at_every_frame_boundary_loses_and_duplicates_nothing() {
    let mut cut_at = 0;
    while Script::start().run(cut_at).await {
        cut_at += 1;
    }
    assert!(cut_at > 20, "the exchange has {cut_at} frames");
}

#[tokio::test(start_paused = true)]
async fn replayed_frames_the_peer_already_has_are_ignored() {
    let p = Pair::new();
    let id = p.open("svc:1");
    p.client.write_all(id, b"once");
    let frames = p.client.batch();
    p.server.deliver(frames.clone()).unwrap();
    p.server.deliver(frames).unwrap();
    assert_eq!(p.server.read(id), (b"once".to_vec(), Tail::Pending));
}

#[tokio::test(start_paused = true)]
async fn a_resume_with_a_stale_ack_replays_everything_and_the_peer_ignores_what_it_has() {
    let mut p = Pair::new();
    let id = p.open("svc:1");
    p.client.write_all(id, b"abc");
    p.pump();
    p.client.s.link_down(p.client.gen);
    let gen = p.client.s.attach(0).unwrap().gen;
    p.client.gen = gen;
    let replay = p.client.s.replay_frames(gen).unwrap();
    assert_eq!(replay.len(), 2, "the OPEN and the DATA, never acked");
    p.server.deliver(replay).unwrap();
    p.client.write_all(id, b"def");
    p.pump();
    assert_eq!(p.server.read(id), (b"abcdef".to_vec(), Tail::Pending));
}

#[tokio::test(start_paused = true)]
async fn a_sequence_gap_is_a_protocol_error() {
    let server = End::new(Role::Server, params());
    let open = Message::Open { target: "svc:1".into(), data: Default::default() };
    let err = server.deliver([raw(open, 1, false, 2, 0)]).unwrap_err();
    assert!(matches!(err, LinkError::Protocol(ref why) if why.contains("sequence gap")), "{err}");
}

#[tokio::test(start_paused = true)]
async fn an_ack_of_a_frame_never_sent_is_a_protocol_error() {
    let server = End::new(Role::Server, params());
    let err = server.deliver([raw(Message::Ping { nonce: 1 }, 0, false, 0, 1)]).unwrap_err();
    assert!(matches!(err, LinkError::Protocol(ref why) if why.contains("never sent")), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_superseded_connection_can_neither_send_nor_deliver() {
    let p = Pair::new();
    let old = p.server.gen;
    let new = p.server.s.attach(0).unwrap().gen;
    assert!(new > old);
    assert!(matches!(p.server.s.take_batch(old, 64), Err(LinkError::Stale)));
    assert!(matches!(p.server.s.replay_frames(old), Err(LinkError::Stale)));
    let ping = raw(Message::Ping { nonce: 1 }, 0, false, 0, 0);
    assert!(matches!(p.server.s.on_frame(old, ping), Err(LinkError::Stale)));
}

#[tokio::test(start_paused = true)]
async fn a_full_replay_buffer_holds_data_back_until_the_peer_acks() {
    let small = LinkParams { replay_bytes: 40 * 1024, ..params() };
    let p = Pair::with(small, small);
    let id = p.open("svc:1");
    p.client.write_all(id, &pattern(id, 100 * 1024));
    let first = p.client.batch();
    assert!(first.iter().map(|f| f.len()).sum::<usize>() <= 40 * 1024 + 16 * 1024 + 64);
    assert!(p.client.s.unacked_bytes() <= 40 * 1024 + 16 * 1024 + 64);
    assert!(p.client.batch().is_empty(), "nothing more until an ack frees room");
    p.server.deliver(first).unwrap();
    let mut got = p.server.read(id).0;
    for _ in 0..100 {
        if got.len() == 100 * 1024 {
            break;
        }
        // Each round: the receiver's delayed ack frees the buffer, the sender fills it again.
        tokio::time::advance(ACK_DELAY).await;
        p.pump();
        got.extend(p.server.read(id).0);
    }
    assert_eq!(got, pattern(id, 100 * 1024));
}
