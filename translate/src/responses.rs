//! OpenAI Responses (`/v1/responses`, stateless) onto chat completions and
//! back.
//!
//! `instructions` becomes a system message; `input` (a string, or items:
//! messages with `input_text`/`input_image`/`output_text` parts,
//! `function_call`, `function_call_output`) becomes chat messages, with
//! consecutive function calls gathered into one assistant message; function
//! tools (flat in Responses) are nested under `function`; other tool types
//! are refused; `max_output_tokens` → `max_tokens`; `text.format` →
//! `response_format`; `reasoning.effort` → `reasoning_effort`;
//! `previous_response_id` is refused, since nothing is stored.

use serde_json::{Map, Value, json};

use crate::ollama::CHAT;
use crate::reply::{Calls, Writer};
use crate::upstream::{Up, Usage, Whole};
use crate::value::{At, Obj, objects, to_vec};
use crate::{Dialect, Plan, Reply, Timing, TranslateError, Upstream};

fn parts(content: &Value, path: &str, role: &str) -> Result<Value, TranslateError> {
    let items = match content {
        Value::String(s) => return Ok(Value::from(s.as_str())),
        Value::Array(items) => items,
        _ => {
            return Err(TranslateError::field(
                path,
                "must be a string or a list of parts",
            ));
        }
    };
    let mut out = Vec::new();
    for (at, p) in objects(items, path)? {
        let a = At::new(p, &at);
        match a.required_str("type")? {
            "input_text" | "output_text" | "text" | "refusal" => {
                let key = if a.get("refusal").is_some() {
                    "refusal"
                } else {
                    "text"
                };
                out.push(json!({"type": "text", "text": a.str(key)?.unwrap_or_default()}));
            }
            "input_image" => {
                let url = a.str("image_url")?.ok_or_else(|| {
                    a.err("image_url", "is required (file ids cannot be translated)")
                })?;
                out.push(json!({"type": "image_url", "image_url": {"url": url}}));
            }
            other => return Err(a.err("type", &format!("{other:?} parts cannot be translated"))),
        }
    }
    if role == "assistant" || role == "system" || role == "developer" {
        // Only user messages take parts everywhere; join the others' text.
        let text: String = out
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect();
        return Ok(Value::from(text));
    }
    Ok(Value::Array(out))
}

fn input(top: &At<'_>, msgs: &mut Vec<Value>) -> Result<(), TranslateError> {
    let items = match top.get("input") {
        Some(Value::String(s)) => {
            msgs.push(json!({"role": "user", "content": s}));
            return Ok(());
        }
        Some(Value::Array(items)) if !items.is_empty() => items,
        _ => return Err(top.err("input", "must be a string or a non-empty list of items")),
    };
    for (at, item) in objects(items, "input")? {
        let a = At::new(item, &at);
        match a.str("type")?.unwrap_or("message") {
            "message" => {
                let role = a.required_str("role")?;
                if !matches!(role, "user" | "assistant" | "system" | "developer") {
                    return Err(a.err("role", "must be user, assistant, system or developer"));
                }
                let content = a
                    .get("content")
                    .ok_or_else(|| a.err("content", "is required"))?;
                let path = format!("{at}.content");
                let role = if role == "developer" { "system" } else { role };
                msgs.push(json!({"role": role, "content": parts(content, &path, role)?}));
            }
            "function_call" => {
                let call = json!({
                    "id": a.required_str("call_id")?,
                    "type": "function",
                    "function": {"name": a.required_str("name")?, "arguments": a.str("arguments")?.unwrap_or("{}")},
                });
                let merge = msgs.last_mut().filter(|m| {
                    m.get("role") == Some(&Value::from("assistant"))
                        && m.get("tool_calls").is_some()
                });
                match merge
                    .and_then(|m| m.get_mut("tool_calls"))
                    .and_then(Value::as_array_mut)
                {
                    Some(calls) => calls.push(call),
                    None => msgs
                        .push(json!({"role": "assistant", "content": null, "tool_calls": [call]})),
                }
            }
            "function_call_output" => {
                let output = match a.get("output") {
                    Some(Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                    None => return Err(a.err("output", "is required")),
                };
                msgs.push(json!({"role": "tool", "tool_call_id": a.required_str("call_id")?, "content": output}));
            }
            "reasoning" => {}
            other => return Err(a.err("type", &format!("{other:?} items cannot be translated"))),
        }
    }
    Ok(())
}

fn tools(top: &At<'_>, out: &mut Obj) -> Result<(), TranslateError> {
    if let Some(tools) = top.array("tools")? {
        let mut mapped = Vec::new();
        for (at, t) in objects(tools, "tools")? {
            let a = At::new(t, &at);
            if a.str("type")? != Some("function") {
                return Err(a.err("type", "only function tools can be translated"));
            }
            let mut f = Map::new();
            f.insert("name".into(), a.required_str("name")?.into());
            for key in ["description", "parameters", "strict"] {
                if let Some(v) = a.get(key) {
                    f.insert(key.into(), v.clone());
                }
            }
            mapped.push(json!({"type": "function", "function": f}));
        }
        if !mapped.is_empty() {
            out.insert("tools".into(), Value::Array(mapped));
        }
    }
    match top.get("tool_choice") {
        None => {}
        Some(Value::String(s)) if matches!(s.as_str(), "auto" | "none" | "required") => {
            out.insert("tool_choice".into(), s.as_str().into());
        }
        Some(Value::Object(c)) if c.get("type") == Some(&Value::from("function")) => {
            let name = At::new(c, "tool_choice").required_str("name")?;
            out.insert(
                "tool_choice".into(),
                json!({"type": "function", "function": {"name": name}}),
            );
        }
        Some(_) => return Err(top.err("tool_choice", "must be auto, none, required or a function")),
    }
    if let Some(p) = top.bool("parallel_tool_calls")? {
        out.insert("parallel_tool_calls".into(), p.into());
    }
    Ok(())
}

fn text_format(top: &At<'_>, out: &mut Obj) -> Result<(), TranslateError> {
    let Some(text) = top.object("text")? else {
        return Ok(());
    };
    let Some(format) = At::new(text, "text").object("format")? else {
        return Ok(());
    };
    let f = At::new(format, "text.format");
    let mapped = match f.required_str("type")? {
        "text" => return Ok(()),
        "json_object" => json!({"type": "json_object"}),
        "json_schema" => {
            let schema = f
                .object("schema")?
                .ok_or_else(|| f.err("schema", "is required"))?;
            let mut js = Map::new();
            js.insert("name".into(), f.str("name")?.unwrap_or("response").into());
            js.insert("schema".into(), Value::Object(schema.clone()));
            if let Some(s) = f.bool("strict")? {
                js.insert("strict".into(), s.into());
            }
            json!({"type": "json_schema", "json_schema": js})
        }
        _ => return Err(f.err("type", "must be text, json_object or json_schema")),
    };
    out.insert("response_format".into(), mapped);
    Ok(())
}

pub(crate) fn request(v: &Obj) -> Result<Plan, TranslateError> {
    let top = At::new(v, "");
    let model = top.required_str("model")?;
    if top.get("previous_response_id").is_some() {
        return Err(top.err(
            "previous_response_id",
            "is not supported: responses are not stored, send the whole conversation",
        ));
    }
    let mut msgs = Vec::new();
    if let Some(i) = top.str("instructions")?.filter(|i| !i.is_empty()) {
        msgs.push(json!({"role": "system", "content": i}));
    }
    input(&top, &mut msgs)?;
    let mut out = Map::new();
    out.insert("model".into(), model.into());
    out.insert("messages".into(), Value::Array(msgs));
    if let Some(n) = top.int("max_output_tokens")? {
        out.insert("max_tokens".into(), n.into());
    }
    for key in ["temperature", "top_p"] {
        if let Some(n) = top.number(key)? {
            out.insert(key.into(), Value::Number(n.clone()));
        }
    }
    if let Some(effort) = top
        .object("reasoning")?
        .and_then(|r| r.get("effort"))
        .and_then(Value::as_str)
    {
        out.insert("reasoning_effort".into(), effort.into());
    }
    tools(&top, &mut out)?;
    text_format(&top, &mut out)?;
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
        Reply::new(Dialect::OpenAiResponses, model, stream),
    ))
}

fn ids(node_id: &str) -> (String, String) {
    let id = node_id.strip_prefix("chatcmpl-").unwrap_or(node_id);
    let id = if id.is_empty() { "herd" } else { id };
    (format!("resp_{id}"), format!("msg_{id}"))
}

fn usage(u: Usage) -> Value {
    json!({
        "input_tokens": u.prompt, "output_tokens": u.completion, "total_tokens": u.prompt + u.completion,
        "input_tokens_details": {"cached_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 0},
    })
}

fn message_item(id: &str, text: &str, status: &str) -> Value {
    json!({"type": "message", "id": id, "status": status, "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}]})
}

fn call_item(c: &crate::upstream::ToolCall, status: &str) -> Value {
    json!({"type": "function_call", "id": format!("fc_{}", c.id), "call_id": c.id, "name": c.name,
        "arguments": c.arguments, "status": status})
}

fn reasoning_item(id: &str, text: &str) -> Value {
    json!({"type": "reasoning", "id": format!("rs_{id}"), "summary": [],
        "content": [{"type": "reasoning_text", "text": text}]})
}

/// The response object; `finish` is `None` while it is in progress.
fn response(
    reply: &Reply,
    id: &str,
    created: i64,
    finish: Option<&str>,
    output: Vec<Value>,
    u: Option<Usage>,
) -> Value {
    let (status, incomplete) = match finish {
        None => ("in_progress", Value::Null),
        Some("length") => ("incomplete", json!({"reason": "max_output_tokens"})),
        Some(_) => ("completed", Value::Null),
    };
    json!({
        "id": id, "object": "response", "created_at": created, "status": status, "model": reply.model,
        "output": output, "incomplete_details": incomplete, "error": null,
        "usage": u.map_or(Value::Null, usage), "parallel_tool_calls": true, "tool_choice": "auto", "tools": [],
    })
}

pub(crate) fn whole(reply: &Reply, w: &Whole) -> Vec<u8> {
    let (id, msg_id) = ids(&w.id);
    let mut output = Vec::new();
    if !w.reasoning.is_empty() {
        output.push(reasoning_item(&msg_id, &w.reasoning));
    }
    if !w.text.is_empty() || w.tool_calls.is_empty() {
        output.push(message_item(&msg_id, &w.text, "completed"));
    }
    output.extend(w.tool_calls.iter().map(|c| call_item(c, "completed")));
    to_vec(&response(
        reply,
        &id,
        w.created,
        Some(&w.finish),
        output,
        Some(w.usage),
    ))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Item {
    Reasoning,
    Message,
    Call(usize),
}

/// The Responses event stream: `response.created` and
/// `response.in_progress` at the first chunk; per output item its `added`,
/// deltas and `done` events; `response.completed` (or
/// `response.incomplete`) with usage at the node's `[DONE]`.
#[derive(Debug)]
pub(crate) struct Stream {
    reply: Reply,
    id: String,
    msg_id: String,
    created: i64,
    seq: u64,
    started: bool,
    open: Option<Item>,
    output: Vec<Value>,
    text: String,
    reasoning: String,
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
            id: String::new(),
            msg_id: String::new(),
            created: 0,
            seq: 0,
            started: false,
            open: None,
            output: Vec::new(),
            text: String::new(),
            reasoning: String::new(),
            calls: Calls::default(),
            finish: None,
            usage: Usage::default(),
            done: false,
            failed: false,
        }
    }

    fn emit(&mut self, kind: &str, mut data: Value, out: &mut Vec<u8>) {
        data["type"] = kind.into();
        data["sequence_number"] = self.seq.into();
        self.seq += 1;
        out.extend_from_slice(format!("event: {kind}\ndata: {data}\n\n").as_bytes());
    }

    fn start(&mut self, node_id: &str, created: i64, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        (self.id, self.msg_id) = ids(node_id);
        self.created = created;
        let r = response(&self.reply, &self.id, created, None, Vec::new(), None);
        self.emit("response.created", json!({"response": r}), out);
        let r = response(&self.reply, &self.id, created, None, Vec::new(), None);
        self.emit("response.in_progress", json!({"response": r}), out);
    }

    fn index(&self) -> usize {
        self.output.len()
    }

    fn close(&mut self, out: &mut Vec<u8>) {
        let Some(item) = self.open.take() else { return };
        let i = self.index();
        let done = match item {
            Item::Reasoning => reasoning_item(&self.msg_id, &self.reasoning),
            Item::Message => {
                let text = self.text.clone();
                let part = json!({"type": "output_text", "text": text, "annotations": []});
                self.emit("response.output_text.done", json!({"item_id": self.msg_id, "output_index": i, "content_index": 0, "text": text}), out);
                self.emit("response.content_part.done", json!({"item_id": self.msg_id, "output_index": i, "content_index": 0, "part": part}), out);
                message_item(&self.msg_id, &self.text, "completed")
            }
            Item::Call(pos) => {
                let c = self.calls.calls[pos].clone();
                self.emit("response.function_call_arguments.done", json!({"item_id": format!("fc_{}", c.id), "output_index": i, "arguments": c.arguments}), out);
                call_item(&c, "completed")
            }
        };
        self.emit(
            "response.output_item.done",
            json!({"output_index": i, "item": done}),
            out,
        );
        self.output.push(done);
    }

    fn open(&mut self, item: Item, out: &mut Vec<u8>) {
        if self.open == Some(item) {
            return;
        }
        self.close(out);
        self.open = Some(item);
        let i = self.index();
        let added = match item {
            Item::Reasoning => {
                json!({"type": "reasoning", "id": format!("rs_{}", self.msg_id), "summary": []})
            }
            Item::Message => {
                json!({"type": "message", "id": self.msg_id, "status": "in_progress", "role": "assistant", "content": []})
            }
            Item::Call(pos) => {
                let mut c = self.calls.calls[pos].clone();
                c.arguments.clear();
                call_item(&c, "in_progress")
            }
        };
        self.emit(
            "response.output_item.added",
            json!({"output_index": i, "item": added}),
            out,
        );
        if item == Item::Message {
            let part = json!({"type": "output_text", "text": "", "annotations": []});
            self.emit("response.content_part.added", json!({"item_id": self.msg_id, "output_index": i, "content_index": 0, "part": part}), out);
        }
    }

    fn end(&mut self, out: &mut Vec<u8>) {
        self.start("", 0, out);
        self.close(out);
        let finish = self.finish.clone().unwrap_or_else(|| "stop".to_owned());
        let kind = if finish == "length" {
            "response.incomplete"
        } else {
            "response.completed"
        };
        let r = response(
            &self.reply,
            &self.id,
            self.created,
            Some(&finish),
            self.output.clone(),
            Some(self.usage),
        );
        self.emit(kind, json!({"response": r}), out);
        self.done = true;
    }

    fn fail(&mut self, message: &str, out: &mut Vec<u8>) {
        self.failed = true;
        self.start("", 0, out);
        let mut r = response(
            &self.reply,
            &self.id,
            self.created,
            None,
            self.output.clone(),
            None,
        );
        r["status"] = "failed".into();
        r["error"] = json!({"code": "server_error", "message": message});
        self.emit("response.failed", json!({"response": r}), out);
    }
}

impl Writer for Stream {
    fn event(&mut self, up: Up, out: &mut Vec<u8>) {
        if self.done || self.failed {
            return;
        }
        match up {
            Up::Meta { id, created } => self.start(&id, created, out),
            Up::Reasoning(r) => {
                self.start("", 0, out);
                self.open(Item::Reasoning, out);
                self.reasoning.push_str(&r);
                let i = self.index();
                self.emit("response.reasoning_text.delta", json!({"item_id": format!("rs_{}", self.msg_id), "output_index": i, "content_index": 0, "delta": r}), out);
            }
            Up::Text(t) => {
                self.start("", 0, out);
                self.open(Item::Message, out);
                self.text.push_str(&t);
                let i = self.index();
                self.emit("response.output_text.delta", json!({"item_id": self.msg_id, "output_index": i, "content_index": 0, "delta": t}), out);
            }
            Up::Tool {
                index,
                id,
                name,
                arguments,
            } => {
                self.start("", 0, out);
                let (pos, _) = self.calls.add(index, id, name, "");
                self.open(Item::Call(pos), out);
                self.calls.calls[pos].arguments.push_str(&arguments);
                if !arguments.is_empty() {
                    let i = self.index();
                    let item_id = format!("fc_{}", self.calls.calls[pos].id);
                    self.emit(
                        "response.function_call_arguments.delta",
                        json!({"item_id": item_id, "output_index": i, "delta": arguments}),
                        out,
                    );
                }
            }
            Up::Finish(f) => self.finish = Some(f),
            Up::Usage(u) => self.usage = u,
            Up::Timings(_) => {}
            Up::Error(m) => self.fail(&m, out),
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
            self.fail("the node's stream ended before the reply was complete", out);
        }
    }

    fn ended(&self) -> bool {
        self.done || self.failed
    }
}

#[cfg(test)]
#[path = "responses_tests.rs"]
mod tests;
