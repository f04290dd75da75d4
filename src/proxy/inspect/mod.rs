//! What the proxy records of its traffic, and how it is shown: [`flow`] (one recorded exchange).
//! Recording is off unless `--inspect`, `--flows-log` or `--har` asks for it.

pub mod flow;
