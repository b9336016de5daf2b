//! `POST /api/embed` and the older `POST /api/embeddings`.
//!
//! Vectors are derived from the input text (hash-based, L2-normalised, as
//! Ollama normalises), so equal inputs give equal vectors on every fake.

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::time::Instant;

use crate::body::{self, Body};
use crate::config::KeepAlive;
use crate::error::ApiError;
use crate::generation::count_tokens;
use crate::shared::Ctx;
use crate::util::{hash64, nanos};

use super::inference::resolve;
use super::read_native;

#[derive(Deserialize)]
#[allow(dead_code)]
struct EmbedRequest {
    model: Option<String>,
    input: Option<Value>,
    truncate: Option<bool>,
    dimensions: Option<i64>,
    keep_alive: Option<Value>,
    options: Option<Map<String, Value>>,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct EmbeddingRequest {
    model: Option<String>,
    prompt: Option<String>,
    keep_alive: Option<Value>,
    options: Option<Map<String, Value>>,
}

#[derive(Serialize)]
struct EmbedResponse<'a> {
    model: &'a str,
    embeddings: Vec<Vec<f32>>,
    #[serde(skip_serializing_if = "is_zero")]
    total_duration: u64,
    #[serde(skip_serializing_if = "is_zero")]
    load_duration: u64,
    #[serde(skip_serializing_if = "is_zero")]
    prompt_eval_count: u64,
}

#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_zero(n: &u64) -> bool {
    *n == 0
}

pub(crate) struct Embedded {
    pub vectors: Vec<Vec<f32>>,
    pub total_duration: u64,
    pub load_duration: u64,
    pub prompt_tokens: u64,
}

/// A deterministic unit vector for `text`.
pub fn embedding_vector(text: &str, dim: usize) -> Vec<f32> {
    #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
    let raw: Vec<f64> = (0..dim)
        .map(|i| {
            ((hash64(i as u64, text.as_bytes()) >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        })
        .collect();
    normalize(&raw)
}

#[allow(clippy::cast_possible_truncation)]
fn normalize(v: &[f64]) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-12);
    v.iter().map(|x| (x / norm) as f32).collect()
}

/// `input` of `/api/embed`: a string (empty means none) or a list of
/// strings.
pub(crate) fn inputs_of(input: Option<&Value>) -> Result<Vec<String>, ApiError> {
    match input {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) if s.is_empty() => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| ApiError::bad_request("invalid input type"))
            })
            .collect(),
        Some(_) => Err(ApiError::bad_request("invalid input type")),
    }
}

/// Takes a slot, loads, "evaluates" (`ttft`) and embeds every input.
pub(crate) async fn run(
    ctx: &Ctx,
    model: &str,
    inputs: &[String],
    dimensions: Option<i64>,
    keep_alive: Option<KeepAlive>,
    start: Instant,
) -> Result<Embedded, ApiError> {
    let entry = resolve(ctx, model, || {
        ApiError::not_found(format!("model {model:?} not found, try pulling it first"))
    })?;
    let cfg = ctx.cfg();
    let lease = ctx
        .shared
        .sched
        .acquire(
            &entry,
            keep_alive.unwrap_or(cfg.keep_alive),
            cfg.num_parallel,
            cfg.max_queue,
            &ctx.shared.stats,
            !inputs.is_empty(),
        )
        .await
        .map_err(|_| ApiError::busy())?;
    lease.ensure_loaded(ctx.scaled(cfg.load_time)).await;
    let load_duration = nanos(start.elapsed());
    if inputs.is_empty() {
        return Ok(Embedded {
            vectors: Vec::new(),
            total_duration: 0,
            load_duration: 0,
            prompt_tokens: 0,
        });
    }
    tokio::time::sleep(ctx.scaled(cfg.ttft)).await;
    let dim = usize::try_from(dimensions.unwrap_or(0))
        .ok()
        .filter(|d| *d > 0 && *d < cfg.embedding_dim)
        .unwrap_or(cfg.embedding_dim);
    let vectors = inputs.iter().map(|t| embedding_vector(t, dim)).collect();
    drop(lease);
    Ok(Embedded {
        vectors,
        total_duration: nanos(start.elapsed()),
        load_duration,
        prompt_tokens: inputs.iter().map(|t| count_tokens(t) as u64).sum(),
    })
}

pub(crate) async fn embed(ctx: &Ctx, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let start = Instant::now();
    let r: EmbedRequest = read_native(req, "api.EmbedRequest").await?;
    let model = r.model.clone().unwrap_or_default();
    let inputs = inputs_of(r.input.as_ref())?;
    let keep_alive =
        crate::json::keep_alive(r.keep_alive.as_ref()).map_err(ApiError::bad_request)?;
    let e = run(ctx, &model, &inputs, r.dimensions, keep_alive, start).await?;
    Ok(body::json(
        StatusCode::OK,
        &EmbedResponse {
            model: &model,
            embeddings: e.vectors,
            total_duration: e.total_duration,
            load_duration: e.load_duration,
            prompt_eval_count: e.prompt_tokens,
        },
    ))
}

pub(crate) async fn embeddings(
    ctx: &Ctx,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let start = Instant::now();
    let r: EmbeddingRequest = read_native(req, "api.EmbeddingRequest").await?;
    let model = r.model.clone().unwrap_or_default();
    let prompt = r.prompt.unwrap_or_default();
    let inputs: Vec<String> = if prompt.is_empty() {
        Vec::new()
    } else {
        vec![prompt]
    };
    let keep_alive =
        crate::json::keep_alive(r.keep_alive.as_ref()).map_err(ApiError::bad_request)?;
    let e = run(ctx, &model, &inputs, None, keep_alive, start).await?;
    let embedding: Vec<f64> = e
        .vectors
        .into_iter()
        .next()
        .unwrap_or_default()
        .into_iter()
        .map(f64::from)
        .collect();
    Ok(body::json(
        StatusCode::OK,
        &serde_json::json!({ "embedding": embedding }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_are_deterministic_unit_vectors() {
        let a = embedding_vector("hello", 384);
        assert_eq!(a.len(), 384);
        assert_eq!(a, embedding_vector("hello", 384));
        assert_ne!(a, embedding_vector("world", 384));
        let norm: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "{norm}");
    }
}
