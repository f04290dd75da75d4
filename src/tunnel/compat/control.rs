//! The seed's JSON control messages (WebSocket text messages): `create`, `use`, `close`, `error` from
//! the client, and what we answer (`created`, `close`, `error` with the seed's codes and verbatim
//! messages, typos included, because seed clients may match on them).
//!
//! Messages are at most [`MAX_TEXT`] bytes and are read into a struct of the few fields we use (any
//! other field is skipped without being built), never into a whole JSON tree.

use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;

/// Largest text (control) message accepted; the seed's are well under 200 bytes. A larger one closes
/// the connection (code 1009).
pub const MAX_TEXT: usize = 64 * 1024;

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
    /// `{"_":"create","mode":...,"keepBrokenTunnel":ms}`.
    Create(CreateRequest),
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

/// What a `create` asks for: the fields the seed client reads back from our `created` echo.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CreateRequest {
    /// `mode`, if a string.
    pub mode: Option<String>,
    /// `keepBrokenTunnel`, if a number.
    pub keep_broken: Option<f64>,
}

/// A field's value if it has the type we want (a string or a number); any other value is skipped
/// without being built, as the seed ignores fields of the wrong type.
#[derive(Debug, Default)]
struct Loose<T>(Option<T>);

/// The values a [`Loose`] field can keep.
trait Wanted: Sized {
    fn from_str(v: &str) -> Option<Self>;
    fn from_f64(v: f64) -> Option<Self>;
}

impl Wanted for String {
    fn from_str(v: &str) -> Option<Self> {
        Some(v.to_owned())
    }
    fn from_f64(_: f64) -> Option<Self> {
        None
    }
}

impl Wanted for f64 {
    fn from_str(_: &str) -> Option<Self> {
        None
    }
    fn from_f64(v: f64) -> Option<Self> {
        Some(v)
    }
}

struct LooseVisitor<T>(std::marker::PhantomData<T>);

impl<'de, T: Wanted> Visitor<'de> for LooseVisitor<T> {
    type Value = Loose<T>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Loose<T>, E> {
        Ok(Loose(T::from_str(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Loose<T>, E> {
        Ok(Loose(T::from_f64(v as f64)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Loose<T>, E> {
        Ok(Loose(T::from_f64(v as f64)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Loose<T>, E> {
        Ok(Loose(T::from_f64(v)))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Loose<T>, E> {
        Ok(Loose(None))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Loose<T>, E> {
        Ok(Loose(None))
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut a: A) -> Result<Loose<T>, A::Error> {
        while a.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Loose(None))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Loose<T>, A::Error> {
        while a.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Loose(None))
    }
}

impl<'de, T: Wanted> Deserialize<'de> for Loose<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Loose<T>, D::Error> {
        d.deserialize_any(LooseVisitor(std::marker::PhantomData))
    }
}

/// The fields of a control message we look at; every other field is skipped.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Fields {
    #[serde(rename = "_")]
    kind: Loose<String>,
    mode: Loose<String>,
    #[serde(rename = "keepBrokenTunnel")]
    keep_broken: Loose<f64>,
    #[serde(rename = "tunnelID")]
    tunnel_id: Loose<String>,
    msg: Loose<String>,
    code: Loose<f64>,
}

/// Parses a text message. Not JSON → `Err(CannotParse)`; valid JSON that is not an object, or with
/// another or no `_`, → `Other`.
pub fn parse(text: &str) -> Result<Control, ErrorCode> {
    if !text.trim_start().starts_with('{') {
        let valid = serde_json::from_str::<IgnoredAny>(text).is_ok();
        return if valid { Ok(Control::Other) } else { Err(ErrorCode::CannotParse) };
    }
    let f: Fields = serde_json::from_str(text).map_err(|_| ErrorCode::CannotParse)?;
    Ok(match f.kind.0.as_deref() {
        Some("create") => Control::Create(CreateRequest { mode: f.mode.0, keep_broken: f.keep_broken.0 }),
        Some("use") => Control::Use { tunnel_id: f.tunnel_id.0 },
        Some("close") => Control::Close { msg: f.msg.0 },
        Some("error") => Control::Error {
            code: f.code.0.filter(|c| c.fract() == 0.0 && c.abs() < 9e15).map(|c| c as i64),
            msg: f.msg.0,
        },
        _ => Control::Other,
    })
}

/// The mode a `create` asks for; `None` when it is not one the seed allows.
pub fn mode_of(create: &CreateRequest) -> Option<Mode> {
    match create.mode.as_deref() {
        Some("subStream") => Some(Mode::SubStream),
        Some("stream") => Some(Mode::Stream),
        _ => None,
    }
}

/// The `keepBrokenTunnel` a `create` asks for, in milliseconds (absent, not a number or not positive:
/// 0, which the seed reads as "close the tunnel as soon as its connection breaks").
pub fn keep_broken_ms(create: &CreateRequest) -> u64 {
    match create.keep_broken {
        Some(ms) if ms >= 1.0 => ms.min(u64::MAX as f64) as u64,
        _ => 0,
    }
}

/// The answer to `create`: `_` set to `created`, the fields the seed client builds its tunnel from
/// (`mode`, `keepBrokenTunnel`, and our `tunnelID`: a client never chooses the id). A `keepBrokenTunnel`
/// we capped is echoed capped: both sides then hold a broken tunnel for the same time. Other fields of
/// the request are not echoed (the seed client does not read them).
pub fn created(create: &CreateRequest, tunnel_id: &str, held_ms: u64) -> String {
    let mut out = serde_json::Map::new();
    out.insert("_".into(), "created".into());
    if let Some(mode) = &create.mode {
        out.insert("mode".into(), mode.clone().into());
    }
    match create.keep_broken {
        Some(_) if held_ms < keep_broken_ms(create) => {
            out.insert("keepBrokenTunnel".into(), held_ms.into());
        }
        Some(ms) => {
            let v = serde_json::Number::from_f64(ms).map_or(serde_json::Value::Null, |n| {
                if ms.fract() == 0.0 && ms.abs() < 9e15 {
                    (ms as i64).into()
                } else {
                    n.into()
                }
            });
            out.insert("keepBrokenTunnel".into(), v);
        }
        None => {}
    }
    out.insert("tunnelID".into(), tunnel_id.into());
    serde_json::Value::Object(out).to_string()
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
        // Fields of other types, and nested values, are skipped without failing the message.
        let Ok(Control::Create(c)) =
            parse(r#"{"x":{"deep":[[1],{"a":null}]},"_":"create","mode":7,"keepBrokenTunnel":"5000"}"#)
        else {
            panic!()
        };
        assert_eq!(c, CreateRequest::default());
        assert_eq!(parse(r#"{"_":"close","msg":""}"#), Ok(Control::Close { msg: Some(String::new()) }));
    }

    #[test]
    fn created_echoes_with_our_id_and_capped_hold() {
        let Ok(Control::Create(c)) =
            parse(r#"{"_":"create","mode":"subStream","keepBrokenTunnel":600000,"tunnelID":"mine","x":1}"#)
        else {
            panic!()
        };
        let v: serde_json::Value = serde_json::from_str(&created(&c, "OURS", 1000)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"_":"created","mode":"subStream","keepBrokenTunnel":1000,"tunnelID":"OURS"})
        );
        let v: serde_json::Value = serde_json::from_str(&created(&c, "OURS", 600000)).unwrap();
        assert_eq!(v["keepBrokenTunnel"], 600000);
    }

    #[test]
    fn keep_broken_of_odd_values() {
        let obj = |v: &str| match parse(&format!(r#"{{"_":"create","keepBrokenTunnel":{v}}}"#)) {
            Ok(Control::Create(c)) => c,
            other => panic!("{other:?}"),
        };
        assert_eq!(keep_broken_ms(&obj("null")), 0);
        assert_eq!(keep_broken_ms(&obj(r#""5000""#)), 0);
        assert_eq!(keep_broken_ms(&obj("-5")), 0);
        assert_eq!(keep_broken_ms(&obj("1e300")), u64::MAX);
        assert_eq!(resumed("id"), r#"{"_":"created","msg":"id"}"#);
        assert_eq!(close(Some("idle")), r#"{"_":"close","msg":"idle"}"#);
    }
}
