//! `herd server`: the router process.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

#[derive(Args, Debug, Clone)]
pub struct ServerArgs {
    /// Address to serve the API (and the Ollama-compatible proxy) on.
    #[arg(long, env = "HERD_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: String,
    /// Directory for the store (herd.db). Default: the platform data dir, e.g. ~/.local/share/herd.
    #[arg(long, env = "HERD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Largest request body accepted by the API, in bytes.
    #[arg(long, env = "HERD_MAX_BODY_BYTES", default_value_t = 2 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// How long an idle watch stream waits before sending a BOOKMARK.
    #[arg(long, env = "HERD_BOOKMARK_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub bookmark_interval: Duration,
    /// Number of recent changes kept for watchers to resume from (older: 410, relist).
    #[arg(long, env = "HERD_WATCH_WINDOW", default_value_t = 20_000)]
    pub watch_window: usize,
    /// fsync every commit (survives power loss, slower). Without it, acknowledged
    /// writes survive the process being killed but not a power cut.
    #[arg(long, env = "HERD_FSYNC")]
    pub fsync: bool,
}

pub fn default_data_dir() -> PathBuf {
    dirs::data_dir().map_or_else(|| PathBuf::from(".herd"), |d| d.join("herd"))
}

pub fn config(args: &ServerArgs) -> herd_apiserver::Config {
    let mut config =
        herd_apiserver::Config::new(args.data_dir.clone().unwrap_or_else(default_data_dir));
    config.max_body_bytes = args.max_body_bytes;
    config.bookmark_interval = args.bookmark_interval;
    config.watch_window = args.watch_window;
    config.sync = if args.fsync {
        herd_apiserver::SyncMode::Full
    } else {
        herd_apiserver::SyncMode::Normal
    };
    config
}

pub fn run(args: ServerArgs) -> anyhow::Result<()> {
    crate::logging::init();
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("binding {}", args.listen))?;
        let addr = listener.local_addr()?;
        let token = tokio_util::sync::CancellationToken::new();
        let (router, _state) = herd_apiserver::build(config(&args), token.clone()).context("opening the store")?;
        tracing::info!(%addr, version = env!("CARGO_PKG_VERSION"), "herd server listening on http://{addr}");
        herd_apiserver::serve(herd_apiserver::with_common_layers(router), listener, super::shutdown_signal(), token)
            .await
            .context("herd server")?;
        tracing::info!("herd server stopped");
        Ok(())
    })
}
