//! CONNECT tunnels: dial first, answer 200 only once the destination is reached, then relay (or,
//! for a host `--intercept` names, hand the connection over to the interceptor). A tunnel whose user a
//! reload removed is closed after `--reload-grace`.

use super::exchange::{ClientConn, Exchange, InterceptStart, Next};
use crate::http::head::RequestHead;
use crate::net::{relay::Relay, write_all_within, Purpose, Target};

pub(super) async fn handle(ex: &Exchange<'_>, client: &mut ClientConn, head: &RequestHead) -> Next {
    let target = match Target::parse(&head.target) {
        Ok(t) => t,
        Err(e) => {
            let detail = format!("CONNECT needs host:port: {e}");
            return ex.fail(client, 400, Some("http_request_error"), &detail).await;
        }
    };
    let mut upstream = match ex.shared.dialer.dial(&target, Purpose::Tunnel).await {
        Ok(s) => s,
        Err(e) => return ex.dial_failed(client, &e).await,
    };
    tracing::debug!(%target, "CONNECT allowed by policy and dialled");
    let idle = ex.live.timeouts.idle;
    if write_all_within(&mut client.io, b"HTTP/1.1 200 Connection established\r\n\r\n", idle).await.is_err() {
        return Next::Close;
    }
    if ex.shared.interceptor.as_ref().is_some_and(|i| i.intercepts(&target)) {
        metrics::counter!("tunnelkit_proxy_tunnels_total", "kind" => "intercept").increment(1);
        ex.log(200, 0, 0, Some("intercepted"));
        let authority = head.target.clone();
        return Next::Intercept(Box::new(InterceptStart {
            target,
            authority,
            upstream,
            user: ex.user.clone(),
        }));
    }
    // The client may have sent its first bytes (a TLS ClientHello) right behind the CONNECT head.
    let pipelined = std::mem::take(&mut client.buf);
    if !pipelined.is_empty() && write_all_within(&mut upstream, &pipelined, idle).await.is_err() {
        return Next::Close;
    }
    // The head's read buffer (16 KiB reserved, a page of it touched) must not live as long as the
    // tunnel: an idle tunnel would hold it for nothing.
    let pipelined = pipelined.len() as u64;
    metrics::counter!("tunnelkit_proxy_tunnels_total", "kind" => "connect").increment(1);
    metrics::gauge!("tunnelkit_proxy_tunnels_active").increment(1.0);
    let idle = Some(ex.live.timeouts.tunnel_idle);
    let mut relay = Relay::new(&mut client.io, &mut upstream, idle).splice(ex.shared.pipes.as_ref());
    let revoked = ex.revoked();
    let result = tokio::select! {
        r = &mut relay => Some(r),
        () = revoked => None,
    };
    let stats = match &result {
        Some(Ok(s)) => *s,
        _ => relay.stats(),
    };
    metrics::gauge!("tunnelkit_proxy_tunnels_active").decrement(1.0);
    let up = stats.a_to_b + pipelined;
    metrics::counter!("tunnelkit_proxy_bytes_total", "direction" => "up").increment(up);
    metrics::counter!("tunnelkit_proxy_bytes_total", "direction" => "down").increment(stats.b_to_a);
    let note = match &result {
        None => Some("user_removed"),
        Some(Err(_)) => Some("relay_error"),
        Some(Ok(s)) if s.idle_timeout => Some("idle_timeout"),
        Some(Ok(_)) => None,
    };
    ex.log(200, up, stats.b_to_a, note);
    Next::Close
}
