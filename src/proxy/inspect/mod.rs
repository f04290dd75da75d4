//! What the proxy records of its traffic, and how it is shown: [`flow`] (one recorded exchange),
//! [`decode`] (a captured body made readable).
//! Recording is off unless `--inspect`, `--flows-log` or `--har` asks for it.

pub mod decode;
pub mod flow;
