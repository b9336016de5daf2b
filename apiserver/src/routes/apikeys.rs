//! `ApiKey`s and the join exchange: the server makes every secret, stores
//! only its hash (an `ApiKeyHash`, which no route serves), and answers the
//! secret once, in the response to the write that made it.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Extension, Router};
use herd_api::{
    API_VERSION, ApiKey, ApiKeyHash, JOIN_PATH, JoinRequest, JoinResponse, KeySecret, Resource,
    WatchEvent,
};
use herd_auth::{Issued, JoinRefused, Principal};

use super::AppState;
use super::resources::{
    get_one, json_response, list_or_watch, method_not_allowed, patch_main, read_create, replace,
    server_fields, write,
};
use crate::auth::{self, Caller, Write};
use crate::error::ApiError;
use crate::extract::{self, BodyKind};
use crate::mutate::{self, Decision};

pub fn routes() -> Router<AppState> {
    let base = format!("/apis/{API_VERSION}/{}", ApiKey::PLURAL);
    Router::new()
        .route(
            &base,
            get(list_or_watch::<ApiKey>)
                .post(create)
                .fallback(method_not_allowed),
        )
        .route(
            &format!("{base}/{{name}}"),
            get(get_one::<ApiKey>)
                .put(replace_existing)
                .patch(patch_key)
                .delete(delete)
                .fallback(method_not_allowed),
        )
        // A key's status is the server's: readable, never written.
        .route(
            &format!("{base}/{{name}}/status"),
            get(get_one::<ApiKey>).fallback(method_not_allowed),
        )
        .route(JOIN_PATH, post(join).fallback(method_not_allowed))
}

/// PUT of a key that exists; a key is made only by POST, where the server
/// makes its secret (a PUT that created one would store a key without any).
async fn replace_existing(
    state: State<AppState>,
    name: Path<String>,
    uri: Uri,
    headers: HeaderMap,
    principal: Option<Extension<Principal>>,
    body: Body,
) -> Result<Response, ApiError> {
    if state.store.get(ApiKey::PLURAL, &name).is_none() {
        return Err(ApiError::NotFound {
            kind: ApiKey::KIND,
            name: name.0,
        });
    }
    let key = name.0.clone();
    let answer = replace::<ApiKey>(state.clone(), name, uri, headers, principal, body).await;
    sync_ring(&state, &key);
    answer
}

/// A merge patch of a key (disabling it, say), applied to the key ring
/// before the answer.
async fn patch_key(
    state: State<AppState>,
    name: Path<String>,
    uri: Uri,
    headers: HeaderMap,
    principal: Option<Extension<Principal>>,
    body: Body,
) -> Result<Response, ApiError> {
    let key = name.0.clone();
    let answer = patch_main::<ApiKey>(state.clone(), name, uri, headers, principal, body).await;
    sync_ring(&state, &key);
    answer
}

/// Brings the key ring's entry for `name` up to the store before a write
/// to it is answered, so a client that disabled or deleted a key finds it
/// refused by its very next request. The ring's follower would get there
/// too, a moment later.
fn sync_ring(state: &AppState, name: &str) {
    match state.store.get(ApiKey::PLURAL, name) {
        Some(stored) => match serde_json::from_slice::<ApiKey>(&stored.body) {
            Ok(key) => state.keys.apply_key(&WatchEvent::Modified(key)),
            Err(e) => tracing::warn!(error = %e, key = name, "stored ApiKey is unreadable"),
        },
        None => state
            .keys
            .apply_key(&WatchEvent::Deleted(ApiKey::new(name, Default::default()))),
    }
}

/// Who a new key's `status.createdBy` names.
fn creator(caller: &Caller) -> &str {
    match caller {
        Some(Principal::Key(k)) => &k.name,
        Some(Principal::Anonymous) => "anonymous",
        None => "api",
    }
}

fn generate_failed(e: herd_auth::GenerateError) -> ApiError {
    ApiError::Internal(format!("making a key: {e}"))
}

async fn create(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    principal: Option<Extension<Principal>>,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = auth::caller(&state, principal)?;
    let dry_run = extract::dry_run(&extract::query(&uri)?)?;
    let asked: ApiKey = read_create(&state, &caller, &headers, body).await?;
    let name = asked.metadata.name.clone();
    let mut issued =
        herd_auth::issue(&name, asked.spec.clone(), creator(&caller)).map_err(generate_failed)?;
    let mut stored = issued.stored();
    stored.metadata.labels = asked.metadata.labels;
    stored.metadata.annotations = asked.metadata.annotations;
    issued.response.metadata = stored.metadata.clone();
    if dry_run {
        let obj = check_new_key(stored)?;
        return Ok(json_response(StatusCode::CREATED, encode(&obj)?));
    }
    let answer = store_issued(&state, &issued, stored).await?;
    auth::audit::<ApiKey>(&state, &caller, Write::Create, &name).await;
    Ok(json_response(StatusCode::CREATED, answer))
}

/// What [`mutate::create`] would store, without storing it.
fn check_new_key(key: ApiKey) -> Result<ApiKey, ApiError> {
    let status = key.status.clone();
    match mutate::create(None, key, 0, server_fields())? {
        Decision::Put(mut k) => {
            k.status = status;
            Ok(k)
        }
        _ => Err(ApiError::Internal("a create decided not to create".into())),
    }
}

fn encode<T: serde::Serialize>(obj: &T) -> Result<bytes::Bytes, ApiError> {
    serde_json::to_vec(obj)
        .map(Into::into)
        .map_err(|e| ApiError::Internal(e.to_string()))
}

/// Stores a new key: its hash first, so that the key never exists without
/// one, then the key without its secret. Answers the stored key with the
/// secret added, the only place it is ever sent.
async fn store_issued(
    state: &AppState,
    issued: &Issued,
    stored: ApiKey,
) -> Result<bytes::Bytes, ApiError> {
    let name = stored.metadata.name.clone();
    // Validate before anything is stored, so a refused key leaves no hash.
    check_new_key(stored.clone())?;
    if state.store.get(ApiKey::PLURAL, &name).is_some() {
        return Err(ApiError::AlreadyExists {
            kind: ApiKey::KIND,
            name,
        });
    }
    let hash = issued.hash.clone();
    let errors = hash.validate_all();
    if !errors.is_empty() {
        return Err(ApiError::Internal(format!(
            "a new key's hash object is invalid: {}",
            errors.len()
        )));
    }
    let hash_name = hash.metadata.name.clone();
    let server = server_fields();
    write::<ApiKeyHash, _>(state, hash_name.clone(), false, move |cur, rv| {
        mutate::create(cur, hash.clone(), rv, server.clone())
    })
    .await?;
    let status = stored.status.clone();
    let server = server_fields();
    let key = stored.clone();
    let written =
        write::<ApiKey, _>(
            state,
            name.clone(),
            false,
            move |cur, rv| match mutate::create(cur, key.clone(), rv, server.clone())? {
                Decision::Put(mut k) => {
                    k.status = status.clone();
                    Ok(Decision::Put(k))
                }
                other => Ok(other),
            },
        )
        .await;
    let written = match written {
        Ok(w) => w,
        Err(e) => {
            delete_hash(state, &hash_name).await;
            return Err(e);
        }
    };
    let mut answer: ApiKey = serde_json::from_slice(&written.object.body)
        .map_err(|e| ApiError::Internal(format!("stored ApiKey is unreadable: {e}")))?;
    // Accept the key at once, before the key ring's follower sees the
    // change, so that a client can use a key as soon as it has it.
    state
        .keys
        .apply_hash(&WatchEvent::Added(issued.hash.clone()));
    state.keys.apply_key(&WatchEvent::Added(answer.clone()));
    answer.status.secret = issued.response.status.secret.clone();
    encode(&answer)
}

async fn delete_hash(state: &AppState, id: &str) {
    let n = id.to_owned();
    let deleted = write::<ApiKeyHash, _>(state, id.to_owned(), false, move |cur, rv| {
        mutate::delete(cur, &n, rv)
    })
    .await;
    match deleted {
        Ok(_) | Err(ApiError::NotFound { .. }) => {}
        Err(e) => tracing::warn!(error = %e, key_id = id, "could not delete a key's hash"),
    }
}

/// Deletes a key, then its hash. (A hash without its key authenticates
/// nothing: the key ring needs both.)
async fn delete(
    State(state): State<AppState>,
    Path(name): Path<String>,
    uri: Uri,
    principal: Option<Extension<Principal>>,
) -> Result<Response, ApiError> {
    let caller = auth::caller(&state, principal)?;
    let dry_run = extract::dry_run(&extract::query(&uri)?)?;
    let written = delete_key(&state, &name, dry_run).await?;
    if !dry_run {
        sync_ring(&state, &name);
        auth::audit::<ApiKey>(&state, &caller, Write::Delete, &name).await;
    }
    Ok(json_response(StatusCode::OK, written))
}

/// Deletes the key `name` and its hash; answers the deleted key.
pub(crate) async fn delete_key(
    state: &AppState,
    name: &str,
    dry_run: bool,
) -> Result<bytes::Bytes, ApiError> {
    let n = name.to_owned();
    let written = write::<ApiKey, _>(state, name.to_owned(), dry_run, move |cur, rv| {
        mutate::delete(cur, &n, rv)
    })
    .await?;
    if !dry_run {
        let key: ApiKey = serde_json::from_slice(&written.object.body)
            .map_err(|e| ApiError::Internal(format!("stored ApiKey is unreadable: {e}")))?;
        if !key.status.key_id.is_empty() {
            delete_hash(state, &key.status.key_id).await;
        }
    }
    Ok(written.object.body.clone())
}

/// Every stored key.
fn all_keys(state: &AppState) -> Result<Vec<ApiKey>, ApiError> {
    let (_, items) = state.store.list(ApiKey::PLURAL, &|_| true);
    items
        .iter()
        .map(|o| {
            serde_json::from_slice(&o.body)
                .map_err(|e| ApiError::Internal(format!("stored ApiKey is unreadable: {e}")))
        })
        .collect()
}

/// The join exchange: a join key (the host allowed only join and admin keys
/// here) buys a node key bound to the node name asked for.
async fn join(
    State(state): State<AppState>,
    headers: HeaderMap,
    principal: Option<Extension<Principal>>,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = auth::caller(&state, principal)?;
    let bytes =
        extract::read_body(&headers, body, BodyKind::Json, state.config.max_body_bytes).await?;
    let asked: JoinRequest = extract::decode(&bytes)?;
    let new = herd_auth::generate().map_err(generate_failed)?;
    let keys = all_keys(&state)?;
    let plan = herd_auth::plan_join(&asked.node, &keys, &new.id, jiff::Timestamp::now())
        .map_err(join_refused)?;
    if let Some(old) = &plan.replaces {
        match delete_key(&state, old, false).await {
            Ok(_) | Err(ApiError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    let issued = herd_auth::issue_with(&plan.key_name, plan.spec, creator(&caller), new.token);
    let stored = issued.stored();
    store_issued(&state, &issued, stored).await?;
    auth::audit::<ApiKey>(&state, &caller, Write::Create, &plan.key_name).await;
    tracing::info!(node = %asked.node, key = %plan.key_name, "a nodelet joined");
    let answer = JoinResponse {
        node: asked.node,
        key_name: plan.key_name,
        token: KeySecret::new(issued.token.expose()),
    };
    Ok(json_response(StatusCode::CREATED, encode(&answer)?))
}

fn join_refused(e: JoinRefused) -> ApiError {
    match &e {
        JoinRefused::InvalidName { node, reason } => ApiError::Invalid {
            kind: "JoinRequest",
            name: node.clone(),
            errors: vec![herd_api::FieldError::invalid("node", reason.clone())],
        },
        JoinRefused::Bound { node, .. } | JoinRefused::Disabled { node, .. } => {
            ApiError::Conflict {
                kind: herd_api::Node::KIND,
                name: node.clone(),
                message: e.to_string(),
            }
        }
    }
}

/// Stores a key the server makes for itself (the bootstrap keys of
/// `herd server`), replacing any stored key of the same name with its hash.
pub async fn replace_server_key(state: &AppState, issued: &Issued) -> Result<(), ApiError> {
    let name = issued.response.metadata.name.clone();
    match delete_key(state, &name, false).await {
        Ok(_) | Err(ApiError::NotFound { .. }) => {}
        Err(e) => return Err(e),
    }
    store_issued(state, issued, issued.stored()).await.map(drop)
}

/// Whether the store accepts `token` as the key `name`: the key exists, has
/// the token's id, and its hash is stored. (Whether it is disabled or
/// expired is the key ring's question.)
pub fn holds_key(state: &AppState, name: &str, token: &herd_auth::Token) -> bool {
    let Some(obj) = state.store.get(ApiKey::PLURAL, name) else {
        return false;
    };
    let Ok(key) = serde_json::from_slice::<ApiKey>(&obj.body) else {
        return false;
    };
    key.status.key_id == token.id.as_str()
        && state
            .store
            .get(ApiKeyHash::PLURAL, token.id.as_str())
            .and_then(|h| serde_json::from_slice::<ApiKeyHash>(&h.body).ok())
            .is_some_and(|h| {
                h.spec.key_name == name
                    && herd_auth::SecretHash::from_hex(&h.spec.sha256)
                        .is_some_and(|stored| stored.matches(&token.secret.hash()))
            })
}
