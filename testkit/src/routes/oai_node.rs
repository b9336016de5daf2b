//! OpenAI mode: the fake plays an OpenAI-compatible server as llama.cpp's
//! `llama-server` and vLLM are.
//!
//! Where they differ from Ollama's `/v1` layer: no `/api/*` and no Host or
//! CORS check; `/health`; model ids exactly as configured (an unknown one is
//! vLLM's 404, a missing one means the first, as `llama-server` serves its
//! one model); an optional API key (bearer or `x-api-key`, 401 without it);
//! errors carry the status as `code` (llama.cpp's `format_error_response`);
//! a stream opens with a role-only delta whose `content` is null; tool calls
//! are made (see [`chatlike`](super::chatlike)) with arguments streamed in
//! pieces; requests are validated strictly (tool-call arguments must be JSON
//! text, tool messages need `tool_call_id`, images must be data or http
//! URLs), so a translator that gets a field wrong meets a 400.

use bytes::Bytes;
use futures_util::{StreamExt, stream};
use hyper::body::Incoming;
use hyper::header::AUTHORIZATION;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::body::{self, Body, SSE, sse_event};
use crate::error::ApiError;
use crate::generation::{Event, Final};
use crate::shared::Ctx;
use crate::util::{base64, lock, unix_now};

use super::chatlike::{self, Offered, ToolCall};
use super::inference::{self, Job, Outcome};
use super::{anthropic, embed, read_body, responses};

const FINGERPRINT: &str = "b0-herd-testkit";
const DONE: &[u8] = b"data: [DONE]\n\n";

/// How errors look on this server's OpenAI-shaped endpoints.
fn err(e: &ApiError) -> Response<Body> {
    e.openai_coded()
}

pub(crate) async fn dispatch(ctx: Ctx, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let cfg = ctx.cfg();
    if matches!(path.as_str(), "/health" | "/v1/health") && method == Method::GET {
        return body::json_plain(StatusCode::OK, &json!({"status": "ok"}));
    }
    let messages_path = path == "/v1/messages";
    if let Some(key) = &cfg.api_key
        && !authorized(&req, key)
    {
        let e = ApiError::unauthorized();
        return if messages_path {
            e.anthropic()
        } else {
            err(&e)
        };
    }
    let post = method == Method::POST;
    let route = match path.as_str() {
        "/v1/models" | "/models" if method == Method::GET => return models(&ctx),
        "/v1/chat/completions" | "/chat/completions" if post => Kind::Chat,
        "/v1/completions" | "/completions" if post => Kind::Completions,
        "/v1/embeddings" | "/embeddings" if post => Kind::Embeddings,
        "/v1/messages" if post && cfg.serves_messages() => Kind::Messages,
        "/v1/responses" if post && cfg.serves_responses() => Kind::Responses,
        _ => return err(&ApiError::not_found("File Not Found")),
    };
    let start = Instant::now();
    let bytes = match read_body(req).await {
        Ok(b) => b,
        Err(e) => return err(&e),
    };
    lock(&ctx.shared.bodies).insert(path.clone(), bytes.clone());
    let v: Value = match serde_json::from_slice(&bytes) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => return err(&ApiError::bad_request("request body must be a JSON object")),
        Err(e) => return err(&ApiError::bad_request(format!("invalid JSON: {e}"))),
    };
    let answer = match route {
        Kind::Chat => chat(&ctx, &v, start).await,
        Kind::Completions => completions(&ctx, &v, start).await,
        Kind::Embeddings => embeddings(&ctx, &v, start).await,
        Kind::Messages => {
            return anthropic::messages(&ctx, &v, start, Naming::Ids)
                .await
                .unwrap_or_else(|e| e.anthropic());
        }
        Kind::Responses => responses::responses(&ctx, &v, start, Naming::Ids).await,
    };
    answer.unwrap_or_else(|e| err(&e))
}

enum Kind {
    Chat,
    Completions,
    Embeddings,
    Messages,
    Responses,
}

/// How a request's `model` is looked up.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Naming {
    /// Ollama names (`llama3` is `llama3:latest`), Ollama's 404.
    Ollama,
    /// Exact ids from the configured list, vLLM's 404; none means the
    /// first.
    Ids,
}

impl Naming {
    /// The model a request names, checked; the name to generate with.
    pub(crate) fn model(self, ctx: &Ctx, v: &Value) -> Result<String, ApiError> {
        let asked = match v.get("model") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(ApiError::bad_request("'model' must be a string")),
        };
        match self {
            Naming::Ollama => {
                let m = asked.unwrap_or_default();
                inference::resolve(ctx, &m, || inference::model_not_found(&m))?;
                Ok(m)
            }
            Naming::Ids => {
                let ids = lock(&ctx.shared.ids);
                match asked {
                    Some(m) if ids.contains(&m) => Ok(m),
                    Some(m) => Err(ApiError::not_found(format!(
                        "The model `{m}` does not exist."
                    ))),
                    None => ids.first().cloned().ok_or_else(|| {
                        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "Loading model")
                    }),
                }
            }
        }
    }
}

fn authorized(req: &Request<Incoming>, key: &str) -> bool {
    let h = req.headers();
    let bearer = h
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let x_api_key = h.get("x-api-key").and_then(|v| v.to_str().ok());
    bearer == Some(key) || x_api_key == Some(key)
}

fn models(ctx: &Ctx) -> Response<Body> {
    let created = unix_now();
    let data: Vec<Value> = lock(&ctx.shared.ids)
        .iter()
        .map(|id| json!({"id": id, "object": "model", "created": created, "owned_by": "llamacpp"}))
        .collect();
    body::json_plain(StatusCode::OK, &json!({"object": "list", "data": data}))
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::bad_request(msg)
}

/// An optional integer field.
pub(crate) fn int(v: &Value, field: &str) -> Result<Option<i64>, ApiError> {
    match v.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(n) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| bad(format!("'{field}' must be an integer"))),
    }
}

/// An optional boolean field.
pub(crate) fn flag(v: &Value, field: &str) -> Result<bool, ApiError> {
    match v.get(field) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(bad(format!("'{field}' must be a boolean"))),
    }
}

fn include_usage(v: &Value) -> bool {
    v.pointer("/stream_options/include_usage") == Some(&Value::Bool(true))
}

/// What a validated chat request asks for.
struct ChatAsk<'a> {
    tools: Vec<Offered<'a>>,
    last_is_user: bool,
    json: bool,
}

fn check_image_url(url: Option<&str>, at: &str) -> Result<(), ApiError> {
    match url {
        Some(u) if u.starts_with("http://") || u.starts_with("https://") => Ok(()),
        Some(u) if u.starts_with("data:") && u.contains(";base64,") => Ok(()),
        _ => Err(bad(format!(
            "{at}: image_url.url must be a data: or http(s) URL"
        ))),
    }
}

fn check_messages(v: &Value) -> Result<bool, ApiError> {
    let msgs = match v.get("messages") {
        Some(Value::Array(m)) if !m.is_empty() => m,
        _ => return Err(bad("'messages' must be a non-empty array")),
    };
    for (i, m) in msgs.iter().enumerate() {
        let at = format!("messages[{i}]");
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        if !matches!(role, "system" | "developer" | "user" | "assistant" | "tool") {
            return Err(bad(format!("{at}: invalid role {role:?}")));
        }
        match m.get("content") {
            Some(Value::String(_)) => {}
            None | Some(Value::Null) if role == "assistant" => {}
            Some(Value::Array(parts)) => {
                for (j, p) in parts.iter().enumerate() {
                    let at = format!("{at}.content[{j}]");
                    match p.get("type").and_then(Value::as_str) {
                        Some("text") if p.get("text").is_some_and(Value::is_string) => {}
                        Some("image_url") => check_image_url(
                            p.pointer("/image_url/url").and_then(Value::as_str),
                            &at,
                        )?,
                        _ => return Err(bad(format!("{at}: unsupported content part"))),
                    }
                }
            }
            _ => {
                return Err(bad(format!(
                    "{at}: content must be a string or an array of parts"
                )));
            }
        }
        if let Some(calls) = m.get("tool_calls").filter(|c| !c.is_null()) {
            let calls = calls
                .as_array()
                .ok_or_else(|| bad(format!("{at}.tool_calls must be an array")))?;
            for (j, c) in calls.iter().enumerate() {
                let at = format!("{at}.tool_calls[{j}]");
                let args = c.pointer("/function/arguments").and_then(Value::as_str);
                if c.get("id").and_then(Value::as_str).is_none()
                    || c.pointer("/function/name")
                        .and_then(Value::as_str)
                        .is_none()
                {
                    return Err(bad(format!("{at}: needs id and function.name")));
                }
                if args.is_none_or(|a| serde_json::from_str::<Value>(a).is_err()) {
                    return Err(bad(format!(
                        "{at}.function.arguments must be a string of JSON"
                    )));
                }
            }
        }
        if role == "tool" && m.get("tool_call_id").and_then(Value::as_str).is_none() {
            return Err(bad(format!("{at}: a tool message needs tool_call_id")));
        }
    }
    Ok(msgs
        .last()
        .and_then(|m| m.get("role"))
        .and_then(Value::as_str)
        == Some("user"))
}

fn check_tools(v: &Value) -> Result<Vec<Offered<'_>>, ApiError> {
    let Some(tools) = v.get("tools").filter(|t| !t.is_null()) else {
        return Ok(Vec::new());
    };
    let tools = tools
        .as_array()
        .ok_or_else(|| bad("'tools' must be an array"))?;
    tools
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let name = t.pointer("/function/name").and_then(Value::as_str);
            match (t.get("type").and_then(Value::as_str), name) {
                (Some("function"), Some(name)) => Ok(Offered {
                    name,
                    parameters: t.pointer("/function/parameters"),
                }),
                _ => Err(bad(format!(
                    "tools[{i}]: needs type \"function\" and function.name"
                ))),
            }
        })
        .collect()
}

/// Whether `response_format` asks for JSON; checks its shape.
fn json_mode(v: &Value) -> Result<bool, ApiError> {
    let Some(f) = v.get("response_format").filter(|f| !f.is_null()) else {
        return Ok(false);
    };
    match f.get("type").and_then(Value::as_str) {
        Some("text") => Ok(false),
        Some("json_object") => Ok(true),
        Some("json_schema")
            if f.pointer("/json_schema/schema")
                .is_some_and(Value::is_object) =>
        {
            Ok(true)
        }
        _ => Err(bad(
            "response_format: type must be text, json_object or json_schema with json_schema.schema",
        )),
    }
}

fn check_chat(v: &Value) -> Result<ChatAsk<'_>, ApiError> {
    let last_is_user = check_messages(v)?;
    Ok(ChatAsk {
        tools: check_tools(v)?,
        last_is_user,
        json: json_mode(v)?,
    })
}

fn usage(f: &Final) -> Value {
    json!({
        "completion_tokens": f.eval_count,
        "prompt_tokens": f.prompt_eval_count,
        "total_tokens": f.prompt_eval_count + f.eval_count,
    })
}

fn finish_reason(f: &Final, tool: bool) -> &'static str {
    if tool { "tool_calls" } else { f.done_reason }
}

async fn generation(
    ctx: &Ctx,
    model: &str,
    prompt: Vec<u64>,
    max_tokens: Option<i64>,
    start: Instant,
    capability: &'static str,
) -> Result<crate::generation::Generation, ApiError> {
    let job = Job {
        model,
        capability,
        empty: false,
        prompt_tokens: prompt.len().max(1),
        prompt,
        num_predict: max_tokens,
        keep_alive: None,
        think: false,
        start,
    };
    match inference::run(ctx, job).await? {
        Outcome::Generating(g) => Ok(g),
        Outcome::Loaded | Outcome::Unloaded => Err(bad("nothing to generate")),
    }
}

fn tool_call_json(c: &ToolCall) -> Value {
    json!({"type": "function", "function": {"name": c.name, "arguments": c.arguments}, "id": c.id})
}

async fn chat(ctx: &Ctx, v: &Value, start: Instant) -> Result<Response<Body>, ApiError> {
    let model = Naming::Ids.model(ctx, v)?;
    let ask = check_chat(v)?;
    let max_tokens = match int(v, "max_completion_tokens")? {
        Some(n) => Some(n),
        None => int(v, "max_tokens")?,
    };
    let stream = flag(v, "stream")?;
    let tool = chatlike::tool_call(&ask.tools, ask.last_is_user, "call_");
    let g = generation(ctx, &model, chatlike::prompt(v), max_tokens, start, "chat").await?;
    let n = g.n_tokens();
    let id = chatlike::fresh_id("chatcmpl-");
    let created = unix_now();
    if !stream {
        let (_, f) = g.collect().await;
        let message = match &tool {
            Some(c) => {
                json!({"role": "assistant", "content": null, "tool_calls": [tool_call_json(c)]})
            }
            None => json!({"role": "assistant", "content": chatlike::whole(n, ask.json)}),
        };
        let reply = json!({
            "choices": [{"finish_reason": finish_reason(&f, tool.is_some()), "index": 0, "message": message}],
            "created": created, "model": model, "system_fingerprint": FINGERPRINT,
            "object": "chat.completion", "usage": usage(&f), "id": id,
        });
        return Ok(body::json_plain(StatusCode::OK, &reply));
    }
    let with_usage = include_usage(v);
    let json_mode = ask.json;
    let chunk = move |choices: Value, usage: Option<Value>| {
        let mut c = json!({
            "choices": choices, "created": created, "id": id, "model": model,
            "system_fingerprint": FINGERPRINT, "object": "chat.completion.chunk",
        });
        if let Some(u) = usage {
            c["usage"] = u;
        }
        sse_event(&c)
    };
    let delta = |d: Value| json!([{"finish_reason": null, "index": 0, "delta": d}]);
    let opening = chunk(delta(json!({"role": "assistant", "content": null})), None);
    let mut i = 0;
    let events = g.into_stream().flat_map(move |ev| {
        let out: Vec<Bytes> = match ev {
            Event::Token(_) if tool.is_some() => Vec::new(),
            Event::Token(_) => {
                let t = chatlike::token(i, n, json_mode);
                i += 1;
                vec![chunk(delta(json!({"content": t})), None)]
            }
            Event::Done(f) => {
                let mut v = Vec::new();
                if let Some(c) = &tool {
                    let (a, b) = c.arguments.split_at(c.arguments.len() / 2);
                    v.push(chunk(
                        delta(json!({"tool_calls": [{"index": 0, "id": c.id, "type": "function", "function": {"name": c.name, "arguments": ""}}]})),
                        None,
                    ));
                    for part in [a, b] {
                        v.push(chunk(
                            delta(json!({"tool_calls": [{"index": 0, "function": {"arguments": part}}]})),
                            None,
                        ));
                    }
                }
                let reason = finish_reason(&f, tool.is_some());
                v.push(chunk(
                    json!([{"finish_reason": reason, "index": 0, "delta": {}}]),
                    None,
                ));
                if with_usage {
                    v.push(chunk(json!([]), Some(usage(&f))));
                }
                v.push(Bytes::from_static(DONE));
                v
            }
        };
        stream::iter(out)
    });
    Ok(body::streaming(SSE, stream::iter([opening]).chain(events)))
}

async fn completions(ctx: &Ctx, v: &Value, start: Instant) -> Result<Response<Body>, ApiError> {
    let model = Naming::Ids.model(ctx, v)?;
    let prompt = match v.get("prompt") {
        Some(Value::String(p)) => p.clone(),
        _ => return Err(bad("'prompt' must be a string")),
    };
    let max_tokens = int(v, "max_tokens")?;
    let stream = flag(v, "stream")?;
    let g = generation(
        ctx,
        &model,
        crate::generation::prompt_words([prompt.as_str()]),
        max_tokens,
        start,
        "generate",
    )
    .await?;
    let id = chatlike::fresh_id("cmpl-");
    let created = unix_now();
    let choice = |text: &str, reason: Option<&str>| json!([{"text": text, "index": 0, "logprobs": null, "finish_reason": reason}]);
    if !stream {
        let (text, f) = g.collect().await;
        let reply = json!({
            "choices": choice(&text, Some(f.done_reason)), "created": created, "model": model,
            "system_fingerprint": FINGERPRINT, "object": "text_completion", "usage": usage(&f), "id": id,
        });
        return Ok(body::json_plain(StatusCode::OK, &reply));
    }
    let with_usage = include_usage(v);
    let chunk = move |choices: Value, usage: Option<Value>| {
        let mut c = json!({
            "choices": choices, "created": created, "id": id, "model": model,
            "system_fingerprint": FINGERPRINT, "object": "text_completion",
        });
        if let Some(u) = usage {
            c["usage"] = u;
        }
        sse_event(&c)
    };
    let events = g.into_stream().flat_map(move |ev| {
        let out: Vec<Bytes> = match ev {
            Event::Token(t) => vec![chunk(choice(t, None), None)],
            Event::Done(f) => {
                let mut v = vec![chunk(choice("", Some(f.done_reason)), None)];
                if with_usage {
                    v.push(chunk(json!([]), Some(usage(&f))));
                }
                v.push(Bytes::from_static(DONE));
                v
            }
        };
        stream::iter(out)
    });
    Ok(body::streaming(SSE, events))
}

async fn embeddings(ctx: &Ctx, v: &Value, start: Instant) -> Result<Response<Body>, ApiError> {
    let model = Naming::Ids.model(ctx, v)?;
    let inputs: Vec<String> = match v.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) if !a.is_empty() => a
            .iter()
            .map(|s| s.as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .ok_or_else(|| bad("'input' must be a string or an array of strings"))?,
        _ => {
            return Err(bad(
                "'input' must be a string or a non-empty array of strings",
            ));
        }
    };
    let base64_format = match v.get("encoding_format").and_then(Value::as_str) {
        None | Some("float") => false,
        Some("base64") => true,
        Some(f) => {
            return Err(bad(format!(
                "encoding_format {f:?}: expected float or base64"
            )));
        }
    };
    let e = embed::run(ctx, &model, &inputs, int(v, "dimensions")?, None, start).await?;
    let data: Vec<Value> = e
        .vectors
        .into_iter()
        .enumerate()
        .map(|(index, vec)| {
            let embedding = if base64_format {
                let bytes: Vec<u8> = vec.iter().flat_map(|x| x.to_le_bytes()).collect();
                Value::from(base64(&bytes))
            } else {
                json!(vec)
            };
            json!({"embedding": embedding, "index": index, "object": "embedding"})
        })
        .collect();
    let tokens = e.prompt_tokens;
    Ok(body::json_plain(
        StatusCode::OK,
        &json!({
            "model": model, "object": "list",
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            "data": data,
        }),
    ))
}
