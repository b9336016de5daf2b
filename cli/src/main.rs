//! `herd`: one binary for the server, the nodelet and the kubectl-like verbs.
//! This file only parses arguments and hands off to `cmd::*`.

mod cmd;
mod ctl;
mod logging;

use clap::{CommandFactory as _, Parser, Subcommand};

/// mimalloc, its v2 line, which costs the proxy less per request than v3
/// (docs/benchmarks.md), built without its request for transparent huge
/// pages (cli/Cargo.toml): with them an idle server is resident for about
/// twice its heap.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "herd",
    version,
    about = "A Kubernetes-style control plane and load-balancing router for fleets of Ollama machines"
)]
struct Cli {
    #[command(flatten)]
    connect: ctl::args::ConnectFlags,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the router: API server and store, Ollama/OpenAI proxy, controller and dashboard.
    Server(Box<cmd::server::ServerArgs>),
    /// Run the router and a nodelet for this machine in one process (quick start).
    Up(Box<cmd::up::UpArgs>),
    /// Run the per-machine agent: register, heartbeat, install and supervise Ollama, pull models.
    Nodelet(Box<herd_nodelet::NodeletArgs>),
    /// Run the controller as its own process (for `herd server --no-controller`).
    Controller(cmd::controller::ControllerCmdArgs),
    /// Move a store: `herd store copy --from sqlite://DATA-DIR --to postgres://…`.
    Store(cmd::store::StoreArgs),
    /// Print herd's version.
    Version,
    /// Create or update objects from manifests (files, directories, or - for stdin).
    Apply(cmd::apply::ApplyArgs),
    /// Show objects: nodes (no), modelassignments (ma), events (ev), apikeys (key), leases, requests.
    Get(cmd::get::GetArgs),
    /// Show everything about a node or a model assignment.
    Describe(cmd::describe::DescribeArgs),
    /// Create an API key (its secret is printed once): `herd create apikey NAME --role ROLE`.
    Create(cmd::create::CreateArgs),
    /// Check a key against a server and store both for later commands, as kubeconfig does.
    Login(cmd::login::LoginArgs),
    /// Delete objects by type and name, by label, or as named in manifests.
    Delete(cmd::delete::DeleteArgs),
    /// Stop routing new requests to nodes (in-flight requests finish).
    Cordon(cmd::cordon::CordonArgs),
    /// Route requests to cordoned nodes again.
    Uncordon(cmd::cordon::CordonArgs),
    /// Cordon a node, then wait until its in-flight requests have finished.
    Drain(cmd::cordon::DrainArgs),
    /// Describe a kind or one of its fields, from the server's schemas.
    Explain(cmd::explain::ExplainArgs),
    /// Print a shell completion script.
    Completion(cmd::completion::CompletionArgs),
    /// Run `herd server`, `nodelet` or `up` at boot or login (systemd, launchd, Task Scheduler).
    Service(cmd::service::ServiceArgs),
    /// Show the fleet's health in the Windows or macOS tray, with a menu.
    Tray(cmd::tray::TrayArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let connect = &ctl::args::ConnectArgs::from_flags(&cli.connect);
    let result = match cli.command {
        Command::Server(args) => cmd::server::run(*args),
        Command::Up(args) => cmd::up::run(*args),
        Command::Nodelet(args) => cmd::nodelet::run(*args),
        Command::Controller(args) => cmd::controller::run(args, connect),
        Command::Store(args) => cmd::store::run(args),
        Command::Version => {
            println!("herd {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Apply(args) => cmd::apply::run(args, connect),
        Command::Get(args) => cmd::get::run(args, connect),
        Command::Describe(args) => cmd::describe::run(args, connect),
        Command::Delete(args) => cmd::delete::run(args, connect),
        Command::Create(args) => cmd::create::run(args, connect),
        Command::Login(args) => cmd::login::run(args, &cli.connect),
        Command::Cordon(args) => cmd::cordon::cordon(args, connect),
        Command::Uncordon(args) => cmd::cordon::uncordon(args, connect),
        Command::Drain(args) => cmd::cordon::drain(args, connect),
        Command::Explain(args) => cmd::explain::run(args, connect),
        Command::Completion(args) => cmd::completion::run(args, Cli::command()),
        Command::Service(args) => cmd::service::run(args),
        Command::Tray(args) => cmd::tray::run(args, connect),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
