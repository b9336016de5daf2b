//! The dashboard's development server: the apiserver, the proxy, the
//! controller and the dashboard composed in one process on one port, the
//! way `herd server` composes them. It takes `herd server`'s
//! `--listen`/`--data-dir` (an optional leading `server` word is ignored)
//! and logs the same `listening on http://ADDR` line, so the browser tests
//! run against either: `HERD_BIN=target/debug/examples/dev-server
//! scripts/ui-test.sh`.
//!
//! cargo run -p herd-ui --example dev-server -- --listen 127.0.0.1:8080 --data-dir /tmp/herd-dev

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use herd_api::Node;
use herd_client::{Client, reflector, watcher};
use herd_proxy::{Proxy, ProxyArgs};

#[derive(Parser, Debug)]
struct Args {
    /// Ignored: lets the tests call this like `herd server`.
    #[arg(hide = true)]
    subcommand: Option<String>,
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    #[arg(long)]
    data_dir: PathBuf,
    /// Run without the controller (nothing computes Ready from heartbeats).
    #[arg(long, env = "HERD_DEV_NO_CONTROLLER")]
    no_controller: bool,
    /// Run without the proxy (no /api/*, no request history), like a
    /// `herd server` before the proxy was wired in.
    #[arg(long, env = "HERD_DEV_NO_PROXY")]
    no_proxy: bool,
    #[command(flatten)]
    proxy: ProxyArgs,
    #[command(flatten)]
    controller: herd_controller::ControllerArgs,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Runtime::new().context("runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("binding {}", args.listen))?;
        let addr = listener.local_addr()?;
        let url = format!("http://{addr}");
        let shutdown = tokio_util::sync::CancellationToken::new();
        let (api, _state) = herd_apiserver::build(
            herd_apiserver::Config::new(&args.data_dir),
            shutdown.clone(),
        )?;
        let client = Client::new(&url)?;
        let mut app = api.merge(herd_ui::router());
        if !args.no_proxy {
            let nodes = reflector::spawn(client.api::<Node>(), watcher::Config::default());
            let proxy = Proxy::with_shutdown(&args.proxy, nodes, client.clone(), shutdown.clone());
            app = app.merge(proxy.router());
        }
        let app = herd_apiserver::with_common_layers(app);
        if !args.no_controller {
            let config = args.controller.config();
            let stop = shutdown.clone();
            tokio::spawn(async move {
                if let Err(e) = herd_controller::run(config, client, stop.cancelled_owned()).await {
                    eprintln!("controller stopped: {e}");
                }
            });
        }
        eprintln!("dev-server listening on {url} (dashboard at {url}/dashboard)");
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            stop.cancel();
        });
        herd_apiserver::serve(app, listener, shutdown.clone().cancelled_owned(), shutdown).await?;
        Ok(())
    })
}
