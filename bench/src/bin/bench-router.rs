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
use herd_proxy::ProxyArgs;

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
    #[arg(long, default_value = "auto", value_parser = |s: &str| s.parse::<herd_server::Workers>())]
    http_workers: herd_server::Workers,
    /// Who may use the Ollama/OpenAI endpoints, as `herd server
    /// --inference-auth`: `open` (anyone; a herd key that is sent must still
    /// be valid) or `key` (an `inference` or `admin` key).
    #[arg(long, value_enum, default_value_t = Access::Open)]
    inference_auth: Access,
    #[command(flatten)]
    proxy: ProxyArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Access {
    Open,
    Key,
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
        let mut config = herd_server::Config {
            proxy: Some((&args.proxy).into()),
            controller: None,
            dashboard: false,
            http_workers: args.http_workers,
            client_idle_timeout: None,
            ..herd_server::Config::new(herd_apiserver::Config::new(&args.data_dir))
        };
        config.openness.inference = args.inference_auth == Access::Open;
        let server = herd_server::Server::build(config, listener)?;
        eprintln!(
            "bench-router listening on http://{} (balancer {})",
            server.local_addr(),
            args.proxy.balancer.as_str()
        );
        server
            .serve(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
        Ok(())
    })
}
