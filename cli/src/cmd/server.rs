//! `herd server`: the router process — API server and store, the
//! Ollama/OpenAI proxy, the controller (unless `--no-controller`), and the
//! dashboard, on one address.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use herd_api::Node;
use tokio_util::sync::CancellationToken;

#[derive(Args, Debug, Clone)]
pub struct ServerArgs {
    /// Address to serve the API, the Ollama-compatible proxy and the dashboard on.
    #[arg(long, env = "HERD_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: String,
    /// Directory for the store (herd.db). Default: the platform data dir, e.g. ~/.local/share/herd.
    #[arg(long, env = "HERD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Largest request body accepted by the resource API, in bytes.
    #[arg(long, env = "HERD_MAX_BODY_BYTES", default_value_t = 2 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// How long an idle watch stream waits before sending a BOOKMARK.
    #[arg(long, env = "HERD_BOOKMARK_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub bookmark_interval: Duration,
    /// Number of recent changes kept for watchers to resume from (older: 410, relist).
    #[arg(long, env = "HERD_WATCH_WINDOW", default_value_t = 20_000)]
    pub watch_window: usize,
    /// Events kept in the event log; the oldest are deleted past this.
    #[arg(long, env = "HERD_MAX_EVENTS", default_value_t = 1000)]
    pub max_events: usize,
    /// fsync every commit (survives power loss, slower). Without it, acknowledged
    /// writes survive the process being killed but not a power cut.
    #[arg(long, env = "HERD_FSYNC")]
    pub fsync: bool,
    /// Do not run the controller in this process (run `herd controller --server URL` instead).
    #[arg(long, env = "HERD_NO_CONTROLLER")]
    pub no_controller: bool,
    /// Threads serving HTTP, each with its own event loop and listening socket, like
    /// nginx's worker processes: `auto` (one per core), a number, or 0 to serve every
    /// connection on the shared work-stealing runtime instead.
    #[arg(long, env = "HERD_HTTP_WORKERS", default_value = "auto", value_parser = parse_workers)]
    pub http_workers: herd_apiserver::Workers,
    /// Close a client connection that has been quiet this long (checked every quarter of
    /// it): no request in flight and none sent (idle keep-alive connections, clients that
    /// vanished without closing, request heads that stall), a request body that stopped
    /// coming, or a response the client has not read a byte of (a hung client; its
    /// request on the node is cancelled). A request whose answer is slow to come, or a
    /// stream that pauses, is never cut. 0 keeps connections for as long as clients do, as
    /// Ollama does.
    #[arg(long, env = "HERD_CLIENT_IDLE_TIMEOUT", default_value = "5m", value_parser = humantime::parse_duration)]
    pub client_idle_timeout: Duration,
    #[command(flatten)]
    pub proxy: herd_proxy::ProxyArgs,
    #[command(flatten)]
    pub controller: herd_controller::ControllerArgs,
}

fn parse_workers(s: &str) -> Result<herd_apiserver::Workers, String> {
    s.parse()
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
    config.max_events = args.max_events;
    config.sync = if args.fsync {
        herd_apiserver::SyncMode::Full
    } else {
        herd_apiserver::SyncMode::Normal
    };
    config
}

/// The URL this process uses to talk to its own API: the listen address,
/// with a wildcard host replaced by loopback.
pub fn loopback_url(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) if a.ip().is_unspecified() => format!("http://127.0.0.1:{}", a.port()),
        SocketAddr::V6(a) if a.ip().is_unspecified() => format!("http://[::1]:{}", a.port()),
        SocketAddr::V4(a) => format!("http://{a}"),
        SocketAddr::V6(a) => format!("http://[{}]:{}", a.ip(), a.port()),
    }
}

pub async fn bind(listen: &str) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))
}

/// Serves everything `herd server` serves on `listener` until `shutdown`.
pub async fn serve(
    args: ServerArgs,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    let token = CancellationToken::new();
    let (api, _state) =
        herd_apiserver::build(config(&args), token.clone()).context("opening the store")?;

    // The proxy and the controller read and write the store through the API,
    // over loopback: the same code runs in this process or on its own.
    let client = herd_client::Client::new(&loopback_url(addr)).context("API client")?;
    let nodes = herd_client::reflector::spawn(
        client.api::<Node>(),
        herd_client::watcher::Config::default(),
    );
    let proxy = herd_proxy::Proxy::with_shutdown(&args.proxy, nodes, client.clone(), token.clone());
    let router = api.merge(proxy.router()).merge(herd_ui::router());

    let controller = if args.no_controller {
        None
    } else {
        let stop = token.clone();
        let config = args.controller.config();
        let client = client.clone();
        Some(tokio::spawn(async move {
            if let Err(e) =
                herd_controller::run(config, client, async move { stop.cancelled().await }).await
            {
                tracing::error!(error = %e, "controller stopped");
            }
        }))
    };

    tracing::info!(
        %addr,
        version = env!("CARGO_PKG_VERSION"),
        balancer = ?args.proxy.balancer,
        controller = !args.no_controller,
        http_workers = %args.http_workers,
        "herd server listening on http://{addr}"
    );
    // The proxy's hot paths skip axum's routing; the router serves the rest.
    let app = herd_apiserver::App::from(herd_apiserver::with_common_layers(router))
        .with_shortcut(proxy.shortcut())
        .with_idle_timeout(Some(args.client_idle_timeout));
    herd_apiserver::serve_with(app, listener, shutdown, token, args.http_workers)
        .await
        .context("herd server")?;
    if let Some(c) = controller {
        let _ = tokio::time::timeout(Duration::from_secs(5), c).await;
    }
    Ok(())
}

pub fn run(args: ServerArgs) -> anyhow::Result<()> {
    crate::logging::init();
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let listener = bind(&args.listen).await?;
        serve(args, listener, super::shutdown_signal()).await?;
        tracing::info!("herd server stopped");
        Ok(())
    })
}
