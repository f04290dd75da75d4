//! The `tunnelkit` binary: parses the command line and hands over to the library.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tunnelkit::{client, proxy, sticky, telemetry, tunnel};

/// Proxies and tunnels: a forward proxy, a proxy client, a resumable WebSocket tunnel and a sticky
/// Socket.IO balancer.
#[derive(Debug, Parser)]
#[command(name = "tunnelkit", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// HTTP forward proxy with CONNECT, WebSocket upgrades and an optional SOCKS5 listener.
    Proxy(proxy::Args),
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init_tracing();
    tunnelkit::allocator::keep_freed_memory();
    // A ws-client carries one tunnel, so one WebSocket: its tasks run faster kept on one thread than
    // spread over cores (see tunnelkit::net::workers, which ws-server uses for the same reason).
    let mut builder = match cli.command {
        Command::WsClient(_) => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tunnelkit: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Proxy(a) => proxy::run(a).await,
            Command::Connect(a) => client::run_connect(a).await,
            Command::Forward(a) => client::run_forward(a).await,
            Command::WsServer(a) => tunnel::run_server(a).await,
            Command::WsClient(a) => tunnel::run_client(a).await,
            Command::Sticky(a) => sticky::run(a).await,
        }
    });
    // Do not wait for lingering connection tasks once the command has decided to exit.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tunnelkit: {e:#}");
            ExitCode::FAILURE
        }
    }
}
