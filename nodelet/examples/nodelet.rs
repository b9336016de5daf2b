//! The nodelet as a process of its own, as `herd nodelet` runs it: flags and
//! environment from [`NodeletArgs`], logs on stderr (`RUST_LOG`, default `info`), and
//! SIGTERM/SIGINT resolving the shutdown future (a second one skips the drain). The
//! idle benchmark measures this process; it is also handy for trying the nodelet
//! without the `herd` binary:
//!
//! ```sh
//! cargo run --release -p herd-nodelet --example nodelet -- --server http://127.0.0.1:8080
//! ```

use clap::Parser;
use herd_nodelet::{NodeletArgs, NodeletConfig};

#[derive(Parser, Debug)]
#[command(name = "nodelet", about = "herd's per-machine agent")]
struct Cli {
    #[command(flatten)]
    args: NodeletArgs,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let config = match NodeletConfig::from_args(&cli.args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    // A second SIGTERM/SIGINT skips the wait for requests in flight.
    match runtime.block_on(herd_nodelet::run_with_skip_drain(
        config,
        shutdown_signal(),
        shutdown_signal,
    )) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
