//! REST endpoints of one kind, written once for every `Resource`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use bytes::{Bytes, BytesMut};
use herd_api::{API_VERSION, LabelSelector, Resource};
use herd_auth::Principal;

use super::AppState;
use crate::auth::{self, Write};
use crate::error::ApiError;
use crate::extract::{self, BodyKind};
use crate::mutate::{self, Decision, PatchTarget, ServerFields};
use crate::store::{
    Expect, Labels, Proposal, REVISION_PLACEHOLDER, StoreError, StoredObject, Template, Written,
};
use crate::watch::{self, Start, WatchParams};

pub fn routes<K: Resource>() -> Router<AppState> {
    let base = format!("/apis/{API_VERSION}/{}", K::PLURAL);
    Router::new()
        .route(
            &base,
            get(list_or_watch::<K>)
                .post(create::<K>)
                .fallback(method_not_allowed),
        )
        .route(
            &format!("{base}/{{name}}"),
            get(get_one::<K>)
                .put(replace::<K>)
                .patch(patch_main::<K>)
                .delete(delete::<K>)
                .fallback(method_not_allowed),
        )
        .route(
            &format!("{base}/{{name}}/status"),
            get(get_one::<K>)
                .put(replace_status::<K>)
                .patch(patch_status::<K>)
                .fallback(method_not_allowed),
        )
}

pub async fn method_not_allowed(method: Method) -> ApiError {
    ApiError::MethodNotAllowed(method.to_string())
}

pub(crate) fn json_response(code: StatusCode, body: Bytes) -> Response {
    let mut resp = (code, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}

fn decode_stored<K: Resource>(obj: &StoredObject) -> Result<K, ApiError> {
    serde_json::from_slice(&obj.body)
        .map_err(|e| ApiError::Internal(format!("stored {} is unreadable: {e}", K::KIND)))
}

fn encode<K: Resource>(obj: &K) -> Result<Bytes, ApiError> {
    serde_json::to_vec(obj)
        .map(Bytes::from)
        .map_err(|e| ApiError::Internal(e.to_string()))
}

/// Serializes a proposed object with the revision placeholder in place.
/// Objects larger than [`herd_api::validate::MAX_OBJECT_BYTES`] are refused.
pub(crate) fn template<K: Resource>(mut obj: K) -> Result<(Template, Labels), ApiError> {
    obj.meta_mut().resource_version = Some(REVISION_PLACEHOLDER.to_owned());
    let body = encode(&obj)?;
    mutate::check_object_size::<K>(&obj.meta().name, body.len())?;
    let labels = Arc::new(std::mem::take(&mut obj.meta_mut().labels));
    Ok((Template::new(body)?, labels))
}

/// How often a write is recomputed when other writers keep changing the
/// object under it before it commits.
const MAX_ATTEMPTS: usize = 64;

/// Decides a write against the current object on this task, then commits it
/// if the object has not changed meanwhile (recomputing if it has). With
/// `dry_run` it only decides.
pub(crate) async fn write<K, F>(
    state: &AppState,
    name: String,
    dry_run: bool,
    decide: F,
) -> Result<Written, ApiError>
where
    K: Resource,
    F: Fn(Option<K>, u64) -> Result<Decision<K>, ApiError>,
{
    for _ in 0..MAX_ATTEMPTS {
        let current = state.store.get(K::PLURAL, &name);
        let typed = current.as_deref().map(decode_stored::<K>).transpose()?;
        let expect = current
            .as_ref()
            .map_or(Expect::Absent, |c| Expect::At(c.rv));
        let proposal = match decide(typed, 0)? {
            Decision::Unchanged => {
                let object = current.ok_or_else(|| ApiError::NotFound {
                    kind: K::KIND,
                    name: name.clone(),
                })?;
                return Ok(Written {
                    object,
                    created: false,
                    deleted: false,
                    unchanged: true,
                });
            }
            Decision::Put(obj) => {
                mutate::check_node_address(&obj, &state.config.allow_node_addresses)?;
                let (template, labels) = template(obj)?;
                Proposal::Put { template, labels }
            }
            Decision::Delete(obj) => Proposal::Delete {
                template: template(obj)?.0,
            },
        };
        if dry_run {
            let rv = state.store.revision() + 1;
            let (template, labels, deleted) = match proposal {
                Proposal::Put { template, labels } => (template, labels, false),
                Proposal::Delete { template } => (template, Labels::default(), true),
            };
            let object = Arc::new(StoredObject {
                rv,
                body: template.render(rv),
                labels,
            });
            return Ok(Written {
                object,
                created: current.is_none() && !deleted,
                deleted,
                unchanged: false,
            });
        }
        match state
            .store
            .commit(K::PLURAL, name.clone(), expect, proposal)
            .await
        {
            Ok(written) => return Ok(written),
            // The object changed since it was read: decide again.
            Err(
                StoreError::Conflict { .. }
                | StoreError::NotFound { .. }
                | StoreError::AlreadyExists { .. },
            ) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::Conflict {
        kind: K::KIND,
        name,
        message: "the object kept changing under this write; try again".into(),
    })
}

pub(crate) fn server_fields() -> ServerFields {
    ServerFields {
        uid: uuid::Uuid::new_v4().to_string(),
        now: jiff::Timestamp::now(),
    }
}

pub(crate) async fn list_or_watch<K: Resource>(
    State(state): State<AppState>,
    uri: Uri,
    principal: Option<Extension<Principal>>,
) -> Result<Response, ApiError> {
    auth::caller(&state, principal)?;
    let q = extract::query(&uri)?;
    let selector = match q.get("labelSelector") {
        Some(s) => LabelSelector::parse(s).map_err(ApiError::BadRequest)?,
        None => LabelSelector::default(),
    };
    let rv = extract::revision(q.get("resourceVersion"))?;
    let watching = match q.get("watch").map(String::as_str) {
        None | Some("" | "false" | "0") => false,
        Some("true" | "1") => true,
        Some(v) => {
            return Err(ApiError::BadRequest(format!(
                "watch {v:?} must be true or false"
            )));
        }
    };
    if watching {
        let timeout = match q.get("timeoutSeconds") {
            None => None,
            Some(s) => Some(Duration::from_secs(s.parse().map_err(|_| {
                ApiError::BadRequest(format!("timeoutSeconds {s:?} must be a whole number"))
            })?)),
        };
        let start = match rv {
            None | Some(0) => Start::Snapshot,
            Some(n) => Start::After(n),
        };
        let params = WatchParams {
            kind: K::PLURAL,
            kind_name: K::KIND,
            selector,
            start,
            bookmark_interval: state.config.bookmark_interval,
            timeout,
        };
        return Ok(watch::respond(
            state.store.clone(),
            params,
            state.shutdown.clone(),
        ));
    }
    let (revision, items) = state
        .store
        .list(K::PLURAL, &|o| selector.matches(&o.labels));
    let mut body =
        BytesMut::with_capacity(items.iter().map(|o| o.body.len() + 1).sum::<usize>() + 128);
    body.extend_from_slice(
        format!(
            "{{\"apiVersion\":\"{API_VERSION}\",\"kind\":\"{}List\",\"metadata\":{{\"resourceVersion\":\"{revision}\"}},\"items\":[",
            K::KIND
        )
        .as_bytes(),
    );
    for (i, o) in items.iter().enumerate() {
        if i > 0 {
            body.extend_from_slice(b",");
        }
        body.extend_from_slice(&o.body);
    }
    body.extend_from_slice(b"]}");
    Ok(json_response(StatusCode::OK, body.freeze()))
}

pub(crate) async fn get_one<K: Resource>(
    State(state): State<AppState>,
    Path(name): Path<String>,
    principal: Option<Extension<Principal>>,
) -> Result<Response, ApiError> {
    auth::caller(&state, principal)?;
    let obj = state
        .store
        .get(K::PLURAL, &name)
        .ok_or(ApiError::NotFound {
            kind: K::KIND,
            name,
        })?;
    Ok(json_response(StatusCode::OK, obj.body.clone()))
}

pub(crate) async fn read_object<K: Resource>(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<K, ApiError> {
    let bytes =
        extract::read_body(headers, body, BodyKind::Json, state.config.max_body_bytes).await?;
    extract::decode::<K>(&bytes)
}

/// The object a create asks for: read from the body, named (its name is
/// in the body, not the URL), and authorized for the caller now that the
/// name is known.
pub(crate) async fn read_create<K: Resource>(
    state: &AppState,
    caller: &auth::Caller,
    headers: &HeaderMap,
    body: Body,
) -> Result<K, ApiError> {
    let obj: K = read_object(state, headers, body).await?;
    if obj.meta().name.is_empty() {
        return Err(ApiError::Invalid {
            kind: K::KIND,
            name: String::new(),
            errors: vec![herd_api::FieldError::required("metadata.name")],
        });
    }
    auth::authorize_create(state, caller, &obj)?;
    Ok(obj)
}

pub(crate) fn name_from_url<K: Resource>(obj: &mut K, name: &str) -> Result<(), ApiError> {
    let meta = obj.meta_mut();
    if meta.name.is_empty() {
        meta.name = name.to_owned();
    } else if meta.name != name {
        return Err(ApiError::BadRequest(format!(
            "metadata.name {:?} does not match the name in the URL {name:?}",
            meta.name
        )));
    }
    Ok(())
}

async fn create<K: Resource>(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    principal: Option<Extension<Principal>>,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = auth::caller(&state, principal)?;
    let dry_run = extract::dry_run(&extract::query(&uri)?)?;
    let mut obj: K = read_create::<K>(&state, &caller, &headers, body).await?;
    let name = obj.meta().name.clone();
    auth::restrict(&caller, None, &obj)?;
    auth::stamp_source(&caller, &mut obj)?;
    let server = server_fields();
    let written = write::<K, _>(&state, name.clone(), dry_run, move |cur, rv| {
        mutate::create(cur, obj.clone(), rv, server.clone())
    })
    .await?;
    if !dry_run {
        auth::audit::<K>(&state, &caller, Write::Create, &name).await;
    }
    Ok(json_response(
        StatusCode::CREATED,
        written.object.body.clone(),
    ))
}

pub(crate) async fn replace<K: Resource>(
    State(state): State<AppState>,
    Path(name): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    principal: Option<Extension<Principal>>,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = auth::caller(&state, principal)?;
    let dry_run = extract::dry_run(&extract::query(&uri)?)?;
    let mut obj: K = read_object(&state, &headers, body).await?;
    name_from_url(&mut obj, &name)?;
    auth::stamp_source(&caller, &mut obj)?;
    let server = server_fields();
    let restricted_to = caller.clone();
    let written = write::<K, _>(&state, name.clone(), dry_run, move |cur, rv| {
        let old = cur.clone();
        let decision = mutate::replace(cur, obj.clone(), rv, server.clone())?;
        if let Decision::Put(next) = &decision {
            auth::restrict(&restricted_to, old.as_ref(), next)?;
        }
        Ok(decision)
    })
    .await?;
    if !dry_run && !written.unchanged {
        auth::audit::<K>(&state, &caller, Write::Update, &name).await;
    }
    let code = if written.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(json_response(code, written.object.body.clone()))
}

async fn replace_status<K: Resource>(
    State(state): State<AppState>,
    Path(name): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    principal: Option<Extension<Principal>>,
    body: Body,
) -> Result<Response, ApiError> {
    auth::caller(&state, principal)?;
    let dry_run = extract::dry_run(&extract::query(&uri)?)?;
    let bytes =
        extract::read_body(&headers, body, BodyKind::Json, state.config.max_body_bytes).await?;
    let mut obj: K = extract::decode(&bytes)?;
    name_from_url(&mut obj, &name)?;
    let keep = mutate::left_out(K::KIND, &bytes);
    let written = write::<K, _>(&state, name, dry_run, move |cur, rv| {
        mutate::replace_status(cur, obj.clone(), &keep, rv)
    })
    .await?;
    Ok(json_response(StatusCode::OK, written.object.body.clone()))
}

async fn patch_any<K: Resource>(
    state: AppState,
    name: String,
    uri: Uri,
    headers: HeaderMap,
    caller: auth::Caller,
    body: Body,
    target: PatchTarget,
) -> Result<Response, ApiError> {
    let dry_run = extract::dry_run(&extract::query(&uri)?)?;
    let bytes = extract::read_body(
        &headers,
        body,
        BodyKind::MergePatch,
        state.config.max_body_bytes,
    )
    .await?;
    let patch: serde_json::Value = extract::decode(&bytes)?;
    let n = name.clone();
    let restricted_to = caller.clone();
    let written = write::<K, _>(&state, name.clone(), dry_run, move |cur, rv| {
        let old = cur.clone();
        let decision = mutate::patch(cur, &n, &patch, target, rv)?;
        if let (Decision::Put(next), PatchTarget::Main) = (&decision, target) {
            auth::restrict(&restricted_to, old.as_ref(), next)?;
        }
        Ok(decision)
    })
    .await?;
    if !dry_run && !written.unchanged && target == PatchTarget::Main {
        auth::audit::<K>(&state, &caller, Write::Patch, &name).await;
    }
    Ok(json_response(StatusCode::OK, written.object.body.clone()))
}

pub(crate) async fn patch_main<K: Resource>(
    State(state): State<AppState>,
    Path(name): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    principal: Option<Extension<Principal>>,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = auth::caller(&state, principal)?;
    patch_any::<K>(state, name, uri, headers, caller, body, PatchTarget::Main).await
}

async fn patch_status<K: Resource>(
    State(state): State<AppState>,
    Path(name): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    principal: Option<Extension<Principal>>,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = auth::caller(&state, principal)?;
    patch_any::<K>(state, name, uri, headers, caller, body, PatchTarget::Status).await
}

pub(crate) async fn delete<K: Resource>(
    State(state): State<AppState>,
    Path(name): Path<String>,
    uri: Uri,
    principal: Option<Extension<Principal>>,
) -> Result<Response, ApiError> {
    let caller = auth::caller(&state, principal)?;
    let dry_run = extract::dry_run(&extract::query(&uri)?)?;
    let n = name.clone();
    let written = write::<K, _>(&state, name.clone(), dry_run, move |cur, rv| {
        mutate::delete(cur, &n, rv)
    })
    .await?;
    if !dry_run {
        auth::audit::<K>(&state, &caller, Write::Delete, &name).await;
    }
    Ok(json_response(StatusCode::OK, written.object.body.clone()))
}
