//! `herd controller`: the controller as a process of its own, for a
//! `herd server --no-controller`.

use anyhow::Context;
use clap::Args;

#[derive(Args, Debug, Clone)]
pub struct ControllerCmdArgs {
    /// The router whose resources the controller reconciles.
    #[arg(long, env = "HERD_SERVER", default_value = "http://localhost:8080")]
    pub server: String,
    #[command(flatten)]
    pub controller: herd_controller::ControllerArgs,
}

pub fn run(args: ControllerCmdArgs) -> anyhow::Result<()> {
    crate::logging::init();
    let client = herd_client::Client::new(&args.server)
        .with_context(|| format!("--server {}", args.server))?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        herd_controller::run(args.controller.config(), client, super::shutdown_signal()).await
    })?;
    Ok(())
}
