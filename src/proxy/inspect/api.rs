//! The JSON the inspector's API answers with: a [`Summary`] per flow for the table (`/api/flows`,
//! and each `flow` event of `/api/events`), a [`Detail`] for one flow (`/api/flows/{id}`), bodies
//! decoded and shown as [`decode`](super::decode) shows them.
//!
//! Header values here are the recorded ones, so `Proxy-Authorization` reads `[redacted]` (see
//! [`Header::new`]); nothing else of the proxy's own configuration (users, CA) is reachable from a
//! flow.

use serde::Serialize;

use super::decode::{hex_dump, show, Shown, HEX_MAX};
use super::flow::{millis, Direction, Flow, FlowId, FlowKind, Header, WsMessage, WsOpcode};

/// The most WebSocket messages one detail lists: a chatty socket can carry hundreds of thousands,
/// and a page cannot show them usefully anyway. The first ones are kept (the handshake's context).
pub const WS_SHOWN: usize = 2000;

/// One row of the flows table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub id: FlowId,
    pub kind: FlowKind,
    pub method: String,
    pub url: String,
    /// `null` when the client got no answer.
    pub status: Option<u16>,
    /// Bytes of the answer as sent: the response body, or everything sent to the client through
    /// a tunnel.
    pub size: u64,
    pub duration_ms: f64,
    /// RFC 3339 UTC.
    pub started: String,
    /// What went wrong, if anything.
    pub error: Option<String>,
}

impl Summary {
    pub fn of(flow: &Flow) -> Summary {
        let size = match flow.kind {
            FlowKind::Tunnelled => flow.bytes_down,
            FlowKind::Plain | FlowKind::Intercepted => flow.response_body.total(),
        };
        Summary {
            id: flow.id,
            kind: flow.kind,
            method: flow.method.clone(),
            url: flow.url.clone(),
            status: flow.status,
            size,
            duration_ms: millis(flow.duration),
            started: flow.started_rfc3339(),
            error: flow.error.clone(),
        }
    }
}

/// Everything about one flow, bodies decoded for display.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Detail {
    #[serde(flatten)]
    pub summary: Summary,
    pub client: String,
    pub http_version: String,
    pub reason: String,
    /// Until the answer's head arrived.
    pub wait_ms: Option<f64>,
    pub request: Message,
    pub response: Message,
    pub bytes_up: u64,
    pub bytes_down: u64,
    /// At most [`WS_SHOWN`]; `websocket_total` says how many there were.
    pub websocket: Vec<ShownWsMessage>,
    pub websocket_total: usize,
}

/// A request's or response's head fields and body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    pub headers: Vec<Header>,
    pub body: Shown,
}

/// A WebSocket message for display: text messages as text, others as a hex dump.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShownWsMessage {
    pub at_ms: f64,
    pub direction: Direction,
    pub opcode: WsOpcode,
    /// The full payload length.
    pub len: u64,
    pub text: Option<String>,
    pub hex: Option<String>,
    /// True when the payload shown is not all of it.
    pub truncated: bool,
}

impl Detail {
    /// The detail of `flow`, bodies decoded up to `body_max` bytes each. Costs up to a few ms
    /// for megabyte bodies: call it off the async threads.
    pub fn of(flow: &Flow, body_max: usize) -> Detail {
        Detail {
            summary: Summary::of(flow),
            client: flow.client.to_string(),
            http_version: flow.http_version.clone(),
            reason: flow.reason.clone(),
            wait_ms: flow.wait.map(millis),
            request: Message {
                headers: flow.request_headers.clone(),
                body: show(&flow.request_body, &flow.request_headers, body_max),
            },
            response: Message {
                headers: flow.response_headers.clone(),
                body: show(&flow.response_body, &flow.response_headers, body_max),
            },
            bytes_up: flow.bytes_up,
            bytes_down: flow.bytes_down,
            websocket: flow.websocket.iter().take(WS_SHOWN).map(ShownWsMessage::of).collect(),
            websocket_total: flow.websocket.len(),
        }
    }
}

impl ShownWsMessage {
    fn of(m: &WsMessage) -> ShownWsMessage {
        let text = match std::str::from_utf8(&m.data) {
            Ok(text) if m.opcode != WsOpcode::Binary => Some(text.to_owned()),
            _ => None,
        };
        let hex = text.is_none().then(|| hex_dump(&m.data[..m.data.len().min(HEX_MAX)]));
        let shown = if text.is_some() { m.data.len() } else { m.data.len().min(HEX_MAX) };
        ShownWsMessage {
            at_ms: millis(m.at),
            direction: m.direction,
            opcode: m.opcode,
            len: m.len,
            text,
            hex,
            truncated: m.len > shown as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_tunnel_summary_counts_the_bytes_sent_to_the_client() {
        let mut f =
            Flow::new(FlowKind::Tunnelled, "127.0.0.1:1".parse().unwrap(), "CONNECT", "a.test:443", 0);
        f.bytes_down = 4096;
        f.status = Some(200);
        let s = serde_json::to_value(Summary::of(&f)).unwrap();
        assert_eq!(s["kind"], "tunnelled");
        assert_eq!(s["size"], 4096);
        assert_eq!(s["status"], 200);
    }

    #[test]
    fn a_detail_shows_bodies_and_websocket_messages() {
        let mut f = Flow::new(FlowKind::Plain, "127.0.0.1:1".parse().unwrap(), "GET", "http://a.test/", 64);
        f.response_body.push(b"hello");
        f.websocket = vec![
            WsMessage {
                at: Duration::ZERO,
                direction: Direction::Down,
                opcode: WsOpcode::Text,
                data: b"hi".to_vec(),
                len: 2,
            },
            WsMessage {
                at: Duration::ZERO,
                direction: Direction::Up,
                opcode: WsOpcode::Binary,
                data: vec![1],
                len: 3,
            },
        ];
        let d = serde_json::to_value(Detail::of(&f, 64)).unwrap();
        assert_eq!(d["url"], "http://a.test/", "summary fields are flattened in");
        assert_eq!(d["response"]["body"]["text"], "hello");
        assert_eq!(d["websocket"][0]["text"], "hi");
        assert_eq!(d["websocket"][1]["hex"].as_str().unwrap().split_whitespace().nth(1), Some("01"));
        assert_eq!(d["websocket"][1]["truncated"], true);
        assert_eq!(d["websocket_total"], 2);
    }
}
