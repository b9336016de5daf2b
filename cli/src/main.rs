//! `herd`: one binary for the server, the nodelet and the kubectl-like verbs.
//! This file only parses arguments and hands off to `cmd::*`.

mod cmd;
mod logging;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "herd",
    version,
    about = "A Kubernetes-style control plane and load-balancing router for fleets of Ollama machines"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the router: API server with its store (and, as they land, the proxy, controller and dashboard).
    Server(cmd::server::ServerArgs),
    /// Print herd's version.
    Version,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Server(args) => cmd::server::run(args),
        Command::Version => {
            println!("herd {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
