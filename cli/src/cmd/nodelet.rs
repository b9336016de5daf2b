//! `herd nodelet`: the per-machine agent.

use anyhow::Context;
use herd_nodelet::{NodeletArgs, NodeletConfig};

pub fn run(args: NodeletArgs) -> anyhow::Result<()> {
    crate::logging::init();
    let config = NodeletConfig::from_args(&args)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        herd_nodelet::run_with_skip_drain(config, super::shutdown_signal(), super::shutdown_signal)
            .await
    })?;
    Ok(())
}
