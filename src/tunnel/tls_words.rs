//! TLS failures in words a user can act on. rustls reports some certificate problems by the name of a
//! webpki error (`CaUsedAsEndEntity`); say what it means, and whose certificate is wrong.

/// Explains a TLS handshake failure with the server (the error's text as rustls displays it).
pub fn explain(error: &str) -> String {
    if error.contains("CaUsedAsEndEntity") {
        return "TLS with the server: the server presents a CA certificate as its own certificate, which \
                TLS does not accept. The server's certificate is wrong, not this client: its --tls-cert must \
                be a certificate issued by that CA (give the CA to --ca here)"
            .to_owned();
    }
    if error.contains("UnknownIssuer") || error.to_ascii_lowercase().contains("unknown issuer") {
        return format!(
            "TLS with the server: its certificate is not signed by a CA this client trusts ({error}); \
             give the CA that issued it with --ca"
        );
    }
    let lower = error.to_ascii_lowercase();
    if lower.contains("notvalidforname") || lower.contains("not valid for name") {
        return format!(
            "TLS with the server: its certificate is not for the host name in the URL ({error}); use the \
             name the certificate was issued for"
        );
    }
    format!("TLS with the server: {error} (see --ca)")
}

#[cfg(test)]
mod tests {
    #[test]
    fn ca_as_end_entity_is_said_in_words() {
        let m = super::explain("invalid peer certificate: Other(OtherError(CaUsedAsEndEntity))");
        assert!(!m.contains("CaUsedAsEndEntity") && m.contains("server's certificate is wrong"), "{m}");
        let m = super::explain("invalid peer certificate: certificate not valid for name \"x\"");
        assert!(m.contains("host name in the URL"), "{m}");
        assert!(super::explain("invalid peer certificate: UnknownIssuer").contains("--ca"));
    }
}
