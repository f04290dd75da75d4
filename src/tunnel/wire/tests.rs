//! Every message survives encode → decode, the bytes are the documented ones, bad payloads are errors
//! (never panics), and `docs/protocol.md` says what the constants say.

use super::*;
use crate::tunnel::frame::{FrameType, DEFAULT_MAX_FRAME, HEADER_LEN};

/// Encodes on stream 7, decodes the frame back, checks re-encoding gives the same bytes.
fn round_trip(m: Message) -> Message {
    let bytes = m.encode(7).freeze();
    let frame = Frame::decode(bytes.clone(), DEFAULT_MAX_FRAME + OPEN_EXTRA).unwrap();
    assert_eq!(frame.kind, m.kind());
    assert_eq!(frame.stream, 7);
    let back = Message::of(&frame).unwrap();
    assert_eq!(back.encode(7).freeze(), bytes, "{m:?}");
    back
}

fn payload(m: &Message) -> Vec<u8> {
    m.encode(0)[HEADER_LEN..].to_vec()
}

#[test]
fn hello_round_trips_with_version_mode_and_hold_time() {
    let m = round_trip(Message::Hello { mode: Mode::Single, keep_broken: Duration::from_secs(30) });
    assert!(
        matches!(m, Message::Hello { mode: Mode::Single, keep_broken } if keep_broken.as_millis() == 30_000)
    );
    let p = payload(&m);
    assert_eq!(p.len(), HELLO_LEN);
    assert_eq!(p[..2], [VERSION, 1]);
    assert_eq!(p[2..], 30_000u64.to_be_bytes());
}

#[test]
fn welcome_round_trips_every_field() {
    let w = Welcome {
        id: TunnelId([1; 16]),
        secret: ResumeSecret([2; 16]),
        keep_broken: Duration::from_millis(5),
        max_frame: 65_536,
        max_streams: 9,
        replay_bytes: 4 << 20,
        heartbeat: Duration::from_millis(10_000),
    };
    let Message::Welcome(b) = round_trip(Message::Welcome(w)) else { panic!("not a WELCOME") };
    assert_eq!((b.id, b.secret.0, b.keep_broken), (w.id, w.secret.0, w.keep_broken));
    assert_eq!((b.max_frame, b.max_streams, b.replay_bytes, b.heartbeat), (65_536, 9, 4 << 20, w.heartbeat));
    assert_eq!(payload(&Message::Welcome(w)).len(), WELCOME_LEN);
}

#[test]
fn resume_and_resumed_round_trip() {
    let m = round_trip(Message::Resume { id: TunnelId([3; 16]), secret: ResumeSecret([4; 16]) });
    assert!(matches!(m, Message::Resume { id, secret } if id.0 == [3; 16] && secret.0 == [4; 16]));
    assert!(matches!(round_trip(Message::Resumed), Message::Resumed));
}

#[test]
fn refused_and_rst_carry_code_and_reason() {
    let m = round_trip(Message::Refused { code: refused::LIMIT, reason: "too many".into() });
    assert!(matches!(m, Message::Refused { code: 4, ref reason } if reason == "too many"));
    let m = round_trip(Message::Rst { code: rst::FLOW_CONTROL, reason: "credit".into() });
    assert!(matches!(m, Message::Rst { code: 7, ref reason } if reason == "credit"));
    assert_eq!(payload(&m)[..CODE_LEN], 7u16.to_be_bytes());
}

#[test]
fn long_reasons_are_cut_on_a_character_boundary() {
    let m = Message::Rst { code: 1, reason: "é".repeat(MAX_REASON_LEN) };
    let p = payload(&m);
    assert!(p.len() - CODE_LEN <= MAX_REASON_LEN);
    assert!(std::str::from_utf8(&p[CODE_LEN..]).is_ok());
}

#[test]
fn open_round_trips_target_and_zero_rtt_data() {
    let m = round_trip(Message::Open { target: "example.com:443".into(), data: Bytes::from_static(b"hi") });
    assert!(
        matches!(m, Message::Open { ref target, ref data } if target == "example.com:443" && data == "hi")
    );
    let p = payload(&m);
    assert_eq!(p[..OPEN_TARGET_LEN_SIZE], 15u16.to_be_bytes());
    let m = round_trip(Message::Open { target: "listen:3".into(), data: Bytes::new() });
    assert!(matches!(m, Message::Open { ref data, .. } if data.is_empty()));
}

#[test]
fn data_window_listen_bound_round_trip() {
    assert!(matches!(round_trip(Message::Data("abc".into())), Message::Data(b) if b == "abc"));
    assert!(matches!(round_trip(Message::Window { credit: u32::MAX }), Message::Window { credit: u32::MAX }));
    let m = round_trip(Message::Listen { bind: "127.0.0.1:9000".into() });
    assert!(matches!(m, Message::Listen { ref bind } if bind == "127.0.0.1:9000"));
    let m = round_trip(Message::Bound(Ok("127.0.0.1:9000".into())));
    assert!(matches!(m, Message::Bound(Ok(ref a)) if a == "127.0.0.1:9000"));
    let m = round_trip(Message::Bound(Err("port below 1024".into())));
    assert!(matches!(m, Message::Bound(Err(ref w)) if w == "port below 1024"));
    assert_eq!(payload(&m)[0], 0);
}

#[test]
fn empty_and_nonce_messages_round_trip() {
    assert!(matches!(round_trip(Message::Connected), Message::Connected));
    assert!(matches!(round_trip(Message::Ack), Message::Ack));
    assert!(matches!(round_trip(Message::Close), Message::Close));
    assert!(matches!(round_trip(Message::Ping { nonce: 42 }), Message::Ping { nonce: 42 }));
    assert!(matches!(round_trip(Message::Pong { nonce: u64::MAX }), Message::Pong { nonce: u64::MAX }));
}

#[test]
fn data_writers_join_small_writes_but_never_after_fin_or_past_max_frame() {
    let mut f = data(5, b"ab");
    assert!(append_data(&mut f, b"cd", 4));
    assert!(!append_data(&mut f, b"e", 4), "past max_frame");
    let frame = Frame::decode(f.freeze(), 4).unwrap();
    assert_eq!((frame.kind, frame.stream, &frame.payload[..]), (FrameType::Data, 5, &b"abcd"[..]));
    let mut f = fin(5);
    assert!(!append_data(&mut f, b"x", 4), "after FIN");
    assert!(Frame::decode(f.freeze(), 4).unwrap().fin());
    let mut w = Message::Window { credit: 1 }.encode(5);
    assert!(!append_data(&mut w, b"x", 100), "not DATA");
}

/// The bytes v1 peers already exchange, written out by hand once here so that no refactoring of the
/// encoders can change them unnoticed.
#[test]
fn bytes_on_the_wire_are_the_v1_bytes() {
    let header = |t: u8, stream: u32| {
        let mut h = vec![t, 0];
        h.extend_from_slice(&stream.to_be_bytes());
        h.extend_from_slice(&[0; 16]);
        h
    };
    let hello = Message::Hello { mode: Mode::Multi, keep_broken: Duration::from_secs(30) };
    let want = [header(0x01, 0), vec![1, 0], 30_000u64.to_be_bytes().to_vec()].concat();
    assert_eq!(hello.encode(0)[..], want[..]);
    let resume = Message::Resume { id: TunnelId([0xaa; 16]), secret: ResumeSecret([0xbb; 16]) };
    assert_eq!(resume.encode(0)[..], [header(0x03, 0), vec![0xaa; 16], vec![0xbb; 16]].concat()[..]);
    let open = Message::Open { target: "a:1".into(), data: Bytes::new() };
    assert_eq!(open.encode(3)[..], [header(0x10, 3), vec![0, 3, b'a', b':', b'1']].concat()[..]);
    let rst = Message::Rst { code: rst::CANCEL, reason: "x".into() };
    assert_eq!(rst.encode(3)[..], [header(0x13, 3), vec![0, 6, b'x']].concat()[..]);
    let bound = Message::Bound(Ok("b".into()));
    assert_eq!(bound.encode(2)[..], [header(0x15, 2), vec![1, b'b']].concat()[..]);
    assert_eq!(fin(3)[..], [vec![0x11, FLAG_FIN, 0, 0, 0, 3], vec![0; 16]].concat()[..]);
}

#[test]
fn truncated_and_malformed_payloads_are_errors() {
    use FrameType::*;
    let short = |k, p: &'static [u8]| Message::decode(k, Bytes::from_static(p)).unwrap_err();
    assert_eq!(short(Hello, &[1, 0, 0]), WireError::Short { kind: Hello, need: HELLO_LEN, got: 3 });
    assert_eq!(short(Hello, &[2, 0, 0, 0, 0, 0, 0, 0, 0, 0]), WireError::Version(2));
    assert_eq!(short(Hello, &[1, 9, 0, 0, 0, 0, 0, 0, 0, 0]), WireError::Mode(9));
    assert!(matches!(short(Welcome, &[0; 59]), WireError::Short { need: WELCOME_LEN, .. }));
    assert!(matches!(short(Resume, &[0; 31]), WireError::Short { .. }));
    assert!(matches!(short(Resume, &[0; 33]), WireError::Length { want: RESUME_LEN, .. }));
    assert!(matches!(short(Open, &[0]), WireError::Short { .. }));
    assert!(matches!(short(Open, &[0, 200, b'x', b'y']), WireError::Short { need: 202, got: 4, .. }));
    assert!(matches!(short(Window, &[0, 0, 1]), WireError::Short { .. }));
    assert!(matches!(short(Window, &[0, 0, 0, 0, 1]), WireError::Length { .. }));
    assert!(matches!(short(Rst, &[7]), WireError::Short { .. }));
    assert!(matches!(short(Refused, &[]), WireError::Short { .. }));
    assert!(matches!(short(Bound, &[]), WireError::Short { .. }));
    assert_eq!(short(Bound, &[2, b'x']), WireError::BoundFlag(2));
    assert!(matches!(short(Ping, &[0; 7]), WireError::Short { .. }));
    assert!(matches!(short(Pong, &[0; 9]), WireError::Length { .. }));
    assert!(matches!(short(Close, &[0]), WireError::Length { want: 0, .. }));
}

#[test]
fn garbage_never_panics() {
    let kinds = (0..=255u8).filter_map(FrameType::from_u8).collect::<Vec<_>>();
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for len in 0..80 {
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        for &k in &kinds {
            let _ = Message::decode(k, Bytes::from(bytes.clone()));
        }
    }
}

/// The rows of the markdown table whose first cell satisfies `first`, split into trimmed cells.
fn rows<'a>(doc: &'a str, first: impl Fn(&str) -> bool + 'a) -> impl Iterator<Item = Vec<&'a str>> + 'a {
    doc.lines()
        .filter(|l| l.starts_with('|'))
        .map(|l| l.trim_matches('|').split('|').map(str::trim).collect::<Vec<_>>())
        .filter(move |c| first(c[0]))
}

/// Sum of the sizes of the typed fields (`name u16`, `name [16]`) a payload cell names in backticks.
fn fixed_len(cell: &str) -> usize {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .filter_map(|span| {
            span.split_whitespace().find_map(|w| match w {
                "u8" => Some(1),
                "u16" => Some(2),
                "u32" => Some(4),
                "u64" => Some(8),
                _ => w.strip_prefix('[')?.strip_suffix(']')?.parse().ok(),
            })
        })
        .sum()
}

#[test]
fn docs_protocol_md_matches_the_constants() {
    let doc = include_str!("../../../docs/protocol.md");
    use crate::tunnel::frame::{OFFSET_ACK, OFFSET_FLAGS, OFFSET_SEQ, OFFSET_STREAM, OFFSET_TYPE};

    // The header table: offsets and sizes.
    let header: Vec<(usize, usize, String)> = rows(doc, |c| c.parse::<usize>().is_ok())
        .filter(|c| c.len() >= 3 && c[1].parse::<usize>().is_ok())
        .map(|c| (c[0].parse().unwrap(), c[1].parse().unwrap(), c[2].trim_matches('`').to_owned()))
        .collect();
    let want = [
        (OFFSET_TYPE, 1, "type"),
        (OFFSET_FLAGS, 1, "flags"),
        (OFFSET_STREAM, 4, "stream"),
        (OFFSET_SEQ, 8, "seq"),
        (OFFSET_ACK, 8, "ack"),
    ];
    for (off, size, name) in want {
        assert!(header.contains(&(off, size, name.to_owned())), "docs: header field `{name}` at {off}");
    }
    assert_eq!(OFFSET_ACK + 8, HEADER_LEN);
    let payload_at = HEADER_LEN.to_string();
    assert!(rows(doc, move |c| c == payload_at).any(|c| c[2] == "payload"), "docs: payload offset");
    assert!(doc.contains(&format!("The header is {HEADER_LEN} bytes")));

    // The type table: every documented code is our type of that name, and every type is documented.
    let mut documented = 0;
    for c in rows(doc, |c| c.starts_with("0x")) {
        let code = u8::from_str_radix(&c[0][2..], 16).expect("hex type code");
        let kind =
            FrameType::from_u8(code).unwrap_or_else(|| panic!("docs name type {code:#04x}, unknown here"));
        let name = c[1].trim_matches('`');
        assert_eq!(format!("{kind:?}").to_uppercase(), name, "docs: type {code:#04x}");
        assert_eq!(c[2] == "yes", kind.is_sequenced(), "docs: is {name} sequenced");
        let fixed = match kind {
            FrameType::Hello => Some(HELLO_LEN),
            FrameType::Welcome => Some(WELCOME_LEN),
            FrameType::Resume => Some(RESUME_LEN),
            FrameType::Refused | FrameType::Rst => Some(CODE_LEN),
            FrameType::Open => Some(OPEN_TARGET_LEN_SIZE),
            FrameType::Window => Some(WINDOW_LEN),
            FrameType::Bound => Some(BOUND_OK_LEN),
            FrameType::Ping => Some(NONCE_LEN),
            _ => None,
        };
        if let Some(len) = fixed {
            assert_eq!(fixed_len(c[3]), len, "docs: fixed part of {name}");
        }
        if kind == FrameType::Hello {
            assert!(c[3].contains(&format!("version u8 (={VERSION})")), "docs: HELLO version");
        }
        documented += 1;
    }
    assert_eq!(documented, (0..=255u8).filter_map(FrameType::from_u8).count(), "docs: every type");

    // The codes, in the words the doc uses (line breaks in the doc do not matter).
    let doc = doc.split_whitespace().collect::<Vec<_>>().join(" ");
    let rst_words = format!(
        "{} policy, {} dial failed, {} timeout, {} limit, {} tunnel ended, {} cancelled",
        rst::POLICY,
        rst::DIAL_FAILED,
        rst::TIMEOUT,
        rst::LIMIT,
        rst::TUNNEL_ENDED,
        rst::CANCEL
    );
    assert!(doc.contains(&rst_words), "docs: RST codes");
    assert!(doc.contains(&format!("{} flow-control violation", rst::FLOW_CONTROL)));
    let refused_words = format!(
        "{} unknown tunnel or wrong secret (the same answer for both, so ids cannot be probed), {} the \
         tunnel belongs to another token, {} limit, {} unsupported version or malformed handshake",
        refused::UNKNOWN,
        refused::PRINCIPAL,
        refused::LIMIT,
        refused::VERSION
    );
    assert!(doc.contains(&refused_words), "docs: REFUSED codes");
}
