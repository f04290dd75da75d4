//! Short, correct error responses written by our servers: status line, `Content-Type`,
//! `Content-Length`, an RFC 9209 `Proxy-Status` field naming the error, and `Connection: close`.

/// The standard reason phrase for the statuses we send.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        413 => "Content Too Large",
        414 => "URI Too Long",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    }
}

/// An error response that closes the connection.
///
/// `proxy_status` is an RFC 9209 error type (`destination_ip_prohibited`, `dns_error`, ...) or
/// `None`; `detail` becomes the plain-text body and the `details` parameter.
pub fn error(
    status: u16,
    proxy_status: Option<&str>,
    detail: &str,
    extra_headers: &[(&str, &str)],
) -> Vec<u8> {
    let body = format!("{status} {}: {detail}\n", reason(status));
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n",
        reason(status),
        body.len()
    );
    if let Some(kind) = proxy_status {
        let details: String = detail.chars().filter(|c| *c != '"' && *c != '\\' && !c.is_control()).collect();
        out.push_str(&format!("Proxy-Status: tunnelkit; error={kind}; details=\"{details}\"\r\n"));
    }
    for (k, v) in extra_headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(&body);
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape() {
        let r = String::from_utf8(error(403, Some("destination_ip_prohibited"), "no \"x\"", &[])).unwrap();
        assert!(r.starts_with("HTTP/1.1 403 Forbidden\r\n"));
        assert!(r.contains("Proxy-Status: tunnelkit; error=destination_ip_prohibited; details=\"no x\"\r\n"));
        assert!(r.contains("Connection: close\r\n"));
        let body = r.split("\r\n\r\n").nth(1).unwrap();
        assert!(r.contains(&format!("Content-Length: {}\r\n", body.len())));
    }
}
