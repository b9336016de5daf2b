//! The apiserver and the proxy alone, composed as `herd server` composes
//! them (one process, one port, the proxy reading nodes from a watch cache
//! of the same server), without the controller and the dashboard, and with
//! a choice of runtime (`--worker-threads`, `--http-workers`) for experiments. Logs
//! `listening on http://ADDR` on stderr like `herd server`; the benchmarks
//! use it with `HERD_BENCH_ROUTER=bench-router`.
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
    /// Tokio worker threads (default: one per core, as `herd server`);
    /// 1 runs everything on a current-thread runtime.
    #[arg(long)]
    worker_threads: Option<usize>,
    /// Threads serving HTTP as in `herd server`: `auto`, a number, or 0
    /// for the runtime above.
    #[arg(long, default_value = "auto", value_parser = |s: &str| s.parse::<herd_apiserver::Workers>())]
    http_workers: herd_apiserver::Workers,
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
    let runtime = match args.worker_threads {
        Some(1) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        Some(n) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
        None => tokio::runtime::Runtime::new(),
    }
    .context("runtime")?;
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
        let nodes = reflector::spawn(client.api::<Node>(), watcher::Config::default());
        let proxy = Proxy::with_shutdown(&args.proxy, nodes, client, shutdown.clone());
        let app = herd_apiserver::App::from(herd_apiserver::with_common_layers(
            api.merge(proxy.router()),
        ))
        .with_shortcut(proxy.shortcut());
        eprintln!(
            "bench-router listening on {url} (balancer {})",
            args.proxy.balancer.as_str()
        );
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            stop.cancel();
        });
        herd_apiserver::serve_with(
            app,
            listener,
            shutdown.clone().cancelled_owned(),
            shutdown,
            args.http_workers,
        )
        .await?;
        Ok(())
    })
}
