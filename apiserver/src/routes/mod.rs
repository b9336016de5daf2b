//! The HTTP surface: resource REST + watch, discovery, health.

pub mod apikeys;
mod discovery;
pub mod events;
pub mod resources;

use std::sync::Arc;

use axum::Router;
use axum::http::Uri;
use axum::routing::get;
use herd_api::{Event, Lease, ModelAssignment, Node, Secret};
use herd_auth::KeyRing;
use tokio_util::sync::CancellationToken;

use crate::Config;
use crate::error::ApiError;
use crate::store::Store;

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub config: Arc<Config>,
    /// Cancelled when the server shuts down, so long-lived watches end.
    pub shutdown: CancellationToken,
    /// The accepted keys, kept current from the store (see
    /// [`crate::keyring::follow`]); the host authenticates with it.
    pub keys: Arc<KeyRing>,
}

/// The answer for paths no route claims; added last, by whoever composes the
/// final router (axum allows one fallback).
pub async fn no_route(uri: Uri) -> ApiError {
    ApiError::NoRoute(uri.path().to_owned())
}

/// The apiserver's routes. Other parts of `herd server` (the proxy, the UI)
/// merge their own routes beside these.
pub fn api_router(state: AppState) -> Router {
    Router::new()
        .merge(resources::routes::<Node>())
        .merge(resources::routes::<ModelAssignment>())
        .merge(resources::routes::<Event>())
        .merge(resources::routes::<Secret>())
        .merge(resources::routes::<Lease>())
        .merge(apikeys::routes())
        .merge(discovery::routes())
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(discovery::readyz))
        .layer(axum::middleware::from_fn(crate::extract::query_guard))
        .with_state(state)
}
