//! `herd up`: the router and a nodelet for this machine in one process — the
//! one-command start on a single machine.

use anyhow::Context;
use clap::Args;
use herd_nodelet::NodeletConfig;

use super::server::{self, ServerArgs};

#[derive(Args, Debug, Clone)]
pub struct UpArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Nodelet flags. `--server`/`ROUTER_URL` is ignored here: the nodelet
    /// always talks to this process.
    #[command(flatten)]
    pub nodelet: herd_nodelet::NodeletArgs,
}

pub fn run(mut args: UpArgs) -> anyhow::Result<()> {
    crate::logging::init();
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let listener = server::bind(&args.server.listen).await?;
        let addr = listener.local_addr()?;
        args.nodelet.server = herd_server::loopback_url(addr);
        let nodelet_config = NodeletConfig::from_args(&args.nodelet)?;

        // Ctrl-C stops the nodelet first (it tells the router it is leaving
        // and stops the Ollama it started once the requests in flight on it
        // have ended; a second Ctrl-C skips that wait), then the server.
        let (stop_server, server_stopped) = tokio::sync::oneshot::channel::<()>();
        let admin_key = (args.server.data_dir.clone())
            .unwrap_or_else(server::default_data_dir)
            .join(herd_server::ADMIN_KEY_FILE);
        let server = tokio::spawn(server::serve(args.server, listener, async move {
            let _ = server_stopped.await;
        }));
        tokio::spawn(herd_server::dashboard::print_signin_link(
            args.nodelet.server.clone(),
            admin_key,
        ));
        let result = herd_nodelet::run_with_skip_drain(
            nodelet_config,
            super::shutdown_signal(),
            super::shutdown_signal,
        )
        .await;
        let _ = stop_server.send(());
        server.await.context("server task")??;
        result?;
        tracing::info!("herd stopped");
        Ok(())
    })
}
