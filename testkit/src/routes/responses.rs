//! `POST /v1/responses`, the OpenAI Responses API, stateless, as Ollama
//! (from 0.13.3) and `llama-server` serve it: `input` as a string or items
//! (messages with `input_text`/`input_image`/`output_text` parts,
//! `function_call`, `function_call_output`), `instructions`, function tools
//! in the flat Responses shape, `max_output_tokens`, `text.format`;
//! `previous_response_id` is refused (nothing is stored). A reply is one
//! `message` or `function_call` output item; a stream is the typed events
//! from `response.created` to `response.completed`, each with its
//! `sequence_number`.

use bytes::Bytes;
use futures_util::{StreamExt, stream};
use hyper::{Response, StatusCode};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::body::{self, Body, SSE};
use crate::error::ApiError;
use crate::generation::{Event, Final};
use crate::shared::Ctx;
use crate::util::unix_now;

use super::anthropic::named_event;
use super::chatlike::{self, Offered, ToolCall};
use super::inference::{self, Job, Outcome};
use super::oai_node::{Naming, flag, int};

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::bad_request(msg)
}

/// The error shape of this endpoint on each server.
fn render(naming: Naming, e: &ApiError) -> Response<Body> {
    match naming {
        Naming::Ollama => e.openai(),
        Naming::Ids => e.openai_coded(),
    }
}

fn check_part(p: &Value, at: &str) -> Result<(), ApiError> {
    let ok = match p.get("type").and_then(Value::as_str) {
        Some("input_text" | "output_text") => p.get("text").is_some_and(Value::is_string),
        Some("input_image") => p
            .get("image_url")
            .and_then(Value::as_str)
            .is_some_and(|u| u.starts_with("data:") || u.starts_with("http")),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(bad(format!("{at}: invalid content part")))
    }
}

/// Checks `input`; returns whether the last item is the user's message.
fn check_input(v: &Value) -> Result<bool, ApiError> {
    let items = match v.get("input") {
        Some(Value::String(_)) => return Ok(true),
        Some(Value::Array(items)) if !items.is_empty() => items,
        _ => return Err(bad("input: must be a string or a non-empty array of items")),
    };
    let mut last_is_user = false;
    for (i, item) in items.iter().enumerate() {
        let at = format!("input[{i}]");
        let kind = item
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("message");
        last_is_user = false;
        match kind {
            "message" => {
                let role = item.get("role").and_then(Value::as_str).unwrap_or("");
                if !matches!(role, "user" | "assistant" | "system" | "developer") {
                    return Err(bad(format!("{at}.role: invalid role {role:?}")));
                }
                last_is_user = role == "user";
                match item.get("content") {
                    Some(Value::String(_)) => {}
                    Some(Value::Array(parts)) => {
                        for (j, p) in parts.iter().enumerate() {
                            check_part(p, &format!("{at}.content[{j}]"))?;
                        }
                    }
                    _ => return Err(bad(format!("{at}.content: must be a string or parts"))),
                }
            }
            "function_call" => {
                let args = item.get("arguments").and_then(Value::as_str);
                if item.get("call_id").and_then(Value::as_str).is_none()
                    || item.get("name").and_then(Value::as_str).is_none()
                    || args.is_none_or(|a| serde_json::from_str::<Value>(a).is_err())
                {
                    return Err(bad(format!(
                        "{at}: function_call needs call_id, name and arguments as JSON text"
                    )));
                }
            }
            "function_call_output" => {
                if item.get("call_id").and_then(Value::as_str).is_none()
                    || item.get("output").is_none()
                {
                    return Err(bad(format!(
                        "{at}: function_call_output needs call_id and output"
                    )));
                }
            }
            "reasoning" => {}
            other => return Err(bad(format!("{at}.type: unsupported item type {other:?}"))),
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
        .map(|(i, t)| {
            match (
                t.get("type").and_then(Value::as_str),
                t.get("name").and_then(Value::as_str),
            ) {
                (Some("function"), Some(name)) => Ok(Offered {
                    name,
                    parameters: t.get("parameters"),
                }),
                _ => Err(bad(format!("tools[{i}]: needs type \"function\" and name"))),
            }
        })
        .collect()
}

fn json_mode(v: &Value) -> Result<bool, ApiError> {
    match v.pointer("/text/format/type").and_then(Value::as_str) {
        None | Some("text") => Ok(false),
        Some("json_object") => Ok(true),
        Some("json_schema")
            if v.pointer("/text/format/schema")
                .is_some_and(Value::is_object) =>
        {
            Ok(true)
        }
        Some(_) => Err(bad(
            "text.format: type must be text, json_object or json_schema with schema",
        )),
    }
}

struct Out {
    id: String,
    model: String,
    created: i64,
    item_id: String,
    tool: Option<ToolCall>,
}

impl Out {
    fn item(&self, text: &str, done: bool) -> Value {
        let status = if done { "completed" } else { "in_progress" };
        match &self.tool {
            Some(c) => json!({
                "type": "function_call", "id": self.item_id, "call_id": c.id, "name": c.name,
                "arguments": if done { c.arguments.as_str() } else { "" }, "status": status,
            }),
            None => json!({
                "type": "message", "id": self.item_id, "status": status, "role": "assistant",
                "content": if done || !text.is_empty() {
                    json!([{"type": "output_text", "text": text, "annotations": []}])
                } else {
                    json!([])
                },
            }),
        }
    }

    fn response(&self, f: Option<&Final>, text: &str) -> Value {
        let (status, incomplete) = match f.map(|f| f.done_reason) {
            None => ("in_progress", Value::Null),
            Some("length") => ("incomplete", json!({"reason": "max_output_tokens"})),
            Some(_) => ("completed", Value::Null),
        };
        let output = if f.is_some() {
            json!([self.item(text, true)])
        } else {
            json!([])
        };
        let usage = f.map_or(Value::Null, |f| {
            json!({
                "input_tokens": f.prompt_eval_count, "output_tokens": f.eval_count,
                "total_tokens": f.prompt_eval_count + f.eval_count,
            })
        });
        json!({
            "id": self.id, "object": "response", "created_at": self.created, "status": status,
            "model": self.model, "output": output, "incomplete_details": incomplete,
            "usage": usage, "error": null,
        })
    }
}

pub(crate) async fn responses(
    ctx: &Ctx,
    v: &Value,
    start: Instant,
    naming: Naming,
) -> Result<Response<Body>, ApiError> {
    match run(ctx, v, start, naming).await {
        Ok(r) => Ok(r),
        Err(e) => Ok(render(naming, &e)),
    }
}

async fn run(
    ctx: &Ctx,
    v: &Value,
    start: Instant,
    naming: Naming,
) -> Result<Response<Body>, ApiError> {
    let model = naming.model(ctx, v)?;
    if v.get("previous_response_id").is_some_and(|p| !p.is_null()) {
        return Err(bad(
            "previous_response_id is not supported: responses are not stored",
        ));
    }
    let last_is_user = check_input(v)?;
    let tools = offered(v)?;
    let json = json_mode(v)?;
    let stream = flag(v, "stream")?;
    let job = Job {
        model: &model,
        capability: "chat",
        empty: false,
        prompt_tokens: chatlike::prompt_tokens(v),
        num_predict: int(v, "max_output_tokens")?,
        keep_alive: None,
        think: false,
        start,
    };
    let Outcome::Generating(g) = inference::run(ctx, job).await? else {
        return Err(bad("nothing to generate"));
    };
    let n = g.n_tokens();
    let tool = chatlike::tool_call(&tools, last_is_user, "call_");
    let out = Out {
        id: chatlike::fresh_id("resp_"),
        model,
        created: unix_now(),
        item_id: chatlike::fresh_id(if tool.is_some() { "fc_" } else { "msg_" }),
        tool,
    };
    if !stream {
        let (_, f) = g.collect().await;
        let text = chatlike::whole(n, json);
        return Ok(body::json_plain(
            StatusCode::OK,
            &out.response(Some(&f), &text),
        ));
    }
    let mut seq = 0u64;
    let mut event = move |kind: &str, mut data: Value| {
        data["type"] = Value::from(kind);
        data["sequence_number"] = Value::from(seq);
        seq += 1;
        named_event(kind, &data)
    };
    let mut opening = vec![
        event(
            "response.created",
            json!({"response": out.response(None, "")}),
        ),
        event(
            "response.in_progress",
            json!({"response": out.response(None, "")}),
        ),
        event(
            "response.output_item.added",
            json!({"output_index": 0, "item": out.item("", false)}),
        ),
    ];
    if out.tool.is_none() {
        opening.push(event(
            "response.content_part.added",
            json!({"item_id": out.item_id, "output_index": 0, "content_index": 0,
                "part": {"type": "output_text", "text": "", "annotations": []}}),
        ));
    }
    let mut i = 0;
    let mut text = String::new();
    let events = g.into_stream().flat_map(move |ev| {
        let items: Vec<Bytes> = match ev {
            Event::Token(_) if out.tool.is_some() => Vec::new(),
            Event::Token(_) => {
                let t = chatlike::token(i, n, json);
                i += 1;
                text.push_str(&t);
                vec![event(
                    "response.output_text.delta",
                    json!({"item_id": out.item_id, "output_index": 0, "content_index": 0, "delta": t}),
                )]
            }
            Event::Done(f) => {
                let mut v = Vec::new();
                if let Some(c) = &out.tool {
                    v.push(event(
                        "response.function_call_arguments.delta",
                        json!({"item_id": out.item_id, "output_index": 0, "delta": c.arguments}),
                    ));
                    v.push(event(
                        "response.function_call_arguments.done",
                        json!({"item_id": out.item_id, "output_index": 0, "arguments": c.arguments}),
                    ));
                } else {
                    v.push(event(
                        "response.output_text.done",
                        json!({"item_id": out.item_id, "output_index": 0, "content_index": 0, "text": text}),
                    ));
                    v.push(event(
                        "response.content_part.done",
                        json!({"item_id": out.item_id, "output_index": 0, "content_index": 0,
                            "part": {"type": "output_text", "text": text, "annotations": []}}),
                    ));
                }
                v.push(event(
                    "response.output_item.done",
                    json!({"output_index": 0, "item": out.item(&text, true)}),
                ));
                let last = if f.done_reason == "length" {
                    "response.incomplete"
                } else {
                    "response.completed"
                };
                v.push(event(last, json!({"response": out.response(Some(&f), &text)})));
                v
            }
        };
        stream::iter(items)
    });
    Ok(body::streaming(SSE, stream::iter(opening).chain(events)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_checks_name_the_item() {
        let cases = [
            (json!({"input": []}), "input"),
            (
                json!({"input": [{"role": "robot", "content": "x"}]}),
                "input[0].role",
            ),
            (
                json!({"input": [{"role": "user", "content": [{"type": "input_text"}]}]}),
                "input[0].content[0]",
            ),
            (
                json!({"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": {}}]}),
                "input[0]",
            ),
            (
                json!({"input": [{"type": "web_search_call"}]}),
                "input[0].type",
            ),
        ];
        for (v, field) in cases {
            let e = check_input(&v).expect_err("invalid");
            assert!(e.message.starts_with(field), "{field}: {}", e.message);
        }
        let after_tool = json!({"input": [
            {"role": "user", "content": "weather?"},
            {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c", "output": "sunny"},
        ]});
        assert_eq!(check_input(&after_tool).ok(), Some(false));
        assert_eq!(check_input(&json!({"input": "hi"})).ok(), Some(true));
    }
}
