//! TLS certificate failures in words a user can act on. rustls reports some problems by the name
//! of a webpki error (`CaUsedAsEndEntity`); say what it means, whose certificate is wrong, and
//! which flag fixes it (`fix` names it, e.g. "give the CA that issued it with --ca").

/// Explains a failed TLS handshake with a server (the error's text as rustls displays it).
pub fn explain(error: &str, fix: &str) -> String {
    if error.contains("CaUsedAsEndEntity") {
        return "TLS with the server: the server presents a CA certificate as its own certificate, which \
                TLS does not accept. The server's certificate is wrong, not this client: it must present a \
                certificate issued by that CA (and the CA is what this side trusts)"
            .to_owned();
    }
    let lower = error.to_ascii_lowercase();
    if error.contains("UnknownIssuer") || lower.contains("unknown issuer") {
        return format!(
            "TLS with the server: its certificate is not signed by a CA this side trusts ({error}); {fix}"
        );
    }
    if lower.contains("notvalidforname") || lower.contains("not valid for name") {
        return format!(
            "TLS with the server: its certificate is not for the host name asked for ({error}); use the \
             name the certificate was issued for"
        );
    }
    if lower.contains("expired") || lower.contains("notvalidyet") || lower.contains("not valid yet") {
        return format!("TLS with the server: its certificate is outside its validity period ({error})");
    }
    format!("TLS with the server: {error} ({fix})")
}

#[cfg(test)]
mod tests {
    #[test]
    fn webpki_names_are_said_in_words() {
        let m = super::explain("invalid peer certificate: Other(OtherError(CaUsedAsEndEntity))", "x");
        assert!(!m.contains("CaUsedAsEndEntity") && m.contains("server's certificate is wrong"), "{m}");
        let m = super::explain("invalid peer certificate: certificate not valid for name \"x\"", "x");
        assert!(m.contains("host name"), "{m}");
        let m = super::explain("invalid peer certificate: UnknownIssuer", "add it with --upstream-ca");
        assert!(m.contains("--upstream-ca"), "{m}");
    }
}
