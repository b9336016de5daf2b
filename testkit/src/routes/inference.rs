//! `POST /api/generate` and `POST /api/chat`, and the checks the OpenAI
//! endpoints share with them (Ollama runs those through the same handlers).

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::time::Instant;

use crate::body::{self, Body, NDJSON, ndjson_line};
use crate::config::KeepAlive;
use crate::error::ApiError;
use crate::generation::{Event, Final, Generation, Plan, context_tokens, count_tokens};
use crate::names::ModelRef;
use crate::shared::Ctx;
use crate::store::ModelEntry;
use crate::util::now_rfc3339;

use super::read_native;

#[derive(Deserialize)]
#[allow(dead_code)] // Fields kept so their types are validated like Ollama's.
struct GenerateRequest {
    model: Option<String>,
    prompt: Option<String>,
    suffix: Option<String>,
    system: Option<String>,
    template: Option<String>,
    context: Option<Vec<i64>>,
    stream: Option<bool>,
    raw: Option<bool>,
    format: Option<Value>,
    keep_alive: Option<Value>,
    images: Option<Vec<String>>,
    options: Option<Map<String, Value>>,
    think: Option<Value>,
    truncate: Option<bool>,
    shift: Option<bool>,
    logprobs: Option<bool>,
    top_logprobs: Option<i64>,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct ChatRequest {
    model: Option<String>,
    messages: Option<Vec<Message>>,
    tools: Option<Vec<Value>>,
    format: Option<Value>,
    options: Option<Map<String, Value>>,
    stream: Option<bool>,
    keep_alive: Option<Value>,
    think: Option<Value>,
    truncate: Option<bool>,
    shift: Option<bool>,
    logprobs: Option<bool>,
    top_logprobs: Option<i64>,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct Message {
    role: Option<String>,
    content: Option<String>,
    thinking: Option<String>,
    images: Option<Vec<String>>,
    tool_calls: Option<Vec<Value>>,
    tool_name: Option<String>,
}

/// The `*_duration`/`*_count` fields; zero ones are omitted, as Go's
/// `omitempty` does.
#[derive(Serialize, Default)]
pub(crate) struct Metrics {
    #[serde(skip_serializing_if = "is_zero")]
    total_duration: u64,
    #[serde(skip_serializing_if = "is_zero")]
    load_duration: u64,
    #[serde(skip_serializing_if = "is_zero")]
    prompt_eval_count: u64,
    #[serde(skip_serializing_if = "is_zero")]
    prompt_eval_duration: u64,
    #[serde(skip_serializing_if = "is_zero")]
    eval_count: u64,
    #[serde(skip_serializing_if = "is_zero")]
    eval_duration: u64,
}

#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl From<&Final> for Metrics {
    fn from(f: &Final) -> Metrics {
        Metrics {
            total_duration: f.total_duration,
            load_duration: f.load_duration,
            prompt_eval_count: f.prompt_eval_count,
            prompt_eval_duration: f.prompt_eval_duration,
            eval_count: f.eval_count,
            eval_duration: f.eval_duration,
        }
    }
}

#[derive(Serialize)]
struct GenerateChunk<'a> {
    model: &'a str,
    created_at: String,
    response: &'a str,
    done: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    done_reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    context: Option<Vec<u32>>,
    #[serde(flatten)]
    metrics: Metrics,
}

#[derive(Serialize)]
struct ChatMessageOut<'a> {
    role: &'static str,
    content: &'a str,
}

#[derive(Serialize)]
struct ChatChunk<'a> {
    model: &'a str,
    created_at: String,
    message: ChatMessageOut<'a>,
    done: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    done_reason: Option<&'a str>,
    #[serde(flatten)]
    metrics: Metrics,
}

fn generate_chunk<'a>(
    model: &'a str,
    response: &'a str,
    done: Option<(&'a str, Metrics)>,
) -> GenerateChunk<'a> {
    let (done_reason, metrics) = match done {
        Some((reason, m)) => (Some(reason), m),
        None => (None, Metrics::default()),
    };
    GenerateChunk {
        model,
        created_at: now_rfc3339(),
        response,
        done: done_reason.is_some(),
        done_reason,
        context: None,
        metrics,
    }
}

fn chat_chunk<'a>(
    model: &'a str,
    content: &'a str,
    done: Option<(&'a str, Metrics)>,
) -> ChatChunk<'a> {
    let (done_reason, metrics) = match done {
        Some((reason, m)) => (Some(reason), m),
        None => (None, Metrics::default()),
    };
    ChatChunk {
        model,
        created_at: now_rfc3339(),
        message: ChatMessageOut {
            role: "assistant",
            content,
        },
        done: done_reason.is_some(),
        done_reason,
        metrics,
    }
}

/// Finds an installed model by the name a request gave. `missing` builds
/// the endpoint's own not-found error.
pub(crate) fn resolve(
    ctx: &Ctx,
    model: &str,
    missing: impl FnOnce() -> ApiError,
) -> Result<ModelEntry, ApiError> {
    if model.is_empty() {
        return Err(ApiError::model_required());
    }
    let name = ModelRef::parse(model).ok_or_else(|| ApiError::bad_request("invalid model name"))?;
    crate::util::lock(&ctx.shared.store)
        .get(&name.display())
        .ok_or_else(missing)
}

pub(crate) fn model_not_found(model: &str) -> ApiError {
    ApiError::not_found(format!("model '{model}' not found"))
}

/// `options.num_predict` (`max_tokens` on the OpenAI side).
fn num_predict(options: Option<&Map<String, Value>>) -> Result<Option<i64>, ApiError> {
    match options.and_then(|o| o.get("num_predict")) {
        None | Some(Value::Null) => Ok(None),
        #[allow(clippy::cast_possible_truncation)]
        Some(Value::Number(n)) => Ok(n.as_i64().or_else(|| n.as_f64().map(|f| f as i64))),
        Some(_) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "option \"num_predict\" must be of type integer",
        )),
    }
}

/// `think: true` or a level (`"high"`) asks for thinking.
fn wants_thinking(think: Option<&Value>) -> bool {
    match think {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => !s.is_empty() && s != "false",
        _ => false,
    }
}

/// One inference request, whichever endpoint it came through.
pub(crate) struct Job<'a> {
    pub model: &'a str,
    /// `generate` or `chat`: the word in `"X" does not support ...`.
    pub capability: &'static str,
    /// No prompt / no messages: a load (or, with `keep_alive: 0`, unload).
    pub empty: bool,
    pub prompt_tokens: usize,
    /// The prompt's words in order, hashed: what a slot's cache is matched on.
    pub prompt: Vec<u64>,
    pub num_predict: Option<i64>,
    pub keep_alive: Option<KeepAlive>,
    pub think: bool,
    pub start: Instant,
}

pub(crate) enum Outcome {
    Unloaded,
    Loaded,
    Generating(Generation),
}

/// The part of Ollama's Generate/Chat handlers between decoding and
/// writing: model lookup, unload, capability checks, load, scheduling.
pub(crate) async fn run(ctx: &Ctx, job: Job<'_>) -> Result<Outcome, ApiError> {
    let entry = resolve(ctx, job.model, || model_not_found(job.model))?;
    if job.empty && job.keep_alive.is_some_and(KeepAlive::is_zero) {
        ctx.shared.sched.unload(&entry.name);
        return Ok(Outcome::Unloaded);
    }
    let info = entry.info();
    if info.embedding_only() {
        return Err(ApiError::bad_request(format!(
            "\"{}\" does not support {}",
            job.model, job.capability
        )));
    }
    if job.think && !info.can("thinking") {
        return Err(ApiError::bad_request(format!(
            "\"{}\" does not support thinking",
            job.model
        )));
    }
    if job.empty {
        load_only(ctx, &entry, job.keep_alive).await?;
        return Ok(Outcome::Loaded);
    }
    let plan = Plan {
        entry: &entry,
        prompt_tokens: job.prompt_tokens,
        prompt: job.prompt,
        num_predict: job.num_predict,
        keep_alive: job.keep_alive,
        start: job.start,
    };
    Ok(Outcome::Generating(Generation::begin(ctx, plan).await?))
}

/// Loads a model without taking a slot (Ollama's empty-prompt request).
pub(crate) async fn load_only(
    ctx: &Ctx,
    entry: &ModelEntry,
    keep_alive: Option<KeepAlive>,
) -> Result<(), ApiError> {
    let cfg = ctx.cfg();
    let lease = ctx
        .shared
        .sched
        .acquire(
            entry,
            keep_alive.unwrap_or(cfg.keep_alive),
            cfg.num_parallel,
            cfg.max_queue,
            &ctx.shared.stats,
            false,
        )
        .await
        .map_err(|_| ApiError::busy())?;
    lease.ensure_loaded(ctx.scaled(cfg.load_time)).await;
    Ok(())
}

fn top_logprobs_ok(n: Option<i64>) -> Result<(), ApiError> {
    match n {
        Some(n) if !(0..=20).contains(&n) => Err(ApiError::bad_request(
            "top_logprobs must be between 0 and 20",
        )),
        _ => Ok(()),
    }
}

pub(crate) async fn generate(
    ctx: &Ctx,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let start = Instant::now();
    let r: GenerateRequest = read_native(req, "api.GenerateRequest").await?;
    top_logprobs_ok(r.top_logprobs)?;
    let model = r.model.clone().unwrap_or_default();
    let keep_alive =
        crate::json::keep_alive(r.keep_alive.as_ref()).map_err(ApiError::bad_request)?;
    let prompt = r.prompt.clone().unwrap_or_default();
    let has_context = r.context.as_ref().is_some_and(|c| !c.is_empty());
    if r.raw == Some(true)
        && (r.template.as_deref().is_some_and(|t| !t.is_empty())
            || r.system.as_deref().is_some_and(|s| !s.is_empty())
            || has_context)
    {
        // Ollama checks this after the model lookup; keep that order.
        resolve(ctx, &model, || model_not_found(&model))?;
        return Err(ApiError::bad_request(
            "raw mode does not support template, system, or context",
        ));
    }
    let prompt_tokens = count_tokens(&prompt)
        + count_tokens(r.system.as_deref().unwrap_or(""))
        + r.context.as_ref().map_or(0, Vec::len);
    let job = Job {
        model: &model,
        capability: "generate",
        empty: prompt.is_empty(),
        prompt_tokens,
        prompt: crate::generation::prompt_words([
            r.system.as_deref().unwrap_or(""),
            prompt.as_str(),
        ]),
        num_predict: num_predict(r.options.as_ref())?,
        keep_alive,
        think: wants_thinking(r.think.as_ref()),
        start,
    };
    let generation = match run(ctx, job).await? {
        Outcome::Unloaded => {
            return Ok(body::json(
                StatusCode::OK,
                &generate_chunk(&model, "", Some(("unload", Metrics::default()))),
            ));
        }
        Outcome::Loaded => {
            return Ok(body::json(
                StatusCode::OK,
                &generate_chunk(&model, "", Some(("load", Metrics::default()))),
            ));
        }
        Outcome::Generating(g) => g,
    };
    let prompt_tokens = generation.prompt_tokens();
    let context = move |f: &Final| {
        context_tokens(
            &prompt,
            prompt_tokens + usize::try_from(f.eval_count).unwrap_or(0),
        )
    };

    if r.stream == Some(false) {
        let (text, f) = generation.collect().await;
        let mut chunk = generate_chunk(&model, &text, Some((f.done_reason, Metrics::from(&f))));
        chunk.context = Some(context(&f));
        return Ok(body::json(StatusCode::OK, &chunk));
    }
    let events = generation.into_stream();
    let lines = futures_util::StreamExt::map(events, move |ev| match ev {
        Event::Token(t) => ndjson_line(&generate_chunk(&model, t, None)),
        Event::Done(f) => {
            let mut chunk = generate_chunk(&model, "", Some((f.done_reason, Metrics::from(&f))));
            chunk.context = Some(context(&f));
            ndjson_line(&chunk)
        }
    });
    Ok(body::streaming(NDJSON, lines))
}

pub(crate) async fn chat(ctx: &Ctx, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let start = Instant::now();
    let r: ChatRequest = read_native(req, "api.ChatRequest").await?;
    top_logprobs_ok(r.top_logprobs)?;
    let model = r.model.clone().unwrap_or_default();
    let keep_alive =
        crate::json::keep_alive(r.keep_alive.as_ref()).map_err(ApiError::bad_request)?;
    let messages = r.messages.as_deref().unwrap_or_default();
    let prompt_tokens = messages
        .iter()
        .map(|m| count_tokens(m.content.as_deref().unwrap_or("")))
        .sum();
    let job = Job {
        model: &model,
        capability: "chat",
        empty: messages.is_empty(),
        prompt_tokens,
        prompt: crate::generation::prompt_words(
            messages.iter().map(|m| m.content.as_deref().unwrap_or("")),
        ),
        num_predict: num_predict(r.options.as_ref())?,
        keep_alive,
        think: wants_thinking(r.think.as_ref()),
        start,
    };
    let generation = match run(ctx, job).await? {
        Outcome::Unloaded => {
            return Ok(body::json(
                StatusCode::OK,
                &chat_chunk(&model, "", Some(("unload", Metrics::default()))),
            ));
        }
        Outcome::Loaded => {
            return Ok(body::json(
                StatusCode::OK,
                &chat_chunk(&model, "", Some(("load", Metrics::default()))),
            ));
        }
        Outcome::Generating(g) => g,
    };
    if r.stream == Some(false) {
        let (text, f) = generation.collect().await;
        let chunk = chat_chunk(&model, &text, Some((f.done_reason, Metrics::from(&f))));
        return Ok(body::json(StatusCode::OK, &chunk));
    }
    let lines = futures_util::StreamExt::map(generation.into_stream(), move |ev| match ev {
        Event::Token(t) => ndjson_line(&chat_chunk(&model, t, None)),
        Event::Done(f) => ndjson_line(&chat_chunk(
            &model,
            "",
            Some((f.done_reason, Metrics::from(&f))),
        )),
    });
    Ok(body::streaming(NDJSON, lines))
}
