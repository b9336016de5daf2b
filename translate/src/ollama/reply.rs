//! Ollama's answers from an OpenAI node's: the chat and generate shapes,
//! whole and as NDJSON, with Ollama's counts and durations, and the two
//! embedding shapes.

use serde::Serialize;
use serde_json::Value;

use crate::reply::{Calls, Writer};
use crate::time::rfc3339;
use crate::upstream::{NodeTimings, ToolCall, Up, Usage, Whole};
use crate::value::{arguments_value, to_vec};
use crate::{Reply, Timing};

/// The counts and durations of a final chunk; zeros are left out, as Go's
/// `omitempty` leaves them out of Ollama's.
#[derive(Serialize, Default, Debug, PartialEq, Eq)]
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

/// Counts from the node's `usage`; durations from its `timings` when it
/// sends them, else from the proxy's timing: the prompt until the first
/// token, generation after it (all of it when the answer came whole).
pub(crate) fn metrics(usage: Usage, node: Option<NodeTimings>, t: Timing) -> Metrics {
    let (prompt_eval_duration, eval_duration) = match (node, t.first_token_ns) {
        (Some(n), _) if n.prompt_ns + n.predicted_ns > 0 => (n.prompt_ns, n.predicted_ns),
        (_, Some(first)) => (first.min(t.total_ns), t.total_ns.saturating_sub(first)),
        (_, None) => (0, t.total_ns),
    };
    Metrics {
        total_duration: t.total_ns,
        load_duration: 0,
        prompt_eval_count: usage.prompt,
        prompt_eval_duration,
        eval_count: usage.completion,
        eval_duration,
    }
}

/// Ollama's `done_reason` for an OpenAI `finish_reason`: a tool call is a
/// normal stop in Ollama.
fn done_reason(finish: &str) -> &str {
    match finish {
        "" | "tool_calls" | "function_call" | "content_filter" => "stop",
        other => other,
    }
}

#[derive(Serialize)]
struct OllamaCall {
    #[serde(skip_serializing_if = "String::is_empty")]
    id: String,
    function: OllamaFunction,
}

#[derive(Serialize)]
struct OllamaFunction {
    index: usize,
    name: String,
    arguments: Value,
}

fn calls(tool_calls: &[ToolCall]) -> Vec<OllamaCall> {
    tool_calls
        .iter()
        .enumerate()
        .map(|(index, c)| OllamaCall {
            id: c.id.clone(),
            function: OllamaFunction {
                index,
                name: c.name.clone(),
                arguments: arguments_value(&c.arguments),
            },
        })
        .collect()
}

#[derive(Serialize)]
struct Message<'a> {
    role: &'static str,
    content: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    thinking: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<OllamaCall>,
}

#[derive(Serialize)]
struct ChatLine<'a> {
    model: &'a str,
    created_at: String,
    message: Message<'a>,
    done: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    done_reason: Option<&'a str>,
    #[serde(flatten)]
    metrics: Metrics,
}

#[derive(Serialize)]
struct GenerateLine<'a> {
    model: &'a str,
    created_at: String,
    response: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    thinking: &'a str,
    done: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    done_reason: Option<&'a str>,
    #[serde(flatten)]
    metrics: Metrics,
}

/// One line (chat or generate shape); `done` carries the reason and
/// metrics of the last.
struct Line<'a> {
    text: &'a str,
    thinking: &'a str,
    calls: &'a [ToolCall],
    done: Option<(&'a str, Metrics)>,
}

fn write(reply: &Reply, created: i64, line: Line<'_>, out: &mut Vec<u8>) {
    let (done_reason, metrics) = match line.done {
        Some((r, m)) => (Some(r), m),
        None => (None, Metrics::default()),
    };
    let bytes = if reply.generate {
        to_vec(&GenerateLine {
            model: &reply.model,
            created_at: rfc3339(created),
            response: line.text,
            thinking: line.thinking,
            done: done_reason.is_some(),
            done_reason,
            metrics,
        })
    } else {
        to_vec(&ChatLine {
            model: &reply.model,
            created_at: rfc3339(created),
            message: Message {
                role: "assistant",
                content: line.text,
                thinking: line.thinking,
                tool_calls: calls(line.calls),
            },
            done: done_reason.is_some(),
            done_reason,
            metrics,
        })
    };
    out.extend_from_slice(&bytes);
}

/// A whole answer (`stream: false`).
pub(crate) fn whole(reply: &Reply, w: &Whole, t: Timing) -> Vec<u8> {
    let mut out = Vec::new();
    let line = Line {
        text: &w.text,
        thinking: &w.reasoning,
        calls: &w.tool_calls,
        done: Some((done_reason(&w.finish), metrics(w.usage, w.timings, t))),
    };
    write(reply, w.created, line, &mut out);
    out
}

/// `/api/embed` and `/api/embeddings` answers from `/v1/embeddings`.
pub(crate) fn embeddings(reply: &Reply, body: &[u8], t: Timing) -> Result<Vec<u8>, String> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("the node's reply is not JSON: {e}"))?;
    let mut data: Vec<&Value> = v
        .get("data")
        .and_then(Value::as_array)
        .ok_or("the node's reply has no data")?
        .iter()
        .collect();
    data.sort_by_key(|d| d.get("index").and_then(Value::as_u64).unwrap_or(0));
    let vectors: Vec<&Value> = data
        .iter()
        .map(|d| d.get("embedding").filter(|e| e.is_array()))
        .collect::<Option<_>>()
        .ok_or("the node's reply has an embedding that is not a list of numbers")?;
    if reply.dialect == crate::Dialect::OllamaEmbeddings {
        let first = vectors
            .first()
            .copied()
            .cloned()
            .unwrap_or(Value::Array(Vec::new()));
        return Ok(to_vec(&serde_json::json!({ "embedding": first })));
    }
    #[derive(Serialize)]
    struct Embed<'a> {
        model: &'a str,
        embeddings: Vec<&'a Value>,
        #[serde(skip_serializing_if = "is_zero")]
        total_duration: u64,
        #[serde(skip_serializing_if = "is_zero")]
        prompt_eval_count: u64,
    }
    let prompt = v
        .pointer("/usage/prompt_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    Ok(to_vec(&Embed {
        model: &reply.model,
        embeddings: vectors,
        total_duration: t.total_ns,
        prompt_eval_count: prompt,
    }))
}

/// NDJSON lines from the node's chunks. Text and thinking go out as they
/// come; tool calls are gathered and go out whole when the node finishes
/// (Ollama sends each call whole); the last line, with the counts and
/// durations, waits for [`Writer::finish`] and the proxy's timing.
#[derive(Debug)]
pub(crate) struct Stream {
    reply: Reply,
    created: i64,
    calls: Calls,
    calls_sent: bool,
    finish: Option<String>,
    usage: Usage,
    timings: Option<NodeTimings>,
    done: bool,
    failed: bool,
}

impl Stream {
    pub(crate) fn new(reply: Reply) -> Stream {
        Stream {
            reply,
            created: 0,
            calls: Calls::default(),
            calls_sent: false,
            finish: None,
            usage: Usage::default(),
            timings: None,
            done: false,
            failed: false,
        }
    }

    fn line(&self, text: &str, thinking: &str, calls: &[ToolCall], out: &mut Vec<u8>) {
        write(
            &self.reply,
            self.created,
            Line {
                text,
                thinking,
                calls,
                done: None,
            },
            out,
        );
        out.push(b'\n');
    }

    fn flush_calls(&mut self, out: &mut Vec<u8>) {
        if !self.calls_sent && !self.calls.calls.is_empty() {
            self.calls_sent = true;
            self.line("", "", &self.calls.calls, out);
        }
    }
}

/// An error line, as Ollama writes one into a stream that fails.
pub(crate) fn error_line(message: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(&to_vec(&serde_json::json!({ "error": message })));
    out.push(b'\n');
}

impl Writer for Stream {
    fn event(&mut self, up: Up, out: &mut Vec<u8>) {
        if self.failed || self.done {
            return;
        }
        match up {
            Up::Meta { created, .. } => {
                if created > 0 {
                    self.created = created;
                }
            }
            Up::Text(t) => self.line(&t, "", &[], out),
            Up::Reasoning(r) => self.line("", &r, &[], out),
            Up::Tool {
                index,
                id,
                name,
                arguments,
            } => {
                self.calls.add(index, id, name, &arguments);
            }
            Up::Finish(f) => {
                self.finish = Some(f);
                self.flush_calls(out);
            }
            Up::Usage(u) => self.usage = u,
            Up::Timings(t) => self.timings = Some(t),
            Up::Error(m) => {
                self.failed = true;
                error_line(&m, out);
            }
            Up::Done => {
                self.flush_calls(out);
                self.done = true;
            }
        }
    }

    fn finish(&mut self, timing: Timing, out: &mut Vec<u8>) {
        if self.failed {
            return;
        }
        if !self.done && self.finish.is_none() {
            self.failed = true;
            error_line("the node's stream ended before the reply was complete", out);
            return;
        }
        self.flush_calls(out);
        let reason = done_reason(self.finish.as_deref().unwrap_or("stop")).to_owned();
        write(
            &self.reply,
            self.created,
            Line {
                text: "",
                thinking: "",
                calls: &[],
                done: Some((&reason, metrics(self.usage, self.timings, timing))),
            },
            out,
        );
        out.push(b'\n');
        self.done = true;
    }

    fn ended(&self) -> bool {
        self.done || self.failed
    }
}
