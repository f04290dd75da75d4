//! A compat tunnel's outbound frame queue. It belongs to the tunnel, not to a connection: frames queued
//! while the tunnel is broken wait here and go out on the next connection that binds it, and a frame
//! whose send failed is kept to go first (the seed's behaviour; frames already handed to a dead socket
//! are lost). The tunnel fills it, the writer of the bound connection drains it; neither needs the other.

use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, OwnedMutexGuard};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

/// The queue, its retry slot, and whether its tunnel has closed.
pub struct Outbox {
    tx: mpsc::Sender<Message>,
    rx: Arc<tokio::sync::Mutex<mpsc::Receiver<Message>>>,
    retry: Mutex<Option<Message>>,
    closed: CancellationToken,
}

impl Outbox {
    /// A queue of at most `frames` messages; senders wait while it is full.
    pub fn new(frames: usize) -> Outbox {
        let (tx, rx) = mpsc::channel(frames);
        Outbox {
            tx,
            rx: Arc::new(tokio::sync::Mutex::new(rx)),
            retry: Mutex::new(None),
            closed: CancellationToken::new(),
        }
    }

    /// Queues `msg`. Waits while the queue is full; returns at once once the tunnel is closed.
    pub async fn send(&self, msg: Message) {
        tokio::select! {
            _ = self.tx.send(msg) => {}
            _ = self.closed.cancelled() => {}
        }
    }

    /// The queue, for the writer of the bound connection (one writer at a time).
    pub async fn lock_queue(&self) -> OwnedMutexGuard<mpsc::Receiver<Message>> {
        self.rx.clone().lock_owned().await
    }

    /// A frame whose send failed, to be sent first on the next connection (as the seed retries it).
    pub fn take_retry(&self) -> Option<Message> {
        self.retry.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// Keeps a frame whose send failed for [`Outbox::take_retry`].
    pub fn set_retry(&self, msg: Message) {
        *self.retry.lock().unwrap_or_else(|e| e.into_inner()) = Some(msg);
    }

    /// The tunnel has closed: nothing more is queued, and writers stop draining.
    pub fn close(&self) {
        self.closed.cancel();
    }

    /// Resolves once the tunnel is closed.
    pub async fn closed(&self) {
        self.closed.cancelled().await
    }
}
