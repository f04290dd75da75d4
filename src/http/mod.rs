//! HTTP pieces shared by the proxy and the balancer: hop-by-hop header rules (RFC 9110 §7.6.1),
//! request-head limits, and short error responses.

pub mod hop;

pub use hop::{connection_tokens, is_hop_by_hop, strip_hop_by_hop};
