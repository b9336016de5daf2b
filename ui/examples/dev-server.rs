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
use herd_proxy::ProxyArgs;

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
    /// Run without the proxy (no /api/*, no request history), to work on
    /// the resource views alone.
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
        let config = herd_server::Config {
            proxy: (!args.no_proxy).then(|| (&args.proxy).into()),
            controller: (!args.no_controller).then(|| args.controller.config()),
            ..herd_server::Config::new(herd_apiserver::Config::new(&args.data_dir))
        };
        let server = herd_server::Server::build(config, listener)?;
        let url = format!("http://{}", server.local_addr());
        eprintln!("dev-server listening on {url} (dashboard at {url}/dashboard)");
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("SIGTERM handler")?;
        server
            .serve(async move {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            })
            .await?;
        Ok(())
    })
}
