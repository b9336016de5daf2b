//! herd's API server: `Node`, `ModelAssignment`, `Secret` and the other resources over SQLite, with
//! Kubernetes semantics (resourceVersion, generation, status subresource,
//! merge patch, label selectors) and NDJSON watch streams.
//!
//! [`build`] gives the router and the store, for `herd-server` to compose
//! with the proxy and the dashboard and to serve; [`run`] serves the API
//! alone, for tests and tools that need nothing else.

mod auth;
pub mod error;
mod extract;
pub mod keyring;
pub mod mutate;
pub mod routes;
pub mod store;
mod watch;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::serve::ListenerExt as _;
use futures_util::FutureExt as _;
use herd_api::{ApiKey, ApiKeyHash, Event, Lease, ModelAssignment, Node, Resource, Secret};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use auth::AUDIT_LABEL;
pub use error::ApiError;
pub use routes::AppState;
pub use store::{
    PgEnv, PgOptions, PgStore, PgTarget, SqliteStore, Store, StoreError, StoreOptions, SyncMode,
};

/// Settings of the API server.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where `herd.db` lives (unless `postgres` is set) and the server's
    /// files (keys, TLS).
    pub data_dir: PathBuf,
    /// Keep the store in this PostgreSQL database, shared with other
    /// servers, instead of `herd.db`.
    pub postgres: Option<PgTarget>,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// A watch that sent nothing for this long gets a `BOOKMARK`.
    pub bookmark_interval: Duration,
    /// Events kept for watchers to resume from; older revisions get 410.
    pub watch_window: usize,
    /// Bytes those events may take in memory; the oldest are dropped first
    /// (in memory and on disk) when either bound is reached.
    pub watch_window_bytes: usize,
    /// Networks node URLs may use although link-local or cloud metadata
    /// (see `herd_api::node_address`).
    pub allow_node_addresses: Vec<herd_api::node_address::Cidr>,
    pub sync: SyncMode,
    /// Events kept; older ones are deleted (oldest first).
    pub max_events: usize,
    /// Whether routes enforce keys, and what is open to requests without
    /// one. `None` serves the API bare (tests and tools that run [`run`]);
    /// `herd server` always sets it, and its host authenticates every
    /// request before routing. With it set, a request that reaches a route
    /// without a `herd_auth::Principal` in its extensions is refused.
    pub auth: Option<herd_auth::Openness>,
}

impl Config {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            postgres: None,
            max_body_bytes: 2 * 1024 * 1024,
            bookmark_interval: Duration::from_secs(30),
            watch_window: 20_000,
            watch_window_bytes: store::DEFAULT_WATCH_WINDOW_BYTES,
            allow_node_addresses: Vec::new(),
            sync: SyncMode::Normal,
            max_events: 1000,
            auth: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("serving HTTP: {0}")]
    Serve(#[from] std::io::Error),
}

/// The kinds the store holds.
pub const KINDS: &[&str] = &[
    Node::PLURAL,
    ModelAssignment::PLURAL,
    Event::PLURAL,
    ApiKey::PLURAL,
    ApiKeyHash::PLURAL,
    Secret::PLURAL,
    Lease::PLURAL,
];

/// Opens the store and builds the API routes.
pub fn build(config: Config, shutdown: CancellationToken) -> Result<(Router, AppState), Error> {
    let store = open_store(&config)?;
    let state = AppState {
        store,
        config: Arc::new(config),
        shutdown,
        keys: Arc::new(herd_auth::KeyRing::new()),
    };
    tokio::spawn(routes::events::prune_loop(state.clone()));
    Ok((routes::api_router(state.clone()), state))
}

/// Opens the store `config` names. Needs a tokio runtime, on which a
/// PostgreSQL store's tasks run.
fn open_store(config: &Config) -> Result<Arc<dyn Store>, Error> {
    let Some(target) = &config.postgres else {
        let store = SqliteStore::open(
            &config.data_dir,
            KINDS,
            StoreOptions {
                watch_window: config.watch_window,
                watch_window_bytes: config.watch_window_bytes,
                sync: config.sync,
            },
        )?;
        tracing::info!(data_dir = %config.data_dir.display(), revision = store.revision(), "store opened");
        return Ok(Arc::new(store));
    };
    let options = PgOptions {
        watch_window: config.watch_window,
        watch_window_bytes: config.watch_window_bytes,
    };
    // Loading talks to the database on a runtime of its own, so that a
    // caller on a current-thread runtime need not be async here; the
    // store's tasks then start on the caller's runtime.
    let target = target.clone();
    let loaded = std::thread::scope(|s| {
        s.spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| StoreError::Backend(format!("starting the loader: {e}")))?;
            rt.block_on(PgStore::load(target, KINDS, options))
        })
        .join()
        .unwrap_or_else(|_| Err(StoreError::Backend("the store loader panicked".into())))
    })?;
    let revision = loaded.revision();
    let store = PgStore::start(loaded);
    tracing::info!(store = %store.describe(), revision, "store opened");
    Ok(Arc::new(store))
}

/// Adds what every composed herd router ends with: the `Status` 404 for
/// unknown paths. (A handler's panic is answered with a 500 `Status` by
/// herd-server's host, around the whole router, rather than by a layer
/// around every route, which would cost each request a boxed clone of it.)
pub fn with_common_layers(router: Router) -> Router {
    router.fallback(routes::no_route)
}

/// Serves the API alone on `listener` until `shutdown` resolves, then
/// finishes in-flight requests, ends watches, and closes the store. A plain
/// `axum::serve`: `herd server` is served by herd-server's host instead.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let token = CancellationToken::new();
    let (router, _state) = build(config, token.clone())?;
    let router = with_common_layers(router).layer(axum::middleware::from_fn(catch_panic));
    // TCP_NODELAY: watch events are small writes that Nagle's algorithm
    // would hold back until the client's delayed ACK.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            shutdown.await;
            // Watch streams end on the token, so that the connections close.
            token.cancel();
        })
        .await?;
    Ok(())
}

/// Answers a handler's panic with a 500 `Status` rather than dropping the
/// connection.
async fn catch_panic(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    AssertUnwindSafe(next.run(req))
        .catch_unwind()
        .await
        .unwrap_or_else(|_| ApiError::Internal("handler panicked".into()).into_response())
}
