//! herd's API server: `Node` and `ModelAssignment` resources over SQLite, with
//! Kubernetes semantics (resourceVersion, generation, status subresource,
//! merge patch, label selectors) and NDJSON watch streams.
//!
//! [`run`] serves it on a listener until `shutdown` resolves; [`build`] gives
//! the router and the store separately for `herd server` to add the proxy and
//! the dashboard beside it, and [`serve_with`] serves the composed router.

pub mod error;
mod extract;
mod idle;
pub mod mutate;
pub mod routes;
mod serve;
pub mod store;
mod watch;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use herd_api::{Event, ModelAssignment, Node, Resource};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use error::ApiError;
pub use routes::AppState;
pub use serve::{App, Shortcut, Workers, serve, serve_with};
pub use store::{SqliteStore, Store, StoreError, StoreOptions, SyncMode};

/// Settings of the API server.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where `herd.db` lives.
    pub data_dir: PathBuf,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// A watch that sent nothing for this long gets a `BOOKMARK`.
    pub bookmark_interval: Duration,
    /// Events kept for watchers to resume from; older revisions get 410.
    pub watch_window: usize,
    pub sync: SyncMode,
    /// Events kept; older ones are deleted (oldest first).
    pub max_events: usize,
}

impl Config {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            max_body_bytes: 2 * 1024 * 1024,
            bookmark_interval: Duration::from_secs(30),
            watch_window: 20_000,
            sync: SyncMode::Normal,
            max_events: 1000,
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
pub const KINDS: &[&str] = &[Node::PLURAL, ModelAssignment::PLURAL, Event::PLURAL];

/// Opens the store and builds the API routes.
pub fn build(config: Config, shutdown: CancellationToken) -> Result<(Router, AppState), Error> {
    let store = SqliteStore::open(
        &config.data_dir,
        KINDS,
        StoreOptions {
            watch_window: config.watch_window,
            sync: config.sync,
        },
    )?;
    tracing::info!(data_dir = %config.data_dir.display(), revision = store.revision(), "store opened");
    let state = AppState {
        store: Arc::new(store),
        config: Arc::new(config),
        shutdown,
    };
    tokio::spawn(routes::events::prune_loop(state.clone()));
    Ok((routes::api_router(state.clone()), state))
}

/// Adds what every composed herd router ends with: the `Status` 404 for
/// unknown paths. (A handler's panic is answered with a 500 `Status` by
/// [`serve_with`], around the whole router, rather than by a layer around
/// every route, which would cost each request a boxed clone of it.)
pub fn with_common_layers(router: Router) -> Router {
    router.fallback(routes::no_route)
}

/// Serves the API on `listener` until `shutdown` resolves, then finishes
/// in-flight requests, ends watches, and closes the store.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let token = CancellationToken::new();
    let (router, _state) = build(config, token.clone())?;
    serve(with_common_layers(router), listener, shutdown, token).await
}
