//! The proxy's routes: Ollama's native API, the OpenAI-compatible API,
//! request history and metrics. No fallback: whoever composes the final
//! router adds one.

use std::borrow::Cow;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, Method, Response, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{MethodRouter, any, delete, get, post};
use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::{self, BoxStream, StreamExt};
use herd_api::{RequestRecord, Status};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::aggregate;
use crate::body::InFlight;
use crate::cors;
use crate::error::{Dialect, ProxyError};
use crate::fanout::{self, Simple};
use crate::forward::{self, Call, Endpoint, Probe, fail, read_body};
use crate::history::{self, DEFAULT_LIST_LIMIT, Filter, HistoryQuery, Rec, Recorder};
use crate::metrics;
use crate::select;
use crate::state::Shared;
use crate::table::{Holder, ModelEntry, ModelLive};
use crate::upstream::{self, Outgoing, UpBody};

type S = State<Arc<Shared>>;

/// gin's answer to a known path with the wrong method.
async fn method_not_allowed() -> Response<Body> {
    let mut r = Response::new(Body::from("405 method not allowed"));
    *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

/// An Ollama or OpenAI path that neither herd nor Ollama serves: gin's
/// answer, as Ollama gives it.
async fn no_such_endpoint() -> Response<Body> {
    let mut r = Response::new(Body::from("404 page not found"));
    *r.status_mut() = StatusCode::NOT_FOUND;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

/// The `POST` endpoints that carry the model in their JSON body and go to
/// one node that has it. The router and [`shortcut`] both serve them from
/// this list.
const MODEL_ROUTED: [(&str, Endpoint); 11] = [
    ("/api/generate", Endpoint::GENERATE),
    ("/api/chat", Endpoint::CHAT),
    ("/api/embed", Endpoint::EMBED),
    ("/api/embeddings", Endpoint::EMBEDDINGS),
    ("/api/show", Endpoint::SHOW),
    ("/api/push", Endpoint::NATIVE),
    ("/v1/chat/completions", Endpoint::OPENAI),
    ("/v1/completions", Endpoint::OPENAI),
    ("/v1/embeddings", Endpoint::OPENAI_EMBED),
    ("/v1/messages", Endpoint::MESSAGES),
    ("/v1/responses", Endpoint::RESPONSES),
];

fn routed(path: &'static str, ep: Endpoint) -> MethodRouter<Arc<Shared>> {
    post(move |State(s): S, req: Request| forward::model_routed(s, path, ep, req))
        .fallback(method_not_allowed)
}

/// What the shortcut does with a request: the model-routed handler's
/// future, or the request back for the router.
pub(crate) type Shortcutted = Result<BoxFuture<'static, Response<Body>>, Request>;

/// Answers `POST` to a model-routed endpoint without the router: one
/// comparison per listed path instead of axum's path lookup, its
/// route-parameter map, its boxed route future and the clone of the route,
/// all per request (measured in docs/benchmarks.md). Anything else comes
/// back for the router, which serves the same endpoints the same way.
// The request handed back is moved, not boxed: boxing would allocate on
// every request the router serves.
#[allow(clippy::result_large_err)]
pub(crate) fn shortcut(shared: &Arc<Shared>, req: Request) -> Shortcutted {
    // A browser's request goes through the router's CORS layer.
    if req.headers().contains_key(header::ORIGIN) {
        return Err(req);
    }
    match model_routed_endpoint(req.method(), req.uri().path()) {
        Some((path, ep)) => Ok(Box::pin(forward::model_routed(
            shared.clone(),
            path,
            ep,
            req,
        ))),
        None => Err(req),
    }
}

/// The entry of [`MODEL_ROUTED`] a request is for, if it is a `POST` to
/// one of them (the path exactly, as the router matches it).
fn model_routed_endpoint(method: &Method, path: &str) -> Option<(&'static str, Endpoint)> {
    if method != Method::POST {
        return None;
    }
    MODEL_ROUTED.iter().find(|(p, _)| *p == path).copied()
}

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let mut router = Router::new();
    for (path, ep) in MODEL_ROUTED {
        router = router.route(path, routed(path, ep));
    }
    router
        .route("/", get(aggregate::root).fallback(method_not_allowed))
        .route(
            "/api/version",
            get(|State(s): S| aggregate::version(s)).fallback(method_not_allowed),
        )
        .route(
            "/api/tags",
            get(|State(s): S| aggregate::tags(s)).fallback(method_not_allowed),
        )
        .route(
            "/api/ps",
            get(|State(s): S| aggregate::ps(s)).fallback(method_not_allowed),
        )
        .route(
            "/api/create",
            post(|State(s): S, req: Request| create(s, req)).fallback(method_not_allowed),
        )
        .route(
            "/api/pull",
            post(|State(s): S, req: Request| async move {
                let skipped = fanout::skipped(&*s.current_table().await);
                let mut resp = fanout::pull(s, req).await;
                fanout::note_skipped(&mut resp, &skipped);
                resp
            })
            .fallback(method_not_allowed),
        )
        .route(
            "/api/delete",
            delete(|State(s): S, req: Request| async move {
                let skipped = fanout::skipped(&*s.current_table().await);
                let mut resp = fanout::simple(s, Simple::Delete, req).await;
                fanout::note_skipped(&mut resp, &skipped);
                resp
            })
            .fallback(method_not_allowed),
        )
        .route(
            "/api/copy",
            post(|State(s): S, req: Request| async move {
                let skipped = fanout::skipped(&*s.current_table().await);
                let mut resp = fanout::simple(s, Simple::Copy, req).await;
                fanout::note_skipped(&mut resp, &skipped);
                resp
            })
            .fallback(method_not_allowed),
        )
        .route(
            "/api/blobs/{digest}",
            post(blob).head(blob).fallback(method_not_allowed),
        )
        .route(
            "/v1/models",
            get(|State(s): S| aggregate::openai_models(s)).fallback(method_not_allowed),
        )
        .route(
            "/v1/models/{model}",
            get(|State(s): S, Path(m): Path<String>, req: Request| {
                forward::model_in_path(s, m, req)
            })
            .fallback(method_not_allowed),
        )
        .route("/metrics", get(metrics_text))
        .route("/apis/herd/v1/requests", get(requests))
        .route("/apis/herd/v1/requests/stats", get(request_stats))
        // Any other path of Ollama's: its answer, behind the same CORS
        // check (a page from an allowed origin gets a readable 404, not a
        // CORS failure).
        .route("/api/{*rest}", any(no_such_endpoint))
        .route("/v1/{*rest}", any(no_such_endpoint))
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(cors::Origins::new(&shared.config.origins)),
            cors::layer,
        ))
        .with_state(shared)
}

/// A single routing target for requests that must land on one stable node
/// (blob uploads and the `/api/create` that uses them).
fn primary_entry(
    shared: &Shared,
    table: &crate::table::Table,
    name: &str,
) -> Result<ModelEntry, select::NoRoute> {
    let node = select::primary(table, shared.clock.now())?;
    Ok(ModelEntry {
        display: Arc::from(name),
        raw: Arc::from(name),
        holders: vec![Holder {
            node,
            loaded: false,
            live: Arc::new(ModelLive::default()),
        }],
    })
}

/// `POST /api/create`: on a node that has the `from` model when one does,
/// else on the primary node (the one blob uploads go to). On success the
/// new model counts as present there at once.
async fn create(shared: Arc<Shared>, req: Request) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let mut rec = Recorder::start(
        shared.sink.clone(),
        &parts.method,
        Cow::Borrowed("/api/create"),
    );
    let bytes = match read_body(&parts.headers, body, shared.config.max_request_body).await {
        Ok(b) => b,
        Err(e) => return fail(rec, e, Dialect::Ollama),
    };
    let (model, from, stream) = match Probe::parse(&bytes) {
        Ok(p) => (
            p.model().to_owned(),
            p.from
                .as_deref()
                .map(str::trim)
                .unwrap_or_default()
                .to_owned(),
            p.stream != Some(false),
        ),
        Err(e) => return fail(rec, e, Dialect::Ollama),
    };
    let table = shared.current_table().await;
    rec.set_model(Arc::from(model.as_str()), false, stream);
    let primary;
    let entry = match table.model(&from) {
        Some(e) if !from.is_empty() => e,
        _ => match primary_entry(&shared, &table, &model) {
            Ok(e) => {
                primary = e;
                &primary
            }
            Err(no) => {
                return fail(
                    rec,
                    ProxyError::Unavailable(no.message(&model)),
                    Dialect::Ollama,
                );
            }
        },
    };
    let overlay = {
        let shared = shared.clone();
        let model = model.clone();
        Box::new(move |node: &str| {
            if !model.is_empty() {
                shared.tables.set_model([node], &model, true);
            }
        }) as forward::OnNodeSuccess
    };
    let call = Call {
        parts: &parts,
        body: bytes,
        model: &model,
        stream,
        ep: Endpoint::NATIVE,
        on_success: Some(overlay),
        affinity: None,
    };
    forward::forward(&shared, &table, Some(entry), call, rec).await
}

/// `HEAD|POST /api/blobs/{digest}`: streamed to the primary node (no
/// buffering, no size limit: model files are gigabytes), once.
async fn blob(State(shared): S, Path(_digest): Path<String>, req: Request) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let rec = Recorder::start(
        shared.sink.clone(),
        &parts.method,
        Cow::Owned(parts.uri.path().to_owned()),
    );
    let table = shared.current_table().await;
    let node = match select::primary(&table, shared.clock.now()) {
        Ok(n) => n,
        Err(no) => {
            return fail(
                rec,
                ProxyError::Unavailable(no.message("")),
                Dialect::Ollama,
            );
        }
    };
    let b = &table.nodes[node];
    let Some(target) = &b.target else {
        return fail(
            rec,
            ProxyError::Internal("primary node without URL".into()),
            Dialect::Ollama,
        );
    };
    let up_body = if parts.method == Method::HEAD {
        UpBody::empty()
    } else {
        UpBody::Stream(body)
    };
    let pq = &upstream::path_and_query(&parts.uri);
    let req = Outgoing {
        method: &parts.method,
        target,
        path_and_query: pq,
        headers: &parts.headers,
        body: up_body,
    };
    let in_flight = InFlight::new(b.live.clone());
    match shared
        .client
        .send(req, shared.config.first_byte_timeout)
        .await
    {
        Ok(resp) => forward::respond(&shared, resp, b, rec, in_flight, forward::Served::default()),
        Err(e) => {
            shared.send_failed(b, &e);
            let err = match e {
                upstream::SendError::ClientBody(_) => ProxyError::BadRequest(e.message()),
                _ => ProxyError::BadGateway(format!("node {}: {}", b.name, e.message())),
            };
            fail(rec, err, Dialect::Ollama)
        }
    }
}

async fn metrics_text(State(shared): S) -> Response<Body> {
    let table = shared.current_table().await;
    let text = shared
        .sink
        .metrics
        .render(&table, &shared.clock, &shared.tables.affinity);
    let mut r = Response::new(Body::from(text));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(metrics::CONTENT_TYPE),
    );
    r
}

fn status_error(code: StatusCode, message: String) -> Response<Body> {
    let status = Status::bad_request(message);
    let mut r = (code, axum::Json(status)).into_response();
    *r.status_mut() = code;
    r
}

/// `GET /apis/herd/v1/requests[?node=&model=&limit=&watch=true]`.
async fn requests(
    State(shared): S,
    q: Result<Query<HistoryQuery>, QueryRejection>,
) -> Response<Body> {
    let Query(q) = match q {
        Ok(q) => q,
        Err(e) => return status_error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let filter = Filter::new(&q);
    if q.watch == Some(true) {
        let rx = shared.sink.history.subscribe();
        let stop = shared.stop.clone();
        let lines = record_feed(rx, stop)
            .filter(move |r| std::future::ready(filter.matches(r)))
            .map(|r| {
                let mut v = serde_json::to_vec(&r.to_record()).unwrap_or_default();
                v.push(b'\n');
                Ok::<_, std::convert::Infallible>(Bytes::from(v))
            });
        let mut resp = Response::new(Body::from_stream(lines));
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-ndjson"),
        );
        return resp;
    }
    let limit = q.limit.unwrap_or(DEFAULT_LIST_LIMIT);
    let items: Vec<RequestRecord> = shared
        .sink
        .history
        .list(&filter, limit)
        .iter()
        .map(|r| r.to_record())
        .collect();
    let body = serde_json::json!({
        "apiVersion": herd_api::API_VERSION,
        "kind": "RequestList",
        "items": items,
    });
    axum::Json(body).into_response()
}

/// `GET /apis/herd/v1/requests/stats`.
async fn request_stats(State(shared): S) -> Response<Body> {
    let table = shared.current_table().await;
    axum::Json(history::stats(
        &shared.sink.history,
        &table,
        shared.clock.now(),
    ))
    .into_response()
}

/// The feed of new records as a stream that ends at shutdown; records a
/// slow reader missed are skipped (and logged).
fn record_feed(
    rx: broadcast::Receiver<Arc<Rec>>,
    stop: CancellationToken,
) -> BoxStream<'static, Arc<Rec>> {
    stream::unfold((rx, stop), |(mut rx, stop)| async move {
        loop {
            let r = tokio::select! {
                () = stop.cancelled() => return None,
                r = rx.recv() => r,
            };
            match r {
                Ok(rec) => return Some((rec, (rx, stop))),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::debug!(skipped = n, "request watcher lagged");
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortcut_takes_exactly_the_model_routed_posts() {
        let cases: &[(Method, &str, Option<&str>)] = &[
            (Method::POST, "/api/generate", Some("/api/generate")),
            (Method::POST, "/api/chat", Some("/api/chat")),
            (Method::POST, "/api/show", Some("/api/show")),
            (Method::POST, "/api/embed", Some("/api/embed")),
            (Method::POST, "/api/embeddings", Some("/api/embeddings")),
            (
                Method::POST,
                "/v1/chat/completions",
                Some("/v1/chat/completions"),
            ),
            (Method::POST, "/v1/embeddings", Some("/v1/embeddings")),
            // The router answers these (405, other handlers, 404).
            (Method::GET, "/api/generate", None),
            (Method::HEAD, "/api/chat", None),
            (Method::POST, "/api/tags", None),
            (Method::POST, "/api/pull", None),
            (Method::POST, "/api/create", None),
            (Method::POST, "/api/generate/", None),
            (Method::POST, "/API/generate", None),
            (Method::POST, "/v1/models/x", None),
            (Method::POST, "/", None),
        ];
        for (method, path, want) in cases {
            let got = model_routed_endpoint(method, path).map(|(p, _)| p);
            assert_eq!(got, *want, "{method} {path}");
        }
        let (_, ep) = model_routed_endpoint(&Method::POST, "/api/show").expect("show");
        assert!(!ep.counts_tokens, "show keeps its own endpoint settings");
        let (_, ep) = model_routed_endpoint(&Method::POST, "/v1/embeddings").expect("v1");
        assert_eq!(ep.dialect, Dialect::OpenAi);
    }
}
