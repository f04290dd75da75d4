//! Percent-decoding (RFC 3986 §2.1), once for every part of a URL we read: credentials in a proxy
//! URL (strict: a bad escape is an error the user must fix) and query values (as browsers send
//! them: `+` is a space and a stray `%` stays as written, since a balancer must not refuse what the
//! application behind it accepts).

/// How a component treats what is not a valid escape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rules {
    /// `user:password@` of a URL: `%` must start a two-digit hex escape; `+` is a plus.
    Userinfo,
    /// `application/x-www-form-urlencoded` query values: `+` is a space; a bad escape is kept.
    Query,
}

/// What [`Rules::Userinfo`] refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A `%` at this byte is not followed by two hex digits.
    #[error("bad percent-encoding at byte {0}: `%` must be followed by two hex digits")]
    BadEscape(usize),
    /// The decoded bytes are not UTF-8.
    #[error("percent-encoded bytes are not UTF-8")]
    NotUtf8,
}

/// Decodes a query value: infallible, since [`Rules::Query`] keeps what is not a valid escape.
pub fn decode_query(s: &str) -> String {
    match decode(s, Rules::Query) {
        Ok(text) => text,
        Err(_) => unreachable!("query rules refuse nothing"),
    }
}

/// True if query value `raw` decodes to `expected`; the decoded text is built only when `raw` holds
/// something decoding changes (a balancer compares a query value on every request).
pub fn query_value_is(raw: &str, expected: &str) -> bool {
    if decodes_to_itself(raw) {
        raw == expected
    } else {
        decode_query(raw) == expected
    }
}

/// True if `s` holds no `%` and no `+`: under either [`Rules`] it decodes to itself.
fn decodes_to_itself(s: &str) -> bool {
    !s.contains(['%', '+'])
}

/// Decodes `s` under `rules`. Query values that decode to invalid UTF-8 get U+FFFD in its place:
/// they are compared as identifiers, and one that is not UTF-8 matches nothing anyway.
pub fn decode(s: &str, rules: Rules) -> Result<String, DecodeError> {
    if decodes_to_itself(s) {
        return Ok(s.to_owned()); // the usual case: nothing to decode, one copy
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => match s.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok()) {
                Some(byte) => {
                    out.push(byte);
                    i += 3;
                    continue;
                }
                None if rules == Rules::Userinfo => return Err(DecodeError::BadEscape(i)),
                None => out.push(b'%'),
            },
            b'+' if rules == Rules::Query => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    match rules {
        Rules::Userinfo => String::from_utf8(out).map_err(|_| DecodeError::NotUtf8),
        Rules::Query => Ok(String::from_utf8_lossy(&out).into_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_is_strict_and_keeps_plus() {
        assert_eq!(decode("p%40ss+w%3Ard", Rules::Userinfo).unwrap(), "p@ss+w:rd");
        assert_eq!(decode("a%2", Rules::Userinfo), Err(DecodeError::BadEscape(1)));
        assert_eq!(decode("%zz", Rules::Userinfo), Err(DecodeError::BadEscape(0)));
        assert_eq!(decode("%ff", Rules::Userinfo), Err(DecodeError::NotUtf8));
        assert_eq!(decode("%ff", Rules::Query).unwrap(), "\u{fffd}");
    }

    #[test]
    fn query_values_decode_plus_and_keep_stray_percent() {
        assert_eq!(decode("b%2Bc+d", Rules::Query).unwrap(), "b+c d");
        assert_eq!(decode("100%", Rules::Query).unwrap(), "100%");
        assert_eq!(decode("%zz%41", Rules::Query).unwrap(), "%zzA");
        assert_eq!(decode("plain", Rules::Query).unwrap(), "plain");
    }

    #[test]
    fn query_values_compare_decoded() {
        assert!(query_value_is("websocket", "websocket"));
        assert!(query_value_is("web%73ocket", "websocket"));
        assert!(query_value_is("a+b", "a b"));
        assert!(!query_value_is("a+b", "a+b"));
        assert!(!query_value_is("websocket+", "websocket"));
    }
}
