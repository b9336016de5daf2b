//! `herd controller`: the controller as a process of its own, for a
//! `herd server --no-controller`.

use anyhow::Context;
use clap::Args;

use crate::ctl::args::ConnectArgs;

// The router whose resources the controller reconciles is the global
// `--server` (`HERD_SERVER`).
#[derive(Args, Debug, Clone)]
pub struct ControllerCmdArgs {
    #[command(flatten)]
    pub controller: herd_controller::ControllerArgs,
}

pub fn run(args: ControllerCmdArgs, connect: &ConnectArgs) -> anyhow::Result<()> {
    crate::logging::init();
    let client = connect
        .client()
        .with_context(|| format!("--server {}", connect.server))?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        herd_controller::run(args.controller.config(), client, super::shutdown_signal()).await
    })?;
    Ok(())
}
