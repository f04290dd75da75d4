//! Graceful shutdown: stop accepting on SIGTERM/SIGINT, let running work drain up to a deadline.
//!
//! Every server in tunnelkit owns one [`Drain`]. Accept loops watch [`Drain::cancelled`]; each
//! connection task is spawned through [`Drain::spawn`] so that [`Drain::finish`] can wait for it.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Tracks the tasks of one server and the signal that tells them to stop.
#[derive(Clone, Default)]
pub struct Drain {
    token: CancellationToken,
    tracker: TaskTracker,
}

impl Drain {
    /// A new drain with nothing running.
    pub fn new() -> Self {
        Self::default()
    }

    /// Spawns a task that [`Drain::finish`] will wait for.
    pub fn spawn<F>(&self, fut: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tracker.spawn(fut)
    }

    /// Wraps `fut` so that [`Drain::finish`] waits for it wherever it is spawned (on another runtime,
    /// say: see [`crate::net::workers`]).
    pub fn track<F: Future>(&self, fut: F) -> impl Future<Output = F::Output> {
        self.tracker.track_future(fut)
    }

    /// Asks everything to stop: accept loops end, idle keep-alive connections close.
    pub fn trigger(&self) {
        self.token.cancel();
    }

    /// True once [`Drain::trigger`] was called.
    pub fn is_triggered(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Resolves when shutdown has been asked for.
    pub async fn cancelled(&self) {
        self.token.cancelled().await
    }

    /// Triggers shutdown and waits for the tracked tasks, at most `deadline`.
    ///
    /// Returns the number of tasks still running when the deadline passed (they are abandoned).
    ///
    /// A second SIGTERM or SIGINT during the wait ends it at once, as nginx and HAProxy users expect
    /// of a second Ctrl-C.
    pub async fn finish(&self, deadline: Duration) -> usize {
        self.trigger();
        self.tracker.close();
        let waited = tokio::select! {
            r = tokio::time::timeout(deadline, self.tracker.wait()) => r.is_ok(),
            _ = another_signal() => {
                tracing::warn!("second signal: stopping without waiting for open connections");
                false
            }
        };
        if waited {
            0
        } else {
            self.tracker.len()
        }
    }
}

/// Resolves on the next SIGTERM or SIGINT; never, where signals cannot be watched (a runtime
/// without the signal driver, as a library user may run us on).
async fn another_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => std::future::pending().await,
        }
    }
    #[cfg(not(unix))]
    std::future::pending::<()>().await
}

/// Resolves on the first SIGTERM or SIGINT (Ctrl-C).
///
/// The handlers are installed by this call, not when the future is first polled: a server calls it
/// before it announces its address, because a SIGTERM that arrives before a handler exists kills
/// the process at once (the signal's default action) instead of draining it.
pub fn signal() -> impl Future<Output = ()> + Send {
    #[cfg(unix)]
    let installed = {
        use tokio::signal::unix::{signal, SignalKind};
        // Outside a runtime (a library caller), the handlers are left to the first poll.
        tokio::runtime::Handle::try_current().ok().and_then(|_| {
            Some((signal(SignalKind::terminate()).ok()?, signal(SignalKind::interrupt()).ok()?))
        })
    };
    async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let streams = match installed {
                Some(s) => Some(s),
                None => signal(SignalKind::terminate()).ok().zip(signal(SignalKind::interrupt()).ok()),
            };
            match streams {
                Some((mut term, mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
                None => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn finish_waits_for_tasks_and_reports_stragglers() {
        let drain = Drain::new();
        let d = drain.clone();
        drain.spawn(async move { d.cancelled().await });
        drain.spawn(async { tokio::time::sleep(Duration::from_secs(3600)).await });
        assert_eq!(drain.finish(Duration::from_millis(50)).await, 1);
    }
}
