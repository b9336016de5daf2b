//! `POST /v1/messages`, the Anthropic Messages API, as Ollama (from 0.14.0)
//! and `llama-server` serve it: `max_tokens` required, `system` as a string
//! or text blocks, content blocks `text`, `image`, `tool_use`,
//! `tool_result` and `thinking`, tools with `input_schema`; a reply is one
//! `text` or `tool_use` block; a stream is `message_start`, a `ping`, one
//! content block (`content_block_start`, deltas, `content_block_stop`),
//! `message_delta` with the stop reason and output tokens, `message_stop`,
//! each as `event: NAME` + `data: JSON`. Errors are Anthropic's
//! `{"type":"error","error":{...}}`.

use bytes::Bytes;
use futures_util::{StreamExt, stream};
use hyper::{Response, StatusCode};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::body::{self, Body, SSE};
use crate::error::ApiError;
use crate::generation::{Event, Final};
use crate::shared::Ctx;

use super::chatlike::{self, Offered, ToolCall};
use super::inference::{self, Job, Outcome};
use super::oai_node::{Naming, flag, int};

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::bad_request(msg)
}

/// One SSE event with its name.
pub(crate) fn named_event(name: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

fn check_block(b: &Value, role: &str, at: &str) -> Result<(), ApiError> {
    let kind = b.get("type").and_then(Value::as_str).unwrap_or("");
    let ok = match kind {
        "text" => b.get("text").is_some_and(Value::is_string),
        "image" => match b.pointer("/source/type").and_then(Value::as_str) {
            Some("base64") => {
                b.pointer("/source/media_type")
                    .is_some_and(Value::is_string)
                    && b.pointer("/source/data").is_some_and(Value::is_string)
            }
            Some("url") => b.pointer("/source/url").is_some_and(Value::is_string),
            _ => false,
        },
        "tool_use" => {
            role == "assistant"
                && b.get("id").is_some_and(Value::is_string)
                && b.get("name").is_some_and(Value::is_string)
                && b.get("input").is_some_and(Value::is_object)
        }
        "tool_result" => role == "user" && b.get("tool_use_id").is_some_and(Value::is_string),
        "thinking" => b.get("thinking").is_some_and(Value::is_string),
        "redacted_thinking" => true,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(bad(format!("{at}: invalid {kind:?} content block")))
    }
}

/// Checks the request; returns whether the last turn is a user's own
/// words (not a tool result).
fn check(v: &Value) -> Result<bool, ApiError> {
    match int(v, "max_tokens")? {
        Some(n) if n > 0 => {}
        _ => return Err(bad("max_tokens: Field required (a positive integer)")),
    }
    match v.get("system") {
        None | Some(Value::Null | Value::String(_)) => {}
        Some(Value::Array(blocks)) => {
            for (i, b) in blocks.iter().enumerate() {
                if b.get("type").and_then(Value::as_str) != Some("text") {
                    return Err(bad(format!("system[{i}]: only text blocks")));
                }
            }
        }
        Some(_) => return Err(bad("system: must be a string or text blocks")),
    }
    let msgs = match v.get("messages") {
        Some(Value::Array(m)) if !m.is_empty() => m,
        _ => return Err(bad("messages: must be a non-empty array")),
    };
    let mut last_is_user = false;
    for (i, m) in msgs.iter().enumerate() {
        let at = format!("messages.{i}");
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        if role != "user" && role != "assistant" {
            return Err(bad(format!("{at}.role: expected 'user' or 'assistant'")));
        }
        last_is_user = role == "user";
        match m.get("content") {
            Some(Value::String(_)) => {}
            Some(Value::Array(blocks)) => {
                for (j, b) in blocks.iter().enumerate() {
                    check_block(b, role, &format!("{at}.content.{j}"))?;
                    if b.get("type").and_then(Value::as_str) == Some("tool_result") {
                        last_is_user = false;
                    }
                }
            }
            _ => return Err(bad(format!("{at}.content: must be a string or blocks"))),
        }
    }
    Ok(last_is_user)
}

fn offered(v: &Value) -> Result<Vec<Offered<'_>>, ApiError> {
    let Some(tools) = v.get("tools").filter(|t| !t.is_null()) else {
        return Ok(Vec::new());
    };
    let tools = tools
        .as_array()
        .ok_or_else(|| bad("tools: must be an array"))?;
    tools
        .iter()
        .enumerate()
        .map(|(i, t)| match t.get("name").and_then(Value::as_str) {
            Some(name) if t.get("input_schema").is_some_and(Value::is_object) => Ok(Offered {
                name,
                parameters: t.get("input_schema"),
            }),
            _ => Err(bad(format!("tools.{i}: needs name and input_schema"))),
        })
        .collect()
}

fn stop_reason(f: &Final, tool: bool) -> &'static str {
    match (tool, f.done_reason) {
        (true, _) => "tool_use",
        (false, "length") => "max_tokens",
        _ => "end_turn",
    }
}

fn tool_block(c: &ToolCall) -> Value {
    let input: Value = serde_json::from_str(&c.arguments).unwrap_or_else(|_| json!({}));
    json!({"type": "tool_use", "id": c.id, "name": c.name, "input": input})
}

pub(crate) async fn messages(
    ctx: &Ctx,
    v: &Value,
    start: Instant,
    naming: Naming,
) -> Result<Response<Body>, ApiError> {
    let model = naming.model(ctx, v)?;
    let last_is_user = check(v)?;
    let tools = offered(v)?;
    let none = v.pointer("/tool_choice/type").and_then(Value::as_str) == Some("none");
    let tool = if none {
        None
    } else {
        chatlike::tool_call(&tools, last_is_user, "toolu_")
    };
    let stream = flag(v, "stream")?;
    let job = Job {
        model: &model,
        capability: "chat",
        empty: false,
        prompt_tokens: chatlike::prompt_tokens(v),
        num_predict: int(v, "max_tokens")?,
        keep_alive: None,
        think: false,
        start,
    };
    let Outcome::Generating(g) = inference::run(ctx, job).await? else {
        return Err(bad("nothing to generate"));
    };
    let id = chatlike::fresh_id("msg_");
    let prompt_tokens = g.prompt_tokens();
    if !stream {
        let (text, f) = g.collect().await;
        let content = match &tool {
            Some(c) => json!([tool_block(c)]),
            None => json!([{"type": "text", "text": text}]),
        };
        return Ok(body::json_plain(
            StatusCode::OK,
            &json!({
                "id": id, "type": "message", "role": "assistant", "model": model,
                "content": content, "stop_reason": stop_reason(&f, tool.is_some()),
                "stop_sequence": null,
                "usage": {"input_tokens": f.prompt_eval_count, "output_tokens": f.eval_count},
            }),
        ));
    }
    let start_block = match &tool {
        Some(c) => json!({"type": "tool_use", "id": c.id, "name": c.name, "input": {}}),
        None => json!({"type": "text", "text": ""}),
    };
    let opening = vec![
        named_event(
            "message_start",
            &json!({"type": "message_start", "message": {
                "id": id, "type": "message", "role": "assistant", "model": model, "content": [],
                "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": prompt_tokens, "output_tokens": 0},
            }}),
        ),
        named_event("ping", &json!({"type": "ping"})),
        named_event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": 0, "content_block": start_block}),
        ),
    ];
    let delta = |d: Value| {
        named_event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": 0, "delta": d}),
        )
    };
    let events = g.into_stream().flat_map(move |ev| {
        let out: Vec<Bytes> = match ev {
            Event::Token(_) if tool.is_some() => Vec::new(),
            Event::Token(t) => vec![delta(json!({"type": "text_delta", "text": t}))],
            Event::Done(f) => {
                let mut v = Vec::new();
                if let Some(c) = &tool {
                    let (a, b) = c.arguments.split_at(c.arguments.len() / 2);
                    for part in [a, b] {
                        v.push(delta(json!({"type": "input_json_delta", "partial_json": part})));
                    }
                }
                v.push(named_event(
                    "content_block_stop",
                    &json!({"type": "content_block_stop", "index": 0}),
                ));
                v.push(named_event(
                    "message_delta",
                    &json!({"type": "message_delta",
                        "delta": {"stop_reason": stop_reason(&f, tool.is_some()), "stop_sequence": null},
                        "usage": {"output_tokens": f.eval_count}}),
                ));
                v.push(named_event("message_stop", &json!({"type": "message_stop"})));
                v
            }
        };
        stream::iter(out)
    });
    Ok(body::streaming(SSE, stream::iter(opening).chain(events)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_name_the_field() {
        let cases = [
            (
                json!({"messages": [{"role": "user", "content": "x"}]}),
                "max_tokens",
            ),
            (json!({"max_tokens": 5, "messages": []}), "messages"),
            (
                json!({"max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}),
                "messages.0.role",
            ),
            (
                json!({"max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "tool_use", "id": "a", "name": "b", "input": {}}]}]}),
                "messages.0.content.0",
            ),
            (
                json!({"max_tokens": 5, "system": 3, "messages": [{"role": "user", "content": "x"}]}),
                "system",
            ),
        ];
        for (v, field) in cases {
            let e = check(&v).expect_err("invalid");
            assert!(e.message.starts_with(field), "{field}: {}", e.message);
        }
        let tool_result = json!({"max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "sunny"}]}]});
        assert_eq!(check(&tool_result).ok(), Some(false));
        let user = json!({"max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]});
        assert_eq!(check(&user).ok(), Some(true));
    }
}
