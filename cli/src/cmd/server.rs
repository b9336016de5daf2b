//! `herd server`: the router process — API server and store, the
//! Ollama/OpenAI proxy, the controller (unless `--no-controller`), and the
//! dashboard, on one address.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

#[derive(Args, Debug, Clone)]
pub struct ServerArgs {
    /// Address to serve the API, the Ollama-compatible proxy and the dashboard on.
    #[arg(long, env = "HERD_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: String,
    /// Directory for the store (herd.db) and the server's key and TLS files. Default: the
    /// platform data dir, e.g. ~/.local/share/herd.
    #[arg(long, env = "HERD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Where the store is: `sqlite` (herd.db in the data directory, the default) or a
    /// PostgreSQL database shared with other herd servers,
    /// `postgres://USER@HOST:PORT/DB`. The password comes from PGPASSWORD, else
    /// --store-password-file, else the PGPASSFILE or ~/.pgpass line for that database;
    /// putting it in the URL works but shows it in the process list.
    #[arg(long, env = "HERD_STORE", default_value = "sqlite", value_parser = parse_store)]
    pub store: StoreArg,
    /// A file holding the PostgreSQL password alone (a mounted secret, for example).
    #[arg(long, env = "HERD_STORE_PASSWORD_FILE")]
    pub store_password_file: Option<PathBuf>,
    /// Largest request body accepted by the resource API, in bytes.
    #[arg(long, env = "HERD_MAX_BODY_BYTES", default_value_t = 2 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// How long an idle watch stream waits before sending a BOOKMARK.
    #[arg(long, env = "HERD_BOOKMARK_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub bookmark_interval: Duration,
    /// Number of recent changes kept for watchers to resume from (older: 410, relist).
    #[arg(long, env = "HERD_WATCH_WINDOW", default_value_t = 20_000)]
    pub watch_window: usize,
    /// Bytes of memory those recent changes may take; the oldest are dropped first
    /// (watchers that need them get 410 and relist), in memory and on disk.
    #[arg(long, env = "HERD_WATCH_WINDOW_BYTES", default_value_t = herd_apiserver::store::DEFAULT_WATCH_WINDOW_BYTES)]
    pub watch_window_bytes: usize,
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
    pub http_workers: herd_server::Workers,
    /// Close a client connection that has been quiet this long (checked every quarter of
    /// it): no request in flight and none sent (idle keep-alive connections, clients that
    /// vanished without closing, request heads that stall), a request body that stopped
    /// coming, or a response the client has not read a byte of (a hung client; its
    /// request on the node is cancelled). A request whose answer is slow to come, or a
    /// stream that pauses, is never cut. 0 keeps connections for as long as clients do, as
    /// Ollama does.
    #[arg(long, env = "HERD_CLIENT_IDLE_TIMEOUT", default_value = "5m", value_parser = humantime::parse_duration)]
    pub client_idle_timeout: Duration,
    /// Who may use the Ollama/OpenAI endpoints: `open` (anyone, as Ollama; a herd key
    /// that is sent must still be valid) or `key` (an `inference` or `admin` key).
    #[arg(long, env = "HERD_INFERENCE_AUTH", value_enum, default_value_t = Access::Open)]
    pub inference_auth: Access,
    /// Who may read /metrics: `key` (a `viewer` or `admin` key) or `open`.
    #[arg(long, env = "HERD_METRICS_AUTH", value_enum, default_value_t = Access::Key)]
    pub metrics_auth: Access,
    /// Who may change which models the fleet holds: `pull` (whoever may use inference
    /// may pull, so `ollama run` through herd fetches a missing model; delete, create,
    /// copy and push need an admin key), `open` (Ollama's behaviour: all of them like
    /// inference) or `admin` (pulls need an admin key too).
    #[arg(long, env = "HERD_MODEL_MANAGEMENT", value_enum, default_value_t = Models::Pull)]
    pub model_management: Models,
    /// Let any nodelet register and update its node without a key (the original,
    /// unauthenticated behaviour); logged as a warning at every start.
    #[arg(long, env = "HERD_OPEN_REGISTRATION")]
    pub open_registration: bool,
    /// Host names the server answers to besides the loopback ones, when it listens on
    /// loopback (a guard against DNS rebinding), comma-separated.
    #[arg(long, env = "HERD_ALLOWED_HOSTS", value_delimiter = ',')]
    pub allowed_hosts: Vec<String>,
    /// At start, replace the join key (and join.key in the data directory) with a new
    /// one; the old join key stops working, node keys already issued keep working.
    #[arg(long)]
    pub rotate_join_key: bool,
    /// Serve HTTPS with this PEM certificate chain (reloaded when it changes); needs
    /// --tls-key.
    #[arg(
        long,
        env = "HERD_TLS_CERT",
        requires = "tls_key",
        conflicts_with = "tls_self_signed"
    )]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "HERD_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve HTTPS with a CA and certificate kept in <data-dir>/tls for this machine's
    /// names and addresses; the join key then carries the CA's fingerprint.
    #[arg(long, env = "HERD_TLS_SELF_SIGNED")]
    pub tls_self_signed: bool,
    /// More names or addresses for the self-signed certificate (repeatable).
    #[arg(long = "tls-san", env = "HERD_TLS_SANS", value_delimiter = ',')]
    pub tls_sans: Vec<String>,
    /// Client connections served at once; past it a new connection is closed as soon
    /// as it is accepted (counted in /metrics as herd_server_connections_refused). 0
    /// sets no limit. The server's own loopback clients (the proxy's and the controller's
    /// watches) count too. Keep it under the process's open-file limit (`ulimit -n`).
    #[arg(long, env = "HERD_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,
    #[command(flatten)]
    pub proxy: herd_proxy::ProxyArgs,
    #[command(flatten)]
    pub controller: herd_controller::ControllerArgs,
}

/// Whether an endpoint needs a key.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Open,
    Key,
}

/// `--model-management`: see [`herd_server::ModelPolicy`].
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Models {
    Open,
    Pull,
    Admin,
}

impl From<Models> for herd_server::ModelPolicy {
    fn from(m: Models) -> Self {
        match m {
            Models::Open => herd_server::ModelPolicy::Open,
            Models::Pull => herd_server::ModelPolicy::Pull,
            Models::Admin => herd_server::ModelPolicy::Admin,
        }
    }
}

fn parse_workers(s: &str) -> Result<herd_server::Workers, String> {
    s.parse()
}

/// `--store`: SQLite in the data directory, or a PostgreSQL URL (checked
/// for its form here; the password is looked up when the server starts).
#[derive(Clone, PartialEq, Eq)]
pub enum StoreArg {
    Sqlite,
    Postgres(String),
}

impl std::fmt::Debug for StoreArg {
    /// Never the URL itself: it may hold a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite => f.write_str("sqlite"),
            Self::Postgres(_) => f.write_str("postgres"),
        }
    }
}

fn parse_store(s: &str) -> Result<StoreArg, String> {
    if s == "sqlite" {
        return Ok(StoreArg::Sqlite);
    }
    if herd_apiserver::store::is_postgres_url(s) {
        return Ok(StoreArg::Postgres(s.to_owned()));
    }
    Err("expected `sqlite` or a postgres://USER@HOST:PORT/DB URL".into())
}

pub fn default_data_dir() -> PathBuf {
    dirs::data_dir().map_or_else(|| PathBuf::from(".herd"), |d| d.join("herd"))
}

/// The flags as the assembly's settings; fails on a PostgreSQL URL that
/// does not parse or a password file that cannot be read.
pub fn config(args: &ServerArgs) -> anyhow::Result<herd_server::Config> {
    let mut api =
        herd_apiserver::Config::new(args.data_dir.clone().unwrap_or_else(default_data_dir));
    if let StoreArg::Postgres(url) = &args.store {
        let target = herd_apiserver::PgTarget::parse(
            url,
            args.store_password_file.as_deref(),
            &herd_apiserver::PgEnv::from_process(),
        )
        .context("--store")?;
        api.postgres = Some(target);
    }
    api.max_body_bytes = args.max_body_bytes;
    api.bookmark_interval = args.bookmark_interval;
    api.watch_window = args.watch_window;
    api.watch_window_bytes = args.watch_window_bytes;
    api.allow_node_addresses = args.controller.allow_node_addresses.clone();
    api.max_events = args.max_events;
    api.sync = if args.fsync {
        herd_apiserver::SyncMode::Full
    } else {
        herd_apiserver::SyncMode::Normal
    };
    Ok(herd_server::Config {
        api,
        proxy: Some(herd_proxy::ProxyConfig {
            allow_node_addresses: args.controller.allow_node_addresses.clone(),
            ..(&args.proxy).into()
        }),
        proxy_shortcut: true,
        controller: (!args.no_controller).then(|| args.controller.config()),
        dashboard: true,
        http_workers: args.http_workers,
        client_idle_timeout: Some(args.client_idle_timeout),
        openness: herd_server::Openness {
            inference: args.inference_auth == Access::Open,
            metrics: args.metrics_auth == Access::Open,
            registration: args.open_registration,
            models: args.model_management.into(),
        },
        allowed_hosts: args.allowed_hosts.clone(),
        rotate_join_key: args.rotate_join_key,
        tls: match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => Some(herd_server::Tls::Files {
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ if args.tls_self_signed => Some(herd_server::Tls::SelfSigned {
                sans: args.tls_sans.clone(),
            }),
            _ => None,
        },
        max_connections: (args.max_connections > 0).then_some(args.max_connections),
    })
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
    let config = config(&args)?;
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let server = herd_server::Server::build(config, listener)?;
    let addr = server.local_addr();
    tracing::info!(
        %addr,
        version = env!("CARGO_PKG_VERSION"),
        balancer = ?args.proxy.balancer,
        store = ?args.store,
        controller = !args.no_controller,
        http_workers = %args.http_workers,
        "herd server listening on {scheme}://{addr}"
    );
    server.serve(shutdown).await.context("herd server")
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
