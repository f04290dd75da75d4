//! Start-up checks of what `ws-server` and `ws-client` expose and can afford, worded like
//! `tunnelkit proxy`'s refusal of an open proxy: what is reachable, why it matters, and the ways out.
//!
//! - `ws-server` on an address other machines can reach, without `--token`, would let anyone reach
//!   whatever its policy allows: refused unless `--open` says it is on purpose.
//! - `ws-client -L`/`--socks` on such an address lets anyone who reaches it use the tunnel (and the
//!   server's token): allowed, since that can be the point, but said out loud.
//! - `--workers N` must fit the file descriptor limit (each worker's runtime holds descriptors).

use std::net::SocketAddr;

use super::args::ClientArgs;
use super::listen_limits::fd_limit;
use super::server_settings::ServerSettings;

/// Descriptors one worker's runtime holds (its epoll instance and waker), with room to spare.
const FDS_PER_WORKER: u64 = 4;
/// Descriptors kept for everything else before any connection: listeners, metrics, logs, DNS.
const FDS_RESERVED: u64 = 64;

/// Refuses a `ws-server` configuration that would serve anyone by accident, or could not start its
/// workers within the descriptor limit.
pub fn check_server(settings: &ServerSettings) -> anyhow::Result<()> {
    if settings.tokens.is_empty() && !settings.open && !settings.listen.ip().is_loopback() {
        anyhow::bail!(
            "--listen {}: this address is reachable from other machines and no --token is configured; \
             add --token T, listen on 127.0.0.1, or pass --open to run an open tunnel server on purpose",
            settings.listen
        );
    }
    if let Some(limit) = fd_limit() {
        let workers = settings.workers as u64;
        if workers * FDS_PER_WORKER + FDS_RESERVED > limit {
            anyhow::bail!(
                "--workers {workers}: each worker needs about {FDS_PER_WORKER} file descriptors and the limit \
                 (ulimit -n) is {limit}; use at most {} workers (0 = one per core) or raise the limit",
                limit.saturating_sub(FDS_RESERVED) / FDS_PER_WORKER
            );
        }
    }
    Ok(())
}

/// Warns about `ws-client` entries that other machines can reach.
pub fn warn_client(args: &ClientArgs) {
    let mut exposed: Vec<(String, SocketAddr)> =
        args.local.iter().map(|spec| (format!("-L {}", spec.bind), spec.bind)).collect();
    if let Some(addr) = args.socks {
        exposed.push((format!("--socks {addr}"), addr));
    }
    for (flag, addr) in exposed.into_iter().filter(|(_, a)| !a.ip().is_loopback()) {
        let msg = format!(
            "{flag}: anyone who can reach {addr} can use the tunnel (with this client's token); \
             bind 127.0.0.1 unless that is what you want"
        );
        tracing::warn!("{msg}");
        // Also on stderr without a subscriber filter in the way: this is about security.
        if !tracing::enabled!(tracing::Level::WARN) {
            crate::telemetry::announce(&format!("warning: {msg}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tunnel::args::ServerArgs;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        server: ServerArgs,
    }

    fn server(args: &[&str]) -> anyhow::Result<()> {
        let cli = Cli::try_parse_from(std::iter::once("ws-server").chain(args.iter().copied()))?;
        check_server(&ServerSettings::load(cli.server)?)
    }

    #[test]
    fn open_server_on_a_public_address_is_refused_unless_on_purpose() {
        let e = server(&["--listen", "0.0.0.0:8080"]).unwrap_err().to_string();
        assert!(e.contains("--open") && e.contains("--token") && e.contains("0.0.0.0:8080"), "{e}");
        assert!(server(&["--listen", "0.0.0.0:8080", "--open"]).is_ok());
        assert!(server(&["--listen", "0.0.0.0:8080", "--token", "t"]).is_ok());
        assert!(server(&["--listen", "127.0.0.1:8080"]).is_ok());
        assert!(server(&["--listen", "[::1]:8080"]).is_ok());
    }
}
