//! Bodies as the balancer handles them: the one boxed body type of its requests and answers, the
//! short answers it makes itself, and reading a small body whole without ever buffering a large one.

use std::convert::Infallible;

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};

/// Every request and response body the balancer passes on.
pub type Body = BoxBody<Bytes, hyper::Error>;

/// A short answer of the balancer's own.
pub fn full(status: StatusCode, content_type: &'static str, body: &'static str) -> Response<Body> {
    let mut r = Response::new(full_body(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// No body.
pub fn empty() -> Body {
    http_body_util::Empty::new().map_err(|e: Infallible| match e {}).boxed()
}

/// A body already in memory.
pub fn full_body(bytes: Bytes) -> Body {
    Full::new(bytes).map_err(|e: Infallible| match e {}).boxed()
}

/// Engine.IO's own answer for a session it does not know: the client reconnects at once.
pub fn session_unknown() -> Response<Body> {
    full(StatusCode::BAD_REQUEST, "application/json", r#"{"code":1,"message":"Session ID unknown"}"#)
}

/// A body read whole because it was small, or given back (what was read, then the rest) because
/// it was not.
pub enum Small {
    /// The whole body.
    Whole(Bytes),
    /// Larger than the cap: the bytes read so far followed by the unread rest.
    Larger(Body),
}

/// Reads `body` up to `cap` bytes. Bodies without a declared length (Node answers its errors
/// chunked) are read frame by frame, so a large one is never buffered past `cap`.
pub async fn read_small<B>(mut body: B, cap: usize) -> Result<Small, hyper::Error>
where
    B: hyper::body::Body<Data = Bytes, Error = hyper::Error> + Send + Sync + Unpin + 'static,
{
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut total = 0;
    while let Some(frame) = body.frame().await {
        // Trailers are not used by Engine.IO; only data frames are kept.
        let Ok(data) = frame?.into_data() else { continue };
        total += data.len();
        chunks.push(data);
        if total > cap {
            let head = futures_util::stream::iter(chunks.into_iter().map(|d| Ok(Frame::data(d))));
            let rest = http_body_util::BodyStream::new(body);
            return Ok(Small::Larger(BodyExt::boxed(StreamBody::new(head.chain(rest)))));
        }
    }
    Ok(Small::Whole(match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.pop().unwrap_or_default(),
        _ => chunks.concat().into(),
    }))
}
