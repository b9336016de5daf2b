//! What the API offers: kinds, their schemas, and readiness.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use herd_api::{
    API_VERSION, ApiKey, Event, Lease, ModelAssignment, Node, Resource, Secret, api_resources,
};
use serde_json::json;

use super::AppState;
use crate::error::ApiError;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/apis", get(groups))
        .route(&format!("/apis/{API_VERSION}"), get(resource_list))
        .route(
            &format!("/apis/{API_VERSION}/schemas/{{plural}}"),
            get(schema),
        )
        .layer(axum::middleware::map_response(nosniff))
}

/// Discovery answers are JSON like the rest of the API: never sniffed.
async fn nosniff(mut resp: Response) -> Response {
    resp.headers_mut().insert(
        axum::http::header::X_CONTENT_TYPE_OPTIONS,
        axum::http::HeaderValue::from_static("nosniff"),
    );
    resp
}

async fn groups() -> Json<serde_json::Value> {
    Json(json!({
        "kind": "APIGroupList",
        "groups": [{"name": herd_api::GROUP, "versions": [{"groupVersion": API_VERSION, "version": herd_api::VERSION}]}],
    }))
}

async fn resource_list() -> Json<serde_json::Value> {
    Json(
        json!({"kind": "APIResourceList", "groupVersion": API_VERSION, "resources": api_resources()}),
    )
}

async fn schema(Path(plural): Path<String>) -> Result<Json<serde_json::Value>, ApiError> {
    let schema = match plural.as_str() {
        p if p == Node::PLURAL || p == Node::KIND.to_ascii_lowercase() => Node::kind_schema(),
        p if p == ModelAssignment::PLURAL || p == ModelAssignment::KIND.to_ascii_lowercase() => {
            ModelAssignment::kind_schema()
        }
        p if p == Event::PLURAL || p == "event" => Event::kind_schema(),
        p if p == ApiKey::PLURAL || p == ApiKey::SINGULAR => ApiKey::kind_schema(),
        p if p == Secret::PLURAL || p == Secret::SINGULAR => Secret::kind_schema(),
        p if p == Lease::PLURAL || p == Lease::SINGULAR => Lease::kind_schema(),
        _ => {
            return Err(ApiError::NoRoute(format!(
                "/apis/{API_VERSION}/schemas/{plural}"
            )));
        }
    };
    Ok(Json(schema))
}

/// Ready while the server serves: reads, watches and routing go on from
/// memory even while a shared store's database is away. The body says
/// whether the store takes writes, for people and probes that care.
pub async fn readyz(State(state): State<AppState>) -> Response {
    if state.store.writable() {
        (StatusCode::OK, "ok").into_response()
    } else {
        (
            StatusCode::OK,
            "ok\nstore: unavailable (management writes answer 503 until it returns)",
        )
            .into_response()
    }
}
