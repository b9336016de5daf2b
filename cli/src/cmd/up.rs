//! `herd up`: the router and a nodelet for this machine in one process — the
//! one-command start on a single machine.

use anyhow::Context;
use clap::Args;
use herd_nodelet::NodeletConfig;

use super::server::{self, ServerArgs};

/// The file the server writes its join key to, in its data directory.

/// Waits until the server answers `/healthz`; false when its task ended first
/// (it failed to start: its own error says why).
async fn wait_until_serving(
    url: &str,
    server: &tokio::task::JoinHandle<anyhow::Result<()>>,
) -> bool {
    let Ok(client) = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(2))
        .build()
    else {
        return false;
    };
    let health = format!("{}/healthz", url.trim_end_matches('/'));
    while !server.is_finished() {
        match client.get(&health).send().await {
            // Any answer, even one in another protocol (TLS), means it serves.
            Ok(_) => return true,
            Err(e) if !e.is_connect() && !e.is_timeout() => return true,
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    }
    false
}

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
        let data_dir = args
            .server
            .data_dir
            .clone()
            .unwrap_or_else(server::default_data_dir);
        if args.nodelet.state_dir.is_none() {
            args.nodelet.state_dir = Some(data_dir.join("nodelet"));
        }
        let mut nodelet_config = NodeletConfig::from_args(&args.nodelet)?;

        // Ctrl-C stops the nodelet first (it tells the router it is leaving
        // and stops the Ollama it started once the requests in flight on it
        // have ended; a second Ctrl-C skips that wait), then the server.
        let (stop_server, server_stopped) = tokio::sync::oneshot::channel::<()>();
        let admin_key = data_dir.join(herd_server::ADMIN_KEY_FILE);
        let server = tokio::spawn(server::serve(args.server, listener, async move {
            let _ = server_stopped.await;
        }));
        tokio::spawn(herd_server::dashboard::print_signin_link(
            args.nodelet.server.clone(),
            admin_key,
        ));
        // The server writes its join key before it answers; the nodelet here
        // exchanges it for a node key of its own, with no step for the person.
        if nodelet_config.token.is_none() && wait_until_serving(&args.nodelet.server, &server).await
        {
            let join_key = data_dir.join(herd_server::JOIN_KEY_FILE);
            if join_key.exists() {
                nodelet_config.token = Some(
                    herd_auth::read_key_file(&join_key)
                        .with_context(|| "the server's join key for this machine's nodelet")?,
                );
            }
        }
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
