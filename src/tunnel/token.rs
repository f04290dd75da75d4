//! The two checks of `ws-server --token`, shared by native and compat tunnels: which configured token an
//! upgrade presents (as `Authorization: Bearer`), and whether a resume comes from the token that created
//! the tunnel. Both compare in constant time, so response times say nothing about a token's bytes.

use tokio_tungstenite::tungstenite::handshake::server::Request;

use super::id::ct_eq;

/// The upgrade presented no token, or none of the configured ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoValidToken;

/// The configured token the upgrade presents, `Ok(None)` when no tokens are configured (an open server).
/// Every configured token is compared, so the time taken does not tell which one nearly matched.
pub fn presented(req: &Request, tokens: &[String]) -> Result<Option<String>, NoValidToken> {
    if tokens.is_empty() {
        return Ok(None);
    }
    let presented = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        .ok_or(NoValidToken)?;
    let mut found = None;
    for t in tokens {
        if ct_eq(presented, t.as_bytes()) {
            found = Some(t.clone());
        }
    }
    found.map(Some).ok_or(NoValidToken)
}

/// Whether a connection presenting `presented` may take over a tunnel created with `owner`: a tunnel
/// created without a token is anyone's; one created with a token only that token's.
pub fn may_take_over(owner: Option<&str>, presented: Option<&str>) -> bool {
    match (owner, presented) {
        (None, _) => true,
        (Some(a), Some(b)) => ct_eq(a.as_bytes(), b.as_bytes()),
        (Some(_), None) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upgrade(auth: Option<&str>) -> Request {
        let mut r = Request::builder().uri("/tunnel");
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        r.body(()).unwrap()
    }

    #[test]
    fn a_configured_bearer_token_is_the_principal() {
        let tokens = vec!["a".to_owned(), "b".to_owned()];
        assert_eq!(presented(&upgrade(Some("Bearer b")), &tokens), Ok(Some("b".into())));
        assert_eq!(presented(&upgrade(Some("Bearer c")), &tokens), Err(NoValidToken));
        assert_eq!(presented(&upgrade(Some("Basic b")), &tokens), Err(NoValidToken));
        assert_eq!(presented(&upgrade(None), &tokens), Err(NoValidToken));
        assert_eq!(presented(&upgrade(None), &[]), Ok(None));
    }

    #[test]
    fn only_the_creating_token_takes_a_tunnel_over() {
        assert!(may_take_over(None, None));
        assert!(may_take_over(None, Some("x")));
        assert!(may_take_over(Some("x"), Some("x")));
        assert!(!may_take_over(Some("x"), Some("y")));
        assert!(!may_take_over(Some("x"), None));
    }
}
