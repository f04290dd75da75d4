//! The `tunnelkit` binary: parses the command line and hands over to the library.

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use tunnelkit::telemetry::{announce, LogFormat};
use tunnelkit::{ca, client, proxy, sticky, telemetry, tunnel};

/// Proxies and tunnels: a forward proxy, a proxy client, a resumable WebSocket tunnel and a sticky
/// Socket.IO balancer.
#[derive(Debug, Parser)]
#[command(name = "tunnelkit", version, about, propagate_version = true)]
struct Cli {
    /// Log line format on stderr.
    #[arg(long, value_enum, global = true, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Log filter: a level or EnvFilter directives (`warn,tunnelkit::proxy=debug`). Wins over a
    /// server's `log_level` key; RUST_LOG, when set, wins over both. Default: info.
    #[arg(long, global = true, value_name = "FILTER", value_parser = telemetry::check_log_level)]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// HTTP forward proxy with CONNECT, WebSocket upgrades and an optional SOCKS5 listener.
    Proxy(Box<proxy::Args>),
    /// Connect stdin/stdout to HOST:PORT through a proxy (ssh ProxyCommand).
    Connect(client::ConnectArgs),
    /// Forward local ports through a proxy.
    Forward(client::ForwardArgs),
    /// Serve resumable WebSocket stream tunnels.
    WsServer(tunnel::ServerArgs),
    /// Open a WebSocket stream tunnel and forward ports through it.
    WsClient(tunnel::ClientArgs),
    /// Sticky-session balancer for Socket.IO backends.
    Sticky(sticky::Args),
    /// The root CA for HTTPS interception: `ca init` creates it, `ca show` prints it.
    Ca(ca::CaArgs),
    /// Make a running proxy, sticky or ws-server re-read its configuration (sends it SIGHUP).
    Reload(tunnelkit::reload::ReloadArgs),
    /// Print a shell completion script (e.g. `tunnelkit completions bash > /etc/bash_completion.d/tunnelkit`).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Completions { shell } = cli.command {
        clap_complete::generate(shell, &mut Cli::command(), "tunnelkit", &mut std::io::stdout());
        return ExitCode::SUCCESS;
    }
    // Files, a signal and printing only: no runtime, no log setup.
    let quick = match &cli.command {
        Command::Ca(args) => Some(ca::cli::run(args.clone())),
        Command::Reload(args) => Some(tunnelkit::reload::run(args)),
        _ => None,
    };
    if let Some(result) = quick {
        return match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                announce(&format!("tunnelkit: {e:#}"));
                ExitCode::FAILURE
            }
        };
    }
    telemetry::init_tracing(cli.log_format, cli.log_level.as_deref());
    // Socket activation's descriptors and variables are taken before the runtime starts threads.
    if matches!(cli.command, Command::Proxy(_) | Command::Sticky(_) | Command::WsServer(_)) {
        tunnelkit::upgrade::systemd::claim_from_env();
    }
    tunnelkit::allocator::keep_freed_memory();
    // A ws-client carries one tunnel, so one WebSocket: its tasks run faster kept on one thread than
    // spread over cores (see tunnelkit::net::workers, which ws-server and the proxy use for the same
    // reason).
    let mut builder = match cli.command {
        Command::WsClient(_) => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            announce(&format!("tunnelkit: cannot start the runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Proxy(a) => proxy::run(*a).await,
            Command::Connect(a) => client::run_connect(a).await,
            Command::Forward(a) => client::run_forward(a).await,
            Command::WsServer(a) => tunnel::run_server(a).await,
            Command::WsClient(a) => tunnel::run_client(a).await,
            Command::Sticky(a) => sticky::run(a).await,
            Command::Completions { .. } | Command::Ca(_) | Command::Reload(_) => Ok(()),
        }
    });
    // Do not wait for lingering connection tasks once the command has decided to exit.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            announce(&format!("tunnelkit: {e:#}"));
            ExitCode::FAILURE
        }
    }
}
