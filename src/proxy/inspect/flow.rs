//! One recorded exchange of the proxy (a [`Flow`]): what the inspector lists, `--flows-log` writes
//! and `--har` exports. Plain records with public fields: the proxy fills one in as the exchange
//! goes and hands it over when it ends; nothing about a record has to stay consistent with anything
//! else, except a [`CapturedBody`], which keeps its own size cap.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use serde::Serialize;

/// A flow's number, unique within one proxy process (assigned when the flow is recorded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct FlowId(pub u64);

/// How the proxy saw the exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FlowKind {
    /// An absolute-form `http://` request: the proxy read it in the clear.
    Plain,
    /// A CONNECT tunnel the proxy relayed without looking inside (bytes only).
    Tunnelled,
    /// An HTTPS request the proxy decrypted (`--intercept`).
    Intercepted,
}

/// One header field as it was sent. `Proxy-Authorization` values never get here (the proxy
/// records `[redacted]`); values that are not UTF-8 are kept lossily.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Header {
    pub name: String,
    pub value: String,
}

impl Header {
    /// A header from raw bytes, redacting credentials meant for the proxy.
    pub fn new(name: &str, value: &[u8]) -> Header {
        let value = if name.eq_ignore_ascii_case("proxy-authorization") {
            "[redacted]".to_owned()
        } else {
            String::from_utf8_lossy(value).into_owned()
        };
        Header { name: name.to_owned(), value }
    }
}

/// The first `cap` bytes of a body as it went over the wire (still content-encoded), and its
/// full length.
#[derive(Debug, Clone, Default)]
pub struct CapturedBody {
    bytes: Vec<u8>,
    total: u64,
    cap: usize,
}

impl CapturedBody {
    /// An empty capture that keeps at most `cap` bytes.
    pub fn new(cap: usize) -> Self {
        CapturedBody { bytes: Vec::new(), total: 0, cap }
    }

    /// Adds the next bytes of the body; those past the cap are only counted.
    pub fn push(&mut self, data: &[u8]) {
        self.total += data.len() as u64;
        let room = self.cap.saturating_sub(self.bytes.len());
        self.bytes.extend_from_slice(&data[..data.len().min(room)]);
    }

    /// The kept bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The body's full length.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// True if bytes past the cap were dropped.
    pub fn truncated(&self) -> bool {
        self.total > self.bytes.len() as u64
    }
}

/// Who sent a WebSocket message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// From the client towards the origin.
    Up,
    /// From the origin towards the client.
    Down,
}

/// A WebSocket message's kind (RFC 6455 opcodes; continuation frames are folded into their
/// message).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WsOpcode {
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

/// One WebSocket message seen after an upgrade, unmasked, its payload capped.
#[derive(Debug, Clone)]
pub struct WsMessage {
    /// Time since the flow started.
    pub at: Duration,
    pub direction: Direction,
    pub opcode: WsOpcode,
    /// The payload (capped like bodies); `len` is its full length.
    pub data: Vec<u8>,
    pub len: u64,
}

/// One exchange: a request and its answer, a tunnel, or an upgraded connection with its messages.
#[derive(Debug, Clone)]
pub struct Flow {
    /// Set when recorded; `FlowId(0)` before.
    pub id: FlowId,
    pub kind: FlowKind,
    pub client: SocketAddr,
    pub started: SystemTime,
    /// Until the answer's last byte (or the tunnel's close).
    pub duration: Duration,
    /// Until the answer's head arrived, when one did.
    pub wait: Option<Duration>,
    pub method: String,
    /// The full URL: `http://…` for plain, `https://…` for intercepted, `host:port` for tunnels.
    pub url: String,
    /// `HTTP/1.1` or `HTTP/1.0`.
    pub http_version: String,
    pub request_headers: Vec<Header>,
    pub request_body: CapturedBody,
    /// The final status sent to the client (the proxy's own error status when it answered
    /// itself), `None` when the client got no answer at all.
    pub status: Option<u16>,
    pub reason: String,
    pub response_headers: Vec<Header>,
    pub response_body: CapturedBody,
    /// Bytes from the client and to it (bodies, or everything for tunnels).
    pub bytes_up: u64,
    pub bytes_down: u64,
    /// What went wrong, in words (as in the access log's note), if anything.
    pub error: Option<String>,
    pub websocket: Vec<WsMessage>,
}

impl Flow {
    /// A flow that has just started, with nothing sent yet: no headers, empty bodies that keep up
    /// to `body_max` bytes, no answer.
    pub fn new(kind: FlowKind, client: SocketAddr, method: &str, url: &str, body_max: usize) -> Flow {
        Flow {
            id: FlowId(0),
            kind,
            client,
            started: SystemTime::now(),
            duration: Duration::ZERO,
            wait: None,
            method: method.to_owned(),
            url: url.to_owned(),
            http_version: "HTTP/1.1".to_owned(),
            request_headers: Vec::new(),
            request_body: CapturedBody::new(body_max),
            status: None,
            reason: String::new(),
            response_headers: Vec::new(),
            response_body: CapturedBody::new(body_max),
            bytes_up: 0,
            bytes_down: 0,
            error: None,
            websocket: Vec::new(),
        }
    }

    /// When it started, as RFC 3339 UTC with milliseconds (`2024-05-01T12:00:00.123Z`).
    pub fn started_rfc3339(&self) -> String {
        humantime::format_rfc3339_millis(self.started).to_string()
    }
}

/// A duration in milliseconds, to the microsecond: what JSON exports carry (HAR times are
/// milliseconds).
pub fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

impl CapturedBody {
    /// The most bytes it keeps.
    pub fn cap(&self) -> usize {
        self.cap
    }
}

/// The proxy's body copy feeds captures directly.
impl crate::http::body::Tap for CapturedBody {
    fn payload(&mut self, data: &[u8]) {
        self.push(data);
    }
}
