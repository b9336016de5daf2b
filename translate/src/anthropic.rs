//! Anthropic Messages (`/v1/messages`) onto chat completions and back.
//!
//! `system` becomes a system message; content blocks become message parts:
//! `text` → text, `image` → an `image_url` part (base64 as a data URL),
//! an assistant's `tool_use` → a tool call (its `input` as JSON text), a
//! user's `tool_result` → a `tool` message placed before the user's other
//! blocks, `thinking` → `reasoning_content`. Tools take `input_schema` as
//! `parameters`; `tool_choice` `auto`/`any`/`tool`/`none` →
//! `auto`/`required`/a named function/`none`;
//! `disable_parallel_tool_use` → `parallel_tool_calls: false`;
//! `stop_sequences` → `stop`; `thinking: {type: enabled|disabled}` →
//! `chat_template_kwargs.enable_thinking`. Stop reasons: `stop` →
//! `end_turn`, `length` → `max_tokens`, `tool_calls` → `tool_use`.

use serde_json::{Map, Value, json};

use crate::ollama::CHAT;
use crate::reply::{Calls, Writer};
use crate::upstream::{Up, Usage, Whole};
use crate::value::{At, Obj, arguments_text, arguments_value, objects, to_vec};
use crate::{Dialect, Plan, Reply, Timing, TranslateError, Upstream};

fn text_of_blocks(v: &Value, path: &str) -> Result<String, TranslateError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Array(blocks) => {
            let mut text = String::new();
            for (at, b) in objects(blocks, path)? {
                let a = At::new(b, &at);
                match a.str("type")? {
                    Some("text") => {
                        if !text.is_empty() {
                            text.push('\n');
                        }
                        text.push_str(a.str("text")?.unwrap_or_default());
                    }
                    _ => return Err(a.err("type", "only text blocks can be translated here")),
                }
            }
            Ok(text)
        }
        Value::Null => Ok(String::new()),
        _ => Err(TranslateError::field(
            path,
            "must be a string or text blocks",
        )),
    }
}

fn image(a: &At<'_>) -> Result<Value, TranslateError> {
    let source = a
        .object("source")?
        .ok_or_else(|| a.err("source", "is required"))?;
    let sp = format!("{}.source", a.path);
    let s = At::new(source, &sp);
    let url = match s.str("type")? {
        Some("base64") => format!(
            "data:{};base64,{}",
            s.required_str("media_type")?,
            s.required_str("data")?
        ),
        Some("url") => s.required_str("url")?.to_owned(),
        _ => return Err(s.err("type", "must be base64 or url")),
    };
    Ok(json!({"type": "image_url", "image_url": {"url": url}}))
}

/// One Anthropic message as one or more chat messages.
fn message(at: &str, m: &Obj, out: &mut Vec<Value>) -> Result<(), TranslateError> {
    let a = At::new(m, at);
    let role = a.required_str("role")?;
    if role != "user" && role != "assistant" {
        return Err(a.err("role", "must be user or assistant"));
    }
    let blocks = match a.get("content") {
        Some(Value::String(s)) => {
            out.push(json!({"role": role, "content": s}));
            return Ok(());
        }
        Some(Value::Array(b)) => b,
        _ => return Err(a.err("content", "must be a string or a list of blocks")),
    };
    let mut parts = Vec::new();
    let mut calls = Vec::new();
    let mut thinking = String::new();
    let path = format!("{at}.content");
    for (bat, b) in objects(blocks, &path)? {
        let ba = At::new(b, &bat);
        match (role, ba.required_str("type")?) {
            (_, "text") => parts.push(json!({"type": "text", "text": ba.str("text")?.unwrap_or_default()})),
            ("user", "image") => parts.push(image(&ba)?),
            ("assistant", "tool_use") => calls.push(json!({
                "id": ba.required_str("id")?,
                "type": "function",
                "function": {"name": ba.required_str("name")?, "arguments": arguments_text(ba.get("input"))},
            })),
            ("user", "tool_result") => {
                let id = ba.required_str("tool_use_id")?;
                let cp = format!("{bat}.content");
                let mut text = text_of_blocks(ba.get("content").unwrap_or(&Value::Null), &cp)?;
                if ba.bool("is_error")? == Some(true) {
                    text.insert_str(0, "Error: ");
                }
                out.push(json!({"role": "tool", "tool_call_id": id, "content": text}));
            }
            ("assistant", "thinking") => thinking.push_str(ba.str("thinking")?.unwrap_or_default()),
            (_, "redacted_thinking") => {}
            (_, other) => {
                return Err(ba.err("type", &format!("a {role} message cannot carry a {other:?} block")));
            }
        }
    }
    if role == "assistant" {
        let text: String = parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect();
        let mut msg = Map::new();
        msg.insert("role".into(), "assistant".into());
        msg.insert(
            "content".into(),
            if text.is_empty() && !calls.is_empty() {
                Value::Null
            } else {
                text.into()
            },
        );
        if !calls.is_empty() {
            msg.insert("tool_calls".into(), Value::Array(calls));
        }
        if !thinking.is_empty() {
            msg.insert("reasoning_content".into(), thinking.into());
        }
        out.push(Value::Object(msg));
    } else if !parts.is_empty() {
        out.push(json!({"role": "user", "content": parts}));
    }
    Ok(())
}

fn tools(top: &At<'_>, out: &mut Obj) -> Result<(), TranslateError> {
    // OpenAI refuses `tool_choice` without tools, so both go or neither.
    let Some(tools) = top.array("tools")?.filter(|t| !t.is_empty()) else {
        return Ok(());
    };
    let mut mapped = Vec::new();
    for (at, t) in objects(tools, "tools")? {
        let a = At::new(t, &at);
        let schema = a.object("input_schema")?.ok_or_else(|| {
            a.err(
                "input_schema",
                "is required (only custom tools can be translated)",
            )
        })?;
        let mut f = Map::new();
        f.insert("name".into(), a.required_str("name")?.into());
        if let Some(d) = a.str("description")? {
            f.insert("description".into(), d.into());
        }
        f.insert("parameters".into(), Value::Object(schema.clone()));
        mapped.push(json!({"type": "function", "function": f}));
    }
    if !mapped.is_empty() {
        out.insert("tools".into(), Value::Array(mapped));
    }
    if let Some(choice) = top.object("tool_choice")? {
        let c = At::new(choice, "tool_choice");
        let mapped = match c.required_str("type")? {
            "auto" => json!("auto"),
            "any" => json!("required"),
            "none" => json!("none"),
            "tool" => json!({"type": "function", "function": {"name": c.required_str("name")?}}),
            _ => return Err(c.err("type", "must be auto, any, tool or none")),
        };
        out.insert("tool_choice".into(), mapped);
        if c.bool("disable_parallel_tool_use")? == Some(true) {
            out.insert("parallel_tool_calls".into(), false.into());
        }
    }
    Ok(())
}

pub(crate) fn request(v: &Obj) -> Result<Plan, TranslateError> {
    let top = At::new(v, "");
    let model = top.required_str("model")?;
    let max_tokens = top
        .int("max_tokens")?
        .filter(|n| *n > 0)
        .ok_or_else(|| top.err("max_tokens", "is required and must be positive"))?;
    let mut msgs = Vec::new();
    if let Some(system) = top.get("system") {
        let text = text_of_blocks(system, "system")?;
        if !text.is_empty() {
            msgs.push(json!({"role": "system", "content": text}));
        }
    }
    let given = top
        .array("messages")?
        .filter(|m| !m.is_empty())
        .ok_or_else(|| top.err("messages", "must be a non-empty list"))?;
    for (at, m) in objects(given, "messages")? {
        message(&at, m, &mut msgs)?;
    }
    let mut out = Map::new();
    out.insert("model".into(), model.into());
    out.insert("messages".into(), Value::Array(msgs));
    out.insert("max_tokens".into(), max_tokens.into());
    for key in ["temperature", "top_p"] {
        if let Some(n) = top.number(key)? {
            out.insert(key.into(), Value::Number(n.clone()));
        }
    }
    if let Some(n) = top.int("top_k")? {
        out.insert("top_k".into(), n.into());
    }
    if let Some(stop) = top.array("stop_sequences")? {
        if !stop.iter().all(Value::is_string) {
            return Err(top.err("stop_sequences", "must be a list of strings"));
        }
        if !stop.is_empty() {
            out.insert("stop".into(), Value::Array(stop.clone()));
        }
    }
    tools(&top, &mut out)?;
    if let Some(t) = top.object("thinking")? {
        let on = match At::new(t, "thinking").required_str("type")? {
            "enabled" | "adaptive" => true,
            "disabled" => false,
            _ => {
                return Err(TranslateError::field(
                    "thinking.type",
                    "must be enabled or disabled",
                ));
            }
        };
        out.insert(
            "chat_template_kwargs".into(),
            json!({"enable_thinking": on}),
        );
    }
    let stream = top.bool("stream")?.unwrap_or(false);
    out.insert("stream".into(), stream.into());
    if stream {
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    Ok(Plan::Forward(
        Upstream {
            path: CHAT,
            body: to_vec(&out),
            stream,
            model: model.to_owned(),
        },
        Reply::new(Dialect::AnthropicMessages, model, stream),
    ))
}

fn stop_reason(finish: &str) -> &'static str {
    match finish {
        "length" => "max_tokens",
        "tool_calls" | "function_call" => "tool_use",
        _ => "end_turn",
    }
}

/// `msg_…` from the node's id (or a fixed one when it sent none).
fn message_id(id: &str) -> String {
    let id = id.strip_prefix("chatcmpl-").unwrap_or(id);
    if id.is_empty() {
        "msg_herd".to_owned()
    } else {
        format!("msg_{id}")
    }
}

pub(crate) fn whole(reply: &Reply, w: &Whole) -> Vec<u8> {
    let mut content = Vec::new();
    if !w.reasoning.is_empty() {
        content.push(json!({"type": "thinking", "thinking": w.reasoning, "signature": ""}));
    }
    if !w.text.is_empty() || w.tool_calls.is_empty() {
        content.push(json!({"type": "text", "text": w.text}));
    }
    for c in &w.tool_calls {
        content.push(json!({"type": "tool_use", "id": c.id, "name": c.name, "input": arguments_value(&c.arguments)}));
    }
    to_vec(&json!({
        "id": message_id(&w.id),
        "type": "message",
        "role": "assistant",
        "model": reply.model,
        "content": content,
        "stop_reason": stop_reason(&w.finish),
        "stop_sequence": null,
        "usage": {"input_tokens": w.usage.prompt, "output_tokens": w.usage.completion},
    }))
}

fn event(name: &str, data: &Value, out: &mut Vec<u8>) {
    out.extend_from_slice(format!("event: {name}\ndata: {data}\n\n").as_bytes());
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Thinking,
    Text,
    /// A tool call, by its position among the calls.
    Tool(usize),
}

/// Anthropic's event stream from the node's chunks: `message_start` at the
/// first chunk, a content block per kind of delta (thinking, text, each
/// tool call), and `message_delta` + `message_stop` once the node's usage
/// is in (at `[DONE]`, or at the end of its body).
#[derive(Debug)]
pub(crate) struct Stream {
    reply: Reply,
    started: bool,
    open: Option<Block>,
    index: usize,
    calls: Calls,
    finish: Option<String>,
    usage: Usage,
    done: bool,
    failed: bool,
}

impl Stream {
    pub(crate) fn new(reply: Reply) -> Stream {
        Stream {
            reply,
            started: false,
            open: None,
            index: 0,
            calls: Calls::default(),
            finish: None,
            usage: Usage::default(),
            done: false,
            failed: false,
        }
    }

    fn start(&mut self, id: &str, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        let message = json!({
            "id": message_id(id), "type": "message", "role": "assistant", "model": self.reply.model,
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        });
        event(
            "message_start",
            &json!({"type": "message_start", "message": message}),
            out,
        );
    }

    fn close(&mut self, out: &mut Vec<u8>) {
        if self.open.take().is_some() {
            event(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": self.index}),
                out,
            );
            self.index += 1;
        }
    }

    /// Makes `block` the open one, closing another first.
    fn open(&mut self, block: Block, start: Value, out: &mut Vec<u8>) {
        if self.open == Some(block) {
            return;
        }
        self.close(out);
        self.open = Some(block);
        event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": self.index, "content_block": start}),
            out,
        );
    }

    fn delta(&self, delta: Value, out: &mut Vec<u8>) {
        event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": self.index, "delta": delta}),
            out,
        );
    }

    fn end(&mut self, out: &mut Vec<u8>) {
        self.start("", out);
        self.close(out);
        let reason = stop_reason(self.finish.as_deref().unwrap_or("stop"));
        event(
            "message_delta",
            &json!({"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": null},
                "usage": {"input_tokens": self.usage.prompt, "output_tokens": self.usage.completion}}),
            out,
        );
        event("message_stop", &json!({"type": "message_stop"}), out);
        self.done = true;
    }
}

/// Anthropic's error event, for a stream that fails after it began.
fn error_event(message: &str, out: &mut Vec<u8>) {
    event(
        "error",
        &json!({"type": "error", "error": {"type": "api_error", "message": message}}),
        out,
    );
}

impl Writer for Stream {
    fn event(&mut self, up: Up, out: &mut Vec<u8>) {
        if self.done || self.failed {
            return;
        }
        match up {
            Up::Meta { id, .. } => self.start(&id, out),
            Up::Reasoning(r) => {
                self.start("", out);
                self.open(
                    Block::Thinking,
                    json!({"type": "thinking", "thinking": "", "signature": ""}),
                    out,
                );
                self.delta(json!({"type": "thinking_delta", "thinking": r}), out);
            }
            Up::Text(t) => {
                self.start("", out);
                self.open(Block::Text, json!({"type": "text", "text": ""}), out);
                self.delta(json!({"type": "text_delta", "text": t}), out);
            }
            Up::Tool {
                index,
                id,
                name,
                arguments,
            } => {
                self.start("", out);
                let (pos, _) = self.calls.add(index, id, name, "");
                let c = &self.calls.calls[pos];
                let start = json!({"type": "tool_use", "id": c.id, "name": c.name, "input": {}});
                self.open(Block::Tool(pos), start, out);
                self.calls.calls[pos].arguments.push_str(&arguments);
                if !arguments.is_empty() {
                    self.delta(
                        json!({"type": "input_json_delta", "partial_json": arguments}),
                        out,
                    );
                }
            }
            Up::Finish(f) => self.finish = Some(f),
            Up::Usage(u) => self.usage = u,
            Up::Timings(_) => {}
            Up::Error(m) => {
                self.failed = true;
                error_event(&m, out);
            }
            Up::Done => self.end(out),
        }
    }

    fn finish(&mut self, _timing: Timing, out: &mut Vec<u8>) {
        if self.done || self.failed {
            return;
        }
        if self.finish.is_some() {
            self.end(out);
        } else {
            self.failed = true;
            error_event("the node's stream ended before the reply was complete", out);
        }
    }

    fn ended(&self) -> bool {
        self.done || self.failed
    }
}

#[cfg(test)]
#[path = "anthropic_tests.rs"]
mod tests;
