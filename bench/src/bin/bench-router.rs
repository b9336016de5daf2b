//! A bench-only stand-in for `herd server` until the proxy is wired into
//! it: the apiserver and the proxy composed exactly as the library docs of
//! `herd-proxy` show (one process, one port, the proxy reading nodes from
//! a watch cache of the same server). Logs `listening on http://ADDR` on
//! stderr like `herd server`, so the benchmarks start either the same way.
//!
//! cargo build --release -p herd-bench --bin bench-router

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use herd_api::Node;
use herd_client::{Client, reflector, watcher};
use herd_proxy::{Proxy, ProxyArgs};

#[derive(Parser, Debug)]
struct Args {
    /// Address to serve the API and the proxy on.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// Directory for the store (herd.db).
    #[arg(long)]
    data_dir: PathBuf,
    #[command(flatten)]
    proxy: ProxyArgs,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Runtime::new().context("runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("binding {}", args.listen))?;
        let addr = listener.local_addr()?;
        let url = format!("http://{addr}");
        let shutdown = tokio_util::sync::CancellationToken::new();
        let (api, _state) =
            herd_apiserver::build(herd_apiserver::Config::new(&args.data_dir), shutdown.clone())?;
        let client = Client::new(&url)?;
        let nodes = reflector::spawn(client.api::<Node>(), watcher::Config::default());
        let proxy = Proxy::with_shutdown(&args.proxy, nodes, client, shutdown.clone());
        let app = herd_apiserver::with_common_layers(api.merge(proxy.router()));
        eprintln!("bench-router listening on {url} (balancer {})", args.proxy.balancer.as_str());
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            stop.cancel();
        });
        herd_apiserver::serve(app, listener, shutdown.clone().cancelled_owned(), shutdown).await?;
        Ok(())
    })
}
