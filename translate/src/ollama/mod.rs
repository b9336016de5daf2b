//! Ollama's native API onto an OpenAI-compatible node: the requests here,
//! the answers in [`reply`].

pub(crate) mod reply;

use serde_json::{Map, Value, json};

use crate::value::{At, Obj, arguments_text, objects, to_vec};
use crate::{Answer, Dialect, Plan, Reply, TranslateError, Upstream};

pub(crate) const CHAT: &str = "/v1/chat/completions";
pub(crate) const COMPLETIONS: &str = "/v1/completions";
pub(crate) const EMBEDDINGS: &str = "/v1/embeddings";

/// How an Ollama option reaches the node.
#[derive(Clone, Copy)]
enum Opt {
    /// A standard chat-completion field.
    Number(&'static str),
    Integer(&'static str),
    /// Extension fields of llama.cpp and vLLM, sent only when set.
    Extension(&'static [&'static str]),
    /// `num_predict` → `max_tokens`, negative meaning no limit.
    MaxTokens,
    Stop,
}

/// Options with a chat-completion equivalent; the rest (`num_ctx`,
/// `num_gpu`, `num_thread`, `mirostat`, …) configure the runner and are
/// dropped.
const OPTIONS: &[(&str, Opt)] = &[
    ("temperature", Opt::Number("temperature")),
    ("top_p", Opt::Number("top_p")),
    ("presence_penalty", Opt::Number("presence_penalty")),
    ("frequency_penalty", Opt::Number("frequency_penalty")),
    ("seed", Opt::Integer("seed")),
    ("num_predict", Opt::MaxTokens),
    ("stop", Opt::Stop),
    ("top_k", Opt::Extension(&["top_k"])),
    ("min_p", Opt::Extension(&["min_p"])),
    ("typical_p", Opt::Extension(&["typical_p"])),
    ("repeat_last_n", Opt::Extension(&["repeat_last_n"])),
    (
        "repeat_penalty",
        Opt::Extension(&["repeat_penalty", "repetition_penalty"]),
    ),
];

fn options(v: &Obj, out: &mut Obj) -> Result<(), TranslateError> {
    let Some(opts) = At::new(v, "").object("options")? else {
        return Ok(());
    };
    let at = At::new(opts, "options");
    for (name, how) in OPTIONS {
        match *how {
            Opt::Number(to) => {
                if let Some(n) = at.number(name)? {
                    out.insert(to.into(), Value::Number(n.clone()));
                }
            }
            Opt::Integer(to) => {
                if let Some(n) = at.int(name)? {
                    out.insert(to.into(), n.into());
                }
            }
            Opt::Extension(to) => {
                if let Some(n) = at.number(name)? {
                    for t in to {
                        out.insert((*t).into(), Value::Number(n.clone()));
                    }
                }
            }
            Opt::MaxTokens => {
                if let Some(n) = at.int(name)?.filter(|n| *n >= 0) {
                    out.insert("max_tokens".into(), n.into());
                }
            }
            Opt::Stop => match at.get(name) {
                None => {}
                Some(Value::String(s)) => {
                    out.insert("stop".into(), json!([s]));
                }
                Some(Value::Array(a)) if a.is_empty() => {}
                Some(Value::Array(a)) if a.iter().all(Value::is_string) => {
                    out.insert("stop".into(), Value::Array(a.clone()));
                }
                Some(_) => return Err(at.err(name, "must be a list of strings")),
            },
        }
    }
    Ok(())
}

/// `format`: `"json"` or a JSON Schema.
fn format(v: &Obj, out: &mut Obj) -> Result<bool, TranslateError> {
    match v.get("format") {
        None | Some(Value::Null) => Ok(false),
        Some(Value::String(s)) if s.is_empty() => Ok(false),
        Some(Value::String(s)) if s == "json" => {
            out.insert("response_format".into(), json!({"type": "json_object"}));
            Ok(true)
        }
        Some(Value::Object(schema)) => {
            out.insert(
                "response_format".into(),
                json!({"type": "json_schema", "json_schema": {"name": "response", "schema": schema}}),
            );
            Ok(true)
        }
        Some(_) => Err(TranslateError::field(
            "format",
            "must be \"json\" or a JSON Schema object",
        )),
    }
}

/// `think`: a switch for the chat template, or a reasoning effort.
fn think(v: &Obj, out: &mut Obj) -> Result<(), TranslateError> {
    match v.get("think") {
        None | Some(Value::Null) => {}
        Some(Value::Bool(b)) => {
            out.insert("chat_template_kwargs".into(), json!({"enable_thinking": b}));
        }
        Some(Value::String(level)) if matches!(level.as_str(), "low" | "medium" | "high") => {
            out.insert("reasoning_effort".into(), Value::from(level.as_str()));
        }
        Some(_) => {
            return Err(TranslateError::field(
                "think",
                "must be true, false, \"low\", \"medium\" or \"high\"",
            ));
        }
    }
    Ok(())
}

/// The MIME type of base64 image data, from its first bytes.
fn image_type(b64: &str) -> &'static str {
    let kinds = [
        ("iVBORw0KGgo", "image/png"),
        ("/9j/", "image/jpeg"),
        ("R0lGOD", "image/gif"),
        ("UklGR", "image/webp"),
        ("Qk", "image/bmp"),
    ];
    kinds
        .iter()
        .find(|(p, _)| b64.starts_with(p))
        .map_or("image/jpeg", |(_, t)| t)
}

fn is_base64(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'\n' | b'\r'))
}

/// Ollama `images` (base64) as OpenAI `image_url` parts with data URLs.
fn image_parts(images: &[Value], path: &str) -> Result<Vec<Value>, TranslateError> {
    images
        .iter()
        .enumerate()
        .map(|(i, img)| match img.as_str() {
            Some(b64) if is_base64(b64) => {
                let data: String = b64.chars().filter(|c| !c.is_ascii_whitespace()).collect();
                Ok(json!({"type": "image_url", "image_url": {"url": format!("data:{};base64,{data}", image_type(&data))}}))
            }
            _ => Err(TranslateError::field(
                format!("{path}[{i}]"),
                "must be base64-encoded image data",
            )),
        })
        .collect()
}

/// Text and images as OpenAI message content.
fn content(text: &str, images: Option<&Vec<Value>>, path: &str) -> Result<Value, TranslateError> {
    match images.filter(|i| !i.is_empty()) {
        None => Ok(Value::from(text)),
        Some(images) => {
            let mut parts = Vec::new();
            if !text.is_empty() {
                parts.push(json!({"type": "text", "text": text}));
            }
            parts.extend(image_parts(images, path)?);
            Ok(Value::Array(parts))
        }
    }
}

/// Ids given to calls and not yet answered, by function name, in order.
#[derive(Default)]
struct Pending {
    calls: Vec<(String, String)>,
}

impl Pending {
    fn answer(&mut self, name: Option<&str>) -> Option<String> {
        let pos = match name {
            Some(n) => self.calls.iter().position(|(_, cn)| cn == n),
            None => None,
        }
        .or(if self.calls.is_empty() { None } else { Some(0) })?;
        Some(self.calls.remove(pos).0)
    }
}

fn tool_calls(
    calls: &[Value],
    path: &str,
    msg_index: usize,
    pending: &mut Pending,
) -> Result<Vec<Value>, TranslateError> {
    let mut out = Vec::new();
    for (j, (at, call)) in objects(calls, path)?.into_iter().enumerate() {
        let c = At::new(call, &at);
        let f = c
            .object("function")?
            .ok_or_else(|| c.err("function", "is required"))?;
        let fn_path = format!("{at}.function");
        let fa = At::new(f, &fn_path);
        let name = fa.required_str("name")?;
        let id = match c.str("id")? {
            Some(id) if !id.is_empty() => id.to_owned(),
            _ => format!("call_{msg_index}_{j}"),
        };
        pending.calls.push((id.clone(), name.to_owned()));
        out.push(json!({
            "id": id,
            "type": "function",
            "function": {"name": name, "arguments": arguments_text(fa.get("arguments"))},
        }));
    }
    Ok(out)
}

/// Ollama chat messages as OpenAI chat messages.
fn messages(msgs: &[Value]) -> Result<Vec<Value>, TranslateError> {
    let mut out = Vec::with_capacity(msgs.len());
    let mut pending = Pending::default();
    for (i, (at, m)) in objects(msgs, "messages")?.into_iter().enumerate() {
        let a = At::new(m, &at);
        let role = a.required_str("role")?;
        let text = a.str("content")?.unwrap_or_default();
        let images = a.array("images")?;
        let mut msg = Map::new();
        msg.insert("role".into(), Value::from(role));
        match role {
            "system" | "user" => {
                let images_path = format!("{at}.images");
                msg.insert("content".into(), content(text, images, &images_path)?);
            }
            "assistant" => {
                let calls = match a.array("tool_calls")? {
                    Some(c) if !c.is_empty() => {
                        tool_calls(c, &format!("{at}.tool_calls"), i, &mut pending)?
                    }
                    _ => Vec::new(),
                };
                let empty = text.is_empty() && !calls.is_empty();
                msg.insert(
                    "content".into(),
                    if empty {
                        Value::Null
                    } else {
                        Value::from(text)
                    },
                );
                if !calls.is_empty() {
                    msg.insert("tool_calls".into(), Value::Array(calls));
                }
                if let Some(t) = a.str("thinking")?.filter(|t| !t.is_empty()) {
                    msg.insert("reasoning_content".into(), Value::from(t));
                }
            }
            "tool" => {
                let id = match a.str("tool_call_id")? {
                    Some(id) if !id.is_empty() => {
                        pending.calls.retain(|(p, _)| p != id);
                        id.to_owned()
                    }
                    _ => pending
                        .answer(a.str("tool_name")?)
                        .unwrap_or_else(|| format!("call_{i}")),
                };
                msg.insert("tool_call_id".into(), Value::from(id));
                msg.insert("content".into(), Value::from(text));
            }
            _ => {
                return Err(a.err("role", "must be system, user, assistant or tool"));
            }
        }
        out.push(Value::Object(msg));
    }
    Ok(out)
}

fn tools(v: &Obj, out: &mut Obj) -> Result<(), TranslateError> {
    let Some(tools) = At::new(v, "").array("tools")? else {
        return Ok(());
    };
    if tools.is_empty() {
        return Ok(());
    }
    for (at, t) in objects(tools, "tools")? {
        let f = At::new(t, &at)
            .object("function")?
            .ok_or_else(|| TranslateError::field(format!("{at}.function"), "is required"))?;
        At::new(f, &format!("{at}.function")).required_str("name")?;
    }
    out.insert("tools".into(), Value::Array(tools.clone()));
    Ok(())
}

/// `stream` (Ollama's default is true) and the usage the stream must end
/// with.
fn stream(v: &Obj, out: &mut Obj) -> Result<bool, TranslateError> {
    let stream = At::new(v, "").bool("stream")?.unwrap_or(true);
    out.insert("stream".into(), Value::Bool(stream));
    if stream {
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    Ok(stream)
}

fn forward(dialect: Dialect, path: &'static str, model: &str, body: Obj, stream: bool) -> Plan {
    Plan::Forward(
        Upstream {
            path,
            body: to_vec(&body),
            stream,
            model: model.to_owned(),
        },
        Reply::new(dialect, model, stream),
    )
}

/// Ollama's answer to a request with nothing to generate: the model loads
/// (`done_reason: "load"`), or with `keep_alive: 0` unloads.
fn load_only(v: &Obj, model: &str, chat: bool) -> Plan {
    let unload = matches!(v.get("keep_alive"), Some(Value::Number(n)) if n.as_f64() == Some(0.0))
        || matches!(v.get("keep_alive"), Some(Value::String(s)) if s == "0" || s == "0s");
    let reason = if unload { "unload" } else { "load" };
    // No `created_at`: the crate has no clock, and clients treat it as
    // optional.
    let body = if chat {
        json!({"model": model, "message": {"role": "assistant", "content": ""}, "done_reason": reason, "done": true})
    } else {
        json!({"model": model, "response": "", "done": true, "done_reason": reason})
    };
    Plan::Answer(Answer::json(200, &body))
}

pub(crate) fn chat(v: &Obj) -> Result<Plan, TranslateError> {
    let top = At::new(v, "");
    let model = top.required_str("model")?;
    let msgs = top
        .array("messages")?
        .map(Vec::as_slice)
        .unwrap_or_default();
    if msgs.is_empty() {
        return Ok(load_only(v, model, true));
    }
    let mut out = Map::new();
    out.insert("model".into(), Value::from(model));
    out.insert("messages".into(), Value::Array(messages(msgs)?));
    tools(v, &mut out)?;
    format(v, &mut out)?;
    options(v, &mut out)?;
    think(v, &mut out)?;
    let stream = stream(v, &mut out)?;
    Ok(forward(Dialect::OllamaChat, CHAT, model, out, stream))
}

pub(crate) fn generate(v: &Obj) -> Result<Plan, TranslateError> {
    let top = At::new(v, "");
    let model = top.required_str("model")?;
    let prompt = top.str("prompt")?.unwrap_or_default();
    let images = top.array("images")?;
    if prompt.is_empty() && images.is_none_or(Vec::is_empty) {
        return Ok(load_only(v, model, false));
    }
    let mut out = Map::new();
    out.insert("model".into(), Value::from(model));
    let suffix = top.str("suffix")?.filter(|s| !s.is_empty());
    let raw = top.bool("raw")?.unwrap_or(false);
    let path = if raw || suffix.is_some() {
        if images.is_some_and(|i| !i.is_empty()) {
            return Err(top.err("images", "cannot be sent with raw or suffix"));
        }
        out.insert("prompt".into(), Value::from(prompt));
        if let Some(s) = suffix {
            out.insert("suffix".into(), Value::from(s));
        }
        COMPLETIONS
    } else {
        let mut msgs = Vec::new();
        if let Some(system) = top.str("system")?.filter(|s| !s.is_empty()) {
            msgs.push(json!({"role": "system", "content": system}));
        }
        msgs.push(json!({"role": "user", "content": content(prompt, images, "images")?}));
        out.insert("messages".into(), Value::Array(msgs));
        think(v, &mut out)?;
        CHAT
    };
    format(v, &mut out)?;
    options(v, &mut out)?;
    let stream = stream(v, &mut out)?;
    Ok(forward(Dialect::OllamaGenerate, path, model, out, stream))
}

pub(crate) fn embed(v: &Obj) -> Result<Plan, TranslateError> {
    let top = At::new(v, "");
    let model = top.required_str("model")?;
    let input = match top.get("input") {
        None => Vec::new(),
        Some(Value::String(s)) if s.is_empty() => Vec::new(),
        Some(Value::String(s)) => vec![Value::from(s.as_str())],
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => a.clone(),
        Some(_) => return Err(top.err("input", "must be a string or a list of strings")),
    };
    if input.is_empty() {
        return Ok(Plan::Answer(Answer::json(
            200,
            &json!({"model": model, "embeddings": []}),
        )));
    }
    let mut out = Map::new();
    out.insert("model".into(), Value::from(model));
    out.insert("input".into(), Value::Array(input));
    out.insert("encoding_format".into(), Value::from("float"));
    if let Some(d) = top.int("dimensions")?.filter(|d| *d > 0) {
        out.insert("dimensions".into(), d.into());
    }
    Ok(forward(Dialect::OllamaEmbed, EMBEDDINGS, model, out, false))
}

pub(crate) fn embeddings(v: &Obj) -> Result<Plan, TranslateError> {
    let top = At::new(v, "");
    let model = top.required_str("model")?;
    let prompt = top.str("prompt")?.unwrap_or_default();
    if prompt.is_empty() {
        return Ok(Plan::Answer(Answer::json(200, &json!({"embedding": []}))));
    }
    let mut out = Map::new();
    out.insert("model".into(), Value::from(model));
    out.insert("input".into(), json!([prompt]));
    out.insert("encoding_format".into(), Value::from("float"));
    Ok(forward(
        Dialect::OllamaEmbeddings,
        EMBEDDINGS,
        model,
        out,
        false,
    ))
}

#[cfg(test)]
mod tests;
