//! `--flows-log PATH|-`: one JSON object per line per finished flow, as `mitmdump` prints them, to
//! a file (appended) or standard output.
//!
//! A line looks like this (wrapped here; `body` is `null` for an empty body, and carries `base64`
//! instead of `text` when the decoded body is not text):
//!
//! ```text
//! {"id":7,"kind":"intercepted","started":"2024-05-01T12:00:00.123Z","duration_ms":12.5,
//!  "wait_ms":10.0,"client":"127.0.0.1:50412","method":"GET","url":"https://example.com/a",
//!  "http_version":"HTTP/1.1","status":200,"reason":"OK",
//!  "request":{"headers":[{"name":"Host","value":"example.com"}],"body_size":0,"body":null},
//!  "response":{"headers":[...],"body_size":312,
//!              "body":{"text":"...","truncated":false,"decoded_from":["gzip"]}},
//!  "bytes_up":0,"bytes_down":312,"error":null,
//!  "websocket":[{"at_ms":3.2,"direction":"up","opcode":"text","len":5,"text":"hello","truncated":false}]}
//! ```
//!
//! Writing happens on a thread of its own ([`FlowsLog::start`]): turning a flow into a line decodes
//! and base64-encodes up to two bodies of `--inspect-body-max` (milliseconds for 1 MiB), and a file
//! or a pipe may block, none of which may happen on the proxy's threads. The proxy hands finished
//! flows over a bounded queue of [`QUEUE`] flows; when the writer falls that far behind (a stdout
//! piped into something slow), further flows are left out of the log and counted, and the count is
//! logged as a warning, because stalling the proxy to keep a debug log complete is the worse failure.

use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use super::decode::Decoded;
use super::flow::{millis, CapturedBody, Flow, Header, WsMessage, WsOpcode};

/// How many finished flows may wait for the writer. Each holds its bodies, so this also bounds the
/// memory a slow log can hold beyond the ring: 256 flows of a few KiB each, typically.
pub const QUEUE: usize = 256;

/// Why the flows log could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot open the flows log {path} (--flows-log): {source}; give a file in a writable directory, or - for standard output")]
pub struct FlowsLogError {
    /// The path as given.
    pub path: String,
    /// What the system said.
    pub source: std::io::Error,
}

/// Where flow lines go: standard output or a file opened for appending.
pub struct FlowsLog {
    out: Box<dyn Write + Send>,
    /// `-` or the path, for messages.
    name: String,
}

impl std::fmt::Debug for FlowsLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowsLog").field("name", &self.name).finish_non_exhaustive()
    }
}

impl FlowsLog {
    /// `-` is standard output; anything else is a file, created if missing and appended to, so
    /// restarts add to the same log.
    pub fn open(spec: &str) -> Result<FlowsLog, FlowsLogError> {
        if spec == "-" {
            return Ok(FlowsLog::to_writer(std::io::stdout(), "-"));
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(PathBuf::from(spec))
            .map_err(|source| FlowsLogError { path: spec.to_owned(), source })?;
        Ok(FlowsLog::to_writer(file, spec))
    }

    /// Lines to any writer; `name` is how messages refer to it.
    pub fn to_writer(out: impl Write + Send + 'static, name: &str) -> FlowsLog {
        FlowsLog { out: Box::new(BufWriter::with_capacity(64 * 1024, out)), name: name.to_owned() }
    }

    /// `-` or the path given.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Starts the writer thread; flows given to the returned [`LogQueue`] become lines, with bodies
    /// decoded up to `body_max` bytes.
    pub fn start(self, body_max: usize) -> std::io::Result<LogQueue> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let writer = Writer { log: self, body_max, dropped: dropped.clone(), failing: false };
        std::thread::Builder::new()
            .name("tunnelkit-flows-log".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| std::io::Error::other(format!("cannot start the --flows-log writer thread: {e}")))?;
        Ok(LogQueue { tx, dropped })
    }

    /// Writes one flow's line (buffered: see [`FlowsLog::flush`]).
    pub fn write(&mut self, flow: &Flow, body_max: usize) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(&line(flow, body_max))?;
        line.push(b'\n');
        self.out.write_all(&line)
    }

    /// Pushes buffered lines out.
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// The proxy's side of a started flows log: cheap to call from any thread.
#[derive(Debug, Clone)]
pub struct LogQueue {
    tx: mpsc::Sender<Message>,
    dropped: Arc<AtomicU64>,
}

enum Message {
    Flow(Arc<Flow>),
    Flush(oneshot::Sender<()>),
}

impl LogQueue {
    /// Queues a finished flow for its line; never waits. A full queue drops the flow (counted,
    /// and reported by the writer).
    pub fn send(&self, flow: Arc<Flow>) {
        if self.tx.try_send(Message::Flow(flow)).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Resolves once every flow queued before the call is written and flushed (or the writer is
    /// gone). Call at shutdown so the last lines are not lost.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Message::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

/// The writer thread's state.
struct Writer {
    log: FlowsLog,
    body_max: usize,
    dropped: Arc<AtomicU64>,
    /// True after a failed write, until one succeeds: one warning per outage, not one per flow.
    failing: bool,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Message>) {
        while let Some(message) = rx.blocking_recv() {
            self.handle(message);
            // Batch what is already queued, then flush once: a line appears promptly (for `tail
            // -f` and pipes) without a syscall per flow under load.
            while let Ok(message) = rx.try_recv() {
                self.handle(message);
            }
            let flushed = self.log.flush();
            self.report(flushed);
        }
        let flushed = self.log.flush();
        self.report(flushed);
    }

    fn handle(&mut self, message: Message) {
        match message {
            Message::Flow(flow) => {
                let written = self.log.write(&flow, self.body_max);
                self.report(written);
            }
            Message::Flush(done) => {
                let flushed = self.log.flush();
                self.report(flushed);
                let _ = done.send(());
            }
        }
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            tracing::warn!(
                "flows log {} fell behind: {dropped} flows were left out of it (the writer keeps at most {QUEUE} waiting)",
                self.log.name()
            );
        }
    }

    fn report(&mut self, result: std::io::Result<()>) {
        match result {
            Ok(()) => self.failing = false,
            Err(e) if !self.failing => {
                self.failing = true;
                tracing::warn!("cannot write the flows log {} (--flows-log): {e}; flows are not logged until it works again", self.log.name());
            }
            Err(_) => {}
        }
    }
}

/// One flow as its log line's JSON object.
pub fn line(flow: &Flow, body_max: usize) -> Value {
    json!({
        "id": flow.id,
        "kind": flow.kind,
        "started": flow.started_rfc3339(),
        "duration_ms": millis(flow.duration),
        "wait_ms": flow.wait.map(millis),
        "client": flow.client.to_string(),
        "method": flow.method,
        "url": flow.url,
        "http_version": flow.http_version,
        "status": flow.status,
        "reason": flow.reason,
        "request": message(&flow.request_headers, &flow.request_body, body_max),
        "response": message(&flow.response_headers, &flow.response_body, body_max),
        "bytes_up": flow.bytes_up,
        "bytes_down": flow.bytes_down,
        "error": flow.error,
        "websocket": flow.websocket.iter().map(ws_message).collect::<Vec<_>>(),
    })
}

fn message(headers: &[Header], body: &CapturedBody, body_max: usize) -> Value {
    json!({ "headers": headers, "body_size": body.total(), "body": body_json(headers, body, body_max) })
}

/// `null` for an empty body; else the decoded body as `text` or `base64`, with `truncated`, the
/// codings undone and a note when there is one.
fn body_json(headers: &[Header], body: &CapturedBody, body_max: usize) -> Value {
    if body.total() == 0 {
        return Value::Null;
    }
    let decoded = Decoded::of(body, headers, body_max);
    let mut out = match decoded.text() {
        Some(text) => json!({ "text": text }),
        None => json!({ "base64": decoded.base64() }),
    };
    out["truncated"] = decoded.truncated.into();
    if !decoded.decoded_from.is_empty() {
        out["decoded_from"] = json!(decoded.decoded_from);
    }
    if let Some(note) = decoded.note {
        out["note"] = note.into();
    }
    out
}

fn ws_message(m: &WsMessage) -> Value {
    let mut out = json!({
        "at_ms": millis(m.at),
        "direction": m.direction,
        "opcode": m.opcode,
        "len": m.len,
        "truncated": m.len > m.data.len() as u64,
    });
    match std::str::from_utf8(&m.data) {
        Ok(text) if m.opcode != WsOpcode::Binary => out["text"] = text.into(),
        _ => {
            out["base64"] = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &m.data).into()
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::proxy::inspect::flow::{Direction, FlowId, FlowKind};

    fn flow() -> Flow {
        let mut f = Flow::new(
            FlowKind::Intercepted,
            "127.0.0.1:5000".parse().unwrap(),
            "POST",
            "https://a.test/x",
            64,
        );
        f.id = FlowId(3);
        f.duration = Duration::from_micros(12_345);
        f.wait = Some(Duration::from_millis(10));
        f.request_headers =
            vec![Header::new("Host", b"a.test"), Header::new("Proxy-Authorization", b"Basic c2VjcmV0")];
        f.request_body.push(b"name=value");
        f.status = Some(200);
        f.reason = "OK".into();
        f.response_headers = vec![Header::new("Content-Type", b"application/octet-stream")];
        f.response_body.push(&[0, 159, 146, 150]);
        f.websocket.push(WsMessage {
            at: Duration::from_millis(3),
            direction: Direction::Up,
            opcode: WsOpcode::Text,
            data: b"hello".to_vec(),
            len: 9,
        });
        f
    }

    #[test]
    fn a_line_carries_the_whole_flow() {
        let v = line(&flow(), 1024);
        assert_eq!(v["id"], 3);
        assert_eq!(v["kind"], "intercepted");
        assert!(v["started"].as_str().unwrap().ends_with('Z'));
        assert_eq!(v["duration_ms"], 12.345);
        assert_eq!(v["wait_ms"], 10.0);
        assert_eq!(v["client"], "127.0.0.1:5000");
        assert_eq!(v["method"], "POST");
        assert_eq!(v["status"], 200);
        assert_eq!(v["request"]["headers"][1]["value"], "[redacted]");
        assert_eq!(v["request"]["body_size"], 10);
        assert_eq!(v["request"]["body"]["text"], "name=value");
        assert_eq!(v["response"]["body"]["base64"], "AJ+Slg==");
        assert_eq!(v["response"]["body"]["truncated"], false);
        assert_eq!(v["websocket"][0]["text"], "hello");
        assert_eq!(v["websocket"][0]["truncated"], true);
        assert_eq!(v["error"], Value::Null);
        assert!(!v.to_string().contains("c2VjcmV0"));
    }

    #[test]
    fn an_unopenable_log_names_the_flag_and_the_path() {
        let err = FlowsLog::open("/nonexistent-dir/flows.jsonl").unwrap_err().to_string();
        assert!(err.contains("--flows-log") && err.contains("/nonexistent-dir/flows.jsonl"), "{err}");
    }

    #[tokio::test]
    async fn flows_become_one_json_line_each_appended_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flows.jsonl");
        std::fs::write(&path, "{\"earlier\":true}\n").unwrap();
        let queue = FlowsLog::open(path.to_str().unwrap()).unwrap().start(1024).unwrap();
        for id in 1..=3 {
            let mut f = flow();
            f.id = FlowId(id);
            queue.send(Arc::new(f));
        }
        queue.flush().await;
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert_eq!(lines[0]["earlier"], true);
        assert_eq!(lines.iter().skip(1).map(|l| l["id"].as_u64().unwrap()).collect::<Vec<_>>(), [1, 2, 3]);
    }
}
