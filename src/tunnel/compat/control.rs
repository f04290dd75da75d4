//! The seed's JSON control messages (WebSocket text messages): `create`, `use`, `close`, `error` from
//! the client, and what we answer (`created`, `close`, `error` with the seed's codes and verbatim
//! messages, typos included, because seed clients may match on them).

use serde_json::{Map, Value};

/// The seed's `tunnelErrorCodes` (lib/tunnel.js). Sent as `{"_":"error","code":N,"msg":"..."}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// 4001: `create` on a connection that already has a tunnel.
    AlreadyCreated,
    /// 4002: `create` with a mode other than `subStream` or `stream`.
    ModeNotAllowed,
    /// 4004: `use` with an unknown (or expired) tunnel id.
    NoSuchTunnel,
    /// 4005: valid JSON but not a message we accept.
    WrongMessage,
    /// 4006: a binary frame on a connection without a tunnel.
    BinaryWithoutTunnel,
    /// 4007: a text message that is not JSON.
    CannotParse,
}

impl ErrorCode {
    /// The numeric code.
    pub fn code(self) -> u16 {
        match self {
            ErrorCode::AlreadyCreated => 4001,
            ErrorCode::ModeNotAllowed => 4002,
            ErrorCode::NoSuchTunnel => 4004,
            ErrorCode::WrongMessage => 4005,
            ErrorCode::BinaryWithoutTunnel => 4006,
            ErrorCode::CannotParse => 4007,
        }
    }

    /// The seed's message for the code, verbatim.
    pub fn message(self) -> &'static str {
        match self {
            ErrorCode::AlreadyCreated => "Tunnel already created",
            ErrorCode::ModeNotAllowed => "Not allowed tunnel mode",
            ErrorCode::NoSuchTunnel => "Tunnel of id not exsts",
            ErrorCode::WrongMessage => "Wrong configuration msg",
            ErrorCode::BinaryWithoutTunnel => "Binary data received without a tunnel",
            ErrorCode::CannotParse => "Cannot parse the data",
        }
    }

    /// The whole text message, byte for byte what the seed sends.
    pub fn to_json(self) -> String {
        format!(r#"{{"_":"error","code":{},"msg":"{}"}}"#, self.code(), self.message())
    }
}

/// The two tunnel modes of the seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Many streams in one tunnel.
    SubStream,
    /// One stream at a time (the seed client always opens it as sid 0).
    Stream,
}

/// A control message from the client.
#[derive(Debug, Clone, PartialEq)]
pub enum Control {
    /// `{"_":"create","mode":...,"keepBrokenTunnel":ms}`; the whole object is kept because the answer
    /// echoes it.
    Create(Map<String, Value>),
    /// `{"_":"use","tunnelID":...}`: rebind a tunnel to this connection.
    Use {
        /// The tunnel id presented (absent or not a string: `None`).
        tunnel_id: Option<String>,
    },
    /// `{"_":"close","msg":...}`: the client closed its tunnel.
    Close {
        /// The reason, if a string.
        msg: Option<String>,
    },
    /// `{"_":"error","code":N,"msg":...}`.
    Error {
        /// The code, if an integer.
        code: Option<i64>,
        /// The message, if a string.
        msg: Option<String>,
    },
    /// Valid JSON with any other (or no) `_`, including `created`, which a server never accepts: the
    /// seed would build a tunnel with the client's id from it.
    Other,
}

/// Parses a text message. Not JSON → `Err(CannotParse)`.
pub fn parse(text: &str) -> Result<Control, ErrorCode> {
    let value: Value = serde_json::from_str(text).map_err(|_| ErrorCode::CannotParse)?;
    let Value::Object(obj) = value else {
        return Ok(Control::Other);
    };
    let string = |key: &str| obj.get(key).and_then(Value::as_str).map(str::to_owned);
    Ok(match obj.get("_").and_then(Value::as_str) {
        Some("create") => Control::Create(obj),
        Some("use") => Control::Use { tunnel_id: string("tunnelID") },
        Some("close") => Control::Close { msg: string("msg") },
        Some("error") => Control::Error { code: obj.get("code").and_then(Value::as_i64), msg: string("msg") },
        _ => Control::Other,
    })
}

/// The mode a `create` asks for; `None` when it is not one the seed allows.
pub fn mode_of(create: &Map<String, Value>) -> Option<Mode> {
    match create.get("mode").and_then(Value::as_str) {
        Some("subStream") => Some(Mode::SubStream),
        Some("stream") => Some(Mode::Stream),
        _ => None,
    }
}

/// The `keepBrokenTunnel` a `create` asks for, in milliseconds (absent, not a number or not positive:
/// 0, which the seed reads as "close the tunnel as soon as its connection breaks").
pub fn keep_broken_ms(create: &Map<String, Value>) -> u64 {
    match create.get("keepBrokenTunnel").and_then(Value::as_f64) {
        Some(ms) if ms >= 1.0 => ms.min(u64::MAX as f64) as u64,
        _ => 0,
    }
}

/// The answer to `create`: the request echoed with `_` set to `created` and our `tunnelID` (replacing
/// any the client sent: a client never chooses the id). The seed client builds its tunnel from this
/// echo, so a `keepBrokenTunnel` we capped is echoed capped: both sides then hold a broken tunnel for
/// the same time.
pub fn created(mut create: Map<String, Value>, tunnel_id: &str, held_ms: u64) -> String {
    create.insert("_".into(), "created".into());
    if held_ms < keep_broken_ms(&create) {
        create.insert("keepBrokenTunnel".into(), held_ms.into());
    }
    create.insert("tunnelID".into(), tunnel_id.into());
    Value::Object(create).to_string()
}

/// The answer to a successful `use`: `{"_":"created","msg":"<tunnelID>"}`.
pub fn resumed(tunnel_id: &str) -> String {
    serde_json::json!({"_": "created", "msg": tunnel_id}).to_string()
}

/// `{"_":"close","msg":reason}`, sent when a tunnel closes (no `msg` when there is no reason, as the
/// seed's `JSON.stringify` drops an undefined one).
pub fn close(reason: Option<&str>) -> String {
    match reason {
        Some(r) => serde_json::json!({"_": "close", "msg": r}).to_string(),
        None => r#"{"_":"close"}"#.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_are_the_seeds() {
        assert_eq!(
            ErrorCode::CannotParse.to_json(),
            r#"{"_":"error","code":4007,"msg":"Cannot parse the data"}"#
        );
        assert_eq!(
            ErrorCode::NoSuchTunnel.to_json(),
            r#"{"_":"error","code":4004,"msg":"Tunnel of id not exsts"}"#
        );
    }

    #[test]
    fn parses_the_client_messages() {
        assert_eq!(parse("{nope"), Err(ErrorCode::CannotParse));
        assert_eq!(parse("null"), Ok(Control::Other));
        assert_eq!(parse("[1]"), Ok(Control::Other));
        assert_eq!(parse(r#"{"_":"created","tunnelID":"x"}"#), Ok(Control::Other));
        assert_eq!(
            parse(r#"{"_":"use","tunnelID":"abc"}"#),
            Ok(Control::Use { tunnel_id: Some("abc".into()) })
        );
        assert_eq!(parse(r#"{"_":"use","tunnelID":5}"#), Ok(Control::Use { tunnel_id: None }));
        assert_eq!(parse(r#"{"_":"close"}"#), Ok(Control::Close { msg: None }));
        assert_eq!(
            parse(r#"{"_":"error","code":4002,"msg":"m"}"#),
            Ok(Control::Error { code: Some(4002), msg: Some("m".into()) })
        );
        let Ok(Control::Create(c)) = parse(r#"{"_":"create","mode":"stream","keepBrokenTunnel":5000}"#)
        else {
            panic!()
        };
        assert_eq!((mode_of(&c), keep_broken_ms(&c)), (Some(Mode::Stream), 5000));
    }

    #[test]
    fn created_echoes_with_our_id_and_capped_hold() {
        let Ok(Control::Create(c)) =
            parse(r#"{"_":"create","mode":"subStream","keepBrokenTunnel":600000,"tunnelID":"mine","x":1}"#)
        else {
            panic!()
        };
        let v: Value = serde_json::from_str(&created(c.clone(), "OURS", 1000)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"_":"created","mode":"subStream","keepBrokenTunnel":1000,"tunnelID":"OURS","x":1})
        );
        let v: Value = serde_json::from_str(&created(c, "OURS", 600000)).unwrap();
        assert_eq!(v["keepBrokenTunnel"], 600000);
    }

    #[test]
    fn keep_broken_of_odd_values() {
        let obj = |v: Value| serde_json::json!({ "keepBrokenTunnel": v }).as_object().unwrap().clone();
        assert_eq!(keep_broken_ms(&obj(Value::Null)), 0);
        assert_eq!(keep_broken_ms(&obj("5000".into())), 0);
        assert_eq!(keep_broken_ms(&obj((-5).into())), 0);
        assert_eq!(keep_broken_ms(&obj(1e300.into())), u64::MAX);
        assert_eq!(resumed("id"), r#"{"_":"created","msg":"id"}"#);
        assert_eq!(close(Some("idle")), r#"{"_":"close","msg":"idle"}"#);
    }
}
