//! HTTP/1 pieces shared by the proxy and the balancer: strict head parsing and framing ([`head`]),
//! streaming bodies ([`body`]), hop-by-hop rules ([`hop`]) and short error responses ([`response`]).

pub mod body;
pub mod head;
pub mod hop;
pub mod response;

pub use hop::{connection_tokens, is_hop_by_hop, strip_hop_by_hop};
