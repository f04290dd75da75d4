//! Access logs: one line per request or tunnel, written off the hot path.
//!
//! Format (space separated, one record per line, like a trimmed common log format):
//! `TIMESTAMP CLIENT METHOD TARGET STATUS BYTES_UP BYTES_DOWN DURATION_MS [NOTE]`, e.g.
//! `2026-11-23T03:30:00.123Z 127.0.0.1:51234 CONNECT example.com:443 200 517 4096 1532`.
//! `BYTES_UP` is client to destination, `BYTES_DOWN` the other way.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwapOption;
use tokio::sync::mpsc;

/// One finished request or tunnel.
#[derive(Debug, Clone)]
pub struct AccessRecord {
    /// The client's address.
    pub client: SocketAddr,
    /// `GET`, `CONNECT`, `SOCKS5`, ...
    pub method: String,
    /// The request target (absolute URI, host:port).
    pub target: String,
    /// HTTP status (or SOCKS reply mapped to the HTTP status it stands for).
    pub status: u16,
    /// Bytes from client to destination.
    pub bytes_up: u64,
    /// Bytes from destination to client.
    pub bytes_down: u64,
    /// Time from the request head to the end of the exchange.
    pub duration: Duration,
    /// Optional short note (error kind, `upgrade`, ...), no spaces.
    pub note: Option<String>,
}

impl AccessRecord {
    /// Formats the record as one log line (without the newline).
    pub fn to_line(&self) -> String {
        let ts = humantime::format_rfc3339_millis(SystemTime::now());
        let mut line = format!(
            "{ts} {} {} {} {} {} {} {}",
            self.client,
            self.method,
            sanitize(&self.target),
            self.status,
            self.bytes_up,
            self.bytes_down,
            self.duration.as_millis()
        );
        if let Some(n) = &self.note {
            line.push(' ');
            line.push_str(&sanitize(n));
        }
        line
    }
}

/// Replaces whitespace and control characters so one record stays one parseable line.
fn sanitize(s: &str) -> String {
    s.chars().map(|c| if c.is_whitespace() || c.is_control() { '_' } else { c }).collect()
}

/// Where access-log lines go. Cloning shares the writer, and [`AccessLog::take_over`] changes it
/// for every clone at once (a reload reopening the file after log rotation).
#[derive(Debug, Clone, Default)]
pub struct AccessLog {
    tx: Arc<ArcSwapOption<mpsc::Sender<String>>>,
}

impl AccessLog {
    /// A log that discards everything.
    pub fn disabled() -> Self {
        Self::default()
    }

    /// From now on, this log and all its clones write where `other` writes (nowhere if it is
    /// disabled). The previous writer thread ends once the lines queued to it are written.
    pub fn take_over(&self, other: &AccessLog) {
        self.tx.store(other.tx.load_full());
    }

    /// Opens `-` (stdout) or a file path (appended to). Must be called inside the runtime.
    pub fn open(dest: &str) -> std::io::Result<Self> {
        let mut out: Box<dyn Write + Send> = if dest == "-" {
            Box::new(std::io::stdout())
        } else {
            let path = PathBuf::from(dest);
            Box::new(std::fs::OpenOptions::new().create(true).append(true).open(path)?)
        };
        let (tx, mut rx) = mpsc::channel::<String>(4096);
        // A blocking thread, so a slow disk never stalls a connection task.
        std::thread::Builder::new().name("access-log".into()).spawn(move || {
            while let Some(line) = rx.blocking_recv() {
                let _ = writeln!(out, "{line}");
                // Flush per batch: drain what is queued, then flush once.
                while let Ok(more) = rx.try_recv() {
                    let _ = writeln!(out, "{more}");
                }
                let _ = out.flush();
            }
        })?;
        Ok(AccessLog { tx: Arc::new(ArcSwapOption::from_pointee(tx)) })
    }

    /// Records a request or tunnel of `client` that began at `started` and has just ended.
    #[allow(clippy::too_many_arguments)]
    pub fn finished(
        &self,
        client: SocketAddr,
        method: &str,
        target: &str,
        status: u16,
        bytes_up: u64,
        bytes_down: u64,
        started: Instant,
        note: Option<&str>,
    ) {
        self.record(&AccessRecord {
            client,
            method: method.to_owned(),
            target: target.to_owned(),
            status,
            bytes_up,
            bytes_down,
            duration: started.elapsed(),
            note: note.map(str::to_owned),
        });
    }

    /// Records one finished request. Never blocks; drops the line if the writer is far behind.
    pub fn record(&self, rec: &AccessRecord) {
        if let Some(tx) = &*self.tx.load() {
            if tx.try_send(rec.to_line()).is_err() {
                metrics::counter!("tunnelkit_access_log_dropped_total").increment(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writes_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("access.log");
        let log = AccessLog::open(p.to_str().unwrap()).unwrap();
        log.record(&AccessRecord {
            client: "127.0.0.1:5".parse().unwrap(),
            method: "GET".into(),
            target: "http://a b/".into(),
            status: 200,
            bytes_up: 1,
            bytes_down: 2,
            duration: Duration::from_millis(3),
            note: None,
        });
        drop(log);
        for _ in 0..100 {
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            if !text.is_empty() {
                assert!(text.trim_end().ends_with("127.0.0.1:5 GET http://a_b/ 200 1 2 3"), "{text}");
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no access log line written");
    }
}
