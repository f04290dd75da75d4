//! What each received frame does. [`Session::on_frame`] checks what every frame carries (the link
//! generation, the peer's ack, the sequence number) and hands the message to one small function per
//! kind; those only change state and say what to do once the lock is released (wake tasks, wake the
//! link's writer, hand over an accepted stream), collected in [`After`].
//!
//! Sequencing: a frame whose sequence number was already received is a replayed duplicate and is
//! ignored whole; a gap is a protocol error (frames are never reordered on one connection, and a resume
//! replays from exactly the peer's ack).

use std::task::Waker;

use bytes::Bytes;
use tokio::time::Instant;

use super::streams::StreamSlot;
use super::{proto, rst, wake_all, EndReason, LinkError, ListenRequest, Role, Session, State, TunnelEvent};
use crate::tunnel::frame::Frame;
use crate::tunnel::params::Mode;
use crate::tunnel::wire::{Message, OPEN_EXTRA};

/// What to do once the lock is released.
#[derive(Default)]
struct After {
    wakers: Vec<Waker>,
    /// The link's writer has something to send.
    notify: bool,
    /// The peer opened this stream: hand it to whoever accepts.
    accepted: Option<(u32, String)>,
}

impl Session {
    /// Applies one frame received on connection `gen`.
    pub(crate) fn on_frame(&self, gen: u64, msg: Bytes) -> Result<(), LinkError> {
        let frame = Frame::decode(msg, self.params.max_frame + OPEN_EXTRA)?;
        // Decoded before any state changes, so a malformed payload is refused whole.
        let message = Message::of(&frame)?;
        let mut after = After::default();
        let mut guard = self.lock();
        let st = &mut *guard;
        if st.gen != gen || !st.link_up {
            return Err(LinkError::Stale);
        }
        after.notify |= on_ack(st, frame.ack)?;
        if frame.kind.is_sequenced() {
            if frame.seq <= st.recv_seq {
                return Ok(()); // a replayed duplicate
            }
            if frame.seq != st.recv_seq + 1 {
                return Err(proto(format!("sequence gap: expected {}, got {}", st.recv_seq + 1, frame.seq)));
            }
            st.recv_seq = frame.seq;
            after.notify |= st.count_received(frame.encoded_len());
        }
        if st.ended.is_some() {
            drop(guard);
            return self.finish(after);
        }
        let id = frame.stream;
        match message {
            Message::Open { target, data } => self.on_open(st, id, frame.fin(), target, data, &mut after)?,
            Message::Data(payload) => self.on_data(st, id, frame.fin(), payload, &mut after)?,
            Message::Window { credit } => on_window(st, id, credit, &mut after),
            Message::Connected => on_connected(st, id, &mut after),
            Message::Rst { code, reason } => self.on_rst(st, id, code, reason, &mut after),
            Message::Listen { bind } => self.on_listen(st, id, bind, &mut after),
            Message::Bound(answer) => on_bound(st, id, answer),
            Message::Ping { nonce } => {
                st.pong = Some(nonce);
                after.notify = true;
            }
            Message::Close => {
                // Ack it at once so the closer can finish, then end our side.
                st.ack_now();
                drop(guard);
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
        drop(guard);
        self.finish(after)
    }

    /// Does what the frame left to do outside the lock.
    fn finish(&self, after: After) -> Result<(), LinkError> {
        wake_all(after.wakers);
        if after.notify {
            self.writer.notify_one();
        }
        if let Some((id, target)) = after.accepted {
            metrics::counter!("tunnelkit_tunnel_streams_total").increment(1);
            self.emit(TunnelEvent::StreamOpen { id, target: target.clone() });
            if self.accept_tx.send((id, target)).is_err() {
                self.reset_stream(id, rst::DIAL_FAILED, "no one accepts streams here");
            }
        }
        Ok(())
    }

    /// OPEN: a new stream from the peer, refused (RST code 4) past the stream limit or single mode's one
    /// stream. Its id must be the peer's parity and above every id it used before.
    fn on_open(
        &self,
        st: &mut State,
        id: u32,
        fin: bool,
        target: String,
        data: Bytes,
        after: &mut After,
    ) -> Result<(), LinkError> {
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
            st.control.push_back(Message::Rst { code: rst::LIMIT, reason: why.to_owned() }.encode(id));
            after.notify = true;
            return Ok(());
        }
        st.opened_streams += 1;
        let held = data.len();
        let slot =
            StreamSlot::accepted(data, fin).ok_or_else(|| proto("0-RTT data above the initial window"))?;
        st.memory.received(held);
        st.streams.insert(id, slot);
        st.last_activity = Instant::now();
        after.accepted = Some((id, target));
        Ok(())
    }

    /// DATA: bytes (and maybe FIN) for a stream. Beyond the credit we granted, the stream is reset
    /// (FLOW_CONTROL); after the peer's FIN, it is a protocol error. Bytes for a stream we already
    /// forgot (reset) are dropped.
    fn on_data(
        &self,
        st: &mut State,
        id: u32,
        fin: bool,
        payload: Bytes,
        after: &mut After,
    ) -> Result<(), LinkError> {
        let Some(slot) = st.streams.get_mut(&id) else { return Ok(()) };
        let n = payload.len();
        if slot.peer_fin() {
            return Err(proto(format!("DATA after FIN on stream {id}")));
        }
        if !slot.take_allowance(n) {
            self.reset_locked(st, id, rst::FLOW_CONTROL, "peer exceeded its credit", &mut after.wakers);
            after.notify = true;
            return Ok(());
        }
        // A reset or abandoned stream's late bytes are dropped: our RST stops the sender. The reader
        // stops reading while the budget is full (`budget`), so what is held exceeds it by one frame
        // at most.
        let keep = slot.keeps_arrivals() && n > 0;
        if keep {
            slot.push_received(payload);
        }
        if fin {
            slot.fin_received();
        }
        slot.wake(&mut after.wakers);
        if keep {
            st.memory.received(n);
        }
        if n > 0 {
            st.last_activity = Instant::now();
        }
        self.maybe_remove(st, id);
        Ok(())
    }

    /// RST: the peer ended the stream with an error; what we still had queued for it is dropped.
    fn on_rst(&self, st: &mut State, id: u32, code: u16, reason: String, after: &mut After) {
        let Some(slot) = st.streams.get_mut(&id) else { return };
        slot.reset(code, reason);
        slot.wake(&mut after.wakers);
        st.clear_pending(id);
        self.maybe_remove(st, id);
    }

    /// LISTEN: the client asks us to listen (`-R`); refused at once where no service takes requests.
    fn on_listen(&self, st: &mut State, id: u32, bind: String, after: &mut After) {
        match &self.listen_tx {
            Some(tx) if tx.send(ListenRequest { id, bind }).is_ok() => {}
            _ => {
                let no = Message::Bound(Err("remote listening is not offered".into()));
                st.control.push_back(no.encode(id));
                after.notify = true;
            }
        }
    }
}

/// The ack the peer's frame carries: frees the replay buffer (true: the writer may have room again).
/// An ack of a frame we never sent is a protocol error.
fn on_ack(st: &mut State, ack: u64) -> Result<bool, LinkError> {
    if ack <= st.peer_ack {
        return Ok(false);
    }
    if ack >= st.replay.next_seq() {
        return Err(proto(format!("ack {ack} of a frame never sent")));
    }
    st.peer_ack = ack;
    Ok(st.replay.ack(ack) > 0)
}

/// WINDOW: the peer grants more credit on a stream.
fn on_window(st: &mut State, id: u32, credit: u32, after: &mut After) {
    if let Some(slot) = st.streams.get_mut(&id) {
        slot.add_credit(credit as usize, &mut after.wakers);
    }
}

/// CONNECTED: the accepting side reached the stream's target.
fn on_connected(st: &mut State, id: u32, after: &mut After) {
    if let Some(slot) = st.streams.get_mut(&id) {
        slot.set_connected();
        slot.wake(&mut after.wakers);
    }
}

/// BOUND: the server's answer to one of our LISTENs.
fn on_bound(st: &mut State, id: u32, answer: Result<String, String>) {
    if let Some(tx) = st.listens.remove(&id) {
        let _ = tx.send(answer.and_then(|text| {
            text.parse().map_err(|_| format!("server bound an unreadable address `{text}`"))
        }));
    }
}
