//! Routing, with gin's answers for unknown paths (404 `404 page not found`)
//! and wrong methods (405 `405 method not allowed`).

mod anthropic;
mod chatlike;
mod embed;
mod inference;
mod models;
mod oai_node;
mod openai;
mod pull;
mod responses;

use std::future::poll_fn;
use std::pin::Pin;

use bytes::{Bytes, BytesMut};
use hyper::body::{Body as _, Incoming};
use hyper::header::{HeaderValue, LOCATION};
use hyper::{Method, Request, Response, StatusCode};
use serde::de::DeserializeOwned;

use crate::body::{self, Body};
use crate::error::ApiError;
use crate::shared::Ctx;

pub use embed::embedding_vector;

/// Largest request body read; Ollama has no limit, but a test that sends
/// more than this is broken.
const MAX_BODY: usize = 64 << 20;

#[derive(Debug, Clone, PartialEq)]
enum Route {
    Root,
    Version,
    Tags,
    Ps,
    Pull,
    Push,
    Show,
    Delete,
    Create,
    Copy,
    Blob(String),
    Generate,
    Chat,
    Embed,
    Embeddings,
    OaiChat,
    OaiCompletions,
    OaiEmbeddings,
    OaiModels,
    OaiModel(String),
    Messages,
    Responses,
}

impl Route {
    fn find(path: &str) -> Option<Route> {
        Some(match path {
            "/" => Route::Root,
            "/api/version" => Route::Version,
            "/api/tags" => Route::Tags,
            "/api/ps" => Route::Ps,
            "/api/pull" => Route::Pull,
            "/api/push" => Route::Push,
            "/api/show" => Route::Show,
            "/api/delete" => Route::Delete,
            "/api/create" => Route::Create,
            "/api/copy" => Route::Copy,
            "/api/generate" => Route::Generate,
            "/api/chat" => Route::Chat,
            "/api/embed" => Route::Embed,
            "/api/embeddings" => Route::Embeddings,
            "/v1/chat/completions" => Route::OaiChat,
            "/v1/completions" => Route::OaiCompletions,
            "/v1/embeddings" => Route::OaiEmbeddings,
            "/v1/models" => Route::OaiModels,
            "/v1/messages" => Route::Messages,
            "/v1/responses" => Route::Responses,
            p => {
                // gin's `:param` matches one segment.
                let param = |prefix: &str| {
                    p.strip_prefix(prefix)
                        .filter(|rest| !rest.is_empty() && !rest.contains('/'))
                        .map(percent_decode)
                };
                if let Some(d) = param("/api/blobs/") {
                    Route::Blob(d)
                } else if let Some(m) = param("/v1/models/") {
                    Route::OaiModel(m)
                } else {
                    return None;
                }
            }
        })
    }

    /// Methods as registered in Ollama's `GenerateRoutes` (gin serves HEAD
    /// only where it is registered).
    fn allows(&self, m: &Method) -> bool {
        let get_head = *m == Method::GET || *m == Method::HEAD;
        match self {
            Route::Root | Route::Version | Route::Tags => get_head,
            Route::Ps | Route::OaiModels | Route::OaiModel(_) => *m == Method::GET,
            Route::Delete => *m == Method::DELETE,
            Route::Blob(_) => *m == Method::POST || *m == Method::HEAD,
            _ => *m == Method::POST,
        }
    }
}

pub(crate) async fn dispatch(ctx: Ctx, req: Request<Incoming>) -> Response<Body> {
    let cfg = ctx.cfg();
    if cfg.api == crate::config::Api::OpenAi {
        return oai_node::dispatch(ctx, req).await;
    }
    let path = req.uri().path().to_owned();
    let served = match Route::find(&path) {
        Some(Route::Messages) => cfg.serves_messages(),
        Some(Route::Responses) => cfg.serves_responses(),
        _ => true,
    };
    let Some(route) = Route::find(&path).filter(|_| served) else {
        return redirect_trailing_slash(&path, req.method()).unwrap_or_else(|| {
            body::text(StatusCode::NOT_FOUND, "text/plain", "404 page not found")
        });
    };
    if !route.allows(req.method()) {
        return body::text(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "405 method not allowed",
        );
    }
    let version = cfg.version;
    match route {
        Route::Root => body::text(
            StatusCode::OK,
            "text/plain; charset=utf-8",
            "Ollama is running",
        ),
        Route::Version => body::json(StatusCode::OK, &serde_json::json!({ "version": version })),
        Route::Tags => models::tags(&ctx),
        Route::Ps => models::ps(&ctx),
        Route::Show => native(models::show(&ctx, req).await),
        Route::Delete => native(models::delete(&ctx, req).await),
        Route::Copy => native(models::copy(&ctx, req).await),
        Route::Create => native(models::create(&ctx, req).await),
        Route::Push => native(models::push(&ctx, req).await),
        Route::Blob(digest) => native(models::blob(&ctx, req, &digest).await),
        Route::Pull => native(pull::pull(&ctx, req).await),
        Route::Generate => native(inference::generate(&ctx, req).await),
        Route::Chat => native(inference::chat(&ctx, req).await),
        Route::Embed => native(embed::embed(&ctx, req).await),
        Route::Embeddings => native(embed::embeddings(&ctx, req).await),
        Route::OaiChat => oai(openai::chat(&ctx, req).await),
        Route::OaiCompletions => oai(openai::completions(&ctx, req).await),
        Route::OaiEmbeddings => oai(openai::embeddings(&ctx, req).await),
        Route::OaiModels => openai::models(&ctx),
        Route::OaiModel(m) => oai(openai::model(&ctx, &m)),
        Route::Messages => match read_json(&ctx, &path, req).await {
            Ok((v, start)) => anthropic::messages(&ctx, &v, start, oai_node::Naming::Ollama)
                .await
                .unwrap_or_else(|e| e.anthropic()),
            Err(e) => e.anthropic(),
        },
        Route::Responses => match read_json(&ctx, &path, req).await {
            Ok((v, start)) => {
                oai(responses::responses(&ctx, &v, start, oai_node::Naming::Ollama).await)
            }
            Err(e) => e.openai(),
        },
    }
}

/// Reads a JSON object body and keeps it as the path's last body.
async fn read_json(
    ctx: &Ctx,
    path: &str,
    req: Request<Incoming>,
) -> Result<(serde_json::Value, tokio::time::Instant), ApiError> {
    let start = tokio::time::Instant::now();
    let bytes = read_body(req).await?;
    crate::util::lock(&ctx.shared.bodies).insert(path.to_owned(), bytes.clone());
    match serde_json::from_slice(&bytes) {
        Ok(v @ serde_json::Value::Object(_)) => Ok((v, start)),
        Ok(_) => Err(ApiError::bad_request("request body must be a JSON object")),
        Err(e) => Err(ApiError::bad_request(format!("invalid JSON: {e}"))),
    }
}

fn native(r: Result<Response<Body>, ApiError>) -> Response<Body> {
    r.unwrap_or_else(|e| e.native())
}

fn oai(r: Result<Response<Body>, ApiError>) -> Response<Body> {
    r.unwrap_or_else(|e| e.openai())
}

/// gin's RedirectTrailingSlash: `/api/tags/` → 301 (GET) or 307 to
/// `/api/tags`.
fn redirect_trailing_slash(path: &str, method: &Method) -> Option<Response<Body>> {
    let trimmed = path.strip_suffix('/').filter(|p| !p.is_empty())?;
    Route::find(trimmed)?;
    let status = if *method == Method::GET {
        StatusCode::MOVED_PERMANENTLY
    } else {
        StatusCode::TEMPORARY_REDIRECT
    };
    let mut r = body::empty(status);
    if let Ok(v) = HeaderValue::from_str(trimmed) {
        r.headers_mut().insert(LOCATION, v);
    }
    Some(r)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| char::from(c).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                #[allow(clippy::cast_possible_truncation)]
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads the whole request body.
pub(crate) async fn read_body(req: Request<Incoming>) -> Result<Bytes, ApiError> {
    let mut body = req.into_body();
    let mut buf = BytesMut::new();
    while let Some(frame) = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let frame = frame.map_err(|e| ApiError::bad_request(e.to_string()))?;
        if let Ok(data) = frame.into_data() {
            buf.extend_from_slice(&data);
            if buf.len() > MAX_BODY {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "http: request body too large",
                ));
            }
        }
    }
    Ok(buf.freeze())
}

/// Reads and decodes a native request (`missing request body` when empty).
pub(crate) async fn read_native<T: DeserializeOwned>(
    req: Request<Incoming>,
    go_type: &str,
) -> Result<T, ApiError> {
    let bytes = read_body(req).await?;
    crate::json::decode(&bytes, go_type, "missing request body").map_err(ApiError::bad_request)
}

/// Reads and decodes an OpenAI request (gin's bare `EOF` when empty).
pub(crate) async fn read_openai<T: DeserializeOwned>(
    req: Request<Incoming>,
    go_type: &str,
) -> Result<T, ApiError> {
    let bytes = read_body(req).await?;
    crate::json::decode(&bytes, go_type, "EOF").map_err(ApiError::bad_request)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_methods() {
        assert_eq!(
            Route::find("/v1/models/llama3.2%3A1b"),
            Some(Route::OaiModel("llama3.2:1b".into()))
        );
        assert_eq!(Route::find("/v1/models/a/b"), None);
        assert_eq!(Route::find("/api/nope"), None);
        assert!(Route::Tags.allows(&Method::HEAD));
        assert!(!Route::Ps.allows(&Method::HEAD));
        assert!(!Route::Generate.allows(&Method::GET));
        assert!(Route::Delete.allows(&Method::DELETE));
    }
}
