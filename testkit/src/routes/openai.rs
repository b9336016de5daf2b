//! The OpenAI-compatible endpoints, shaped as Ollama's `openai` package and
//! `middleware/openai.go` shape them: `stream` defaults to false, streams are
//! SSE ending in `data: [DONE]`, every delta carries `role: "assistant"`,
//! errors use the OpenAI error object.

use bytes::Bytes;
use futures_util::{StreamExt, stream};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::time::Instant;

use crate::body::{self, Body, SSE, sse_event};
use crate::error::ApiError;
use crate::generation::{Event, Final, count_tokens};
use crate::shared::Ctx;
use crate::util::{base64, lock, small_random, unix_now};

use super::inference::{self, Job, Outcome};
use super::{embed, models, read_openai};

const FINGERPRINT: &str = "fp_ollama";
const DONE: &[u8] = b"data: [DONE]\n\n";

#[derive(Deserialize)]
#[allow(dead_code)]
struct StreamOptions {
    include_usage: Option<bool>,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct ChatCompletionRequest {
    model: Option<String>,
    messages: Option<Vec<OaiMessage>>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    max_tokens: Option<i64>,
    seed: Option<i64>,
    stop: Option<Value>,
    temperature: Option<f64>,
    frequency_penalty: Option<f64>,
    presence_penalty: Option<f64>,
    top_p: Option<f64>,
    response_format: Option<Value>,
    tools: Option<Vec<Value>>,
    reasoning_effort: Option<String>,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct OaiMessage {
    role: Option<String>,
    content: Option<Value>,
    tool_calls: Option<Vec<Value>>,
    name: Option<String>,
    tool_call_id: Option<String>,
    reasoning: Option<String>,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct CompletionRequest {
    model: Option<String>,
    prompt: Option<String>,
    frequency_penalty: Option<f64>,
    max_tokens: Option<i64>,
    presence_penalty: Option<f64>,
    seed: Option<i64>,
    stop: Option<Value>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    suffix: Option<String>,
}

#[derive(Deserialize)]
struct EmbedRequest {
    input: Option<Value>,
    model: Option<String>,
    dimensions: Option<i64>,
    encoding_format: Option<String>,
}

#[derive(Serialize, Clone, Copy)]
struct Usage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
}

impl Usage {
    fn of(f: &Final) -> Usage {
        Usage {
            prompt_tokens: f.prompt_eval_count,
            completion_tokens: f.eval_count,
            total_tokens: f.prompt_eval_count + f.eval_count,
        }
    }

    fn zero() -> Usage {
        Usage {
            prompt_tokens: 0,
            completion_tokens: 0,
            total_tokens: 0,
        }
    }
}

#[derive(Serialize)]
struct MessageOut<'a> {
    role: &'static str,
    content: &'a str,
}

#[derive(Serialize)]
struct Choice<'a> {
    index: u32,
    message: MessageOut<'a>,
    finish_reason: Option<&'a str>,
}

#[derive(Serialize)]
struct ChatCompletion<'a> {
    id: &'a str,
    object: &'static str,
    created: i64,
    model: &'a str,
    system_fingerprint: &'static str,
    choices: Vec<Choice<'a>>,
    usage: Usage,
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: MessageOut<'a>,
    finish_reason: Option<&'a str>,
}

#[derive(Serialize)]
struct ChatCompletionChunk<'a> {
    id: &'a str,
    object: &'static str,
    created: i64,
    model: &'a str,
    system_fingerprint: &'static str,
    choices: Vec<ChunkChoice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Usage>,
}

#[derive(Serialize)]
struct TextChoice<'a> {
    text: &'a str,
    index: u32,
    finish_reason: Option<&'a str>,
}

#[derive(Serialize)]
struct Completion<'a> {
    id: &'a str,
    object: &'static str,
    created: i64,
    model: &'a str,
    system_fingerprint: &'static str,
    choices: Vec<TextChoice<'a>>,
    usage: Usage,
}

#[derive(Serialize)]
struct CompletionChunk<'a> {
    id: &'a str,
    object: &'static str,
    created: i64,
    choices: Vec<TextChoice<'a>>,
    model: &'a str,
    system_fingerprint: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Usage>,
}

/// A message's text: `content` as a string or as `text` parts.
fn message_text(m: &OaiMessage) -> Result<String, ApiError> {
    let invalid = || ApiError::bad_request("invalid message format");
    match &m.content {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            for p in parts {
                let part = p.as_object().ok_or_else(invalid)?;
                match part.get("type").and_then(Value::as_str) {
                    Some("text") => text.push_str(
                        part.get("text")
                            .and_then(Value::as_str)
                            .ok_or_else(invalid)?,
                    ),
                    Some("image_url") => {}
                    _ => return Err(invalid()),
                }
            }
            Ok(text)
        }
        None | Some(Value::Null) if m.tool_calls.is_some() => Ok(String::new()),
        other => {
            let go = match other {
                None | Some(Value::Null) => "<nil>",
                Some(Value::Bool(_)) => "bool",
                Some(Value::Number(_)) => "float64",
                _ => "map[string]interface {}",
            };
            Err(ApiError::bad_request(format!(
                "invalid message content type: {go}"
            )))
        }
    }
}

fn include_usage(o: Option<&StreamOptions>) -> bool {
    o.and_then(|o| o.include_usage).unwrap_or(false)
}

/// What every chunk of one reply repeats.
struct Meta {
    id: String,
    model: String,
    created: i64,
}

impl Meta {
    /// A `chat.completion.chunk`; `choice: None` is the usage-only event.
    fn chat_chunk(&self, choice: Option<(&str, Option<&str>)>, usage: Option<Usage>) -> Bytes {
        sse_event(&ChatCompletionChunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            system_fingerprint: FINGERPRINT,
            choices: choice
                .map(|(content, finish_reason)| ChunkChoice {
                    index: 0,
                    delta: MessageOut {
                        role: "assistant",
                        content,
                    },
                    finish_reason,
                })
                .into_iter()
                .collect(),
            usage,
        })
    }

    /// A streamed `text_completion`; `choice: None` is the usage-only event.
    fn text_chunk(&self, choice: Option<(&str, Option<&str>)>, usage: Option<Usage>) -> Bytes {
        sse_event(&CompletionChunk {
            id: &self.id,
            object: "text_completion",
            created: self.created,
            choices: choice
                .map(|(text, finish_reason)| TextChoice {
                    text,
                    index: 0,
                    finish_reason,
                })
                .into_iter()
                .collect(),
            model: &self.model,
            system_fingerprint: FINGERPRINT,
            usage,
        })
    }

    fn text_whole(&self, text: &str, finish: &str, usage: Usage) -> Response<Body> {
        body::json_plain(
            StatusCode::OK,
            &Completion {
                id: &self.id,
                object: "text_completion",
                created: unix_now(),
                model: &self.model,
                system_fingerprint: FINGERPRINT,
                choices: vec![TextChoice {
                    text,
                    index: 0,
                    finish_reason: Some(finish),
                }],
                usage,
            },
        )
    }
}

pub(crate) async fn chat(ctx: &Ctx, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let start = Instant::now();
    let r: ChatCompletionRequest = read_openai(req, "openai.ChatCompletionRequest").await?;
    let messages = r.messages.as_deref().unwrap_or_default();
    if messages.is_empty() {
        return Err(ApiError::bad_request("[] is too short - 'messages'"));
    }
    let mut prompt_tokens = 0;
    let mut texts = Vec::with_capacity(messages.len());
    for m in messages {
        let text = message_text(m)?;
        prompt_tokens += count_tokens(&text);
        texts.push(text);
    }
    let prompt = crate::generation::prompt_words(texts.iter().map(String::as_str));
    let meta = Meta {
        id: format!("chatcmpl-{}", small_random(999)),
        model: r.model.clone().unwrap_or_default(),
        created: unix_now(),
    };
    let job = Job {
        model: &meta.model,
        capability: "chat",
        empty: false,
        prompt_tokens,
        prompt,
        num_predict: r.max_tokens,
        keep_alive: None,
        think: false,
        start,
    };
    let Outcome::Generating(generation) = inference::run(ctx, job).await? else {
        return Err(ApiError::bad_request("[] is too short - 'messages'"));
    };
    if r.stream != Some(true) {
        let (text, f) = generation.collect().await;
        let reply = ChatCompletion {
            id: &meta.id,
            object: "chat.completion",
            created: unix_now(),
            model: &meta.model,
            system_fingerprint: FINGERPRINT,
            choices: vec![Choice {
                index: 0,
                message: MessageOut {
                    role: "assistant",
                    content: &text,
                },
                finish_reason: Some(f.done_reason),
            }],
            usage: Usage::of(&f),
        };
        return Ok(body::json_plain(StatusCode::OK, &reply));
    }
    let with_usage = include_usage(r.stream_options.as_ref());
    let events = generation.into_stream().flat_map(move |ev| {
        let out: Vec<Bytes> = match ev {
            Event::Token(t) => vec![meta.chat_chunk(Some((t, None)), None)],
            Event::Done(f) => {
                let mut v = vec![meta.chat_chunk(Some(("", Some(f.done_reason))), None)];
                if with_usage {
                    v.push(meta.chat_chunk(None, Some(Usage::of(&f))));
                }
                v.push(Bytes::from_static(DONE));
                v
            }
        };
        stream::iter(out)
    });
    Ok(body::streaming(SSE, events))
}

pub(crate) async fn completions(
    ctx: &Ctx,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let start = Instant::now();
    let r: CompletionRequest = read_openai(req, "openai.CompletionRequest").await?;
    let prompt = r.prompt.clone().unwrap_or_default();
    let meta = Meta {
        id: format!("cmpl-{}", small_random(999)),
        model: r.model.clone().unwrap_or_default(),
        created: unix_now(),
    };
    let stream = r.stream == Some(true);
    let with_usage = include_usage(r.stream_options.as_ref());
    let job = Job {
        model: &meta.model,
        capability: "generate",
        empty: prompt.is_empty(),
        prompt_tokens: count_tokens(&prompt),
        prompt: crate::generation::prompt_words([prompt.as_str()]),
        num_predict: r.max_tokens,
        keep_alive: None,
        think: false,
        start,
    };
    let generation = match inference::run(ctx, job).await? {
        // An empty prompt only loads the model; Ollama still converts that
        // reply, so the completion's finish_reason is "load".
        Outcome::Loaded | Outcome::Unloaded => {
            if !stream {
                return Ok(meta.text_whole("", "load", Usage::zero()));
            }
            let first = meta.text_chunk(Some(("", Some("load"))), with_usage.then(Usage::zero));
            return Ok(body::streaming(
                SSE,
                stream::iter([first, Bytes::from_static(DONE)]),
            ));
        }
        Outcome::Generating(g) => g,
    };
    if !stream {
        let (text, f) = generation.collect().await;
        return Ok(meta.text_whole(&text, f.done_reason, Usage::of(&f)));
    }
    // With include_usage Ollama puts a zero `usage` on every chunk, then a
    // usage-only event before [DONE].
    let events = generation.into_stream().flat_map(move |ev| {
        let zero = with_usage.then(Usage::zero);
        let out: Vec<Bytes> = match ev {
            Event::Token(t) => vec![meta.text_chunk(Some((t, None)), zero)],
            Event::Done(f) => {
                let mut v = vec![meta.text_chunk(Some(("", Some(f.done_reason))), zero)];
                if with_usage {
                    v.push(meta.text_chunk(None, Some(Usage::of(&f))));
                }
                v.push(Bytes::from_static(DONE));
                v
            }
        };
        stream::iter(out)
    });
    Ok(body::streaming(SSE, events))
}

#[derive(Serialize)]
struct EmbeddingList {
    object: &'static str,
    data: Vec<EmbeddingItem>,
    model: String,
    usage: EmbeddingUsage,
}

#[derive(Serialize)]
struct EmbeddingUsage {
    prompt_tokens: u64,
    total_tokens: u64,
}

#[derive(Serialize)]
struct EmbeddingItem {
    object: &'static str,
    embedding: Value,
    index: usize,
}

pub(crate) async fn embeddings(
    ctx: &Ctx,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let start = Instant::now();
    let r: EmbedRequest = read_openai(req, "openai.EmbedRequest").await?;
    let base64_format = match r.encoding_format.as_deref() {
        None | Some("") => false,
        Some(f) if f.eq_ignore_ascii_case("float") => false,
        Some(f) if f.eq_ignore_ascii_case("base64") => true,
        Some(f) => {
            return Err(ApiError::bad_request(format!(
                "Invalid value for 'encoding_format' = {f}. Supported values: ['float', 'base64']."
            )));
        }
    };
    let inputs = match &r.input {
        None | Some(Value::Null) => return Err(ApiError::bad_request("invalid input")),
        Some(Value::String(s)) if s.is_empty() => vec![String::new()],
        Some(Value::Array(a)) if a.is_empty() => {
            return Err(ApiError::bad_request("invalid input"));
        }
        Some(v) => embed::inputs_of(Some(v))?,
    };
    let model = r.model.unwrap_or_default();
    let e = embed::run(ctx, &model, &inputs, r.dimensions, None, start).await?;
    let data: Vec<EmbeddingItem> = e
        .vectors
        .into_iter()
        .enumerate()
        .map(|(index, v)| EmbeddingItem {
            object: "embedding",
            embedding: if base64_format {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                Value::from(base64(&bytes))
            } else {
                serde_json::to_value(v).unwrap_or(Value::Null)
            },
            index,
        })
        .collect();
    let tokens = e.prompt_tokens;
    let list = EmbeddingList {
        object: "list",
        data,
        model,
        usage: EmbeddingUsage {
            prompt_tokens: tokens,
            total_tokens: tokens,
        },
    };
    Ok(body::json_plain(StatusCode::OK, &list))
}

#[derive(Serialize)]
struct ModelsList {
    object: &'static str,
    data: Option<Vec<OaiModel>>,
}

#[derive(Serialize)]
struct OaiModel {
    id: String,
    object: &'static str,
    created: i64,
    owned_by: String,
}

fn oai_model(id: String, entry: &crate::store::ModelEntry) -> OaiModel {
    OaiModel {
        owned_by: entry
            .model_ref()
            .map(|r| r.namespace().to_owned())
            .unwrap_or_else(|| "library".to_owned()),
        created: entry.modified_at.as_second(),
        object: "model",
        id,
    }
}

/// `GET /v1/models`. Like Ollama, `data` is `null` (not `[]`) when no model
/// is installed: Go marshals the nil slice it builds that way.
pub(crate) fn models(ctx: &Ctx) -> Response<Body> {
    let list = lock(&ctx.shared.store).list();
    let data: Option<Vec<OaiModel>> =
        (!list.is_empty()).then(|| list.iter().map(|e| oai_model(e.name.clone(), e)).collect());
    body::json_plain(
        StatusCode::OK,
        &ModelsList {
            object: "list",
            data,
        },
    )
}

/// `GET /v1/models/{model}`: `id` echoes the name as asked.
pub(crate) fn model(ctx: &Ctx, name: &str) -> Result<Response<Body>, ApiError> {
    let entry = models::find(ctx, name)?;
    Ok(body::json_plain(
        StatusCode::OK,
        &oai_model(name.to_owned(), &entry),
    ))
}
